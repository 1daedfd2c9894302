/**
 * Verifying a chain of commit certificates (docs/design.md#commit-certificates)
 * against their segments: each certificate's checksums, its digest over the
 * segment's bytes, what it states about the segment, the link to its
 * predecessor and the contiguous commit intervals. The first failure names a
 * reason: `recoveryGap` (a predecessor's segment is missing),
 * `certificateGap` (a broken link or interval) or
 * `certificateChecksumMismatch` (altered bytes).
 */
import { WalArgumentError } from '../errors.js';
import type { CertificateLink, CommitCertificate } from './certificate.js';
import {
  certificatePayloadDigest,
  type SegmentBytes,
  type SegmentSummary,
  summarizeSegment,
} from './certify.js';
import { CertificateChainError, type ChainFailureReason } from './errors.js';

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

/** Why a certificate does not hold: the reason and the message. */
type Failure = [ChainFailureReason, string];

/** The failure of one certificate against its segment and predecessor, or `null`. */
function checkOne(
  cert: CommitCertificate,
  segment: SegmentBytes,
  prior: CertificateLink | null,
): Failure | null {
  const summary = checkDescribesSegment(cert, segment);
  if (Array.isArray(summary)) return summary;
  return checkLink(cert, prior) ?? checkInterval(cert, summary);
}

/**
 * The certificate's own checksums, its digest over the segment's bytes and
 * what it states about the segment (epoch, record count, page set): the
 * segment's summary when all hold, else the failure (altered bytes).
 */
function checkDescribesSegment(
  cert: CommitCertificate,
  segment: SegmentBytes,
): SegmentSummary | Failure {
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
  return summary;
}

/** The link to the predecessor the certificate names, checked against the prior one verified. */
function checkLink(cert: CommitCertificate, prior: CertificateLink | null): Failure | null {
  const epoch = cert.certificateEpoch;
  const pred = cert.predecessor;
  if (pred !== null && pred.epoch >= epoch) {
    return [
      'certificateGap',
      `certificate of epoch ${epoch} names a later predecessor ${pred.epoch}`,
    ];
  }
  if (prior === null) return null;
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
  return null;
}

/** The certificate's commit interval against the commit sequences its segment holds. */
function checkInterval(cert: CommitCertificate, summary: SegmentSummary): Failure | null {
  const epoch = cert.certificateEpoch;
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
