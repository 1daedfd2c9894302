/**
 * Commit certificates (docs/design.md#commit-certificates): one per durable epoch, binding the
 * segment's bytes by digest and chaining to the previous certificate, so that
 * recovery can tell a missing middle segment (`recovery_gap`) from a broken
 * chain (`certificate_gap`) and from altered bytes (`certificate_checksum_mismatch`).
 *
 * Encoded certificate, little-endian (format version 1). The canonical bytes of
 * docs/format.md#72-certificate come first; `certificateCrc32c = crc32c(canonical bytes)` exactly
 * as docs/format.md#72-certificate says.
 * The chain extension follows, with its own CRC over everything before it:
 *
 * ```text
 * off        size  field
 * 0          2     formatVersion (1)
 * 2          1     residue (1 = commit certificate, then publish)
 * 3          8     certificateEpoch
 * 11         8     commitSeqLo
 * 19         8     commitSeqHi
 * 27         8     durableSegmentEpoch
 * 35         2     laneCount
 * 37         4     count (entries of laneRecordCounts)
 * 41         4×n   laneRecordCounts
 * 41+4n      4     dbSizePages
 * 45+4n      4     pageSetSize
 * 49+4n      32    payload digest = SHA-256(segment header + records)
 * 81+4n      1     fallbackActive (0/1)
 * ---------- end of canonical bytes (82 + 4n) ----------
 * 82+4n      4     certificateCrc32c = crc32c(bytes 0 .. 82+4n)
 * 86+4n      1     hasPredecessor (0/1)
 * 87+4n      8     predecessorEpoch (0 without predecessor)
 * 95+4n      4     predecessorCertificateCrc32c (0 without predecessor)
 * 99+4n      4     linkCrc32c = crc32c(bytes 0 .. 99+4n)
 * total      103 + 4n
 * ```
 *
 * Chain rules: `commitSeqLo = predecessor.commitSeqHi + 1` (the interval covers
 * every sequence since the predecessor, so caller-chosen sequences with holes
 * still chain), `commitSeqHi` = the largest commit sequence in the segment
 * (or the predecessor's when the segment commits nothing). Without a
 * predecessor (a fresh log), `commitSeqLo` is the smallest sequence present.
 *
 * This module is the certificate's codec only: issuing a certificate from a
 * segment is `certify.ts`, verifying a chain `certificate-chain.ts`, and the
 * trailer that carries it in a version-3 segment `segment-v3.ts`. Only
 * `format/` helpers are used, so the codec could move to the format layer
 * unchanged.
 */
import { WalArgumentError } from '../errors.js';
import { readU16, readU32, readU64, writeU16, writeU32, writeU64 } from '../format/bytes.js';
import { crc32c } from '../format/crc32c.js';
import { isU64, u32Max } from '../format/types.js';
import { CertificateErrorCode, CertificateFormatError } from './errors.js';

/** The certificate layout this module writes and reads. */
export const CERTIFICATE_FORMAT_VERSION = 1;
/** Residue 1: the certificate is made durable, then the epoch is published (acknowledged). */
export const RESIDUE_COMMIT_CERTIFICATE_THEN_PUBLISH = 1;
/** SHA-256 digest length. */
export const CERTIFICATE_DIGEST_BYTES = 32;
/** Bytes before `laneRecordCounts`. */
export const CERTIFICATE_FIXED_PREFIX_BYTES = 41;
/** Encoded size without lane counts. */
export const CERTIFICATE_BASE_BYTES = 103;
/** Most `laneRecordCounts` entries a certificate may carry (lane ids are u16). */
export const certificateLaneCountsMax = 65_535;

const CANONICAL_TAIL_BYTES = 4 + 4 + CERTIFICATE_DIGEST_BYTES + 1;

/** The one ordered residue the seed defines. */
export type OrderedResidue = 'commitCertificateThenPublish';

/** What a successor needs to know of its predecessor to chain to it. */
export interface CertificateLink {
  epoch: bigint;
  certificateCrc32c: number;
  commitSeqHi: bigint;
  /** Database size after the predecessor's epoch (0 = unknown). */
  dbSizePages: number;
}

/** Every field of a certificate except the checksums computed from them. */
export interface CertificateFields {
  formatVersion: number;
  residue: OrderedResidue;
  certificateEpoch: bigint;
  commitSeqLo: bigint;
  commitSeqHi: bigint;
  durableSegmentEpoch: bigint;
  laneCount: number;
  laneRecordCounts: readonly number[];
  dbSizePages: number;
  pageSetSize: number;
  payloadDigest: Uint8Array;
  fallbackActive: boolean;
  /** `null` for the first certificate of a chain. */
  predecessor: { epoch: bigint; certificateCrc32c: number } | null;
}

