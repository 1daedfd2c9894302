/**
 * Shapes and limits of the on-disk format (docs/design.md#data-model,
 * docs/format.md#3-segment-layout). Pure data: no I/O.
 */

/** A transaction's identity: id in 1 ..= 2^62-1 and its incarnation (u32). */
export interface TxnToken {
  id: bigint;
  epoch: number;
}

/** One page write inside one transaction. Every u64 is a `bigint`. */
export interface WalRecord {
  txnToken: TxnToken;
  /** Log epoch the record belongs to (u64). */
  epoch: bigint;
  /** Page number, u32, >= 1. */
  pageId: number;
  /** Commit sequence of the transaction (u64). */
  beginSeq: bigint;
  /** Commit sequence when committed; `null` = never committed (aborted). */
  endSeq: bigint | null;
  /** Optional old image, 0 ..= 65536 bytes. */
  beforeImage: Uint8Array;
  /** New image, 0 ..= 65536 bytes. */
  afterImage: Uint8Array;
}

/** Segment format versions: 1 (the seed's), 2 (per-record CRC-32C). */
export type FormatVersion = 1 | 2;

/**
 * Versions a segment header may carry: the record formats 1 and 2, and 3 —
 * version-2 records followed by a commit-certificate trailer (written by the
 * control plane, `control/segment-v3.ts`; see docs/format.md).
 */
export type SegmentVersion = FormatVersion | 3;

/** The segment version whose records are followed by a certificate trailer. */
export const CERTIFIED_FORMAT_VERSION = 3;
/** Magic of the certificate trailer of a version-3 segment, `50 57 43 54` ("PWCT") on disk. */
export const CERTIFICATE_TRAILER_MAGIC = 0x54435750;
/** Trailer magic u32 + certificate length u32, in bytes. */
export const CERTIFICATE_TRAILER_PREFIX_BYTES = 8;

/** The 24-byte segment header, decoded. */
export interface SegmentHeader {
  version: SegmentVersion;
  epoch: bigint;
  recordCount: number;
}

/** `0x5057414C`, on disk `4C 41 57 50` ("LAWP"). */
export const SEGMENT_MAGIC = 0x5057414c;
/** Size of the segment header in bytes. */
export const SEGMENT_HEADER_BYTES = 24;
/** The version written unless a caller asks for another. */
export const formatVersionDefault: FormatVersion = 2;
/** Largest before- or after-image, in bytes (64 KiB pages). */
export const imageBytesMax = 65536;
/** Smallest encoded record (no end-seq, empty images), version 1. */
export const recordBytesMinV1 = 8 + 4 + 8 + 4 + 8 + 1 + 4 + 4;
/** Smallest encoded record, version 2 (adds a u32 CRC-32C). */
export const recordBytesMinV2 = recordBytesMinV1 + 4;
/** Largest txn id (2^62 - 1); 0 is invalid. */
export const txnIdMax = (1n << 62n) - 1n;
/** Largest u64 (2^64 - 1). */
export const u64Max = (1n << 64n) - 1n;
/** Largest u32 (2^32 - 1). */
export const u32Max = 0xffffffff;

/** True for a `bigint` in 0 ..= 2^64-1: what every u64 field on disk holds. */
export function isU64(value: unknown): value is bigint {
  return typeof value === 'bigint' && value >= 0n && value <= u64Max;
}

/** The record format inside a segment of `version` (version 3 holds version-2 records). */
export function recordVersionOf(version: SegmentVersion): FormatVersion {
  return version === 1 ? 1 : 2;
}

/** Smallest encoded record of a format version. */
export function recordMinBytes(version: FormatVersion): number {
  return version === 1 ? recordBytesMinV1 : recordBytesMinV2;
}

/** Largest encoded record of a format version (end-seq present, both images full). */
export function recordMaxBytes(version: FormatVersion): number {
  return recordMinBytes(version) + 8 + 2 * imageBytesMax;
}
