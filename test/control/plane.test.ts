import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CertificateChainError } from '../../src/control/errors.js';
import { ControlPlane } from '../../src/control/plane.js';
import { splitCertificateTrailer, verifySegmentFilesChain } from '../../src/control/segment-v3.js';
import { memoryTraceSink } from '../../src/control/trace.js';
import type { StageRecordInput } from '../../src/engine/control-hooks.js';
import { decodeSegment } from '../../src/format/segment.js';
import type { WalRecord } from '../../src/format/types.js';
import { segmentPath } from '../../src/storage/segment-files.js';
import { record, wireRecords } from './helpers.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

const NO_ENV = {};

function stageInput(r: WalRecord): StageRecordInput {
  const { epoch: _epoch, ...rest } = r;
  return rest;
}

/** Commits of one epoch: `seqs` on alternating lanes, one page each. */
function epochCommits(epoch: bigint, seqs: bigint[]): WalRecord[] {
  return seqs.map((seq) => record(epoch, seq, Number(seq % 50n) + 1, Number(seq)));
}

/** Stages the commits as the engine would after placement; returns the canonical records. */
function stageAll(plane: ControlPlane, epoch: bigint, records: WalRecord[]): WalRecord[] {
  records.forEach((r, i) => {
    plane.stageBatch({
      laneId: i % 2,
      epoch,
      commitSeq: r.beginSeq,
      dbSizePages: 100 + Number(r.beginSeq),
      records: [stageInput(r)],
    });
  });
  return [...records].sort((a, b) => Number(a.beginSeq - b.beginSeq));
}

function prepare(
  plane: ControlPlane,
  epoch: bigint,
  canonical: WalRecord[],
  external?: Uint8Array[],
) {
  return plane.prepareEpoch({
    epoch,
    chunks: [wireRecords(canonical)],
    recordCount: canonical.length,
    laneIds: [0, 1],
    recordsPerCore: [Math.ceil(canonical.length / 2), Math.floor(canonical.length / 2)],
    dbSizePages: 100 + Number(canonical[canonical.length - 1]?.beginSeq ?? 0n),
    ...(external === undefined ? {} : { externalChunks: external }),
  });
}

function concat(chunks: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(chunks));
}

