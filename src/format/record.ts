/**
 * Encoding and decoding of one WAL record (docs/format.md#32-record).
 *
 * Wire form inside a segment: `u32 len` followed by `len` bytes of body:
 *
 * ```text
 * u64 txnId | u32 txnEpoch | u64 epoch | u32 pageId | u64 beginSeq |
 * u8 hasEndSeq (0/1) [u64 endSeq] | u32 beforeLen | before | u32 afterLen | after
 * [u32 crc32c of all preceding body bytes]   (version 2 only)
 * ```
 */
import { WalArgumentError } from '../errors.js';
import { hex32, readU32, readU64, writeU32, writeU64 } from './bytes.js';
import { crc32c } from './crc32c.js';
import { InvalidRecordError, SegmentErrorCode, SegmentFormatError } from './errors.js';
import {
  type FormatVersion,
  imageBytesMax,
  isU64,
  recordMinBytes,
  txnIdMax,
  u32Max,
  type WalRecord,
} from './types.js';

/** Offset of `txnId` (u64) in a record body. */
export const RECORD_TXN_ID_OFFSET = 0;
/** Offset of `txnEpoch` (u32) in a record body. */
export const RECORD_TXN_EPOCH_OFFSET = 8;
/** Offset of `epoch` (u64) in a record body. */
export const RECORD_EPOCH_OFFSET = 12;
/** Offset of `pageId` (u32) in a record body. */
export const RECORD_PAGE_ID_OFFSET = 20;
/** Offset of `beginSeq` (u64) in a record body. */
export const RECORD_BEGIN_SEQ_OFFSET = 24;
/** Offset of the `hasEndSeq` flag (u8) in a record body. */
export const RECORD_HAS_END_SEQ_OFFSET = 32;
/** Offset of `endSeq` (u64) in a record body, present only when `hasEndSeq` is 1. */
export const RECORD_END_SEQ_OFFSET = 33;
/** Size of the `u32 len` prefix in front of every record body. */
export const RECORD_LENGTH_PREFIX_BYTES = 4;
/** Size of the version-2 trailing CRC-32C. */
export const RECORD_CHECKSUM_BYTES = 4;

function isU32(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= u32Max;
}

/** Throws {@link WalArgumentError} unless `version` is 1 or 2. */
export function assertFormatVersion(version: unknown): asserts version is FormatVersion {
  if (version !== 1 && version !== 2) {
    throw new WalArgumentError(`unsupported segment version: ${String(version)}`);
  }
}

function checkImage(field: 'before_image' | 'after_image', image: unknown): void {
  if (!(image instanceof Uint8Array)) {
    throw new InvalidRecordError(`${field} must be a Uint8Array`);
  }
  if (image.length > imageBytesMax) {
    throw new InvalidRecordError(
      `${field} length ${image.length} exceeds maximum ${imageBytesMax}`,
    );
  }
}

/**
 * Checks every field of `record` against the format's limits: txn id in
 * 1 ..= 2^62-1, txn epoch u32, epoch/beginSeq/endSeq u64 bigints, pageId a u32
 * >= 1, images Uint8Arrays of at most 65536 bytes.
 * @throws {InvalidRecordError} naming the first field that is out of range.
 */
export function validateRecord(record: WalRecord): void {
  const id = record.txnToken?.id;
  if (typeof id !== 'bigint') throw new InvalidRecordError('txn_id must be a bigint');
  if (id === 0n) throw new InvalidRecordError('invalid txn_id (zero)');
  if (id < 0n || id > txnIdMax) {
    throw new InvalidRecordError(`txn_id ${id} out of range 1..=${txnIdMax}`);
  }
  if (!isU32(record.txnToken.epoch)) {
    throw new InvalidRecordError(`txn_epoch ${String(record.txnToken.epoch)} is not a u32`);
  }
  if (!isU64(record.epoch))
    throw new InvalidRecordError(`epoch ${String(record.epoch)} is not a u64`);
  if (!isU32(record.pageId)) {
    throw new InvalidRecordError(`page_id ${String(record.pageId)} is not a u32`);
  }
  if (record.pageId === 0) throw new InvalidRecordError('invalid page_id (zero)');
  if (!isU64(record.beginSeq)) {
    throw new InvalidRecordError(`begin_seq ${String(record.beginSeq)} is not a u64`);
  }
  if (record.endSeq !== null && !isU64(record.endSeq)) {
    throw new InvalidRecordError(`end_seq ${String(record.endSeq)} is not a u64 or null`);
  }
  checkImage('before_image', record.beforeImage);
  checkImage('after_image', record.afterImage);
}

