/**
 * Record frames (docs/format.md#3-segment-layout): inside a segment, and in a
 * lane's buffer, every record is a `u32 len` prefix followed by `len` bytes
 * of body. This module is the one place that walks frames without decoding
 * their bodies — the segment decoder, the certificate trailer split, the
 * certificate's segment summary and shadow compare all step through records
 * with it — and the one place that writes a run of frames for records already
 * validated. Pure bytes, no I/O.
 */
import { readU32 } from './bytes.js';
import { SegmentErrorCode, SegmentFormatError } from './errors.js';
import { encodedRecordBytes, RECORD_LENGTH_PREFIX_BYTES, writeRecordUnchecked } from './record.js';
import {
  type FormatVersion,
  recordBytesMinV1,
  recordMaxBytes,
  recordMinBytes,
  recordVersionOf,
  type SegmentVersion,
  type WalRecord,
} from './types.js';

/** The body lengths a frame may declare, in bytes. */
export interface RecordFrameBounds {
  bodyBytesMin: number;
  bodyBytesMax: number;
}

/** The body-length bounds of the records in a segment of `version` (version 3 holds version-2 records). */
export function recordFrameBounds(version: SegmentVersion): RecordFrameBounds {
  const recordVersion = recordVersionOf(version);
  return {
    bodyBytesMin: recordMinBytes(recordVersion),
    bodyBytesMax: recordMaxBytes(recordVersion),
  };
}

/** Bounds that admit a record of either record form (for bytes whose version is not at hand). */
export const RECORD_FRAME_BOUNDS_ANY: RecordFrameBounds = {
  bodyBytesMin: recordBytesMinV1,
  bodyBytesMax: recordMaxBytes(2),
};

/**
 * The offset just after the frame that starts at `at` in `bytes`, checked in
 * the reader's order (docs/format.md#4-reading-validation-order-and-error-codes):
 * the length prefix is present; the length is at most the maximum (checked
 * before anything is allocated for it); the body is present; the body is at
 * least the minimum. Nothing inside the body is read.
 * @param index the frame's 0-based index, for messages and `recordIndex`.
 * @throws {SegmentFormatError} `ERR_SEGMENT_TRUNCATED`, `ERR_SEGMENT_RECORD_LENGTH`
 *   or `ERR_RECORD_TOO_SHORT`, with the frame's offset and index.
 */
export function recordFrameEnd(
  bytes: Uint8Array,
  at: number,
  bounds: RecordFrameBounds,
  index: number,
): number {
  const where = { offset: at, recordIndex: index };
  const available = bytes.length;
  if (at + RECORD_LENGTH_PREFIX_BYTES > available) {
    throw new SegmentFormatError(
      SegmentErrorCode.truncated,
      `segment record ${index} length prefix truncated at offset ${at}`,
      where,
    );
  }
  const length = readU32(bytes, at);
  if (length > bounds.bodyBytesMax) {
    throw new SegmentFormatError(
      SegmentErrorCode.recordLength,
      `segment record length ${length} exceeds maximum ${bounds.bodyBytesMax}`,
      where,
    );
  }
  const start = at + RECORD_LENGTH_PREFIX_BYTES;
  if (start + length > available) {
    throw new SegmentFormatError(
      SegmentErrorCode.truncated,
      `segment record ${index} truncated: length ${length}, ${available - start} bytes remain`,
      where,
    );
  }
  if (length < bounds.bodyBytesMin) {
    throw new SegmentFormatError(SegmentErrorCode.recordTooShort, 'record too short', where);
  }
  return start + length;
}

/** Called for each frame: its body is `bytes[bodyStart, bodyEnd)`. */
export type RecordFrameVisitor = (bodyStart: number, bodyEnd: number, index: number) => void;

/**
 * Steps through frames from `at`: exactly `count` of them, or — when `count`
 * is `undefined` — until the end of `bytes`. Each frame is checked by
 * {@link recordFrameEnd} before `visit` sees it. Returns the offset after the
 * last frame.
 * @throws {SegmentFormatError} for the first frame that does not fit.
 */
export function walkRecordFrames(
  bytes: Uint8Array,
  at: number,
  bounds: RecordFrameBounds,
  count: number | undefined,
  visit?: RecordFrameVisitor,
): number {
  let offset = at;
  for (let index = 0; count === undefined ? offset < bytes.length : index < count; index++) {
    const end = recordFrameEnd(bytes, offset, bounds, index);
    visit?.(offset + RECORD_LENGTH_PREFIX_BYTES, end, index);
    offset = end;
  }
  return offset;
}

/**
 * The frames of `records` back to back, in the given order, in `version`'s
 * record form. The records must already be valid (they were checked when
 * they were first encoded); nothing is checked here.
 */
export function encodeRecordFrames(
  records: readonly WalRecord[],
  version: FormatVersion,
): Uint8Array {
  const sizes = records.map((record) => encodedRecordBytes(record, version));
  let total = 0;
  for (const size of sizes) total += RECORD_LENGTH_PREFIX_BYTES + size;
  const bytes = new Uint8Array(total);
  let at = 0;
  for (let i = 0; i < records.length; i++) {
    at = writeRecordUnchecked(records[i]!, version, bytes, at, sizes[i]!);
  }
  return bytes;
}
