/**
 * The controller's lane-budget decisions take effect on the engine: writers
 * are spread over only the lanes the budget allows, and a lane holds only
 * the bytes the budget allows before appends overflow.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ControlPlane } from '../../src/control/plane.js';
import { ParallelWal } from '../../src/engine/wal.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDb(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-budget-'));
  dirs.push(dir);
  return path.join(dir, 'db');
}

async function writerLanes(wal: ParallelWal, count: number): Promise<number[]> {
  const writers = Array.from({ length: count }, () => wal.openWriter());
  const lanes = writers.map((w) => w.laneId);
  for (const w of writers) await w.close();
  return lanes;
}

describe('lane budget', () => {
  it('spreads new writers over only the lanes of the budget (helperLaneBudget 0: one lane)', async () => {
    const plane = new ControlPlane({
      control: { mode: 'auto', laneCountOverride: 4, helperLaneBudget: 0 },
      env: {},
      trace: null,
    });
    expect(plane.laneBudget()).toBe(1);
    const wal = await ParallelWal.open(tempDb(), { controlPlane: plane, slotCount: 4 });
    try {
      expect(await writerLanes(wal, 4)).toEqual([0, 0, 0, 0]);
      expect(wal.threadSlot()).toBe(0);
    } finally {
      await wal.close();
    }
  });

  it('follows the controller: after a decreaseLaneBudget decision new writers get only the lanes of the budget', async () => {
    const plane = new ControlPlane({
      control: { mode: 'auto', laneCountOverride: 4 },
      env: {},
      trace: null,
    });
    const wal = await ParallelWal.open(tempDb(), { controlPlane: plane, slotCount: 4 });
    try {
      expect(new Set(await writerLanes(wal, 4))).toEqual(new Set([0, 1, 2, 3]));
      // Seal points where only lane 0 carried commits and nothing waits: once
      // lanes 1-3 sat idle for a whole averaging window (100 ms), the
      // controller's least-loss action is to drop an idle lane.
      let now = performance.now();
      for (let i = 0; i < 20 && plane.laneBudget() === 4; i++) {
        plane.route(64, 0);
        now += 10;
        plane.onSealPoint({
          nowMs: now,
          pendingCommits: 0,
          epochBytes: 0,
          oldestPendingAgeMs: 0,
          syncInFlightSinceMs: null,
          backlogFrames: 0,
        });
      }
      const decreases = plane.stats().decisions.byAction.decreaseLaneBudget ?? 0;
      expect(decreases).toBeGreaterThan(0);
      const budget = plane.laneBudget();
      expect(budget).toBeLessThan(4);
      const lanes = await writerLanes(wal, 4);
      expect(Math.max(...lanes)).toBeLessThan(budget);
    } finally {
      await wal.close();
    }
  });

  it('follows the controller: after an increaseLaneBudget (bytes) decision a lane holds twice the bytes before appends overflow', async () => {
    const KiB = 1024;
    const plane = new ControlPlane({
      control: { mode: 'auto', laneCountOverride: 1 },
      env: {},
      trace: null,
      // No time-based guard may decide instead of the budget rule, however slow the machine.
      controller: {
        laneByteBudgetStartBytes: 64 * KiB,
        maxFlushDelayMs: 600_000,
        staleEvidenceMs: 600_000,
      },
    });
    expect(plane.laneByteBudget()).toBe(64 * KiB);
    const wal = await ParallelWal.open(tempDb(), {
      controlPlane: plane,
      slotCount: 1,
      bufferCapacityBytes: 1024 * KiB,
      autoFlush: false,
    });
    const page = new Uint8Array(4096).fill(7);
    let id = 0;
    /** One epoch of 24 single-page commits on lane 0 (≈ 100 KiB), sealed by the flusher's own seal. */
    const epoch = async (): Promise<number> => {
      const before = wal.stats().overflowAppends;
      for (let i = 0; i < 24; i++) {
        id++;
        wal.submitBatch({
          txnToken: { id: BigInt(id), epoch: 0 },
          frames: [{ pageNumber: id, pageData: page, dbSizeIfCommit: 0 }],
        });
      }
      await wal.advanceAndFlush(60_000);
      return wal.stats().overflowAppends - before;
    };
    try {
      // 64 KiB: the epoch overflows its lane; at the seal the controller doubles the budget.
      expect(await epoch()).toBeGreaterThan(0);
      expect(plane.laneByteBudget()).toBe(128 * KiB);
      const change = plane.controller!.budgetChanges().at(-1)!;
      expect(change).toMatchObject({
        dimension: 'bytes',
        bytesBefore: 64 * KiB,
        bytesAfter: 128 * KiB,
      });
      expect(change.record.action).toBe('increaseLaneBudget');
      expect(change.epoch).not.toBeNull();
      // 128 KiB: the same epoch fits the lane, nothing overflows.
      expect(await epoch()).toBe(0);
      expect(plane.stats().laneByteBudget).toBe(128 * KiB);
    } finally {
      await wal.close();
    }
  });
});
