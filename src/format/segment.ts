/**
 * Segment encode/decode (docs/format.md#3-segment-layout): a 24-byte header followed by
 * `recordCount` length-prefixed records. Pure bytes, no I/O.
 *
 * ```text
 * 0..4   magic u32 = 0x5057414C      4..6   version u16 (1, 2 or 3)
 * 6..8   reserved, 0                 8..16  epoch u64
 * 16..20 record count u32            20..24 crc32c of bytes 0..20
 * ```
 *
 * This is the one codec of the header, for all three versions: the engine,
 * the storage layer, the control plane and replication encode and decode
 * headers only through it.
 *
 * Version 3 = version-2 records followed by one certificate trailer
 * (`u32 magic 0x54435750 | u32 length L | L bytes`, see `trailer.ts`). This
 * module reads it and hands the certificate bytes back unchecked: the control
 * plane decodes and verifies certificates (`control/segment-v3.ts`).
 * `encodeSegment` writes versions 1 and 2; a version-3 file is a version-2
 * segment relabelled ({@link relabelSegment}) plus its trailer.
 */
import { WalArgumentError } from '../errors.js';
import { hex32, readU16, readU32, readU64, writeU16, writeU32, writeU64 } from './bytes.js';
import { crc32c } from './crc32c.js';
import { InvalidRecordError, SegmentErrorCode, SegmentFormatError } from './errors.js';
import { recordFrameBounds, recordFrameEnd } from './frames.js';
import { isInRecoveryOrder, recoveryOrder } from './order.js';
import {
  assertFormatVersion,
  decodeRecordRange,
  encodedRecordBytes,
  RECORD_LENGTH_PREFIX_BYTES,
  validateRecord,
  writeRecordUnchecked,
} from './record.js';
import { readCertificateTrailer } from './trailer.js';
import {
  CERTIFIED_FORMAT_VERSION,
  type FormatVersion,
  formatVersionDefault,
  isU64,
  recordMinBytes,
  recordVersionOf,
  SEGMENT_HEADER_BYTES,
  SEGMENT_MAGIC,
  type SegmentHeader,
  type SegmentVersion,
  u32Max,
  type WalRecord,
} from './types.js';

/** Offset of the header CRC; the CRC covers bytes `0 .. SEGMENT_HEADER_CHECKSUM_OFFSET`. */
export const SEGMENT_HEADER_CHECKSUM_OFFSET = 20;
/** Largest record count the u32 header field can hold. */
export const segmentRecordCountMax = u32Max;

/** A decoded segment: its header and its records in recovery order. */
export interface DecodedSegment {
  header: SegmentHeader;
  records: WalRecord[];
  /** Version 3 only: the certificate bytes of the trailer (not checked here). */
  certificate?: Uint8Array;
}

/** Options of {@link decodeSegment}. */
export interface DecodeSegmentOptions {
  /**
   * `true` (default): decoded images are fresh copies. `false`: images are
   * views into the input, which is faster but only safe when the caller
   * never reuses or mutates the input buffer afterwards.
   */
  copyImages?: boolean;
}

function checkHeaderFields(header: SegmentHeader): void {
  if (header.version !== CERTIFIED_FORMAT_VERSION) assertFormatVersion(header.version);
  if (!isU64(header.epoch)) {
    throw new InvalidRecordError(`segment epoch ${String(header.epoch)} is not a u64`);
  }
  const count = header.recordCount;
  if (!Number.isInteger(count) || count < 0 || count > segmentRecordCountMax) {
    throw new InvalidRecordError(`segment record count ${String(count)} exceeds u32 header field`);
  }
}

/**
 * Writes the 24-byte header (with its CRC) into `target` at `offset`; returns
 * the offset after it. @throws {InvalidRecordError} / {WalArgumentError} on
 * out-of-range fields or a target without room.
 */
export function encodeSegmentHeaderInto(
  header: SegmentHeader,
  target: Uint8Array,
  offset: number,
): number {
  checkHeaderFields(header);
  if (!Number.isInteger(offset) || offset < 0 || offset + SEGMENT_HEADER_BYTES > target.length) {
    throw new WalArgumentError(`segment header does not fit at offset ${offset}`);
  }
  writeU32(target, offset, SEGMENT_MAGIC);
  writeU16(target, offset + 4, header.version);
  writeU16(target, offset + 6, 0);
  writeU64(target, offset + 8, header.epoch);
  writeU32(target, offset + 16, header.recordCount);
  const checksum = crc32c(target.subarray(offset, offset + SEGMENT_HEADER_CHECKSUM_OFFSET));
  writeU32(target, offset + SEGMENT_HEADER_CHECKSUM_OFFSET, checksum);
  return offset + SEGMENT_HEADER_BYTES;
}

