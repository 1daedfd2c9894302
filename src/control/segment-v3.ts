/**
 * Segment format version 3: a version-2 segment whose header says 3,
 * followed by a certificate trailer, so that an epoch's certificate is durable
 * in the same file and by the same fsync as its records.
 *
 * ```text
 * header (24 bytes, version = 3, CRC as in versions 1/2)
 * record count × (u32 len + record body in the version-2 form, with its CRC)
 * trailer:  u32 magic 0x54435750 ("PWCT" on disk) | u32 certificate length L | L bytes certificate
 * ```
 *
 * The certificate's payload digest covers the header and the records (every
 * byte before the trailer); its own two CRCs cover the certificate. The
 * trailer length must match the bytes left exactly.
 *
 * Pure functions over bytes. `src/format` reads version 3 too (`decodeSegment`
 * checks the trailer framing and hands the certificate bytes back undecoded);
 * this module decodes and verifies the certificates. The trailer constants
 * live in `format/types.ts`; docs/format.md (section 7) describes the bytes.
 */
import { readU16, readU32, readU64, writeU16, writeU32, writeU64 } from '../format/bytes.js';
import { crc32c } from '../format/crc32c.js';
import {
  CERTIFICATE_TRAILER_MAGIC,
  CERTIFICATE_TRAILER_PREFIX_BYTES,
  CERTIFIED_FORMAT_VERSION,
  RECORD_MIN_BYTES_V2,
  SEGMENT_HEADER_BYTES,
  SEGMENT_MAGIC,
} from '../format/types.js';
import {
  type CertificateLink,
  type ChainReport,
  type CommitCertificate,
  decodeCertificate,
  type VerifyChainOptions,
  verifyCertificateChain,
} from './certificate.js';
import { CertificateChainError, CertificateErrorCode, CertificateFormatError } from './errors.js';

/**
 * The segment format version that carries a certificate trailer: the format
 * layer's `CERTIFIED_FORMAT_VERSION` (3) under the name the control plane uses.
 */
export const CERTIFIED_SEGMENT_VERSION = CERTIFIED_FORMAT_VERSION;

/** The 24-byte header of a version-3 segment (same layout and CRC as versions 1 and 2). */
export function encodeV3SegmentHeader(epoch: bigint, recordCount: number): Uint8Array {
  const header = new Uint8Array(SEGMENT_HEADER_BYTES);
  writeU32(header, 0, SEGMENT_MAGIC);
  writeU16(header, 4, CERTIFIED_SEGMENT_VERSION);
  writeU64(header, 8, epoch);
  writeU32(header, 16, recordCount);
  writeU32(header, 20, crc32c(header.subarray(0, 20)));
  return header;
}

/**
 * A copy of a version-2 segment (header + records) relabelled as version 3:
 * the records are identical, only the header's version and CRC change.
 */
export function relabelAsVersion3(segmentV2: Uint8Array): Uint8Array {
  if (segmentV2.length < SEGMENT_HEADER_BYTES || readU16(segmentV2, 4) !== 2) {
    throw segmentError('only a version-2 segment can be relabelled as version 3', 4);
  }
  const copy = segmentV2.slice();
  copy.set(encodeV3SegmentHeader(readU64(segmentV2, 8), readU32(segmentV2, 16)), 0);
  return copy;
}

/** The trailer bytes for `certificate`: magic, length, certificate. */
export function encodeCertificateTrailer(certificate: CommitCertificate): Uint8Array {
  const body = certificate.encode();
  const trailer = new Uint8Array(CERTIFICATE_TRAILER_PREFIX_BYTES + body.length);
  writeU32(trailer, 0, CERTIFICATE_TRAILER_MAGIC);
  writeU32(trailer, 4, body.length);
  trailer.set(body, CERTIFICATE_TRAILER_PREFIX_BYTES);
  return trailer;
}

function segmentError(message: string, offset?: number): CertificateFormatError {
  return new CertificateFormatError(CertificateErrorCode.segment, message, offset);
}

