/**
 * Shadow compare (docs/design.md#shadow-compare): for a sampled epoch, build the result the
 * conservative path (one lane, serialized) would have produced from the same
 * commit batches, and compare it with what the parallel path produced — the
 * segment bytes and the certificate. A divergence latches the fallback with
 * `publication_mismatch` and the epoch must not be acknowledged.
 *
 * The conservative build is deliberately independent of the engine's lane
 * assembly: it walks every batch's records, drops uncommitted ones, sorts all
 * of them into recovery order and writes one header. It shares only the
 * certificate builder, whose inputs it derives itself.
 */

import { WalArgumentError } from '../errors.js';
import { readU32, readU64 } from '../format/bytes.js';
import { SegmentFormatError } from '../format/errors.js';
import { RECORD_FRAME_BOUNDS_ANY, walkRecordFrames } from '../format/frames.js';
import {
  RECORD_BEGIN_SEQ_OFFSET,
  RECORD_EPOCH_OFFSET,
  RECORD_HAS_END_SEQ_OFFSET,
  RECORD_LENGTH_PREFIX_BYTES,
  RECORD_PAGE_ID_OFFSET,
  RECORD_TXN_ID_OFFSET,
} from '../format/record.js';
import { decodeSegmentHeader, encodeSegmentHeaderInto } from '../format/segment.js';
import { SEGMENT_HEADER_BYTES, type SegmentVersion } from '../format/types.js';
import type { CertificateLink, CommitCertificate } from './certificate.js';
import { buildCommitCertificate, type SegmentBytes } from './certify.js';
import { ShadowDivergenceError } from './errors.js';
import type { FallbackState } from './fallback.js';
import type { ShadowVerdict } from './surface.js';

/** One commit batch as it was staged: its records in wire form (`u32 len` + body). */
export interface ShadowBatch {
  laneId: number;
  /** Commit sequence of the batch (orders `dbSizePages`). */
  commitSeq: bigint;
  /** Whole records in wire form, in the segment's record form (version 2/3: with CRC). */
  records: Uint8Array | readonly Uint8Array[];
  /** Database size after this commit; 0 = unchanged. */
  dbSizePages?: number;
}

/** Everything needed to compare one epoch. */
export interface ShadowCompareInput {
  epoch: bigint;
  /** The epoch's batches, as submitted (any lane order). */
  batches: readonly ShadowBatch[];
  /** The parallel path's result: header + records as written, and its certificate (if any). */
  parallel: { segment: SegmentBytes; certificate: CommitCertificate | null };
  /** The predecessor the parallel certificate chains to. */
  predecessor: CertificateLink | null;
  /** Latched with `publicationMismatch` on divergence. */
  fallback?: FallbackState;
  /**
   * The batches cover only some of the epoch's commits (lanes whose batches
   * were never staged, such as worker lanes, also wrote into it). Then only
   * the parallel segment's records of the staged commits (same transaction id
   * and sequence), in the parallel segment's own order, are compared with the
   * conservative build; the certificate (which covers every record) is not.
   */
  partial?: boolean;
}

/** The comparison's result. The engine must not acknowledge the epoch unless `mayAcknowledge`. */
export interface ShadowOutcome {
  verdict: Exclude<ShadowVerdict, 'notRun'>;
  mayAcknowledge: boolean;
  /** Human-readable differences; empty when clean. */
  differences: string[];
  conservative: { segment: Uint8Array; certificate: CommitCertificate };
}

interface RecordRef {
  bytes: Uint8Array;
  start: number;
  end: number;
  epoch: bigint;
  beginSeq: bigint;
  txnId: bigint;
  pageId: number;
  index: number;
}

function chunksOf(records: Uint8Array | readonly Uint8Array[]): readonly Uint8Array[] {
  return records instanceof Uint8Array ? [records] : records;
}

