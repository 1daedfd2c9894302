/**
 * `wal.stats()` merges the worker lanes' figures (fallbacks, contention,
 * lanes in use) into the engine's counters, and keeps them after the worker's
 * lane is released.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ParallelWal } from '../../src/engine/wal.js';
import type { WriterPlan, WriterReport } from '../fixtures/worker-writer.js';
import { until } from '../support/worker-writers.js';

const ENTRY = new URL('../fixtures/worker-entry.mjs', import.meta.url);

let dir = '';
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('wal.stats() with worker lanes', () => {
  it('has no worker figures before a worker handle is made', async () => {
    const wal = await ParallelWal.open(path.join(dir, 'db'), { slotCount: 1, fsync: 'off' });
    expect(wal.stats().workerLanes).toBeNull();
    await wal.close();
  });

  it('counts worker-lane fallbacks, contention and lanes in use, also after the lane is released', async () => {
    // A lane of 4 KiB refuses a 3-frame batch of 2 KiB pages: every commit falls back.
    const wal = await ParallelWal.open(path.join(dir, 'db'), {
      slotCount: 1,
      fsync: 'off',
      bufferCapacityBytes: 4096,
    });
    try {
      const handle = wal.workerHandle();
      const plan: WriterPlan = {
        mode: 'onDemand',
        handle,
      };
      const reports: WriterReport[] = [];
      const worker = new Worker(ENTRY, { workerData: plan, transferList: [handle.port] });
      worker.on('message', (r: WriterReport) => reports.push(r));
      const exited = new Promise<number>((resolve, reject) => {
        worker.on('exit', resolve);
        worker.on('error', reject);
      });
      const big: WriterPlan = {
        mode: 'commits',
        handle: wal.workerHandle(),
        count: 4,
        concurrency: 2,
        pageBytes: 2048,
        txnBase: 100,
        framesPerCommit: 3,
        close: true,
      };
      const bigReports: WriterReport[] = [];
      const bigWorker = new Worker(ENTRY, { workerData: big, transferList: [big.handle.port] });
      bigWorker.on('message', (r: WriterReport) => bigReports.push(r));
      const bigExited = new Promise<number>((resolve, reject) => {
        bigWorker.on('exit', resolve);
        bigWorker.on('error', reject);
      });
      // The big writer finishes (its lane goes back to the pool); the other still holds one.
      expect(await until(() => bigReports.some((r) => r.kind === 'done'))).toBe(true);
      expect(bigReports.filter((r) => r.kind === 'ack')).toHaveLength(4);
      await bigExited;
      worker.postMessage('commit');
      expect(await until(() => reports.some((r) => r.kind === 'ack'))).toBe(true);
      const during = wal.stats();
      expect(during.workerLanes).not.toBeNull();
      expect(during.workerLanes!.fallbacks).toBe(4);
      expect(during.fallbacks).toBe(4);
      expect(during.contention).toBeGreaterThanOrEqual(during.workerLanes!.contentionEvents);
      expect(during.workerLanes!.lanesInUse).toBeGreaterThanOrEqual(1);
      expect(during.lanesInUse).toBeGreaterThanOrEqual(during.workerLanes!.lanesInUse);
      worker.postMessage('close');
      expect(await until(() => reports.some((r) => r.kind === 'done'))).toBe(true);
      await exited;
      // Both lanes released: nothing in use, the counts stay.
      expect(await until(() => wal.stats().workerLanes?.lanesInUse === 0)).toBe(true);
      const after = wal.stats();
      expect(after.lanesInUse).toBe(0);
      expect(after.workerLanes!.lanesFree).toBe(2);
      expect(after.fallbacks).toBe(4);
      expect(after.workerLanes!.commits).toBe(1);
    } finally {
      await wal.close();
    }
  });
});
