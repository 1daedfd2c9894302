import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { type BatchContext, type LaneBatch, LaneStager } from '../../src/control/lane-stager.js';
import { laneCountMax } from '../../src/control/surface.js';

function sampleLaneBatch(
  batchId: bigint,
  laneId: number,
  stagedFrameCount: number,
  payload: number,
): LaneBatch<number> {
  return {
    batchId,
    laneId,
    stagedFrameCount,
    stagingElapsedNs: BigInt(stagedFrameCount) * 10n,
    shadowVerdict: 'notRun',
    payload,
  };
}

function sampleLaneContext(batchId: bigint, laneId: number): BatchContext {
  return { batchId, laneId };
}

function autoStager(lanes: number): LaneStager<number> {
  return new LaneStager<number>({ mode: 'auto', laneCountOverride: lanes });
}

/** The thread id a fresh worker thread reports (each worker is a new writer context). */
function workerThreadId(): Promise<number> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(
      "const { parentPort, threadId } = require('node:worker_threads'); parentPort.postMessage(threadId);",
      { eval: true },
    );
    worker.once('message', (id: number) => {
      void worker.terminate().then(() => resolve(id), reject);
    });
    worker.once('error', reject);
  });
}

describe('LaneStager', () => {
  it('laneStagerIdentityIsStableWithinThread', () => {
    const stager = autoStager(4);
    const first = stager.currentLaneId();
    const second = stager.currentLaneId();
    expect(first).toBe(second);
    expect(first).toBeLessThan(4);
  });

  it('laneStagerReusesLanesAfterWorkerChurn', async () => {
    const stager = autoStager(2);
    const spawnWave = async (): Promise<number[]> => {
      const writers = await Promise.all([workerThreadId(), workerThreadId()]);
      const observed = writers.map((writer) => stager.currentLaneId(writer)).sort((a, b) => a - b);
      // The workers exit: their lanes are given back explicitly.
      for (const writer of writers) expect(stager.releaseLane(writer)).toBe(true);
      return observed;
    };
    expect(await spawnWave()).toEqual([0, 1]);
    expect(await spawnWave()).toEqual([0, 1]);
    expect(stager.activeWriters()).toBe(0);
  });

  it('laneStagerConservativeModeCollapsesToSingleLane', () => {
    const stager = new LaneStager<number>({ mode: 'conservative', laneCountOverride: 8 });
    expect(stager.laneCount()).toBe(1);
    const observed = [{}, {}].map((writer) => stager.currentLaneId(writer));
    expect(observed).toEqual([0, 0]);
  });

  it('laneStagerClampsLaneCountToLaneIdRange', () => {
    const stager = autoStager(laneCountMax + 1);
    expect(stager.laneCount()).toBe(laneCountMax);
    // The shared maximum (the engine's slotCount limit) is inside the u16 lane-id range.
    expect(stager.laneCount()).toBeLessThanOrEqual(0xffff);
    expect(stager.currentLaneId()).toBeLessThan(stager.laneCount());
  });

  it('laneStagerSameLaneOrderMismatchReturnsNoneWithoutDrain', () => {
    const stager = autoStager(2);
    expect(stager.recordBatch(sampleLaneBatch(10n, 0, 1, 10))).toBe(1);
    expect(stager.recordBatch(sampleLaneBatch(11n, 0, 1, 11))).toBe(2);
    const outOfOrder = [sampleLaneContext(11n, 0), sampleLaneContext(10n, 0)];
    expect(stager.takeBatchesForFlush(outOfOrder)).toBeNull();
    expect(stager.currentLaneBacklog(0)).toBe(2);
    const inOrder = [sampleLaneContext(10n, 0), sampleLaneContext(11n, 0)];
    const drained = stager.takeBatchesForFlush(inOrder);
    expect(drained).not.toBeNull();
    expect(drained!.size).toBe(2);
    expect(drained!.get(10n)?.payload).toBe(10);
    expect(drained!.get(11n)?.payload).toBe(11);
    expect(stager.currentLaneBacklog(0)).toBe(0);
  });

  it('laneStagerDiscardBatchesForFlushRemovesStalePayloads', () => {
    const stager = autoStager(2);
    expect(stager.recordBatch(sampleLaneBatch(10n, 0, 2, 10))).toBe(2);
    expect(stager.recordBatch(sampleLaneBatch(11n, 0, 3, 11))).toBe(5);
    expect(stager.recordBatch(sampleLaneBatch(12n, 0, 5, 12))).toBe(10);
    expect(stager.discardBatchesForFlush([sampleLaneContext(11n, 0)])).toBe(1);
    // Discarding a stale middle batch subtracts its frames without disturbing retained payloads.
    expect(stager.currentLaneBacklog(0)).toBe(7);
    const drained = stager.takeBatchesForFlush([
      sampleLaneContext(10n, 0),
      sampleLaneContext(12n, 0),
    ]);
    expect(drained).not.toBeNull();
    expect(drained!.size).toBe(2);
    expect(drained!.get(10n)?.payload).toBe(10);
    expect(drained!.get(12n)?.payload).toBe(12);
    expect(stager.currentLaneBacklog(0)).toBe(0);
  });

  it('laneStagerDiscardBatchesForFlushIsIdempotent', () => {
    const stager = autoStager(2);
    expect(stager.recordBatch(sampleLaneBatch(20n, 1, 4, 20))).toBe(4);
    const context = [sampleLaneContext(20n, 1)];
    expect(stager.discardBatchesForFlush(context)).toBe(1);
    expect(stager.currentLaneBacklog(1)).toBe(0);
    // Discarding an already-flushed raw fallback batch is a no-op.
    expect(stager.discardBatchesForFlush(context)).toBe(0);
    expect(stager.currentLaneBacklog(1)).toBe(0);
  });

  it('laneStagerDiscardBatchesForFlushIgnoresUnknownIds', () => {
    const stager = autoStager(2);
    expect(stager.recordBatch(sampleLaneBatch(30n, 0, 2, 30))).toBe(2);
    expect(stager.discardBatchesForFlush([sampleLaneContext(99n, 0)])).toBe(0);
    expect(stager.currentLaneBacklog(0)).toBe(2);
    const drained = stager.takeBatchesForFlush([sampleLaneContext(30n, 0)]);
    expect(drained?.get(30n)?.payload).toBe(30);
    expect(stager.currentLaneBacklog(0)).toBe(0);
  });

  it('drains interleaved lanes when each lane is a queue prefix', () => {
    const stager = autoStager(3);
    stager.recordBatch(sampleLaneBatch(1n, 0, 1, 1));
    stager.recordBatch(sampleLaneBatch(2n, 1, 2, 2));
    stager.recordBatch(sampleLaneBatch(3n, 0, 3, 3));
    stager.recordBatch(sampleLaneBatch(4n, 2, 4, 4));
    const drained = stager.takeBatchesForFlush([
      sampleLaneContext(2n, 1),
      sampleLaneContext(1n, 0),
      sampleLaneContext(3n, 0),
    ]);
    expect([...drained!.keys()].sort()).toEqual([1n, 2n, 3n]);
    expect(stager.currentLaneBacklog(0)).toBe(0);
    expect(stager.currentLaneBacklog(1)).toBe(0);
    expect(stager.currentLaneBacklog(2)).toBe(4);
    expect(stager.totalBacklog()).toBe(4);
  });

  it('changes nothing when a later lane fails verification after an earlier lane matched', () => {
    const stager = autoStager(2);
    stager.recordBatch(sampleLaneBatch(1n, 0, 1, 1));
    stager.recordBatch(sampleLaneBatch(2n, 1, 1, 2));
    expect(
      stager.takeBatchesForFlush([sampleLaneContext(1n, 0), sampleLaneContext(9n, 1)]),
    ).toBeNull();
    expect(stager.queuedBatches(0).map((b) => b.batchId)).toEqual([1n]);
    expect(stager.queuedBatches(1).map((b) => b.batchId)).toEqual([2n]);
    // A context naming a batch of another lane does not match either.
    expect(stager.takeBatchesForFlush([sampleLaneContext(2n, 0)])).toBeNull();
    expect(stager.totalBacklog()).toBe(2);
  });

  it('hands out increasing batch ids starting at 1', () => {
    const stager = autoStager(2);
    expect([stager.nextBatchId(), stager.nextBatchId(), stager.nextBatchId()]).toEqual([
      1n,
      2n,
      3n,
    ]);
  });

  it('gives new writers the lowest free lane and shares the least-held lane when full', () => {
    const stager = autoStager(2);
    const [a, b, c, d] = [{}, {}, {}, {}];
    expect(stager.currentLaneId(a)).toBe(0);
    expect(stager.currentLaneId(b)).toBe(1);
    expect(stager.currentLaneId(c)).toBe(0);
    expect(stager.currentLaneId(d)).toBe(1);
    stager.releaseLane(b);
    stager.releaseLane(d);
    expect(stager.currentLaneId({})).toBe(1);
    expect(stager.releaseLane({})).toBe(false);
  });

  it('rejects a batch for a lane that does not exist', () => {
    const stager = autoStager(2);
    expect(() => stager.recordBatch(sampleLaneBatch(1n, 2, 1, 1))).toThrow(/lane id 2/);
    expect(() => stager.recordBatch(sampleLaneBatch(1n, 0, -1, 1))).toThrow(/frame count/);
    expect(stager.totalBacklog()).toBe(0);
  });
});
