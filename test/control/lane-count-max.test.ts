/**
 * One lane-count maximum for the control surface and the engine: whatever
 * lane count the surface resolves, the engine opens with it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ControlPlane } from '../../src/control/plane.js';
import { laneCount, laneCountMax } from '../../src/control/surface.js';
import { ParallelWal, slotCountMax } from '../../src/engine/wal.js';
import { isWalError } from '../../src/errors.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDb(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-lanes-'));
  dirs.push(dir);
  return path.join(dir, 'db');
}

describe('the lane-count maximum', () => {
  it('FSQLITE_PARALLEL_WAL_LANES=2048 passed as slotCount: plane.laneCount() opens the log (README recipe)', async () => {
    const plane = new ControlPlane({
      env: { FSQLITE_PARALLEL_WAL_MODE: 'auto', FSQLITE_PARALLEL_WAL_LANES: '2048' },
      trace: null,
      controller: false,
    });
    expect(plane.laneCount()).toBe(laneCountMax);
    const wal = await ParallelWal.open(tempDb(), {
      controlPlane: plane,
      slotCount: plane.laneCount(),
    });
    try {
      expect(wal.config.slotCount).toBe(laneCountMax);
      const result = await wal.commit({
        txnToken: { id: 1n, epoch: 0 },
        frames: [{ pageNumber: 1, pageData: new Uint8Array(64), dbSizeIfCommit: 1 }],
      });
      expect(result.epoch).toBeGreaterThanOrEqual(0n);
    } finally {
      await wal.close();
    }
  });

  it('is the same number for the surface clamp and the engine slotCount limit', async () => {
    expect(laneCountMax).toBe(slotCountMax);
    expect(laneCount({ mode: 'auto', laneCountOverride: 65_535 })).toBe(slotCountMax);
    const error = await ParallelWal.open(tempDb(), { slotCount: laneCountMax + 1 }).then(
      async (wal) => {
        await wal.close();
        return null;
      },
      (e: unknown) => e,
    );
    expect(isWalError(error, 'ERR_INVALID_ARGUMENT')).toBe(true);
  });
});