describe('ControlPlane', () => {
  it('runs conservative as the serialized path, latched as operator_forced', () => {
    const plane = new ControlPlane({
      control: { mode: 'conservative', laneCountOverride: 8 },
      env: NO_ENV,
    });
    expect(plane.laneCount()).toBe(1);
    expect(plane.route(10)).toBe('serialized');
    expect(plane.serializedPathRequired()).toBe(true);
    expect(plane.stats()).toMatchObject({
      mode: 'conservative',
      fallbackReason: 'operator_forced',
    });
    expect(plane.clearFallback(0)).toEqual({ cleared: false, blockedBy: 'operatorForced' });
    expect(plane.stagingBatches).toBe(false);
  });

  it('takes the mode from the environment when code leaves it out', () => {
    const plane = new ControlPlane({
      env: { FSQLITE_PARALLEL_WAL_MODE: 'auto', FSQLITE_PARALLEL_WAL_LANES: '3' },
    });
    expect(plane.surface.mode).toBe('auto');
    expect(plane.laneCount()).toBe(3);
    expect(plane.route(10)).toBe('parallel');
  });

  it('sends a batch over maxParallelCommitBytes to the serialized path as lane_overflow', () => {
    const plane = new ControlPlane({
      control: { mode: 'auto', maxParallelCommitBytes: 1000 },
      env: NO_ENV,
    });
    expect(plane.route(1000)).toBe('parallel');
    expect(plane.route(1001)).toBe('serialized');
    expect(plane.route(10)).toBe('serialized'); // latched until a clean-state transition
    expect(plane.stats().fallbackCounts.lane_overflow).toBe(1);
    expect(plane.clearFallback(1)).toEqual({ cleared: false, blockedBy: 'pendingEpochs' });
    expect(plane.clearFallback(0)).toEqual({ cleared: true, reason: 'laneOverflow' });
    expect(plane.route(10)).toBe('parallel');
  });

  it('latches lane_overflow when a lane refuses and checkpoint_conflict when the store reports it', () => {
    const plane = new ControlPlane({ control: { mode: 'auto' }, env: NO_ENV });
    plane.noteLaneRefused(1);
    plane.reportFallback('checkpointConflict', 'checkpoint during fallback');
    expect(plane.stats().fallbackCounts).toMatchObject({
      lane_overflow: 1,
      checkpoint_conflict: 1,
    });
    expect(plane.stats().fallbackReason).toBe('lane_overflow');
  });

  it('writes version-3 segments whose certificates chain from epoch to epoch', () => {
    const plane = new ControlPlane({ control: { mode: 'auto' }, env: NO_ENV, certificates: true });
    const files = [];
    for (const [epoch, seqs] of [
      [1n, [1n, 2n, 3n]],
      [2n, [4n]],
      [3n, [5n, 6n]],
    ] as const) {
      const prepared = prepare(plane, epoch, epochCommits(epoch, [...seqs]));
      const bytes = concat(prepared.chunks);
      const split = splitCertificateTrailer(bytes);
      expect(split.version).toBe(3);
      expect(split.certificate).toEqual(prepared.certificate);
      plane.epochDurable(prepared, 400);
      files.push({ epoch, bytes });
    }
    expect(plane.predecessor?.epoch).toBe(3n);
    expect(plane.stats().certificates.issued).toBe(3);
    expect(verifySegmentFilesChain(files).certifiedSegments).toBe(3);
    expect(plane.lastCertificate?.dbSizePages).toBe(106);
  });

  it('writes plain version-2 segments when certificates are off', () => {
    const plane = new ControlPlane({ control: { mode: 'auto' }, env: NO_ENV });
    const canonical = epochCommits(1n, [1n, 2n]);
    const prepared = prepare(plane, 1n, canonical);
    expect(prepared.certificate).toBeNull();
    expect(decodeSegment(concat(prepared.chunks)).records).toHaveLength(2);
    expect(prepare(plane, 2n, []).chunks).toEqual([]);
  });

  it('compares every epoch in shadowCompare mode and lets clean epochs through', () => {
    const sink = memoryTraceSink();
    const plane = new ControlPlane({
      control: { mode: 'shadowCompare', laneCountOverride: 2 },
      env: NO_ENV,
      certificates: true,
      trace: sink,
    });
    const canonical = stageAll(plane, 1n, epochCommits(1n, [3n, 1n, 2n]));
    const prepared = prepare(plane, 1n, canonical, []);
    expect(prepared.shadow?.verdict).toBe('clean');
    expect(prepared.substituted).toBe(false);
    expect(prepared.acknowledge).toBe(true);
    expect(plane.stager.totalBacklog()).toBe(0);
    plane.epochDurable(prepared, 300);
    expect(plane.stats().shadow).toEqual({ compared: 1, clean: 1, diverged: 0, substituted: 0 });
    expect(
      sink.events
        .filter((e) => e.kind === 'trace')
        .map((e) => (e as { component: string }).component),
    ).toEqual([...Array<string>(plane.stats().batchesStaged).fill('stager'), 'shadow', 'flush']);
  });

  it('replaces a diverged epoch by the conservative result and latches publication_mismatch', () => {
    const plane = new ControlPlane({
      control: { mode: 'shadowCompare' },
      env: NO_ENV,
      certificates: true,
    });
    const canonical = stageAll(plane, 1n, epochCommits(1n, [1n, 2n, 3n]));
    // Injected divergence: the parallel path lost commit 2.
    const prepared = prepare(
      plane,
      1n,
      canonical.filter((r) => r.beginSeq !== 2n),
      [],
    );
    expect(prepared.shadow?.verdict).toBe('diverged');
    expect(prepared.substituted).toBe(true);
    expect(prepared.acknowledge).toBe(true);
    const split = splitCertificateTrailer(concat(prepared.chunks));
    const written = decodeSegment(new Uint8Array(Buffer.concat([relabelV2(split.segment)])));
    expect(written.records.map((r) => r.beginSeq)).toEqual([1n, 2n, 3n]);
    expect(split.certificate?.laneRecordCounts).toEqual([3]);
    expect(plane.stats()).toMatchObject({
      fallbackActive: true,
      fallbackReason: 'publication_mismatch',
      shadow: { compared: 1, clean: 0, diverged: 1, substituted: 1 },
    });
    expect(plane.route(10)).toBe('serialized');
  });

  it('refuses to acknowledge a diverged epoch it cannot repair', () => {
    const plane = new ControlPlane({ control: { mode: 'shadowCompare' }, env: NO_ENV });
    const canonical = stageAll(plane, 1n, epochCommits(1n, [1n, 2n]));
    const prepared = prepare(plane, 1n, canonical.slice(1)); // no externalChunks: completeness unknown
    expect(prepared.shadow?.verdict).toBe('diverged');
    expect(prepared.acknowledge).toBe(false);
    expect(prepared.substituted).toBe(false);
    expect(plane.fallback.reason).toBe('publicationMismatch');
  });

  it('compares only the staged commits when other lanes are not declared', () => {
    const plane = new ControlPlane({ control: { mode: 'shadowCompare' }, env: NO_ENV });
    const inProcess = stageAll(plane, 1n, epochCommits(1n, [1n, 3n]));
    const worker = epochCommits(1n, [2n]);
    const canonical = [...inProcess, ...worker].sort((a, b) => Number(a.beginSeq - b.beginSeq));
    const clean = prepare(plane, 1n, canonical);
    expect(clean.shadow?.verdict).toBe('clean');
    expect(clean.acknowledge).toBe(true);
    const again = stageAll(plane, 2n, epochCommits(2n, [4n, 6n]));
    const mixed = [...again, ...epochCommits(2n, [5n])].sort((a, b) =>
      Number(a.beginSeq - b.beginSeq),
    );
    const flipped = mixed.map((r) =>
      r.beginSeq === 6n ? { ...r, afterImage: r.afterImage.map((b) => b ^ 1) } : r,
    );
    const diverged = prepare(plane, 2n, flipped);
    expect(diverged.shadow?.verdict).toBe('diverged');
    expect(diverged.acknowledge).toBe(false);
  });

  it('includes worker lanes through externalChunks', () => {
    const plane = new ControlPlane({ control: { mode: 'shadowCompare' }, env: NO_ENV });
    const inProcess = stageAll(plane, 1n, epochCommits(1n, [1n, 3n]));
    const worker = epochCommits(1n, [2n]);
    const canonical = [...inProcess, ...worker].sort((a, b) => Number(a.beginSeq - b.beginSeq));
    const prepared = prepare(plane, 1n, canonical, [wireRecords(worker)]);
    expect(prepared.shadow?.verdict).toBe('clean');
  });

  it('samples epochs in auto by batch id and discards the staging of the others', () => {
    const plane = new ControlPlane({
      control: { mode: 'auto', shadowCompareSamplingPerMille: 1 },
      env: NO_ENV,
    });
    expect(plane.stagingBatches).toBe(true);
    let seq = 1n;
    const verdicts: (string | null)[] = [];
    for (let epoch = 1n; epoch <= 30n; epoch++) {
      const seqs = Array.from({ length: 50 }, () => seq++);
      const canonical = stageAll(plane, epoch, epochCommits(epoch, seqs));
      verdicts.push(prepare(plane, epoch, canonical, []).shadow?.verdict ?? null);
    }
    // Batch ids 1 and 1001 are sampled: epochs 1 and 21.
    expect(verdicts.map((v, i) => (v === null ? null : i + 1)).filter((e) => e !== null)).toEqual([
      1, 21,
    ]);
    expect(plane.stager.totalBacklog()).toBe(0);
    expect(plane.stats().batchesStaged).toBe(1500);
  });

  it('asks the controller at seal points and latches controller_evidence_lost', () => {
    const sink = memoryTraceSink();
    let now = 1000;
    const plane = new ControlPlane({
      control: { mode: 'auto' },
      env: NO_ENV,
      trace: sink,
      now: () => now,
    });
    const state = { epochBytes: 4096, backlogFrames: 0, syncInFlightSinceMs: null };
    const first = plane.onSealPoint({
      ...state,
      nowMs: now,
      pendingCommits: 1,
      oldestPendingAgeMs: 0.1,
    });
    expect(first?.action).toBe('sealEpochNow');
    now += 10_000;
    const stale = plane.onSealPoint({
      ...state,
      nowMs: now,
      pendingCommits: 1,
      oldestPendingAgeMs: 0,
      syncInFlightSinceMs: now - 5_000,
    });
    expect(stale?.action).toBe('forceConservative');
    expect(plane.fallback.reason).toBe('controllerEvidenceLost');
    expect(plane.stats().decisions).toEqual({
      total: 2,
      byAction: { sealEpochNow: 1, forceConservative: 1 },
    });
    expect(sink.events.filter((e) => e.kind === 'decision')).toHaveLength(2);
  });

  it('leaves sealing to the engine when the controller is off', () => {
    const plane = new ControlPlane({ control: { mode: 'auto' }, env: NO_ENV, controller: false });
    expect(
      plane.onSealPoint({
        nowMs: 0,
        pendingCommits: 1,
        epochBytes: 1,
        oldestPendingAgeMs: 0,
        syncInFlightSinceMs: null,
        backlogFrames: 0,
      }),
    ).toBeNull();
  });

  it('uses maxFlushDelayMs as the controller bound', () => {
    const plane = new ControlPlane({ control: { mode: 'auto', maxFlushDelayMs: 2 }, env: NO_ENV });
    const decision = plane.onSealPoint({
      nowMs: 100,
      pendingCommits: 3,
      epochBytes: 100,
      oldestPendingAgeMs: 2,
      syncInFlightSinceMs: 99.9,
      backlogFrames: 0,
    });
    expect(decision?.guard).toBe('maxFlushDelay');
  });

  it('verifies the chain on disk, latching recovery_gap for a missing middle segment', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
    dirs.push(dir);
    const db = path.join(dir, 'db.sqlite');
    const writer = new ControlPlane({ control: { mode: 'auto' }, env: NO_ENV, certificates: true });
    for (const epoch of [1n, 2n, 3n]) {
      const prepared = prepare(writer, epoch, epochCommits(epoch, [epoch * 10n]));
      fs.writeFileSync(segmentPath(db, epoch), concat(prepared.chunks));
      writer.epochDurable(prepared, 100);
    }
    const reader = new ControlPlane({ control: { mode: 'auto' }, env: NO_ENV, certificates: true });
    const ok = await reader.verifyChainOnDisk(db);
    expect(ok).toMatchObject({
      segments: 3,
      certifiedSegments: 3,
      lastGoodEpoch: 3n,
      failure: null,
    });
    expect(reader.predecessor).toEqual(writer.predecessor);

    fs.rmSync(segmentPath(db, 2n));
    const broken = new ControlPlane({ control: { mode: 'auto' }, env: NO_ENV, certificates: true });
    await expect(broken.verifyChainOnDisk(db)).rejects.toBeInstanceOf(CertificateChainError);
    expect(broken.fallback.reason).toBe('recoveryGap');
    const skipping = new ControlPlane({
      control: { mode: 'auto' },
      env: NO_ENV,
      certificates: true,
    });
    const report = await skipping.verifyChainOnDisk(db, { skipCorrupt: true });
    expect(report.failure?.code).toBe('ERR_RECOVERY_GAP');
    expect(report.lastGoodEpoch).toBe(1n);
    expect(skipping.predecessor?.epoch).toBe(1n);
  });
});

/** A version-3 segment (header + records) relabelled as version 2 for the v2 decoder. */
function relabelV2(segment: Uint8Array): Uint8Array {
  const copy = segment.slice();
  copy[4] = 2;
  const view = new DataView(copy.buffer, copy.byteOffset);
  // Recompute the header CRC the same way the writer does.
  view.setUint32(20, crc(copy.subarray(0, 20)), true);
  return copy;
}

import { crc32c as crc } from '../../src/format/crc32c.js';
