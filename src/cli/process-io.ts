/**
 * The real stdout/stderr for the `pwal` binary. A reader that goes away
 * (`pwal dump … | head`) is normal at a shell: the write fails with `EPIPE`,
 * and from then on output is dropped quietly instead of crashing with a
 * stack trace. The command still finishes what it was doing (a checkpoint is
 * never cut short by a closed pipe) and exits with its own status.
 */
import type { CliIo } from './context.js';

/** Output of the process, plus what went wrong writing it. */
export interface ProcessIo extends CliIo {
  /** A write error on stdout other than `EPIPE` (e.g. `EIO`, `ENOSPC`), if any. */
  stdoutError(): NodeJS.ErrnoException | null;
}

/** Binds the CLI's output to `process.stdout` and `process.stderr`. */
export function createProcessIo(): ProcessIo {
  let stdoutGone = false;
  let stderrGone = false;
  let failure: NodeJS.ErrnoException | null = null;
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    stdoutGone = true;
    if (error.code !== 'EPIPE') failure ??= error;
  });
  process.stderr.on('error', () => {
    stderrGone = true;
  });
  return {
    stdout: (text) => {
      if (stdoutGone || process.stdout.destroyed) return;
      process.stdout.write(text);
    },
    stderr: (text) => {
      if (stderrGone || process.stderr.destroyed) return;
      process.stderr.write(text);
    },
    stdoutIsTTY: process.stdout.isTTY === true,
    stderrIsTTY: process.stderr.isTTY === true,
    term: process.env.TERM,
    stdoutClosed: () => stdoutGone || process.stdout.destroyed,
    stdoutError: () => failure,
  };
}