/**
 * Size in bytes of the record body (without the u32 length prefix; including
 * the CRC in version 2). Assumes a valid record.
 */
export function encodedRecordBytes(record: WalRecord, version: FormatVersion): number {
  return (
    recordMinBytes(version) +
    (record.endSeq === null ? 0 : 8) +
    record.beforeImage.length +
    record.afterImage.length
  );
}

/**
 * Writes `u32 len` + body (+ CRC in version 2) of an already validated record
 * at `offset`; returns the offset after it. No checks: callers validate first.
 */
export function writeRecordUnchecked(
  record: WalRecord,
  version: FormatVersion,
  target: Uint8Array,
  offset: number,
  bodyBytes: number,
): number {
  const start = offset + RECORD_LENGTH_PREFIX_BYTES;
  writeU32(target, offset, bodyBytes);
  writeU64(target, start + RECORD_TXN_ID_OFFSET, record.txnToken.id);
  writeU32(target, start + RECORD_TXN_EPOCH_OFFSET, record.txnToken.epoch);
  writeU64(target, start + RECORD_EPOCH_OFFSET, record.epoch);
  writeU32(target, start + RECORD_PAGE_ID_OFFSET, record.pageId);
  writeU64(target, start + RECORD_BEGIN_SEQ_OFFSET, record.beginSeq);
  let at = start + RECORD_HAS_END_SEQ_OFFSET;
  if (record.endSeq === null) {
    target[at++] = 0;
  } else {
    target[at++] = 1;
    writeU64(target, at, record.endSeq);
    at += 8;
  }
  const before = record.beforeImage;
  writeU32(target, at, before.length);
  at += 4;
  target.set(before, at);
  at += before.length;
  const after = record.afterImage;
  writeU32(target, at, after.length);
  at += 4;
  target.set(after, at);
  at += after.length;
  if (version === 2) {
    writeU32(target, at, crc32c(target.subarray(start, at)));
    at += RECORD_CHECKSUM_BYTES;
  }
  return at;
}

/**
 * Validates `record` and writes its wire form — `u32 len` + body (+ CRC-32C in
 * version 2) — into `target` at `offset`. Returns the offset just after it.
 * This is the form lane buffers hold and segments concatenate.
 * @throws {InvalidRecordError} if the record breaks a format limit.
 * @throws {WalArgumentError} if `target` has no room or `version` is unknown.
 */
export function encodeRecordInto(
  record: WalRecord,
  version: FormatVersion,
  target: Uint8Array,
  offset: number,
): number {
  assertFormatVersion(version);
  validateRecord(record);
  const bodyBytes = encodedRecordBytes(record, version);
  if (!Number.isInteger(offset) || offset < 0) {
    throw new WalArgumentError(`offset ${offset} is not a non-negative integer`);
  }
  if (offset + RECORD_LENGTH_PREFIX_BYTES + bodyBytes > target.length) {
    throw new WalArgumentError(
      `record needs ${RECORD_LENGTH_PREFIX_BYTES + bodyBytes} bytes at offset ${offset}, target holds ${target.length}`,
    );
  }
  return writeRecordUnchecked(record, version, target, offset, bodyBytes);
}

/**
 * Encodes the record body (no length prefix; with the CRC in version 2) into a
 * new buffer. @throws {InvalidRecordError} if the record breaks a format limit.
 */
export function encodeRecord(record: WalRecord, version: FormatVersion): Uint8Array {
  assertFormatVersion(version);
  validateRecord(record);
  const bodyBytes = encodedRecordBytes(record, version);
  const wire = new Uint8Array(RECORD_LENGTH_PREFIX_BYTES + bodyBytes);
  writeRecordUnchecked(record, version, wire, 0, bodyBytes);
  return wire.subarray(RECORD_LENGTH_PREFIX_BYTES);
}

function truncated(field: string): SegmentFormatError {
  return new SegmentFormatError(SegmentErrorCode.recordTruncated, `${field} truncated`);
}

function checkImageLength(field: 'before_image' | 'after_image', length: number): void {
  if (length > imageBytesMax) {
    throw new SegmentFormatError(
      SegmentErrorCode.imageTooLarge,
      `${field} length ${length} exceeds maximum ${imageBytesMax}`,
    );
  }
}

/**
 * A copy (or a view) of `length` bytes at `at`. Copies go through `set`, never
 * `slice`: `Buffer#slice` returns a view, which would alias the input.
 */
function takeImage(bytes: Uint8Array, at: number, length: number, copy: boolean): Uint8Array {
  const view = bytes.subarray(at, at + length);
  if (!copy) return view;
  const image = new Uint8Array(length);
  image.set(view);
  return image;
}

