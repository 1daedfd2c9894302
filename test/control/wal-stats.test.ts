/**
 * The control plane's state is visible in the engine's own `stats()`: the
 * mode and the active fallback reason, without reaching for the plane.
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

async function openWith(plane: ControlPlane | null): Promise<ParallelWal> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
  dirs.push(dir);
  return ParallelWal.open(path.join(dir, 'db'), {
    fsync: 'off',
    ...(plane === null ? {} : { controlPlane: plane, slotCount: plane.laneCount() }),
  });
}

describe('ParallelWal.stats() and the control plane', () => {
  it('shows the mode and the active fallback reason of the control plane', async () => {
    const plane = new ControlPlane({ env: {}, trace: null, control: { mode: 'conservative' } });
    const wal = await openWith(plane);
    try {
      await wal.commit({
        txnToken: { id: 1n, epoch: 0 },
        frames: [{ pageNumber: 1, pageData: new Uint8Array(64), dbSizeIfCommit: 1 }],
      });
      const control = wal.stats().control as ReturnType<ControlPlane['stats']>;
      expect(control).toMatchObject({
        mode: 'conservative',
        fallbackActive: true,
        fallbackReason: 'operator_forced',
      });
      expect(control.fallbackCounts.operator_forced).toBeGreaterThan(0);
    } finally {
      await wal.close();
      plane.close();
    }
  });

  it('is null without a control plane', async () => {
    const wal = await openWith(null);
    try {
      expect(wal.stats().control).toBeNull();
    } finally {
      await wal.close();
    }
  });
});
