/**
 * Typed errors of the format layer.
 *
 * {@link SegmentFormatError} and its codes describe bytes that are not a valid
 * segment (corruption, truncation, foreign files): the reader met them.
 * {@link InvalidRecordError} describes a record or header a caller asked to
 * encode that the format cannot represent: nothing was written.
 * Messages follow the seed (`parallel_wal.rs`) word for word.
 */
import { WalError } from '../errors.js';

/** Stable codes of {@link SegmentFormatError}, in the order the reader checks them. */
export const SegmentErrorCode = {
  /** Fewer bytes than a header, a length prefix or a declared record needs. */
  truncated: 'ERR_SEGMENT_TRUNCATED',
  /** `invalid segment magic: 0x…` */
  magic: 'ERR_SEGMENT_MAGIC',
  /** `unsupported segment version: N` */
  version: 'ERR_SEGMENT_VERSION',
  /** `segment header checksum mismatch: stored=0x…, computed=0x…` */
  headerChecksum: 'ERR_SEGMENT_HEADER_CHECKSUM',
  /** `segment record count N exceeds maximum possible M for file length L` */
  recordCount: 'ERR_SEGMENT_RECORD_COUNT',
  /** `segment record length N exceeds maximum M` */
  recordLength: 'ERR_SEGMENT_RECORD_LENGTH',
  /** `record too short` */
  recordTooShort: 'ERR_RECORD_TOO_SHORT',
  /** `record checksum mismatch: stored=0x…, computed=0x…` (version 2) */
  recordChecksum: 'ERR_RECORD_CHECKSUM',
  /** `<field> truncated` */
  recordTruncated: 'ERR_RECORD_TRUNCATED',
  /** `invalid end_seq flag: N` */
  endSeqFlag: 'ERR_RECORD_END_SEQ_FLAG',
  /** `before_image length N exceeds maximum 65536` (or `after_image`) */
  imageTooLarge: 'ERR_RECORD_IMAGE_TOO_LARGE',
  /** `trailing bytes after WAL record: N` */
  recordTrailingBytes: 'ERR_RECORD_TRAILING_BYTES',
  /** `invalid txn_id (zero)` or a txn id above 2^62-1 */
  txnId: 'ERR_RECORD_TXN_ID',
  /** `invalid page_id (zero)` */
  pageId: 'ERR_RECORD_PAGE_ID',
  /** `segment has N trailing bytes after declared records` */
  trailingBytes: 'ERR_SEGMENT_TRAILING_BYTES',
  /** `segment epoch E contains record from epoch F` */
  epochMismatch: 'ERR_SEGMENT_EPOCH_MISMATCH',
  /** `certificate trailer …` (version 3: missing, bad magic, or a length that does not match the bytes left) */
  certificateTrailer: 'ERR_SEGMENT_CERTIFICATE_TRAILER',
} as const;

/** One of the {@link SegmentErrorCode} values. */
export type SegmentErrorCodeValue = (typeof SegmentErrorCode)[keyof typeof SegmentErrorCode];

/**
 * Bytes that do not form a valid segment or record. `code` says which check
 * failed; `offset` (when known) is the byte offset in the segment where the
 * failing structure starts, `recordIndex` the 0-based record it belongs to.
 */
export class SegmentFormatError extends WalError {
  declare readonly code: SegmentErrorCodeValue;
  /** Byte offset in the segment of the structure that failed, if known. */
  readonly offset: number | undefined;
  /** 0-based index of the record that failed, if the failure is inside a record. */
  readonly recordIndex: number | undefined;
  /** The file the bytes came from, when the storage layer read them from one. */
  readonly path: string | undefined;

  constructor(
    code: SegmentErrorCodeValue,
    message: string,
    where?: { offset?: number; recordIndex?: number; path?: string },
  ) {
    super(code, message);
    this.offset = where?.offset;
    this.recordIndex = where?.recordIndex;
    this.path = where?.path;
  }

  /** The same error, marked with the file it was read from. */
  withPath(path: string): SegmentFormatError {
    return new SegmentFormatError(this.code, this.message, {
      offset: this.offset,
      recordIndex: this.recordIndex,
      path,
    });
  }
}

/** Code of {@link InvalidRecordError}. */
export const INVALID_RECORD_CODE = 'ERR_INVALID_RECORD';

/**
 * A record, header or segment a caller asked to encode breaks a format limit
 * (txn id 0, page id 0, image over 65536 bytes, a u64 out of range, a record
 * from another epoch, …). Thrown before anything is written.
 */
export class InvalidRecordError extends WalError {
  constructor(message: string) {
    super(INVALID_RECORD_CODE, message);
  }
}