function checkHeader(bytes: Uint8Array): { version: number; epoch: bigint; recordCount: number } {
  if (bytes.length < SEGMENT_HEADER_BYTES) throw segmentError('segment header truncated', 0);
  if (readU32(bytes, 0) !== SEGMENT_MAGIC) throw segmentError('invalid segment magic', 0);
  if (readU32(bytes, 20) !== crc32c(bytes.subarray(0, 20))) {
    throw segmentError('segment header checksum mismatch', 20);
  }
  return { version: readU16(bytes, 4), epoch: readU64(bytes, 8), recordCount: readU32(bytes, 16) };
}

/**
 * `segmentBytes` (a version-3 header + records) followed by the trailer of
 * `certificate`, in one new buffer.
 * @throws {CertificateFormatError} if the header is not version 3 or names another epoch.
 */
export function appendCertificateTrailer(
  segmentBytes: Uint8Array,
  certificate: CommitCertificate,
): Uint8Array {
  const header = checkHeader(segmentBytes);
  if (header.version !== CERTIFIED_SEGMENT_VERSION) {
    throw segmentError(`a certificate trailer needs a version-3 segment, got ${header.version}`, 4);
  }
  if (header.epoch !== certificate.certificateEpoch) {
    throw segmentError(
      `segment epoch ${header.epoch} differs from certificate epoch ${certificate.certificateEpoch}`,
      8,
    );
  }
  const trailer = encodeCertificateTrailer(certificate);
  const out = new Uint8Array(segmentBytes.length + trailer.length);
  out.set(segmentBytes, 0);
  out.set(trailer, segmentBytes.length);
  return out;
}

/** A segment file split into its certified bytes and its certificate. */
export interface SplitSegment {
  version: number;
  epoch: bigint;
  /** Header + records: what the payload digest covers (the whole file for versions 1 and 2). */
  segment: Uint8Array;
  /** The decoded certificate (checksums not yet checked); `null` for versions 1 and 2. */
  certificate: CommitCertificate | null;
}

/**
 * Splits a segment file. Versions 1 and 2 have no trailer: the whole input is
 * the segment and the certificate is `null` (their records are not walked).
 * Version 3: walks the header's record count by length prefixes (bounds
 * checked, no allocation), then requires exactly one trailer to the end.
 * @throws {CertificateFormatError} for a malformed header, record framing or trailer.
 */
export function splitCertificateTrailer(bytes: Uint8Array): SplitSegment {
  const { version, epoch, recordCount } = checkHeader(bytes);
  if (version === 1 || version === 2) return { version, epoch, segment: bytes, certificate: null };
  if (version !== CERTIFIED_SEGMENT_VERSION) {
    throw segmentError(`unsupported segment version: ${version}`, 4);
  }
  let at = SEGMENT_HEADER_BYTES;
  for (let i = 0; i < recordCount; i++) {
    if (at + 4 > bytes.length) throw segmentError(`record ${i} length prefix truncated`, at);
    const length = readU32(bytes, at);
    if (length < RECORD_MIN_BYTES_V2 || at + 4 + length > bytes.length) {
      throw segmentError(`record ${i} of ${length} bytes does not fit`, at);
    }
    at += 4 + length;
  }
  const left = bytes.length - at;
  if (left < CERTIFICATE_TRAILER_PREFIX_BYTES) {
    throw new CertificateFormatError(
      CertificateErrorCode.truncated,
      `certificate trailer truncated: ${left} bytes after the records`,
      at,
    );
  }
  if (readU32(bytes, at) !== CERTIFICATE_TRAILER_MAGIC) {
    throw new CertificateFormatError(
      CertificateErrorCode.trailerMagic,
      `invalid certificate trailer magic: 0x${readU32(bytes, at).toString(16)}`,
      at,
    );
  }
  const declared = readU32(bytes, at + 4);
  if (declared !== left - CERTIFICATE_TRAILER_PREFIX_BYTES) {
    throw new CertificateFormatError(
      CertificateErrorCode.trailerLength,
      `certificate trailer declares ${declared} bytes, ${left - CERTIFICATE_TRAILER_PREFIX_BYTES} present`,
      at + 4,
    );
  }
  return {
    version,
    epoch,
    segment: bytes.subarray(0, at),
    certificate: decodeCertificate(bytes.subarray(at + CERTIFICATE_TRAILER_PREFIX_BYTES)),
  };
}