/**
 * Checks the version-2 CRC-32C at the end of the body `bytes[start, end)`;
 * returns where the fields end (the CRC's offset).
 */
function checkRecordChecksum(bytes: Uint8Array, start: number, end: number): number {
  const limit = end - RECORD_CHECKSUM_BYTES;
  const stored = readU32(bytes, limit);
  const computed = crc32c(bytes.subarray(start, limit));
  if (stored !== computed) {
    throw new SegmentFormatError(
      SegmentErrorCode.recordChecksum,
      `record checksum mismatch: stored=${hex32(stored)}, computed=${hex32(computed)}`,
    );
  }
  return limit;
}

/** The decoded txn id and page id against their ranges (checked after the layout). */
function checkDecodedIds(txnId: bigint, pageId: number): void {
  if (txnId === 0n) {
    throw new SegmentFormatError(SegmentErrorCode.txnId, 'invalid txn_id (zero)');
  }
  if (txnId > txnIdMax) {
    throw new SegmentFormatError(
      SegmentErrorCode.txnId,
      `invalid txn_id ${txnId} (exceeds maximum ${txnIdMax})`,
    );
  }
  if (pageId === 0) {
    throw new SegmentFormatError(SegmentErrorCode.pageId, 'invalid page_id (zero)');
  }
}

/**
 * Decodes the record body `bytes[start, end)`. With `copyImages` false the
 * images are views into `bytes` (only safe if `bytes` is never reused).
 * Checks in the order of docs/format.md#4-reading-validation-order-and-error-codes; throws
 * {@link SegmentFormatError}.
 */
export function decodeRecordRange(
  bytes: Uint8Array,
  start: number,
  end: number,
  version: FormatVersion,
  copyImages: boolean,
): WalRecord {
  if (end - start < recordMinBytes(version)) {
    throw new SegmentFormatError(SegmentErrorCode.recordTooShort, 'record too short');
  }
  const limit = version === 2 ? checkRecordChecksum(bytes, start, end) : end;
  // The minimum-length check covers every fixed field up to the end-seq flag.
  const txnId = readU64(bytes, start + RECORD_TXN_ID_OFFSET);
  const txnEpoch = readU32(bytes, start + RECORD_TXN_EPOCH_OFFSET);
  const epoch = readU64(bytes, start + RECORD_EPOCH_OFFSET);
  const pageId = readU32(bytes, start + RECORD_PAGE_ID_OFFSET);
  const beginSeq = readU64(bytes, start + RECORD_BEGIN_SEQ_OFFSET);
  let at = start + RECORD_HAS_END_SEQ_OFFSET;
  const flag = bytes[at++]!;
  let endSeq: bigint | null;
  if (flag === 1) {
    if (at + 8 > limit) throw truncated('end_seq');
    endSeq = readU64(bytes, at);
    at += 8;
  } else if (flag === 0) {
    endSeq = null;
  } else {
    throw new SegmentFormatError(SegmentErrorCode.endSeqFlag, `invalid end_seq flag: ${flag}`);
  }
  if (at + 4 > limit) throw truncated('before_image length');
  const beforeLength = readU32(bytes, at);
  at += 4;
  checkImageLength('before_image', beforeLength);
  if (at + beforeLength > limit) throw truncated('before_image');
  const beforeImage = takeImage(bytes, at, beforeLength, copyImages);
  at += beforeLength;
  if (at + 4 > limit) throw truncated('after_image length');
  const afterLength = readU32(bytes, at);
  at += 4;
  checkImageLength('after_image', afterLength);
  if (at + afterLength > limit) throw truncated('after_image');
  const afterImage = takeImage(bytes, at, afterLength, copyImages);
  at += afterLength;
  if (at !== limit) {
    throw new SegmentFormatError(
      SegmentErrorCode.recordTrailingBytes,
      `trailing bytes after WAL record: ${limit - at}`,
    );
  }
  checkDecodedIds(txnId, pageId);
  return {
    txnToken: { id: txnId, epoch: txnEpoch },
    epoch,
    pageId,
    beginSeq,
    endSeq,
    beforeImage,
    afterImage,
  };
}

/**
 * Decodes one record body (no length prefix; with the trailing CRC in version
 * 2). Images are copies: the result never aliases `body`.
 * @throws {SegmentFormatError} for any malformed input.
 */
export function decodeRecord(body: Uint8Array, version: FormatVersion): WalRecord {
  assertFormatVersion(version);
  return decodeRecordRange(body, 0, body.length, version, true);
}
