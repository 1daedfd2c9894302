/**
 * Typed errors of the control plane. Callers branch on `code`; the chain errors
 * also carry the {@link FallbackReason} of the same name.
 */
import { WalError } from '../errors.js';
import { SegmentFormatError } from '../format/errors.js';
import type { FallbackReason } from './surface.js';

/** Stable codes of {@link CertificateFormatError}. */
export const CertificateErrorCode = {
  /** Fewer bytes than the fixed part of a certificate or trailer needs. */
  truncated: 'ERR_CERTIFICATE_TRUNCATED',
  /** `unsupported certificate version: N` */
  version: 'ERR_CERTIFICATE_VERSION',
  /** `unsupported certificate residue: N` */
  residue: 'ERR_CERTIFICATE_RESIDUE',
  /** `certificate lane count array of N entries exceeds maximum possible M for length L` */
  laneCounts: 'ERR_CERTIFICATE_LANE_COUNTS',
  /** A 0/1 flag holding another value, or predecessor fields set without a predecessor. */
  flag: 'ERR_CERTIFICATE_FLAG',
  /** Bytes left over after the certificate. */
  trailingBytes: 'ERR_CERTIFICATE_TRAILING_BYTES',
  /** The trailer of a version-3 segment does not start with its magic. */
  trailerMagic: 'ERR_CERTIFICATE_TRAILER_MAGIC',
  /** The trailer's declared certificate length disagrees with the bytes present. */
  trailerLength: 'ERR_CERTIFICATE_TRAILER_LENGTH',
  /** The bytes in front of a trailer are not a version-3 segment (header or records malformed). */
  segment: 'ERR_CERTIFICATE_SEGMENT',
} as const;

/** One of the {@link CertificateErrorCode} values. */
export type CertificateErrorCodeValue =
  (typeof CertificateErrorCode)[keyof typeof CertificateErrorCode];

/** Bytes that do not form a certificate or a certificate trailer. */
export class CertificateFormatError extends WalError {
  declare readonly code: CertificateErrorCodeValue;
  /** Byte offset of the failing structure, if known. */
  readonly offset: number | undefined;

  constructor(code: CertificateErrorCodeValue, message: string, offset?: number) {
    super(code, message);
    this.offset = offset;
  }
}

/**
 * A segment-format failure met while reading the segment bytes in front of
 * (or under) a certificate, as `ERR_CERTIFICATE_SEGMENT` with the format
 * layer's message and offset (`base` added to it: the offset of the bytes
 * read within the whole segment). Anything else is returned unchanged.
 */
export function segmentErrorAsCertificateError(error: unknown, base = 0): unknown {
  if (!(error instanceof SegmentFormatError)) return error;
  return new CertificateFormatError(
    CertificateErrorCode.segment,
    error.message,
    base + (error.offset ?? 0),
  );
}

/** Stable codes of {@link CertificateChainError}, one per chain failure reason. */
export const ChainErrorCode = {
  recoveryGap: 'ERR_RECOVERY_GAP',
  certificateGap: 'ERR_CERTIFICATE_GAP',
  certificateChecksumMismatch: 'ERR_CERTIFICATE_CHECKSUM_MISMATCH',
} as const;

/** The fallback reasons a chain failure maps to. */
export type ChainFailureReason = keyof typeof ChainErrorCode & FallbackReason;

/**
 * A certificate chain that does not hold: a missing middle segment
 * (`recoveryGap`), a broken commit-sequence interval or predecessor link
 * (`certificateGap`), or altered bytes (`certificateChecksumMismatch`).
 * `reason` is the fallback reason of the same name.
 */
export class CertificateChainError extends WalError {
  declare readonly code: (typeof ChainErrorCode)[ChainFailureReason];
  readonly reason: ChainFailureReason;
  /** Epoch of the certificate (or segment) where the chain broke. */
  readonly epoch: bigint;
  /** Last epoch whose certificate and every predecessor verified; `null` if none. */
  readonly lastGoodEpoch: bigint | null;

  constructor(
    reason: ChainFailureReason,
    message: string,
    epoch: bigint,
    lastGoodEpoch: bigint | null,
  ) {
    super(ChainErrorCode[reason], message);
    this.reason = reason;
    this.epoch = epoch;
    this.lastGoodEpoch = lastGoodEpoch;
  }
}

/** A shadow comparison found the parallel result different from the conservative one. */
export class ShadowDivergenceError extends WalError {
  readonly epoch: bigint;
  readonly differences: readonly string[];

  constructor(epoch: bigint, differences: readonly string[]) {
    super(
      'ERR_SHADOW_DIVERGED',
      `epoch ${epoch} diverged from the conservative path: ${differences.join('; ')}`,
    );
    this.epoch = epoch;
    this.differences = differences;
  }
}
