import { describe, expect, it } from 'vitest';
import type { CertificateLink } from '../../src/control/certificate.js';
import { buildCommitCertificate } from '../../src/control/certify.js';
import { ShadowDivergenceError } from '../../src/control/errors.js';
import { FallbackState } from '../../src/control/fallback.js';
import { encodeV3SegmentHeader } from '../../src/control/segment-v3.js';
import {
  assertMayAcknowledge,
  conservativeSegment,
  epochDbSizePages,
  type ShadowBatch,
  shadowCompare,
} from '../../src/control/shadow.js';
import { decodeSegment } from '../../src/format/segment.js';
import type { WalRecord } from '../../src/format/types.js';
import { record, v3Segment, wireRecords } from './helpers.js';

const EPOCH = 5n;
const predecessor: CertificateLink = {
  epoch: 4n,
  certificateCrc32c: 0xabc,
  commitSeqHi: 10n,
  dbSizePages: 30,
};

/** Three commits on two lanes; lane 1's commit 11 arrives after lane 0's 12 (interleaving). */
function batches(): { batches: ShadowBatch[]; records: WalRecord[] } {
  const c11 = [record(EPOCH, 11n, 7), record(EPOCH, 11n, 3)];
  const c12 = [record(EPOCH, 12n, 1)];
  const c13 = [record(EPOCH, 13n, 7, 99)];
  return {
    batches: [
      { laneId: 0, commitSeq: 12n, records: wireRecords(c12), dbSizePages: 40 },
      { laneId: 1, commitSeq: 11n, records: wireRecords(c11) },
      { laneId: 0, commitSeq: 13n, records: [wireRecords(c13)], dbSizePages: 0 },
    ],
    records: [...c11, ...c12, ...c13],
  };
}

/** What a correct parallel path produces: canonical segment, certificate with lane counts. */
function parallelResult(records: WalRecord[], dbSizePages = 40) {
  const segment = v3Segment(EPOCH, records);
  const certificate = buildCommitCertificate({
    segment,
    laneCount: 2,
    laneRecordCounts: [2, 2],
    dbSizePages,
    fallbackActive: false,
    predecessor,
  });
  return { segment, certificate };
}

describe('shadowCompare', () => {
  it('finds a correct parallel epoch clean and lets it be acknowledged', () => {
    const { batches: input, records } = batches();
    const fallback = new FallbackState();
    const outcome = shadowCompare({
      epoch: EPOCH,
      batches: input,
      parallel: parallelResult(records),
      predecessor,
      fallback,
    });
    expect(outcome.differences).toEqual([]);
    expect(outcome.verdict).toBe('clean');
    expect(outcome.mayAcknowledge).toBe(true);
    expect(fallback.active).toBe(false);
    expect(() => assertMayAcknowledge(EPOCH, outcome)).not.toThrow();
    expect(outcome.conservative.certificate.laneRecordCounts).toEqual([4]);
  });

  it('builds the conservative segment in recovery order without aborted records', () => {
    const { batches: input } = batches();
    const aborted = { ...record(EPOCH, 14n, 2), endSeq: null };
    input.push({ laneId: 1, commitSeq: 14n, records: wireRecords([aborted]) });
    const decoded = decodeSegment(
      // relabel to version 2 so the v2 reader accepts it
      conservativeSegment(EPOCH, 2, input),
    );
    expect(decoded.records.map((r) => [r.beginSeq, r.pageId])).toEqual([
      [11n, 3],
      [11n, 7],
      [12n, 1],
      [13n, 7],
    ]);
  });

  it('carries the database size of the last commit that set one', () => {
    const { batches: input } = batches();
    expect(epochDbSizePages(input, predecessor)).toBe(40);
    expect(epochDbSizePages([], predecessor)).toBe(30);
    expect(epochDbSizePages([], null)).toBe(0);
  });

  it('catches a dropped record, latches publication_mismatch and forbids the ack', () => {
    const { batches: input, records } = batches();
    const fallback = new FallbackState();
    const injected = records.filter((r) => !(r.beginSeq === 12n));
    const outcome = shadowCompare({
      epoch: EPOCH,
      batches: input,
      parallel: {
        segment: v3Segment(EPOCH, injected),
        certificate: buildCommitCertificate({
          segment: v3Segment(EPOCH, injected),
          laneCount: 2,
          laneRecordCounts: [1, 2],
          dbSizePages: 40,
          fallbackActive: false,
          predecessor,
        }),
      },
      predecessor,
      fallback,
    });
    expect(outcome.verdict).toBe('diverged');
    expect(outcome.mayAcknowledge).toBe(false);
    expect(fallback.reason).toBe('publicationMismatch');
    expect(fallback.counts().publicationMismatch).toBe(1);
    expect(outcome.differences.join('\n')).toMatch(/segment bytes differ/);
    expect(outcome.differences.join('\n')).toMatch(/record count: parallel 3, conservative 4/);
    expect(() => assertMayAcknowledge(EPOCH, outcome)).toThrow(ShadowDivergenceError);
    try {
      assertMayAcknowledge(EPOCH, outcome);
    } catch (error) {
      expect((error as ShadowDivergenceError).code).toBe('ERR_SHADOW_DIVERGED');
    }
  });

  it('catches records concatenated in lane order instead of recovery order', () => {
    const { batches: input, records } = batches();
    // Same records, lane order (lane 0's commits first), not recovery order.
    const laneOrder = [records[2]!, records[3]!, records[0]!, records[1]!];
    const segment = Buffer.concat([encodeV3SegmentHeader(EPOCH, 4), wireRecords(laneOrder)]);
    expect(segment.length).toBe(v3Segment(EPOCH, records).length);
    const outcome = shadowCompare({
      epoch: EPOCH,
      batches: input,
      parallel: { segment, certificate: null },
      predecessor,
    });
    expect(outcome.verdict).toBe('diverged');
    expect(outcome.differences).toHaveLength(1);
    expect(outcome.differences[0]).toMatch(/segment bytes differ at offset 2\d/);
  });

  it('catches a certificate that disagrees while the bytes agree', () => {
    const { batches: input, records } = batches();
    const fallback = new FallbackState();
    const outcome = shadowCompare({
      epoch: EPOCH,
      batches: input,
      parallel: parallelResult(records, 41),
      predecessor,
      fallback,
    });
    expect(outcome.differences).toEqual(['certificate dbSizePages: parallel 41, conservative 40']);
    expect(outcome.mayAcknowledge).toBe(false);
    expect(fallback.active).toBe(true);
  });

  it('catches a record that straddled into the wrong epoch', () => {
    const { batches: input, records } = batches();
    input.push({ laneId: 1, commitSeq: 14n, records: wireRecords([record(EPOCH + 1n, 14n, 9)]) });
    const outcome = shadowCompare({
      epoch: EPOCH,
      batches: input,
      parallel: parallelResult(records),
      predecessor,
    });
    expect(outcome.verdict).toBe('diverged');
    expect(outcome.differences[0]).toBe('a batch of epoch 5 holds a record of epoch 6');
  });

  it('compares chunked parallel segments like whole ones', () => {
    const { batches: input, records } = batches();
    const { segment, certificate } = parallelResult(records);
    const outcome = shadowCompare({
      epoch: EPOCH,
      batches: input,
      parallel: { segment: [segment.subarray(0, 24), segment.subarray(24)], certificate },
      predecessor,
    });
    expect(outcome.verdict).toBe('clean');
  });
});
