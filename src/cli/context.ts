/**
 * What every `pwal` subcommand gets: where to print, which file system to
 * use, and how to report its exit status. Keeping these out of `process`
 * lets tests run the CLI in-process.
 */
import type { WalFileSystem } from '../storage/fs.js';

/** Exit status: everything checked out. */
export const EXIT_OK = 0;
/** Exit status: the command ran and found a problem (corrupt segment, I/O error). */
export const EXIT_FAILURE = 1;
/** Exit status: the command line itself was wrong. */
export const EXIT_USAGE = 2;

/** Where the CLI writes. Each call gets whole lines (ending in `\n`). */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
}

/** Shared state of one CLI run. */
export interface CliContext {
  io: CliIo;
  fs: WalFileSystem;
  /** Sets the exit status the run ends with (the last call wins). */
  setExitCode(code: number): void;
}

/** Writes `value` as one JSON line; bigints become decimal strings. */
export function jsonLine(value: unknown): string {
  return `${JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}\n`;
}
