/**
 * The CLI's own typed errors. Everything else a command meets is a
 * {@link WalError} of a lower layer; {@link exitCodeFor} maps either kind to
 * the documented exit status.
 */
import { WalError } from '../errors.js';
import { EXIT_FAILURE, EXIT_USAGE } from './context.js';

/** Codes of {@link CliError}. */
export const CliErrorCode = {
  /** The command line itself is wrong (unknown flag, bad value, missing argument). */
  usage: 'ERR_USAGE',
  /** Nothing of a database is at the path (no file, header or segments). */
  databaseNotFound: 'ERR_DATABASE_NOT_FOUND',
  /** The path names something that cannot be a database file (a directory, a device). */
  notADatabase: 'ERR_NOT_A_DATABASE',
  /** `pwal demo`: an acknowledged commit was not found intact after reopening. */
  demoVerification: 'ERR_DEMO_VERIFICATION',
  /** `pwal snapshot` of a database that holds no checkpointed data. */
  nothingToSnapshot: 'ERR_NOTHING_TO_SNAPSHOT',
} as const;

/** An error of the `pwal` command line. */
export class CliError extends WalError {}

/** A wrong command line: exit status 2. */
export class CliUsageError extends CliError {
  constructor(message: string) {
    super(CliErrorCode.usage, message);
  }
}

/** Exit status for an error a command ended with: 2 for usage, 1 for anything else. */
export function exitCodeFor(error: unknown): number {
  return error instanceof WalError && error.code === CliErrorCode.usage ? EXIT_USAGE : EXIT_FAILURE;
}
