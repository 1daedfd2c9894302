/**
 * Shadow compare with worker lanes in the epoch: a divergence falls back to
 * the conservative path (the conservative result, built from the staged
 * batches plus the worker lanes' sealed bytes, is written instead) rather
 * than failing the log.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ControlPlane } from '../../src/control/plane.js';
import type { EngineControl } from '../../src/engine/control-hooks.js';
import { ParallelWal } from '../../src/engine/wal.js';
import { attachWriter } from '../../src/engine/worker.js';
import { recoverSegments } from '../../src/storage/recovery.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

/** The plane, except that the parallel bytes it is asked to prepare arrive altered (copies). */
function divergingEveryEpoch(plane: ControlPlane): EngineControl {
  return new Proxy(plane, {
    get(target, prop) {
      if (prop === 'prepareEpoch') {
        return (input: Parameters<ControlPlane['prepareEpoch']>[0]) => {
          const chunks = input.chunks.map((c) => c.slice());
          const first = chunks[0];
          if (first !== undefined) first[first.length - 1]! ^= 0xff;
          return target.prepareEpoch({ ...input, chunks });
        };
      }
      const value = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  }) as unknown as EngineControl;
}

describe('shadow compare with worker lanes', () => {
  it('falls back with publication_mismatch and writes the conservative result instead of failing the log', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-shadow-'));
    dirs.push(dir);
    const db = path.join(dir, 'db');
    const plane = new ControlPlane({
      control: { mode: 'shadowCompare', laneCountOverride: 1 },
      env: {},
      trace: null,
      controller: false,
    });
    const wal = await ParallelWal.open(db, {
      controlPlane: divergingEveryEpoch(plane),
      slotCount: 1,
    });
    const writer = attachWriter(wal.workerHandle());
    const frame = (pageNumber: number, fill: number) => ({
      pageNumber,
      pageData: new Uint8Array(64).fill(fill),
      dbSizeIfCommit: 2,
    });
    try {
      // Same epoch: one batch from the worker lane, one staged in-process batch.
      const fromWorker = writer.commit({
        txnToken: { id: 1n, epoch: 0 },
        frames: [frame(1, 0x11)],
      });
      const inProcess = wal.commit({ txnToken: { id: 2n, epoch: 0 }, frames: [frame(2, 0x22)] });
      const [w, p] = await Promise.all([fromWorker, inProcess]);
      expect(w.epoch).toBe(p.epoch);
      expect(wal.isFailed).toBe(false);
      const control = plane.stats();
      expect(control.shadow.diverged).toBeGreaterThan(0);
      expect(control.shadow.substituted).toBe(control.shadow.diverged);
      expect(control.fallbackActive).toBe(true);
      expect(control.fallbackReason).toBe('publication_mismatch');
      // The log carries on (conservative path).
      const after = await wal.commit({ txnToken: { id: 3n, epoch: 0 }, frames: [frame(2, 0x33)] });
      expect(after.serialized).toBe(true);
    } finally {
      await writer.close();
      await wal.close();
      plane.close();
    }
    // What was written is the conservative result: both lanes' pages, intact.
    const { records } = await recoverSegments(db);
    const last = new Map<number, number>();
    for (const r of records) last.set(r.pageId, r.afterImage[0]!);
    expect(last).toEqual(
      new Map([
        [1, 0x11],
        [2, 0x33],
      ]),
    );
  });
});
