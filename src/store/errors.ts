/**
 * Typed errors of the page store. Callers branch on `code`; people read the message.
 */
import { WalError } from '../errors.js';

/** Stable codes of {@link StoreError}. */
export const StoreErrorCode = {
  /** The database was created with another page size than the one asked for. */
  pageSizeMismatch: 'ERR_STORE_PAGE_SIZE_MISMATCH',
  /** The store header (`<db>-pwal-store`) is not a valid header (magic, version, length, checksum). */
  headerCorrupt: 'ERR_STORE_HEADER_CORRUPT',
  /** The database file exists but its store header does not (or the reverse). */
  headerMissing: 'ERR_STORE_HEADER_MISSING',
  /** A read past the end of the database (page number above its size in pages). */
  pageOutOfRange: 'ERR_STORE_PAGE_OUT_OF_RANGE',
  /** The store is closed (or closing). */
  closed: 'ERR_STORE_CLOSED',
  /** A checkpoint could not complete; the log still holds everything, nothing was lost. */
  checkpointFailed: 'ERR_STORE_CHECKPOINT_FAILED',
  /** Recovery into the database file failed (I/O); the log was left untouched. */
  recoveryFailed: 'ERR_STORE_RECOVERY_FAILED',
  /**
   * The database file is shorter than its store header and the log allow:
   * pages are missing that no crash can remove (the header moves only after
   * the file's fsync). Opening fails closed rather than read them as zeros.
   */
  fileTruncated: 'ERR_STORE_FILE_TRUNCATED',
  /** A store I/O operation (open, read, truncate) failed. */
  io: 'ERR_STORE_IO',
  /**
   * An acknowledged epoch was not published (under its segment name) in time,
   * or the log failed before publishing it: a read that must see worker
   * commits, or a checkpoint that must fold every acknowledged epoch, cannot
   * proceed. Nothing is lost: recovery adopts acknowledged epochs.
   */
  notPublished: 'ERR_STORE_NOT_PUBLISHED',
  /**
   * A replica was asked to apply an epoch out of order (not above the last
   * applied one), to install a snapshot while it already holds data, or was
   * opened on a database whose page size does not match the stream's.
   */
  replicaState: 'ERR_STORE_REPLICA_STATE',
} as const;

/** One of the {@link StoreErrorCode} values. */
export type StoreErrorCodeValue = (typeof StoreErrorCode)[keyof typeof StoreErrorCode];

/** An error of the page store; `code` is one of {@link StoreErrorCode}. */
export class StoreError extends WalError {
  declare readonly code: StoreErrorCodeValue;

  constructor(code: StoreErrorCodeValue, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** Message of an error (or the value itself), for wrapping causes into messages. */
export function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
