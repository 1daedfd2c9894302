/**
 * A reference of the engine integration: the engine's own lanes and epoch
 * coordinator driven through the ControlPlane calls the engine's flush path
 * will make (route, stageBatch, onSealPoint, prepareEpoch, epochDurable),
 * writing real segment files and recovering them. Pins down that the calls
 * suffice, and that every mode — and the controller on or off — commits the
 * same pages.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ControlPlane } from '../../src/control/plane.js';
import { splitCertificateTrailer } from '../../src/control/segment-v3.js';
import type { OperatingMode } from '../../src/control/surface.js';
import { memoryTraceSink, summarizeTrace } from '../../src/control/trace.js';
import { EpochCoordinator } from '../../src/engine/epochs.js';
import { InProcessLane, type LaneRecordInput } from '../../src/engine/lane.js';
import { crc32c } from '../../src/format/crc32c.js';
import { decodeSegment } from '../../src/format/segment.js';
import { recoverAndApplySegments } from '../../src/storage/recovery.js';
import { listSegments, segmentPath, writeSegmentFile } from '../../src/storage/segment-files.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

const WRITERS = 3;
const COMMITS = 120;
const FIXED_EPOCH_COMMITS = 16;

interface RunOptions {
  mode: OperatingMode;
  certificates?: boolean;
  controller?: boolean;
  /** Flip one byte of the parallel records of this epoch (an injected lane bug). */
  corruptEpoch?: bigint;
}

/** Page images of commit `seq`: two pages, contents derived from the sequence. */
function frames(seq: number): { pageId: number; image: Uint8Array }[] {
  return [
    { pageId: 1 + (seq % 7), image: new Uint8Array(64).fill(seq & 0xff) },
    { pageId: 100 + (seq % 3), image: new Uint8Array(32).fill((seq * 7) & 0xff) },
  ];
}

async function run(options: RunOptions) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
  dirs.push(dir);
  const db = path.join(dir, 'db.sqlite');
  const sink = memoryTraceSink();
  let nowMs = 1000;
  const plane = new ControlPlane({
    control: { mode: options.mode, laneCountOverride: 3, shadowCompareSamplingPerMille: 1000 },
    env: {},
    certificates: options.certificates ?? false,
    controller: options.controller ?? true,
    trace: sink,
    now: () => nowMs,
  });
  const coordinator = new EpochCoordinator({ startEpoch: 1n });
  const currentEpoch = () => coordinator.currentEpoch;
  const lanes = Array.from(
    { length: plane.laneCount() },
    (_, laneId) => new InProcessLane({ laneId, startEpoch: 1n, currentEpoch }),
  );
  const serial = new InProcessLane({
    laneId: 0xffff,
    startEpoch: 1n,
    currentEpoch,
    overflowPolicy: 'blockWriter',
  });
  for (const lane of [...lanes, serial]) coordinator.addLane(lane);
  const writers = Array.from({ length: WRITERS }, () => ({}));
  let pending = 0;
  let pendingBytes = 0;
  let oldestAtMs = 0;
  const substituted: bigint[] = [];

  const sealAndFlush = async (): Promise<void> => {
    const { sealedEpoch: epoch } = coordinator.advanceNow();
    const segment = coordinator.flushEpoch(epoch);
    const chunks = segment.chunks.map((c) => c.slice());
    if (epoch === options.corruptEpoch && chunks[0] !== undefined) {
      chunks[0][chunks[0].length - 10]! ^= 0xff; // a flipped image byte in the parallel result
    }
    const prepared = plane.prepareEpoch({
      epoch,
      chunks,
      recordCount: segment.recordCount,
      laneIds: segment.laneIds,
      recordsPerCore: segment.recordsPerCore,
      dbSizePages: 0,
      externalChunks: [],
    });
    expect(prepared.acknowledge).toBe(true);
    if (prepared.substituted) substituted.push(epoch);
    if (prepared.chunks.length > 0) {
      if (plane.certificates) {
        fs.writeFileSync(segmentPath(db, epoch), Buffer.concat(prepared.chunks)); // v3: storage cannot take it yet
      } else {
        await writeSegmentFile(db, epoch, prepared.chunks, { fsync: 'off' });
      }
    }
    coordinator.completeFlush(epoch, segment.laneIds);
    coordinator.markEpochDurable(epoch);
    nowMs += 0.5;
    plane.epochDurable(prepared, 500);
    pending = 0;
    pendingBytes = 0;
  };

  for (let seq = 1; seq <= COMMITS; seq++) {
    nowMs += 0.05;
    const laneId = plane.stager.currentLaneId(writers[seq % WRITERS]!);
    const records: LaneRecordInput[] = frames(seq).map((f) => ({
      txnToken: { id: BigInt(seq), epoch: 0 },
      pageId: f.pageId,
      beginSeq: BigInt(seq),
      endSeq: BigInt(seq),
      beforeImage: new Uint8Array(0),
      afterImage: f.image,
    }));
    const bytes = records.reduce((n, r) => n + 64 + r.afterImage.length, 0);
    const lane = plane.route(bytes, laneId) === 'parallel' ? lanes[laneId]! : serial;
    let outcome = lane.append(records);
    let target = lane;
    if (outcome.kind === 'blocked') {
      plane.noteLaneRefused(lane.laneId);
      target = serial;
      outcome = serial.append(records);
    }
    if (outcome.kind !== 'appended') throw new Error('serialized path refused a batch');
    if (plane.stagingBatches) {
      plane.stageBatch({
        laneId: target.laneId,
        epoch: outcome.epoch,
        commitSeq: BigInt(seq),
        dbSizePages: 0,
        records,
      });
    }
    if (pending === 0) oldestAtMs = nowMs;
    pending++;
    pendingBytes += bytes;
    const decision = plane.onSealPoint({
      nowMs,
      pendingCommits: pending,
      epochBytes: pendingBytes,
      oldestPendingAgeMs: nowMs - oldestAtMs,
      syncInFlightSinceMs: null,
      backlogFrames: plane.stager.totalBacklog(),
    });
    const seal =
      decision === null
        ? pending >= FIXED_EPOCH_COMMITS
        : decision.action === 'sealEpochNow' || decision.action === 'forceConservative';
    if (seal) await sealAndFlush();
  }
  if (pending > 0) await sealAndFlush();
  plane.close();

  // "Reopen": recover the pages from disk.
  const pages = new Map<number, Uint8Array>();
  if (plane.certificates) {
    const chain = await new ControlPlane({ env: {}, certificates: true }).verifyChainOnDisk(db);
    expect(chain.failure).toBeNull();
    for (const file of await listSegments(db)) {
      const split = splitCertificateTrailer(new Uint8Array(fs.readFileSync(file.path)));
      const v2 = split.segment.slice();
      v2[4] = 2; // relabel to version 2 for the v2 decoder (records are identical)
      new DataView(v2.buffer).setUint32(20, crc32c(v2.subarray(0, 20)), true);
      for (const r of decodeSegment(v2).records) pages.set(r.pageId, r.afterImage.slice());
    }
  } else {
    await recoverAndApplySegments(db, pages);
  }
  return { pages, plane, trace: summarizeTrace(sink.lines().join('\n')), substituted };
}