/**
 * The committed records of `batches`, walked with the format layer's frame
 * walk (whole frames only; bodies not decoded).
 * @throws {WalArgumentError} naming the lane whose bytes hold a frame that does not fit.
 */
function collectRecords(batches: readonly ShadowBatch[]): RecordRef[] {
  const refs: RecordRef[] = [];
  const collect = (chunk: Uint8Array, body: number, end: number): void => {
    if (chunk[body + RECORD_HAS_END_SEQ_OFFSET] !== 1) return;
    refs.push({
      bytes: chunk,
      start: body - RECORD_LENGTH_PREFIX_BYTES,
      end,
      epoch: readU64(chunk, body + RECORD_EPOCH_OFFSET),
      beginSeq: readU64(chunk, body + RECORD_BEGIN_SEQ_OFFSET),
      txnId: readU64(chunk, body + RECORD_TXN_ID_OFFSET),
      pageId: readU32(chunk, body + RECORD_PAGE_ID_OFFSET),
      index: refs.length,
    });
  };
  for (const batch of batches) {
    for (const chunk of chunksOf(batch.records)) {
      try {
        walkRecordFrames(chunk, 0, RECORD_FRAME_BOUNDS_ANY, undefined, (body, end) =>
          collect(chunk, body, end),
        );
      } catch (error) {
        if (!(error instanceof SegmentFormatError)) throw error;
        throw new WalArgumentError(`lane ${batch.laneId}: ${error.message}`);
      }
    }
  }
  return refs;
}

function cmp(a: bigint | number, b: bigint | number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Recovery order (epoch, beginSeq, txnId, pageId), stable. */
function compareRefs(a: RecordRef, b: RecordRef): number {
  return (
    cmp(a.epoch, b.epoch) ||
    cmp(a.beginSeq, b.beginSeq) ||
    cmp(a.txnId, b.txnId) ||
    cmp(a.pageId, b.pageId) ||
    a.index - b.index
  );
}

/** Database size after the epoch: the last commit (by sequence) that set one, else the predecessor's. */
export function epochDbSizePages(
  batches: readonly ShadowBatch[],
  predecessor: CertificateLink | null,
): number {
  let size = predecessor?.dbSizePages ?? 0;
  let at: bigint | null = null;
  for (const batch of batches) {
    const pages = batch.dbSizePages ?? 0;
    if (pages > 0 && (at === null || batch.commitSeq >= at)) {
      size = pages;
      at = batch.commitSeq;
    }
  }
  return size;
}

/**
 * The conservative path's segment for `batches`: one header of `version`, the
 * committed records of every batch in recovery order.
 */
export function conservativeSegment(
  epoch: bigint,
  version: SegmentVersion,
  batches: readonly ShadowBatch[],
): Uint8Array {
  return writeConservative(epoch, version, collectRecords(batches));
}

function writeConservative(
  epoch: bigint,
  version: SegmentVersion,
  collected: RecordRef[],
  sort = true,
): Uint8Array {
  const refs = sort ? [...collected].sort(compareRefs) : collected;
  let total = SEGMENT_HEADER_BYTES;
  for (const ref of refs) total += ref.end - ref.start;
  const out = new Uint8Array(total);
  let at = encodeSegmentHeaderInto({ version, epoch, recordCount: refs.length }, out, 0);
  for (const ref of refs) {
    out.set(ref.bytes.subarray(ref.start, ref.end), at);
    at += ref.end - ref.start;
  }
  return out;
}

function concat(segment: SegmentBytes): Uint8Array {
  if (segment instanceof Uint8Array) return segment;
  let total = 0;
  for (const chunk of segment) total += chunk.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of segment) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}

/** Offset of the first differing byte, -1 when equal. Equality is checked natively first (memcmp). */
function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.length === b.length && asBuffer(a).equals(asBuffer(b))) return -1;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