/** Encodes a segment header into a new 24-byte buffer. */
export function encodeSegmentHeader(header: SegmentHeader): Uint8Array {
  const bytes = new Uint8Array(SEGMENT_HEADER_BYTES);
  encodeSegmentHeaderInto(header, bytes, 0);
  return bytes;
}

/**
 * Decodes and checks the header at the start of `bytes`, in order: length,
 * magic, version, checksum. The reserved bytes 6..8 are covered by the CRC
 * but not otherwise interpreted.
 * @throws {SegmentFormatError}
 */
export function decodeSegmentHeader(bytes: Uint8Array): SegmentHeader {
  if (bytes.length < SEGMENT_HEADER_BYTES) {
    throw new SegmentFormatError(
      SegmentErrorCode.truncated,
      `segment header truncated: ${bytes.length} bytes, need ${SEGMENT_HEADER_BYTES}`,
      { offset: 0 },
    );
  }
  const magic = readU32(bytes, 0);
  if (magic !== SEGMENT_MAGIC) {
    throw new SegmentFormatError(SegmentErrorCode.magic, `invalid segment magic: ${hex32(magic)}`, {
      offset: 0,
    });
  }
  const version = readU16(bytes, 4);
  if (version !== 1 && version !== 2 && version !== CERTIFIED_FORMAT_VERSION) {
    throw new SegmentFormatError(
      SegmentErrorCode.version,
      `unsupported segment version: ${version}`,
      { offset: 4 },
    );
  }
  const stored = readU32(bytes, SEGMENT_HEADER_CHECKSUM_OFFSET);
  const computed = crc32c(bytes.subarray(0, SEGMENT_HEADER_CHECKSUM_OFFSET));
  if (stored !== computed) {
    throw new SegmentFormatError(
      SegmentErrorCode.headerChecksum,
      `segment header checksum mismatch: stored=${hex32(stored)}, computed=${hex32(computed)}`,
      { offset: SEGMENT_HEADER_CHECKSUM_OFFSET },
    );
  }
  return { version, epoch: readU64(bytes, 8), recordCount: readU32(bytes, 16) };
}

/**
 * A copy of `segment` whose header says `version` (with its CRC recomputed);
 * every byte after the header is copied unchanged. Versions 2 and 3 hold the
 * same records, so this turns one into the other.
 * @throws {SegmentFormatError} if `segment` does not start with a valid header.
 */
export function relabelSegment(segment: Uint8Array, version: SegmentVersion): Uint8Array {
  const header = decodeSegmentHeader(segment);
  const copy = new Uint8Array(segment); // a copy even of a Buffer, whose slice() is a view
  encodeSegmentHeaderInto({ ...header, version }, copy, 0);
  return copy;
}

/** A fresh, not zero-filled byte array of `length` bytes: callers overwrite every byte. */
function uninitializedBytes(length: number): Uint8Array {
  const buffer = Buffer.allocUnsafeSlow(length);
  return new Uint8Array(buffer.buffer, buffer.byteOffset, length);
}

/** A private copy of `bytes`. */
function copyOf(bytes: Uint8Array): Uint8Array {
  const copy = uninitializedBytes(bytes.length);
  copy.set(bytes);
  return copy;
}

/** The most records a file of `fileBytes` bytes can hold in `version`. */
export function maxPossibleRecords(fileBytes: number, version: SegmentVersion): number {
  const body = Math.max(0, fileBytes - SEGMENT_HEADER_BYTES);
  return Math.floor(body / (RECORD_LENGTH_PREFIX_BYTES + recordMinBytes(recordVersionOf(version))));
}

/**
 * Validates `records` for a segment of `epoch` and returns them in canonical
 * (recovery) order, as the writer must store them.
 * @throws {InvalidRecordError} `segment epoch E contains record from epoch F`,
 * or the first field limit a record breaks; nothing is encoded.
 */
export function canonicalSegmentRecords(epoch: bigint, records: readonly WalRecord[]): WalRecord[] {
  if (!isU64(epoch)) {
    throw new InvalidRecordError(`segment epoch ${String(epoch)} is not a u64`);
  }
  if (!Array.isArray(records)) throw new WalArgumentError('records must be an array');
  if (records.length > segmentRecordCountMax) {
    throw new InvalidRecordError(`segment record count ${records.length} exceeds u32 header field`);
  }
  // As in the seed: order first, then report the first record (in that order)
  // whose epoch differs, then check every field.
  const ordered = recoveryOrder(records);
  for (const record of ordered) {
    if (record.epoch !== epoch) {
      throw new InvalidRecordError(
        `segment epoch ${epoch} contains record from epoch ${String(record.epoch)}`,
      );
    }
  }
  for (const record of ordered) validateRecord(record);
  return ordered;
}