/**
 * One epoch's commit certificate. Built with {@link CommitCertificate.create}
 * (checksums computed) or by {@link decodeCertificate} (checksums as stored;
 * see {@link CommitCertificate.checksumIsValid}).
 */
export class CommitCertificate implements CertificateFields {
  readonly formatVersion: number;
  readonly residue: OrderedResidue;
  readonly certificateEpoch: bigint;
  readonly commitSeqLo: bigint;
  readonly commitSeqHi: bigint;
  readonly durableSegmentEpoch: bigint;
  readonly laneCount: number;
  readonly laneRecordCounts: readonly number[];
  readonly dbSizePages: number;
  readonly pageSetSize: number;
  readonly payloadDigest: Uint8Array;
  readonly fallbackActive: boolean;
  readonly predecessor: { epoch: bigint; certificateCrc32c: number } | null;
  /** crc32c of the canonical bytes (docs/format.md#72-certificate). */
  readonly certificateCrc32c: number;
  /** crc32c of the whole encoding before it (covers the chain link). */
  readonly linkCrc32c: number;

  constructor(fields: CertificateFields, certificateCrc32c: number, linkCrc32c: number) {
    this.formatVersion = fields.formatVersion;
    this.residue = fields.residue;
    this.certificateEpoch = fields.certificateEpoch;
    this.commitSeqLo = fields.commitSeqLo;
    this.commitSeqHi = fields.commitSeqHi;
    this.durableSegmentEpoch = fields.durableSegmentEpoch;
    this.laneCount = fields.laneCount;
    this.laneRecordCounts = Object.freeze([...fields.laneRecordCounts]);
    this.dbSizePages = fields.dbSizePages;
    this.pageSetSize = fields.pageSetSize;
    this.payloadDigest = fields.payloadDigest;
    this.fallbackActive = fields.fallbackActive;
    this.predecessor = fields.predecessor === null ? null : { ...fields.predecessor };
    this.certificateCrc32c = certificateCrc32c >>> 0;
    this.linkCrc32c = linkCrc32c >>> 0;
  }

  /**
   * A certificate with its checksums computed.
   * @throws {WalArgumentError} if a field is out of its range.
   */
  static create(fields: CertificateFields): CommitCertificate {
    validateFields(fields);
    const encoded = encodeFields(fields);
    const canonicalEnd = canonicalBytesLength(fields.laneRecordCounts.length);
    const certificateCrc = crc32c(encoded.subarray(0, canonicalEnd));
    writeU32(encoded, canonicalEnd, certificateCrc);
    const linkCrc = crc32c(encoded.subarray(0, encoded.length - 4));
    return new CommitCertificate(fields, certificateCrc, linkCrc);
  }

  /** The canonical bytes of docs/format.md#72-certificate (what `certificateCrc32c` covers). */
  canonicalBytes(): Uint8Array {
    return encodeFields(this).subarray(0, canonicalBytesLength(this.laneRecordCounts.length));
  }

  /** The full encoding (canonical bytes + chain extension), as stored. */
  encode(): Uint8Array {
    const bytes = encodeFields(this);
    writeU32(bytes, canonicalBytesLength(this.laneRecordCounts.length), this.certificateCrc32c);
    writeU32(bytes, bytes.length - 4, this.linkCrc32c);
    return bytes;
  }

  /** True when both stored checksums match the fields (no bit of the certificate changed). */
  checksumIsValid(): boolean {
    const bytes = encodeFields(this);
    const canonicalEnd = canonicalBytesLength(this.laneRecordCounts.length);
    if (crc32c(bytes.subarray(0, canonicalEnd)) !== this.certificateCrc32c) return false;
    writeU32(bytes, canonicalEnd, this.certificateCrc32c);
    return crc32c(bytes.subarray(0, bytes.length - 4)) === this.linkCrc32c;
  }

  /** Sum of `laneRecordCounts`: the records of the segment. */
  recordCount(): number {
    let total = 0;
    for (const count of this.laneRecordCounts) total += count;
    return total;
  }

  /** What the next certificate chains to. */
  link(): CertificateLink {
    return {
      epoch: this.certificateEpoch,
      certificateCrc32c: this.certificateCrc32c,
      commitSeqHi: this.commitSeqHi,
      dbSizePages: this.dbSizePages,
    };
  }
}

