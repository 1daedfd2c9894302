/**
 * Issuing a commit certificate (docs/design.md#commit-certificates): read
 * what a certificate states about its segment from the segment's bytes — the
 * epoch from the header, the commit-sequence interval and page-set size from
 * the records, the SHA-256 payload digest over header + records — and chain it
 * to its predecessor. The segment bytes are read only through the format
 * layer's header codec and frame walk; the certificate's own bytes are
 * `certificate.ts`'s.
 */
import { createHash } from 'node:crypto';
import { WalArgumentError } from '../errors.js';
import { readU32, readU64 } from '../format/bytes.js';
import { recordFrameBounds, walkRecordFrames } from '../format/frames.js';
import {
  RECORD_END_SEQ_OFFSET,
  RECORD_HAS_END_SEQ_OFFSET,
  RECORD_PAGE_ID_OFFSET,
} from '../format/record.js';
import { decodeSegmentHeader } from '../format/segment.js';
import { SEGMENT_HEADER_BYTES } from '../format/types.js';
import {
  CERTIFICATE_FORMAT_VERSION,
  type CertificateLink,
  CommitCertificate,
} from './certificate.js';
import { CertificateChainError, segmentErrorAsCertificateError } from './errors.js';

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

/**
 * Reads the header and walks the records of a segment (version 1, 2 or 3;
 * records in version 3 have the version-2 form) with the format layer's
 * header codec and frame walk, without decoding images or checking record
 * CRCs — the payload digest covers the bytes. Records must not span chunks.
 * Bounds-checked throughout: hostile bytes give a typed error.
 * @throws {CertificateFormatError} with code `ERR_CERTIFICATE_SEGMENT`.
 */
export function summarizeSegment(segment: SegmentBytes): SegmentSummary {
  const chunks = chunksOf(segment);
  let base = 0;
  try {
    const header = decodeSegmentHeader(chunks[0] ?? new Uint8Array(0));
    const summary: SegmentSummary = {
      ...header,
      scannedRecords: 0,
      commitSeqMin: null,
      commitSeqMax: null,
      pageSetSize: 0,
    };
    const bounds = recordFrameBounds(header.version);
    const pages = new Set<number>();
    const visit = (chunk: Uint8Array, body: number): void => {
      pages.add(readU32(chunk, body + RECORD_PAGE_ID_OFFSET));
      if (chunk[body + RECORD_HAS_END_SEQ_OFFSET] === 1) {
        const seq = readU64(chunk, body + RECORD_END_SEQ_OFFSET);
        if (summary.commitSeqMin === null || seq < summary.commitSeqMin) summary.commitSeqMin = seq;
        if (summary.commitSeqMax === null || seq > summary.commitSeqMax) summary.commitSeqMax = seq;
      }
      summary.scannedRecords++;
    };
    for (let c = 0; c < chunks.length; c++) {
      const chunk = chunks[c]!;
      walkRecordFrames(chunk, c === 0 ? SEGMENT_HEADER_BYTES : 0, bounds, undefined, (body) =>
        visit(chunk, body),
      );
      base += chunk.length;
    }
    summary.pageSetSize = pages.size;
    return summary;
  } catch (error) {
    throw segmentErrorAsCertificateError(error, base);
  }
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
