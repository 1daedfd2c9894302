/**
 * The root of every error this library throws on purpose.
 *
 * Callers branch on {@link WalError.code} (stable across releases); people read
 * the message. Each layer defines its own subclasses beside its code
 * (`format/errors.ts`, `storage/errors.ts`, `engine/errors.ts`, …) so that lower
 * layers never import higher ones.
 */
export class WalError extends Error {
  /** Stable, machine-readable error code such as `ERR_SEGMENT_CHECKSUM`. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A caller passed an argument the API cannot accept (wrong type, out of range). */
export class WalArgumentError extends WalError {
  constructor(message: string) {
    super('ERR_INVALID_ARGUMENT', message);
  }
}

/** Returns true when `error` is a {@link WalError} (optionally with the given code). */
export function isWalError(error: unknown, code?: string): error is WalError {
  return error instanceof WalError && (code === undefined || error.code === code);
}
