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
 * Pure functions over bytes. Every byte of the header, the record framing and
 * the trailer framing is laid out by the format layer (`format/segment.ts`,
 * `format/frames.ts`, `format/trailer.ts`), which reads version 3 too
 * (`decodeSegment` hands the certificate bytes back undecoded); this module
 * puts certificates into trailers and takes them out, and verifies the chain
 * over segment files. docs/format.md (section 7) describes the bytes.
 */
import { recordFrameBounds, walkRecordFrames } from '../format/frames.js';
import { decodeSegmentHeader, encodeSegmentHeader, relabelSegment } from '../format/segment.js';
import { frameCertificateTrailer, readCertificateTrailer } from '../format/trailer.js';
import {
  CERTIFIED_FORMAT_VERSION,
  SEGMENT_HEADER_BYTES,
  type SegmentHeader,
} from '../format/types.js';
import { type CertificateLink, type CommitCertificate, decodeCertificate } from './certificate.js';
import {
  type ChainReport,
  type VerifyChainOptions,
  verifyCertificateChain,
} from './certificate-chain.js';
import {
  CertificateChainError,
  CertificateErrorCode,
  CertificateFormatError,
  segmentErrorAsCertificateError,
} from './errors.js';

/**
 * The segment format version that carries a certificate trailer: the format
 * layer's `CERTIFIED_FORMAT_VERSION` (3) under the name the control plane uses.
 */
export const CERTIFIED_SEGMENT_VERSION = CERTIFIED_FORMAT_VERSION;

/** The 24-byte header of a version-3 segment (the format layer's header codec, version 3). */
export function encodeV3SegmentHeader(epoch: bigint, recordCount: number): Uint8Array {
  return encodeSegmentHeader({ version: CERTIFIED_SEGMENT_VERSION, epoch, recordCount });
}

/**
 * A copy of a version-2 segment (header + records) relabelled as version 3:
 * the records are identical, only the header's version and CRC change.
 * @throws {CertificateFormatError} (`ERR_CERTIFICATE_SEGMENT`) for anything but a version-2 segment.
 */
export function relabelAsVersion3(segmentV2: Uint8Array): Uint8Array {
  if (decodeHeader(segmentV2).version !== 2) {
    throw segmentError('only a version-2 segment can be relabelled as version 3', 4);
  }
  return relabelSegment(segmentV2, CERTIFIED_SEGMENT_VERSION);
}

/** The trailer bytes for `certificate`: magic, length, certificate. */
export function encodeCertificateTrailer(certificate: CommitCertificate): Uint8Array {
  return frameCertificateTrailer(certificate.encode());
}

function segmentError(message: string, offset?: number): CertificateFormatError {
  return new CertificateFormatError(CertificateErrorCode.segment, message, offset);
}

/** The format layer's header decode, its failures as `ERR_CERTIFICATE_SEGMENT`. */
function decodeHeader(bytes: Uint8Array): SegmentHeader {
  try {
    return decodeSegmentHeader(bytes);
  } catch (error) {
    throw segmentErrorAsCertificateError(error);
  }
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
  const header = decodeHeader(segmentBytes);
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
  /** Record count from the header. */
  recordCount: number;
  /** Header + records: what the payload digest covers (the whole file for versions 1 and 2). */
  segment: Uint8Array;
  /** The decoded certificate (checksums not yet checked); `null` for versions 1 and 2. */
  certificate: CommitCertificate | null;
}

/** The codes of the trailer faults the format layer reports. */
const TRAILER_FAULT_CODES = {
  truncated: CertificateErrorCode.truncated,
  magic: CertificateErrorCode.trailerMagic,
  length: CertificateErrorCode.trailerLength,
} as const;

/**
 * Splits a segment file. Versions 1 and 2 have no trailer: the whole input is
 * the segment and the certificate is `null` (their records are not walked).
 * Version 3: walks the header's record count by length prefixes (the format
 * layer's frame walk: bounds checked, no allocation), then requires exactly
 * one trailer to the end.
 * @throws {CertificateFormatError} for a malformed header, record framing or trailer.
 */
export function splitCertificateTrailer(bytes: Uint8Array): SplitSegment {
  const { version, epoch, recordCount } = decodeHeader(bytes);
  if (version !== CERTIFIED_SEGMENT_VERSION) {
    return { version, epoch, recordCount, segment: bytes, certificate: null };
  }
  let at: number;
  try {
    at = walkRecordFrames(bytes, SEGMENT_HEADER_BYTES, recordFrameBounds(version), recordCount);
  } catch (error) {
    throw segmentErrorAsCertificateError(error);
  }
  const trailer = readCertificateTrailer(bytes, at);
  if (!trailer.ok) {
    throw new CertificateFormatError(
      TRAILER_FAULT_CODES[trailer.fault],
      trailer.message,
      trailer.offset,
    );
  }
  return {
    version,
    epoch,
    recordCount,
    segment: bytes.subarray(0, at),
    certificate: decodeCertificate(trailer.certificate),
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
