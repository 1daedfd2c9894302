/**
 * Typed errors of the storage layer: file-system failures ({@link WalIoError})
 * and segment files recovery cannot use ({@link SegmentCorruptError}).
 */
import { WalError } from '../errors.js';

/** Code of {@link WalIoError}. */
export const IO_ERROR_CODE = 'ERR_IO';
/** Code of {@link SegmentCorruptError}. */
export const SEGMENT_CORRUPT_CODE = 'ERR_SEGMENT_CORRUPT';
/**
 * Code of {@link RecoveryGapError}; the same code the certificate chain uses
 * for a missing middle segment, so callers branch on one code for both.
 */
export const RECOVERY_GAP_CODE = 'ERR_RECOVERY_GAP';
/** Code of {@link SkippedEpochsCorruptError}. */
export const SKIPPED_EPOCHS_CORRUPT_CODE = 'ERR_SKIPPED_EPOCHS_CORRUPT';

/** Why a segment file is unusable, beyond the format layer's codes. */
export const SegmentFileErrorReason = {
  /** The header's epoch differs from the epoch in the file name. */
  nameMismatch: 'ERR_SEGMENT_NAME_MISMATCH',
  /** Two or more files name the same epoch (e.g. lower- and upper-case hex). */
  duplicateEpoch: 'ERR_SEGMENT_DUPLICATE_EPOCH',
} as const;

const ERRNO_TEXT: Readonly<Record<string, string>> = {
  ENOENT: 'does not exist',
  ENOTDIR: 'a path component is not a directory',
  EISDIR: 'is a directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EEXIST: 'already exists',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'read-only file system',
  EIO: 'input/output error',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files in the system',
  EBUSY: 'resource busy',
  ENAMETOOLONG: 'file name too long',
  ELOOP: 'too many symbolic links',
  EXDEV: 'cross-device rename',
};

/**
 * A file-system operation failed. `errno` is the system code (`ENOENT`,
 * `EACCES`, `ENOTDIR`, `EIO`, …) when the file system gave one, `syscall` the
 * operation the log was doing, `path` the file or directory involved. The
 * message says all three in words, e.g.
 * `cannot list segment directory /data: does not exist (ENOENT, readdir)`.
 */
export class WalIoError extends WalError {
  /** System error code such as `ENOENT`, if known. */
  readonly errno: string | undefined;
  /** The operation: `open`, `write`, `datasync`, `rename`, `readdir`, … */
  readonly syscall: string;
  /** The file or directory the operation was on. */
  readonly path: string;

  constructor(
    action: string,
    syscall: string,
    path: string,
    errno: string | undefined,
    cause: unknown,
  ) {
    const text =
      (errno !== undefined ? ERRNO_TEXT[errno] : undefined) ??
      (cause instanceof Error ? cause.message : String(cause));
    const tag = errno !== undefined ? `${errno}, ${syscall}` : syscall;
    super(IO_ERROR_CODE, `${action} ${path}: ${text} (${tag})`, { cause });
    this.errno = errno;
    this.syscall = syscall;
    this.path = path;
  }
}

/** The string `code` of a Node-style system error, if it has one. */
export function errnoOf(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const code = (error as { code: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)) return code;
  }
  return undefined;
}

/**
 * Wraps a raw file-system error into a {@link WalIoError}; typed
 * {@link WalError}s (for example from a fault injector) pass through as they are.
 */
export function toIoError(error: unknown, action: string, syscall: string, path: string): WalError {
  if (error instanceof WalError) return error;
  return new WalIoError(action, syscall, path, errnoOf(error), error);
}

/**
 * A segment file recovery cannot use: it fails to decode, its header names
 * another epoch than its file name, or another file claims the same epoch.
 * `reason` is the underlying code (a format code such as
 * `ERR_SEGMENT_HEADER_CHECKSUM`, or a {@link SegmentFileErrorReason}).
 */
export class SegmentCorruptError extends WalError {
  /** The segment file. */
  readonly path: string;
  /** The epoch its file name states. */
  readonly epoch: bigint;
  /** The specific cause's code. */
  readonly reason: string;

  constructor(
    path: string,
    epoch: bigint,
    reason: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(SEGMENT_CORRUPT_CODE, message, options);
    this.path = path;
    this.epoch = epoch;
    this.reason = reason;
  }
}

/**
 * An epoch inside the log has no segment file: the log never leaves an epoch
 * number unused, so a missing epoch between the first segment (or the first
 * epoch not yet applied to the database) and the newest one is a lost
 * segment. `reason` is the control plane's fallback reason of the same name.
 */
export class RecoveryGapError extends WalError {
  /** The fallback reason (`recovery_gap` in traces). */
  readonly reason = 'recoveryGap' as const;
  /** The first missing epoch. */
  readonly missingEpoch: bigint;
  /** The last missing epoch of this hole (`>= missingEpoch`). */
  readonly missingThroughEpoch: bigint;
  /** The segment file the first missing epoch would have. */
  readonly path: string;
  /** The next epoch that has a segment file. */
  readonly nextPresentEpoch: bigint;

  constructor(
    path: string,
    missingEpoch: bigint,
    missingThroughEpoch: bigint,
    nextPresentEpoch: bigint,
  ) {
    const range =
      missingThroughEpoch === missingEpoch
        ? `segment of epoch ${missingEpoch} is missing`
        : `segments of epochs ${missingEpoch}..${missingThroughEpoch} are missing`;
    super(
      RECOVERY_GAP_CODE,
      `recovery_gap: ${range} (${path}), but epoch ${nextPresentEpoch} has a segment: recovery would skip acknowledged commits`,
    );
    this.path = path;
    this.missingEpoch = missingEpoch;
    this.missingThroughEpoch = missingThroughEpoch;
    this.nextPresentEpoch = nextPresentEpoch;
  }
}

/** The record of skipped epochs (`<db>-wal-skipped`) is unreadable or malformed. */
export class SkippedEpochsCorruptError extends WalError {
  /** The record file. */
  readonly path: string;

  constructor(path: string, message: string) {
    super(SKIPPED_EPOCHS_CORRUPT_CODE, `skipped-epochs record ${path} is corrupt: ${message}`);
    this.path = path;
  }
}