function canonicalBytesLength(laneCounts: number): number {
  return CERTIFICATE_FIXED_PREFIX_BYTES + 4 * laneCounts + CANONICAL_TAIL_BYTES;
}

/** Encoded size of a certificate with `laneCounts` lane record counts. */
export function encodedCertificateBytes(laneCounts: number): number {
  return CERTIFICATE_BASE_BYTES + 4 * laneCounts;
}

function isUint(value: number, max: number): boolean {
  return Number.isInteger(value) && value >= 0 && value <= max;
}

function validateFields(fields: CertificateFields): void {
  const problems: string[] = [];
  if (!isUint(fields.formatVersion, 0xffff)) problems.push('formatVersion is not a u16');
  if (fields.residue !== 'commitCertificateThenPublish') problems.push('unknown residue');
  for (const key of [
    'certificateEpoch',
    'commitSeqLo',
    'commitSeqHi',
    'durableSegmentEpoch',
  ] as const) {
    if (!isU64(fields[key])) problems.push(`${key} is not a u64`);
  }
  if (!isUint(fields.laneCount, 0xffff)) problems.push('laneCount is not a u16');
  if (fields.laneRecordCounts.length > certificateLaneCountsMax) {
    problems.push(`more than ${certificateLaneCountsMax} lane record counts`);
  }
  if (!fields.laneRecordCounts.every((count) => isUint(count, u32Max))) {
    problems.push('a lane record count is not a u32');
  }
  if (!isUint(fields.dbSizePages, u32Max)) problems.push('dbSizePages is not a u32');
  if (!isUint(fields.pageSetSize, u32Max)) problems.push('pageSetSize is not a u32');
  if (fields.payloadDigest.length !== CERTIFICATE_DIGEST_BYTES) {
    problems.push(`payload digest is not ${CERTIFICATE_DIGEST_BYTES} bytes`);
  }
  const pred = fields.predecessor;
  if (pred !== null && (!isU64(pred.epoch) || !isUint(pred.certificateCrc32c, u32Max))) {
    problems.push('predecessor link out of range');
  }
  if (problems.length > 0) {
    throw new WalArgumentError(`invalid commit certificate: ${problems.join(', ')}`);
  }
}

/** All fields written; both CRC slots left zero. */
function encodeFields(fields: CertificateFields): Uint8Array {
  const n = fields.laneRecordCounts.length;
  const bytes = new Uint8Array(encodedCertificateBytes(n));
  writeU16(bytes, 0, fields.formatVersion);
  bytes[2] = RESIDUE_COMMIT_CERTIFICATE_THEN_PUBLISH;
  writeU64(bytes, 3, fields.certificateEpoch);
  writeU64(bytes, 11, fields.commitSeqLo);
  writeU64(bytes, 19, fields.commitSeqHi);
  writeU64(bytes, 27, fields.durableSegmentEpoch);
  writeU16(bytes, 35, fields.laneCount);
  writeU32(bytes, 37, n);
  let at = CERTIFICATE_FIXED_PREFIX_BYTES;
  for (const count of fields.laneRecordCounts) {
    writeU32(bytes, at, count);
    at += 4;
  }
  writeU32(bytes, at, fields.dbSizePages);
  writeU32(bytes, at + 4, fields.pageSetSize);
  bytes.set(fields.payloadDigest, at + 8);
  bytes[at + 8 + CERTIFICATE_DIGEST_BYTES] = fields.fallbackActive ? 1 : 0;
  at += CANONICAL_TAIL_BYTES + 4; // canonical tail, then the certificate CRC slot
  const pred = fields.predecessor;
  bytes[at] = pred === null ? 0 : 1;
  if (pred !== null) {
    writeU64(bytes, at + 1, pred.epoch);
    writeU32(bytes, at + 9, pred.certificateCrc32c);
  }
  return bytes;
}

/** The stored encoding of `certificate` (same as `certificate.encode()`). */
export function encodeCertificate(certificate: CommitCertificate): Uint8Array {
  return certificate.encode();
}

function formatError(
  code: (typeof CertificateErrorCode)[keyof typeof CertificateErrorCode],
  message: string,
  offset?: number,
): CertificateFormatError {
  return new CertificateFormatError(code, message, offset);
}

/**
 * Decodes a stored certificate. Checks structure in this order: length of the
 * fixed prefix, format version, residue, lane-count array against the length
 * (before allocating anything), flags, trailing bytes. Checksums are kept as
 * stored: call {@link CommitCertificate.checksumIsValid}.
 * Never allocates more than the input's length justifies.
 * @throws {CertificateFormatError}
 */
