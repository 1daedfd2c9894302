/**
 * What every `pwal` subcommand gets: where to print, which file system to
 * use, whether the caller asked for JSON, how to show progress and how to
 * report its exit status. Keeping these out of `process` lets tests run the
 * CLI in-process.
 */
import type { WalFileSystem } from '../storage/fs.js';
import type { Progress } from './progress.js';

/** Exit status: everything checked out. */
export const EXIT_OK = 0;
/** Exit status: the command ran and found a problem (corrupt segment, missing database, I/O error). */
export const EXIT_FAILURE = 1;
/** Exit status: the command line itself was wrong. */
export const EXIT_USAGE = 2;

/** Where the CLI writes. Each call gets whole lines (ending in `\n`), except progress redraws. */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  /** True when stdout is a terminal (default false: progress stays off). */
  readonly stdoutIsTTY?: boolean;
  /** True when stderr is a terminal (default false: progress stays off). */
  readonly stderrIsTTY?: boolean;
  /** The terminal type (`TERM`); `dumb` turns progress off. */
  readonly term?: string;
  /** True once nobody reads stdout any more (`pwal dump … | head`); writes are dropped. */
  stdoutClosed?(): boolean;
}

/** Shared state of one CLI run. */
export interface CliContext {
  io: CliIo;
  fs: WalFileSystem;
  /** `--json` was given: results are JSON on stdout, errors one JSON line on stderr. */
  json: boolean;
  /** Sets the exit status the run ends with (the last call wins). */
  setExitCode(code: number): void;
  /**
   * A progress line on stderr for long work; does nothing unless both stdout
   * and stderr are terminals and `--json` is off.
   */
  progress(label: string): Progress;
  /**
   * Ends the run with exit status 1 for a problem the command found: prints
   * the error on stderr (one JSON line with `--json`; in text mode only when
   * `shown` is false, i.e. the report on stdout does not already say it).
   */
  problem(error: { code: string; message: string }, shown?: boolean): void;
}

/** Writes `value` as one JSON line; bigints become decimal strings. */
export function jsonLine(value: unknown): string {
  return `${JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}\n`;
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

/**
 * The error line of a failed run: `{"error":{"code":…,"message":…}}` with
 * `--json`, else `pwal: <message> (<code>)`.
 */
export function errorLine(json: boolean, code: string, message: string): string {
  const text = oneLine(message);
  return json ? jsonLine({ error: { code, message: text } }) : `pwal: ${text} (${code})\n`;
}
