/**
 * Every fallback reason fires at its own trigger, as the root reason (the
 * first and only one latched), and is visible in the control plane's stats,
 * in the trace and in `pwal trace`'s summary. Each moves the log to the
 * conservative path without failing it, except recovery_gap: a missing
 * middle segment means acknowledged commits are gone, so the open fails
 * closed (integrity), with the reason latched and traced all the same.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ControlPlane, type ControlPlaneOptions } from '../../src/control/plane.js';
import {
  FALLBACK_REASONS,
  type FallbackReason,
  fallbackReasonName,
} from '../../src/control/surface.js';
import { type MemoryTraceSink, memoryTraceSink, summarizeTrace } from '../../src/control/trace.js';
import type { EngineControl } from '../../src/engine/control-hooks.js';
import { ParallelWal, type ParallelWalBatch } from '../../src/engine/wal.js';
import { isWalError } from '../../src/errors.js';
import { nodeFileSystem } from '../../src/storage/fs.js';
import { listSegments } from '../../src/storage/segment-files.js';
import { PageStore, storeLogForTests } from '../../src/store/page-store.js';
import { FaultyFileSystem } from '../support/faulty-fs.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

const PAGE = 512;

function tempDb(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-reasons-'));
  dirs.push(dir);
  return path.join(dir, 'db');
}

function tracedPlane(options: ControlPlaneOptions = {}): {
  plane: ControlPlane;
  sink: MemoryTraceSink;
} {
  const sink = memoryTraceSink();
  const plane = new ControlPlane({
    control: { mode: 'auto' },
    env: {},
    controller: false,
    trace: sink,
    ...options,
  });
  return { plane, sink };
}

function batch(txnId: number, bytes = 64): ParallelWalBatch {
  return {
    txnToken: { id: BigInt(txnId), epoch: 0 },
    frames: [{ pageNumber: 1, pageData: new Uint8Array(bytes).fill(txnId), dbSizeIfCommit: 1 }],
  };
}

/** `reason` is the root (first, only) reason: in stats, the trace and `pwal trace`'s summary. */
function expectRootReason(
  plane: ControlPlane,
  sink: MemoryTraceSink,
  reason: FallbackReason,
): void {
  const stats = plane.stats();
  const name = fallbackReasonName(reason);
  expect(stats.fallbackActive).toBe(true);
  expect(stats.fallbackReason).toBe(name);
  for (const other of FALLBACK_REASONS) {
    const count = stats.fallbackCounts[fallbackReasonName(other)];
    if (other === reason) expect(count, other).toBeGreaterThan(0);
    else expect(count, other).toBe(0);
  }
  const transitions = sink.events.filter(
    (e) => e.kind === 'trace' && e.component === 'fallback' && e.event !== 'reported',
  );
  expect(transitions[0]).toMatchObject({ event: 'enter', fallbackReason: reason });
  const summary = summarizeTrace(sink.lines().join('\n'));
  expect(summary.byFallbackReason[name] ?? 0).toBeGreaterThan(0);
}

/** Three certified epochs written through a page store (left unfolded). */
async function certifiedEpochs(db: string, fill: number): Promise<void> {
  const plane = new ControlPlane({
    control: { mode: 'auto' },
    env: {},
    trace: null,
    controller: false,
    certificates: true,
  });
  const store = await PageStore.open(db, {
    pageSize: PAGE,
    autoCheckpoint: false,
    controlPlane: plane,
    slotCount: 1,
  });
  for (let i = 1; i <= 3; i++) {
    await store.commit([{ pageNumber: i, data: new Uint8Array(PAGE).fill(fill + i) }]);
    await store.log.advanceAndFlush(5000);
  }
  await store.close();
  plane.close();
}

async function openFallingBack(db: string) {
  const traced = tracedPlane({ certificates: true, onChainFailure: 'fallback' });
  const wal = await ParallelWal.open(db, { controlPlane: traced.plane, slotCount: 1 });
  return { ...traced, wal };
}