function expectedPages(): Map<number, Uint8Array> {
  const pages = new Map<number, Uint8Array>();
  for (let seq = 1; seq <= COMMITS; seq++)
    for (const f of frames(seq)) pages.set(f.pageId, f.image);
  return pages;
}

describe('engine flush path through the control plane', () => {
  it('commits identical pages in auto, conservative and shadowCompare', async () => {
    const expected = expectedPages();
    for (const mode of ['auto', 'conservative', 'shadowCompare'] as const) {
      const { pages, plane } = await run({ mode });
      expect(pages, mode).toEqual(expected);
      const stats = plane.stats();
      if (mode === 'conservative') {
        expect(stats.fallbackReason).toBe('operator_forced');
        expect(stats.laneCount).toBe(1);
      } else {
        expect(stats.fallbackActive, mode).toBe(false);
      }
      if (mode === 'shadowCompare') {
        expect(stats.shadow.compared).toBeGreaterThan(0);
        expect(stats.shadow.diverged).toBe(0);
      }
    }
  });

  it('commits the same pages with the controller off (fixed seal rule)', async () => {
    const on = await run({ mode: 'auto', controller: true });
    const off = await run({ mode: 'auto', controller: false });
    expect(off.pages).toEqual(on.pages);
    expect(on.trace.decisionRecords).toBeGreaterThan(0);
    expect(off.trace.decisionRecords).toBe(0);
  });

  it('writes a verified certificate chain across epochs', async () => {
    const { pages, plane, trace } = await run({ mode: 'shadowCompare', certificates: true });
    expect(pages).toEqual(expectedPages());
    expect(plane.stats().certificates.issued).toBeGreaterThan(1);
    expect(trace.byComponent.flush).toBe(plane.stats().certificates.issued);
  });

  it('repairs an injected lane corruption from the conservative result and falls back', async () => {
    const { pages, plane, substituted, trace } = await run({
      mode: 'shadowCompare',
      certificates: true,
      controller: false,
      corruptEpoch: 3n,
    });
    expect(substituted).toEqual([3n]);
    expect(pages).toEqual(expectedPages());
    expect(plane.stats()).toMatchObject({
      fallbackActive: true,
      fallbackReason: 'publication_mismatch',
      shadow: { diverged: 1, substituted: 1 },
    });
    expect(trace.byFallbackReason.publication_mismatch).toBeGreaterThan(0);
  });
});