/** One segment file for {@link verifySegmentFilesChain}. */
export interface SegmentFileBytes {
  /** Epoch from the file name. */
  epoch: bigint;
  bytes: Uint8Array;
}

/** {@link ChainReport} plus the segments that carry no certificate. */
export interface SegmentChainReport extends ChainReport {
  /** Version 1/2 segments: not certified; each one restarts the chain after it. */
  uncertifiedEpochs: bigint[];
  /** Certified segments checked. */
  certifiedSegments: number;
}

/**
 * Verifies segment files one at a time, in epoch order, keeping only the
 * last good link (memory independent of the log's size). Version 1/2
 * segments carry no certificate: they are listed and the chain restarts after
 * each (a log may switch certificates on and off between sessions). A trailer
 * that cannot be read counts as altered bytes (`certificateChecksumMismatch`).
 * After the first failure every later file is ignored.
 */
export class SegmentChainVerifier {
  #prior: CertificateLink | null;
  #lastGoodEpoch: bigint | null = null;
  #certified = 0;
  #failure: CertificateChainError | null = null;
  readonly #uncertified: bigint[] = [];

  constructor(anchor: CertificateLink | null = null) {
    this.#prior = anchor;
  }

  /** Checks the next file; returns its failure (also kept in the report), or `null`. */
  push(file: SegmentFileBytes): CertificateChainError | null {
    if (this.#failure !== null) return this.#failure;
    let split: SplitSegment;
    try {
      split = splitCertificateTrailer(file.bytes);
    } catch (error) {
      this.#failure = new CertificateChainError(
        'certificateChecksumMismatch',
        `segment of epoch ${file.epoch}: ${(error as Error).message}`,
        file.epoch,
        this.#lastGoodEpoch,
      );
      return this.#failure;
    }
    if (split.certificate === null) {
      this.#uncertified.push(file.epoch);
      this.#prior = null;
      return null;
    }
    const report = verifyCertificateChain([split.certificate], [split.segment], {
      anchor: this.#prior,
      skipCorrupt: true,
    });
    if (report.failure !== null) {
      this.#failure = new CertificateChainError(
        report.failure.reason,
        report.failure.message,
        report.failure.epoch,
        this.#lastGoodEpoch,
      );
      return this.#failure;
    }
    this.#prior = report.lastGood;
    this.#lastGoodEpoch = split.certificate.certificateEpoch;
    this.#certified++;
    return null;
  }

  /** The report so far. */
  report(): SegmentChainReport {
    return {
      verified: this.#certified,
      lastGoodEpoch: this.#lastGoodEpoch,
      lastGood: this.#prior,
      failure: this.#failure,
      uncertifiedEpochs: [...this.#uncertified],
      certifiedSegments: this.#certified,
    };
  }
}

/**
 * Verifies the certificate chain of a log's segment files, in epoch order
 * (see {@link SegmentChainVerifier}).
 * @throws {CertificateChainError} on the first failure unless `options.skipCorrupt`.
 */
export function verifySegmentFilesChain(
  files: readonly SegmentFileBytes[],
  options: VerifyChainOptions = {},
): SegmentChainReport {
  const verifier = new SegmentChainVerifier(options.anchor ?? null);
  for (const file of files) if (verifier.push(file) !== null) break;
  const report = verifier.report();
  if (report.failure !== null && options.skipCorrupt !== true) throw report.failure;
  return report;
}