/**
 * Encodes a whole segment (header + records in canonical order) into one
 * exactly sized buffer. Validates everything first.
 * @throws {InvalidRecordError} for any record the format cannot hold.
 */
export function encodeSegment(
  epoch: bigint,
  records: readonly WalRecord[],
  version: FormatVersion = formatVersionDefault,
): Uint8Array {
  assertFormatVersion(version);
  const ordered = canonicalSegmentRecords(epoch, records);
  const sizes = new Array<number>(ordered.length);
  let total = SEGMENT_HEADER_BYTES;
  for (let i = 0; i < ordered.length; i++) {
    const size = encodedRecordBytes(ordered[i]!, version);
    sizes[i] = size;
    total += RECORD_LENGTH_PREFIX_BYTES + size;
  }
  // Every byte is written below, so skip zero-filling: measured ~0.7 ms per
  // 8 MiB segment on the project machine (bench/codec.ts).
  const bytes = uninitializedBytes(total);
  let at = encodeSegmentHeaderInto({ version, epoch, recordCount: ordered.length }, bytes, 0);
  for (let i = 0; i < ordered.length; i++) {
    at = writeRecordUnchecked(ordered[i]!, version, bytes, at, sizes[i]!);
  }
  return bytes;
}

/**
 * Decodes a whole segment, applying every reader check of
 * docs/format.md#4-reading-validation-order-and-error-codes in
 * order: header (length, magic, version, checksum); record count against
 * what the length can hold (before allocating); per record: length prefix
 * present, length within the maximum (before allocating), body present, then
 * the record checks of `decodeRecordRange`; no trailing bytes; every
 * record from the header's epoch. Records are returned in recovery order.
 * Never allocates more than the input's size justifies.
 * @throws {SegmentFormatError}
 */
export function decodeSegment(input: Uint8Array, options?: DecodeSegmentOptions): DecodedSegment {
  decodeSegmentHeader(input); // fail fast before copying anything
  // Copy mode makes ONE private copy of the segment and hands out views into
  // it: one allocation per segment instead of one per image (measured 2x
  // faster for 4 KiB pages in bench/codec.ts). Nobody else can reach the
  // copy, so the images never alias a buffer that is later reused; the cost is
  // that one retained image keeps its whole segment's copy alive.
  const bytes = (options?.copyImages ?? true) ? copyOf(input) : input;
  const header = decodeSegmentHeader(bytes);
  const { version, recordCount } = header;
  const fileBytes = bytes.length;
  const possible = maxPossibleRecords(fileBytes, version);
  if (recordCount > possible) {
    throw new SegmentFormatError(
      SegmentErrorCode.recordCount,
      `segment record count ${recordCount} exceeds maximum possible ${possible} for file length ${fileBytes}`,
      { offset: 16 },
    );
  }
  const recordVersion = recordVersionOf(version);
  const bounds = recordFrameBounds(version);
  const records: WalRecord[] = [];
  let at = SEGMENT_HEADER_BYTES;
  for (let index = 0; index < recordCount; index++) {
    const end = recordFrameEnd(bytes, at, bounds, index);
    try {
      records.push(
        decodeRecordRange(bytes, at + RECORD_LENGTH_PREFIX_BYTES, end, recordVersion, false),
      );
    } catch (error) {
      if (error instanceof SegmentFormatError) {
        throw new SegmentFormatError(error.code, error.message, { offset: at, recordIndex: index });
      }
      throw error;
    }
    at = end;
  }
  const certificate =
    version === CERTIFIED_FORMAT_VERSION ? certificateOfTrailer(bytes, at) : undefined;
  if (certificate !== undefined) at = fileBytes;
  if (at !== fileBytes) {
    throw new SegmentFormatError(
      SegmentErrorCode.trailingBytes,
      `segment has ${fileBytes - at} trailing bytes after declared records`,
      { offset: at },
    );
  }
  // Writers store canonical order; sort only what a foreign writer left unsorted.
  const ordered = isInRecoveryOrder(records) ? records : recoveryOrder(records);
  for (const record of ordered) {
    if (record.epoch !== header.epoch) {
      throw new SegmentFormatError(
        SegmentErrorCode.epochMismatch,
        `segment epoch ${header.epoch} contains record from epoch ${record.epoch}`,
      );
    }
  }
  return certificate === undefined
    ? { header, records: ordered }
    : { header, records: ordered, certificate };
}

/** The certificate bytes of a version-3 trailer at `at`, which must run exactly to the end. */
function certificateOfTrailer(bytes: Uint8Array, at: number): Uint8Array {
  const trailer = readCertificateTrailer(bytes, at);
  if (!trailer.ok) {
    throw new SegmentFormatError(SegmentErrorCode.certificateTrailer, trailer.message, {
      offset: at,
    });
  }
  return trailer.certificate;
}