export function decodeCertificate(bytes: Uint8Array): CommitCertificate {
  const n = checkCertificateFraming(bytes);
  const laneRecordCounts = new Array<number>(n);
  let at = CERTIFICATE_FIXED_PREFIX_BYTES;
  for (let i = 0; i < n; i++, at += 4) laneRecordCounts[i] = readU32(bytes, at);
  const fallbackAt = at + 8 + CERTIFICATE_DIGEST_BYTES;
  const hasPredAt = fallbackAt + 5;
  const predecessor = readPredecessor(bytes, fallbackAt, hasPredAt);
  const fields: CertificateFields = {
    formatVersion: readU16(bytes, 0),
    residue: 'commitCertificateThenPublish',
    certificateEpoch: readU64(bytes, 3),
    commitSeqLo: readU64(bytes, 11),
    commitSeqHi: readU64(bytes, 19),
    durableSegmentEpoch: readU64(bytes, 27),
    laneCount: readU16(bytes, 35),
    laneRecordCounts,
    dbSizePages: readU32(bytes, at),
    pageSetSize: readU32(bytes, at + 4),
    payloadDigest: bytes.slice(at + 8, at + 8 + CERTIFICATE_DIGEST_BYTES),
    fallbackActive: bytes[fallbackAt] === 1,
    predecessor,
  };
  return new CommitCertificate(
    fields,
    readU32(bytes, fallbackAt + 1),
    readU32(bytes, bytes.length - 4),
  );
}

/**
 * Checks the fixed prefix, version, residue and the lane-count array against
 * the length, in that order; returns the number of lane counts.
 */
function checkCertificateFraming(bytes: Uint8Array): number {
  const length = bytes.length;
  if (length < CERTIFICATE_FIXED_PREFIX_BYTES) {
    throw formatError(
      CertificateErrorCode.truncated,
      `certificate truncated: ${length} bytes, need at least ${CERTIFICATE_BASE_BYTES}`,
      0,
    );
  }
  const formatVersion = readU16(bytes, 0);
  if (formatVersion !== CERTIFICATE_FORMAT_VERSION) {
    throw formatError(
      CertificateErrorCode.version,
      `unsupported certificate version: ${formatVersion}`,
      0,
    );
  }
  if (bytes[2] !== RESIDUE_COMMIT_CERTIFICATE_THEN_PUBLISH) {
    throw formatError(
      CertificateErrorCode.residue,
      `unsupported certificate residue: ${bytes[2]}`,
      2,
    );
  }
  if (length < CERTIFICATE_BASE_BYTES) {
    throw formatError(
      CertificateErrorCode.truncated,
      `certificate truncated: ${length} bytes, need at least ${CERTIFICATE_BASE_BYTES}`,
      0,
    );
  }
  const n = readU32(bytes, 37);
  const possible = Math.floor((length - CERTIFICATE_BASE_BYTES) / 4);
  if (n > possible) {
    throw formatError(
      CertificateErrorCode.laneCounts,
      `certificate lane count array of ${n} entries exceeds maximum possible ${possible} for length ${length}`,
      37,
    );
  }
  const expected = encodedCertificateBytes(n);
  if (length !== expected) {
    throw formatError(
      CertificateErrorCode.trailingBytes,
      `certificate has ${length - expected} trailing bytes`,
      expected,
    );
  }
  return n;
}

/** Checks the two flags (0 or 1) and reads the predecessor link they announce. */
function readPredecessor(
  bytes: Uint8Array,
  fallbackAt: number,
  hasPredAt: number,
): CertificateFields['predecessor'] {
  const fallbackFlag = bytes[fallbackAt]!;
  const hasPred = bytes[hasPredAt]!;
  if (fallbackFlag > 1 || hasPred > 1) {
    const offset = fallbackFlag > 1 ? fallbackAt : hasPredAt;
    throw formatError(
      CertificateErrorCode.flag,
      `invalid certificate flag: ${bytes[offset]} at offset ${offset}`,
      offset,
    );
  }
  const predEpoch = readU64(bytes, hasPredAt + 1);
  const predCrc = readU32(bytes, hasPredAt + 9);
  if (hasPred === 0 && (predEpoch !== 0n || predCrc !== 0)) {
    throw formatError(
      CertificateErrorCode.flag,
      'certificate without predecessor has predecessor fields set',
      hasPredAt,
    );
  }
  return hasPred === 1 ? { epoch: predEpoch, certificateCrc32c: predCrc } : null;
}
