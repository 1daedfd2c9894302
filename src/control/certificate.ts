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
 * Only `format/` helpers and `node:crypto` are used, so this codec can move to
 * the format layer unchanged (which already reads version-3 segments and hands
 * the certificate bytes back undecoded).
 */
import { createHash } from 'node:crypto';
import { WalArgumentError } from '../errors.js';
import { readU16, readU32, readU64, writeU16, writeU32, writeU64 } from '../format/bytes.js';
import { crc32c } from '../format/crc32c.js';
import {
  RECORD_END_SEQ_OFFSET,
  RECORD_HAS_END_SEQ_OFFSET,
  RECORD_PAGE_ID_OFFSET,
} from '../format/record.js';
import {
  RECORD_MIN_BYTES_V1,
  RECORD_MIN_BYTES_V2,
  SEGMENT_HEADER_BYTES,
  SEGMENT_MAGIC,
  U32_MAX,
  U64_MAX,
} from '../format/types.js';
import {
  CertificateChainError,
  CertificateErrorCode,
  CertificateFormatError,
  type ChainFailureReason,
} from './errors.js';

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
export const CERTIFICATE_LANE_COUNTS_MAX = 65_535;

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

function isU64(value: bigint): boolean {
  return typeof value === 'bigint' && value >= 0n && value <= U64_MAX;
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
  if (fields.laneRecordCounts.length > CERTIFICATE_LANE_COUNTS_MAX) {
    problems.push(`more than ${CERTIFICATE_LANE_COUNTS_MAX} lane record counts`);
  }
  if (!fields.laneRecordCounts.every((count) => isUint(count, U32_MAX))) {
    problems.push('a lane record count is not a u32');
  }
  if (!isUint(fields.dbSizePages, U32_MAX)) problems.push('dbSizePages is not a u32');
  if (!isUint(fields.pageSetSize, U32_MAX)) problems.push('pageSetSize is not a u32');
  if (fields.payloadDigest.length !== CERTIFICATE_DIGEST_BYTES) {
    problems.push(`payload digest is not ${CERTIFICATE_DIGEST_BYTES} bytes`);
  }
  const pred = fields.predecessor;
  if (pred !== null && (!isU64(pred.epoch) || !isUint(pred.certificateCrc32c, U32_MAX))) {
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
  const laneRecordCounts = new Array<number>(n);
  let at = CERTIFICATE_FIXED_PREFIX_BYTES;
  for (let i = 0; i < n; i++, at += 4) laneRecordCounts[i] = readU32(bytes, at);
  const dbSizePages = readU32(bytes, at);
  const pageSetSize = readU32(bytes, at + 4);
  const payloadDigest = bytes.slice(at + 8, at + 8 + CERTIFICATE_DIGEST_BYTES);
  const fallbackAt = at + 8 + CERTIFICATE_DIGEST_BYTES;
  const fallbackFlag = bytes[fallbackAt]!;
  const certificateCrc = readU32(bytes, fallbackAt + 1);
  const hasPredAt = fallbackAt + 5;
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
  const fields: CertificateFields = {
    formatVersion,
    residue: 'commitCertificateThenPublish',
    certificateEpoch: readU64(bytes, 3),
    commitSeqLo: readU64(bytes, 11),
    commitSeqHi: readU64(bytes, 19),
    durableSegmentEpoch: readU64(bytes, 27),
    laneCount: readU16(bytes, 35),
    laneRecordCounts,
    dbSizePages,
    pageSetSize,
    payloadDigest,
    fallbackActive: fallbackFlag === 1,
    predecessor: hasPred === 1 ? { epoch: predEpoch, certificateCrc32c: predCrc } : null,
  };
  return new CommitCertificate(fields, certificateCrc, readU32(bytes, length - 4));
}

// ---------------------------------------------------------------------------
// Segment summaries and digests

/** Bytes of a segment (header + records) as one buffer or as chunks of whole records. */
export type SegmentBytes = Uint8Array | readonly Uint8Array[];

function chunksOf(segment: SegmentBytes): readonly Uint8Array[] {
  return segment instanceof Uint8Array ? [segment] : segment;
}

/** SHA-256 of the segment's header and records: the certificate's payload digest. */
export function certificatePayloadDigest(segment: SegmentBytes): Uint8Array {
  const hash = createHash('sha256');
  for (const chunk of chunksOf(segment)) hash.update(chunk);
  return new Uint8Array(hash.digest());
}

/** What a certificate states about its segment, read from the segment's bytes. */
export interface SegmentSummary {
  version: number;
  epoch: bigint;
  /** Record count from the header. */
  recordCount: number;
  /** Records actually found (must equal `recordCount`). */
  scannedRecords: number;
  /** Smallest and largest `endSeq` of committed records; `null` when none committed. */
  commitSeqMin: bigint | null;
  commitSeqMax: bigint | null;
  /** Distinct page ids. */
  pageSetSize: number;
}

function segmentError(message: string, offset?: number): CertificateFormatError {
  return formatError(CertificateErrorCode.segment, message, offset);
}

/**
 * Reads the header and walks the records of a segment (version 1, 2 or 3;
 * records in version 3 have the version-2 form) without decoding images or
 * checking record CRCs — the payload digest covers the bytes. Records must not
 * span chunks. Bounds-checked throughout: hostile bytes give a typed error.
 * @throws {CertificateFormatError} with code `ERR_CERTIFICATE_SEGMENT`.
 */
export function summarizeSegment(segment: SegmentBytes): SegmentSummary {
  const chunks = chunksOf(segment);
  const first = chunks[0];
  if (first === undefined || first.length < SEGMENT_HEADER_BYTES) {
    throw segmentError('segment header truncated', 0);
  }
  if (readU32(first, 0) !== SEGMENT_MAGIC) throw segmentError('invalid segment magic', 0);
  const version = readU16(first, 4);
  if (version < 1 || version > 3) throw segmentError(`unsupported segment version: ${version}`, 4);
  const minRecord = version === 1 ? RECORD_MIN_BYTES_V1 : RECORD_MIN_BYTES_V2;
  const summary: SegmentSummary = {
    version,
    epoch: readU64(first, 8),
    recordCount: readU32(first, 16),
    scannedRecords: 0,
    commitSeqMin: null,
    commitSeqMax: null,
    pageSetSize: 0,
  };
  const pages = new Set<number>();
  let base = 0;
  for (let c = 0; c < chunks.length; c++) {
    const chunk = chunks[c]!;
    let at = c === 0 ? SEGMENT_HEADER_BYTES : 0;
    while (at < chunk.length) {
      if (at + 4 > chunk.length) throw segmentError('record length prefix truncated', base + at);
      const length = readU32(chunk, at);
      const body = at + 4;
      if (length < minRecord || body + length > chunk.length) {
        throw segmentError(`record of ${length} bytes does not fit`, base + at);
      }
      pages.add(readU32(chunk, body + RECORD_PAGE_ID_OFFSET));
      if (chunk[body + RECORD_HAS_END_SEQ_OFFSET] === 1) {
        const seq = readU64(chunk, body + RECORD_END_SEQ_OFFSET);
        if (summary.commitSeqMin === null || seq < summary.commitSeqMin) summary.commitSeqMin = seq;
        if (summary.commitSeqMax === null || seq > summary.commitSeqMax) summary.commitSeqMax = seq;
      }
      summary.scannedRecords++;
      at = body + length;
    }
    base += chunk.length;
  }
  summary.pageSetSize = pages.size;
  return summary;
}

/** What the engine knows about an epoch beyond its bytes. */
export interface CertifyEpochInput {
  /** Header + records exactly as written (the digest covers these bytes). */
  segment: SegmentBytes;
  /** Lanes the log ran with. */
  laneCount: number;
  /** Records each lane contributed, in lane order (sum = the header's record count). */
  laneRecordCounts: readonly number[];
  /** Database size after the epoch's last commit (0 = unknown/unchanged). */
  dbSizePages: number;
  fallbackActive: boolean;
  /** The previous durable epoch's certificate link; `null` for the first of a chain. */
  predecessor: CertificateLink | null;
  /** A digest already computed over `segment` (skips hashing). */
  payloadDigest?: Uint8Array;
}

/**
 * Builds the certificate of one epoch from its segment bytes: epoch from the
 * header, commit-sequence interval and page-set size from the records, digest
 * over header + records.
 * @throws {WalArgumentError} if the lane counts do not add up to the header's count.
 * @throws {CertificateChainError} (`certificateGap`) if a record's commit
 *   sequence is not after the predecessor's interval (commit order violated).
 * @throws {CertificateFormatError} if the segment bytes are malformed.
 */
export function buildCommitCertificate(input: CertifyEpochInput): CommitCertificate {
  const summary = summarizeSegment(input.segment);
  const laneTotal = input.laneRecordCounts.reduce((sum, count) => sum + count, 0);
  if (laneTotal !== summary.recordCount || summary.scannedRecords !== summary.recordCount) {
    throw new WalArgumentError(
      `lane record counts add up to ${laneTotal}, header says ${summary.recordCount}, segment holds ${summary.scannedRecords}`,
    );
  }
  const pred = input.predecessor;
  const lo = pred !== null ? pred.commitSeqHi + 1n : (summary.commitSeqMin ?? 1n);
  const hi = summary.commitSeqMax ?? lo - 1n;
  if (summary.commitSeqMin !== null && summary.commitSeqMin < lo) {
    throw new CertificateChainError(
      'certificateGap',
      `epoch ${summary.epoch} commits sequence ${summary.commitSeqMin}, not after its predecessor's ${lo - 1n}`,
      summary.epoch,
      pred?.epoch ?? null,
    );
  }
  return CommitCertificate.create({
    formatVersion: CERTIFICATE_FORMAT_VERSION,
    residue: 'commitCertificateThenPublish',
    certificateEpoch: summary.epoch,
    commitSeqLo: lo,
    commitSeqHi: hi,
    durableSegmentEpoch: summary.epoch,
    laneCount: input.laneCount,
    laneRecordCounts: input.laneRecordCounts,
    dbSizePages: input.dbSizePages,
    pageSetSize: summary.pageSetSize,
    payloadDigest: input.payloadDigest ?? certificatePayloadDigest(input.segment),
    fallbackActive: input.fallbackActive,
    predecessor:
      pred === null ? null : { epoch: pred.epoch, certificateCrc32c: pred.certificateCrc32c },
  });
}

// ---------------------------------------------------------------------------
// Chain verification

/** Options of {@link verifyCertificateChain}. */
export interface VerifyChainOptions {
  /**
   * The link the first certificate must chain to (for example the last
   * certificate of an applied and deleted prefix). Without it the first
   * certificate may name any earlier predecessor.
   */
  anchor?: CertificateLink | null;
  /** Return the failure in the report instead of throwing it (prefix semantics). */
  skipCorrupt?: boolean;
}

/** Outcome of a chain verification. */
export interface ChainReport {
  /** Certificates verified, from the first: the good prefix. */
  verified: number;
  /** Epoch of the last certificate of the good prefix; `null` if none. */
  lastGoodEpoch: bigint | null;
  /** Link of the last good certificate (or the anchor) — what a next certificate chains to. */
  lastGood: CertificateLink | null;
  /** The first failure, when `skipCorrupt` kept it from being thrown; `null` when the chain holds. */
  failure: CertificateChainError | null;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The failure of one certificate against its segment and predecessor, or `null`. */
function checkOne(
  cert: CommitCertificate,
  segment: SegmentBytes,
  prior: CertificateLink | null,
): [ChainFailureReason, string] | null {
  const epoch = cert.certificateEpoch;
  if (!cert.checksumIsValid()) {
    return ['certificateChecksumMismatch', `certificate of epoch ${epoch} fails its checksum`];
  }
  if (!equalBytes(certificatePayloadDigest(segment), cert.payloadDigest)) {
    return ['certificateChecksumMismatch', `segment of epoch ${epoch} does not match its digest`];
  }
  let summary: SegmentSummary;
  try {
    summary = summarizeSegment(segment);
  } catch (error) {
    return [
      'certificateChecksumMismatch',
      `segment of epoch ${epoch}: ${(error as Error).message}`,
    ];
  }
  if (
    summary.epoch !== epoch ||
    cert.durableSegmentEpoch !== epoch ||
    summary.recordCount !== cert.recordCount() ||
    summary.scannedRecords !== summary.recordCount ||
    summary.pageSetSize !== cert.pageSetSize
  ) {
    return [
      'certificateChecksumMismatch',
      `certificate of epoch ${epoch} does not describe its segment`,
    ];
  }
  const pred = cert.predecessor;
  if (pred !== null && pred.epoch >= epoch) {
    return [
      'certificateGap',
      `certificate of epoch ${epoch} names a later predecessor ${pred.epoch}`,
    ];
  }
  if (prior !== null) {
    if (epoch <= prior.epoch) {
      return ['certificateGap', `epoch ${epoch} does not follow epoch ${prior.epoch}`];
    }
    if (pred === null) {
      return [
        'certificateGap',
        `certificate of epoch ${epoch} restarts the chain after ${prior.epoch}`,
      ];
    }
    if (pred.epoch > prior.epoch) {
      return ['recoveryGap', `segment of epoch ${pred.epoch} (predecessor of ${epoch}) is missing`];
    }
    if (pred.epoch < prior.epoch || pred.certificateCrc32c !== prior.certificateCrc32c) {
      return [
        'certificateGap',
        `certificate of epoch ${epoch} does not chain to epoch ${prior.epoch}`,
      ];
    }
    if (cert.commitSeqLo !== prior.commitSeqHi + 1n) {
      return [
        'certificateGap',
        `epoch ${epoch} starts at commit ${cert.commitSeqLo}, expected ${prior.commitSeqHi + 1n}`,
      ];
    }
  }
  if (cert.commitSeqLo > cert.commitSeqHi + 1n) {
    return ['certificateGap', `epoch ${epoch} has an inverted commit interval`];
  }
  const { commitSeqMin: min, commitSeqMax: max } = summary;
  if (min !== null && max !== null && (min < cert.commitSeqLo || max !== cert.commitSeqHi)) {
    return [
      'certificateGap',
      `epoch ${epoch} commits ${min}..=${max} outside its interval ${cert.commitSeqLo}..=${cert.commitSeqHi}`,
    ];
  }
  return null;
}

/**
 * Verifies a chain of certificates in epoch order against their segments
 * (`segmentsBytes[i]` = header + records of the segment `certs[i]` certifies):
 * checksums, digests, what each certificate states about its segment, the
 * predecessor links and contiguous commit intervals. The first failure is a
 * {@link CertificateChainError}: `recoveryGap` when a certificate names a
 * predecessor epoch that is absent, `certificateGap` for a broken link or
 * interval, `certificateChecksumMismatch` for altered bytes.
 * @throws {CertificateChainError} unless `options.skipCorrupt` (then it is in the report).
 * @throws {WalArgumentError} if the two arrays differ in length.
 */
export function verifyCertificateChain(
  certs: readonly CommitCertificate[],
  segmentsBytes: readonly SegmentBytes[],
  options: VerifyChainOptions = {},
): ChainReport {
  if (certs.length !== segmentsBytes.length) {
    throw new WalArgumentError(
      `${certs.length} certificates but ${segmentsBytes.length} segments to verify`,
    );
  }
  let prior = options.anchor ?? null;
  for (let i = 0; i < certs.length; i++) {
    const cert = certs[i]!;
    const failed = checkOne(cert, segmentsBytes[i]!, prior);
    if (failed !== null) {
      const lastGoodEpoch = i > 0 ? certs[i - 1]!.certificateEpoch : null;
      const failure = new CertificateChainError(
        failed[0],
        failed[1],
        cert.certificateEpoch,
        lastGoodEpoch,
      );
      if (options.skipCorrupt !== true) throw failure;
      return { verified: i, lastGoodEpoch, lastGood: prior, failure };
    }
    prior = cert.link();
  }
  const last = certs[certs.length - 1];
  return {
    verified: certs.length,
    lastGoodEpoch: last?.certificateEpoch ?? null,
    lastGood: prior,
    failure: null,
  };
}