function diverging(plane: ControlPlane): EngineControl {
  return new Proxy(plane, {
    get(target, prop) {
      if (prop === 'prepareEpoch') {
        return (input: Parameters<ControlPlane['prepareEpoch']>[0]) => {
          const chunks = input.chunks.map((c) => c.slice());
          if (chunks[0] !== undefined) chunks[0][chunks[0].length - 1]! ^= 0xff;
          return target.prepareEpoch({ ...input, chunks });
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  }) as unknown as EngineControl;
}

describe('each fallback reason at its own trigger', () => {
  it('operator_forced: the operator asks for conservative mode', async () => {
    const { plane, sink } = tracedPlane({ control: { mode: 'conservative' } });
    const wal = await ParallelWal.open(tempDb(), { controlPlane: plane, slotCount: 1 });
    expect((await wal.commit(batch(1))).serialized).toBe(true);
    await wal.close();
    expectRootReason(plane, sink, 'operatorForced');
  });

  it('lane_overflow: a batch larger than maxParallelCommitBytes', async () => {
    const { plane, sink } = tracedPlane({
      control: { mode: 'auto', maxParallelCommitBytes: 256 },
    });
    const wal = await ParallelWal.open(tempDb(), { controlPlane: plane, slotCount: 1 });
    expect((await wal.commit(batch(1, 1024))).serialized).toBe(true);
    expect((await wal.commit(batch(2, 16))).serialized).toBe(true);
    expect(wal.isFailed).toBe(false);
    await wal.close();
    expectRootReason(plane, sink, 'laneOverflow');
  });

  it('certificate_gap: a segment from another chain in the middle, opened with onChainFailure fallback', async () => {
    const db = tempDb();
    const other = tempDb();
    await certifiedEpochs(db, 0x10);
    await certifiedEpochs(other, 0x40);
    const mine = await listSegments(db);
    const theirs = await listSegments(other);
    expect(theirs[1]!.epoch).toBe(mine[1]!.epoch);
    fs.copyFileSync(theirs[1]!.path, mine[1]!.path);
    const { plane, sink, wal } = await openFallingBack(db);
    expect((await wal.commit(batch(9))).serialized).toBe(true);
    await wal.close();
    expectRootReason(plane, sink, 'certificateGap');
  });

  it('certificate_checksum_mismatch: altered certificate bytes, opened with onChainFailure fallback', async () => {
    const db = tempDb();
    await certifiedEpochs(db, 0x10);
    const middle = (await listSegments(db))[1]!.path;
    const bytes = fs.readFileSync(middle);
    const trailer = bytes.lastIndexOf(Buffer.from([0x50, 0x57, 0x43, 0x54]));
    bytes[trailer + 8 + 12]! ^= 0x01;
    fs.writeFileSync(middle, bytes);
    const { plane, sink, wal } = await openFallingBack(db);
    expect((await wal.commit(batch(9))).serialized).toBe(true);
    await wal.close();
    expectRootReason(plane, sink, 'certificateChecksumMismatch');
  });

  it('publication_mismatch: the parallel bytes of an epoch differ from the conservative result', async () => {
    const { plane, sink } = tracedPlane({ control: { mode: 'shadowCompare' } });
    const wal = await ParallelWal.open(tempDb(), { controlPlane: diverging(plane), slotCount: 1 });
    const first = await wal.commit(batch(1));
    expect(first.serialized).toBe(false);
    expect(wal.isFailed).toBe(false);
    expect((await wal.commit(batch(2))).serialized).toBe(true);
    await wal.close();
    expect(plane.stats().shadow.substituted).toBeGreaterThan(0);
    expectRootReason(plane, sink, 'publicationMismatch');
  });

  it('recovery_gap: a missing middle segment fails the open closed even with onChainFailure fallback (integrity)', async () => {
    const db = tempDb();
    await certifiedEpochs(db, 0x10);
    fs.rmSync((await listSegments(db))[1]!.path);
    const { plane, sink } = tracedPlane({ certificates: true, onChainFailure: 'fallback' });
    const error = await ParallelWal.open(db, { controlPlane: plane, slotCount: 1 }).then(
      async (wal) => {
        await wal.close();
        return null;
      },
      (e: unknown) => e,
    );
    expect(isWalError(error, 'ERR_RECOVERY_GAP'), String(error)).toBe(true);
    expectRootReason(plane, sink, 'recoveryGap');
  });

  it('checkpoint_conflict: a checkpoint cannot fold from its page index (a read-back failed) and folds from the log', async () => {
    const db = tempDb();
    const faulty = new FaultyFileSystem(nodeFileSystem);
    const { plane, sink } = tracedPlane();
    const store = await PageStore.open(db, {
      fs: faulty,
      pageSize: PAGE,
      autoCheckpoint: false,
      controlPlane: plane,
      slotCount: 1,
    });
    await store.commit([{ pageNumber: 1, data: new Uint8Array(PAGE).fill(1) }]);
    // A commit that bypassed commit() (a worker's fallback): read back on
    // publication, and that read fails once.
    faulty.inject({ kind: ['open', 'readFile'], path: /-wal-seg-/, times: 1 });
    await storeLogForTests(store).commitSerialized({
      txnToken: { id: 1n << 50n, epoch: 0 },
      frames: [{ pageNumber: 2, pageData: new Uint8Array(PAGE).fill(2), dbSizeIfCommit: 2 }],
    });
    await store.log.waitForEpochDurable(store.log.acknowledgedEpoch()!, 5000);
    expect(faulty.fired.length).toBeGreaterThan(0);
    const result = await store.checkpoint();
    expect(result.source).toBe('log');
    expect(store.stats().checkpointConflicts).toBe(1);
    await store.close();
    expectRootReason(plane, sink, 'checkpointConflict');
    const reopened = await PageStore.open(db, { pageSize: PAGE });
    expect((await reopened.read(2))[0]).toBe(2);
    await reopened.close();
  });

  it('controller_evidence_lost: work waits on an fsync for longer than the evidence stays fresh', () => {
    let now = 1000;
    const { plane, sink } = tracedPlane({ controller: true, now: () => now });
    const state = { epochBytes: 4096, backlogFrames: 0, syncInFlightSinceMs: null };
    plane.onSealPoint({ ...state, nowMs: now, pendingCommits: 1, oldestPendingAgeMs: 0.1 });
    now += 10_000;
    const stale = plane.onSealPoint({
      ...state,
      nowMs: now,
      pendingCommits: 1,
      oldestPendingAgeMs: 0,
      syncInFlightSinceMs: now - 5_000,
    });
    expect(stale?.action).toBe('forceConservative');
    expectRootReason(plane, sink, 'controllerEvidenceLost');
  });
});