function compareCertificates(
  parallel: CommitCertificate,
  conservative: CommitCertificate,
  out: string[],
): void {
  const fields = [
    'certificateEpoch',
    'durableSegmentEpoch',
    'commitSeqLo',
    'commitSeqHi',
    'dbSizePages',
    'pageSetSize',
  ] as const;
  for (const field of fields) {
    if (parallel[field] !== conservative[field]) {
      out.push(
        `certificate ${field}: parallel ${parallel[field]}, conservative ${conservative[field]}`,
      );
    }
  }
  if (parallel.recordCount() !== conservative.recordCount()) {
    out.push(
      `certificate record count: parallel ${parallel.recordCount()}, conservative ${conservative.recordCount()}`,
    );
  }
  if (firstDifference(parallel.payloadDigest, conservative.payloadDigest) !== -1) {
    out.push('certificate payload digest differs');
  }
  const p = parallel.predecessor;
  const c = conservative.predecessor;
  if (p?.epoch !== c?.epoch || p?.certificateCrc32c !== c?.certificateCrc32c) {
    out.push('certificate predecessor link differs');
  }
  if (!parallel.checksumIsValid()) out.push('parallel certificate fails its checksum');
}

/**
 * Compares the parallel result of one epoch with the conservative one.
 * Lane layout fields (`laneCount`, `laneRecordCounts`) differ by construction
 * and are not compared; everything else is, and the segment bytes must be
 * identical (both paths write records in recovery order).
 * On divergence: `fallback.enter('publicationMismatch')` and `mayAcknowledge: false`.
 */
export function shadowCompare(input: ShadowCompareInput): ShadowOutcome {
  const parallelBytes = concat(input.parallel.segment);
  const version = decodeSegmentHeader(parallelBytes).version;
  const refs = collectRecords(input.batches);
  const segment = writeConservative(input.epoch, version, refs);
  const differences: string[] = [];
  for (const ref of refs) {
    if (ref.epoch !== input.epoch) {
      differences.push(`a batch of epoch ${input.epoch} holds a record of epoch ${ref.epoch}`);
      break;
    }
  }
  let compared = parallelBytes;
  if (input.partial === true) {
    // The parallel records of the staged commits, in the parallel order.
    const staged = new Set(refs.map((r) => `${r.txnId}:${r.beginSeq}`));
    const parallelRefs = collectRecords([
      { laneId: 0, commitSeq: 0n, records: parallelBytes.subarray(SEGMENT_HEADER_BYTES) },
    ]).filter((r) => staged.has(`${r.txnId}:${r.beginSeq}`));
    compared = writeConservative(input.epoch, version, parallelRefs, false);
  }
  const at = firstDifference(compared, segment);
  if (at !== -1) {
    differences.push(
      `segment bytes differ at offset ${at} (parallel ${compared.length} bytes, conservative ${segment.length})`,
    );
  }
  const parallelCert = input.parallel.certificate;
  const certificate = buildCommitCertificate({
    segment,
    laneCount: 1,
    laneRecordCounts: [refs.length],
    dbSizePages: epochDbSizePages(input.batches, input.predecessor),
    fallbackActive: parallelCert?.fallbackActive ?? false,
    predecessor: input.predecessor,
  });
  if (parallelCert !== null && input.partial !== true) {
    compareCertificates(parallelCert, certificate, differences);
  }
  const verdict = differences.length === 0 ? 'clean' : 'diverged';
  if (verdict === 'diverged') input.fallback?.enter('publicationMismatch');
  return {
    verdict,
    mayAcknowledge: verdict === 'clean',
    differences,
    conservative: { segment, certificate },
  };
}

/**
 * Throws {@link ShadowDivergenceError} unless the outcome allows acknowledging
 * the epoch. The engine calls this (or checks `mayAcknowledge`) before
 * releasing the epoch's waiters.
 */
export function assertMayAcknowledge(epoch: bigint, outcome: ShadowOutcome): void {
  if (!outcome.mayAcknowledge) throw new ShadowDivergenceError(epoch, outcome.differences);
}
