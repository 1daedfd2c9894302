/**
 * Trace completeness: the stage scenario is traced for every placed batch,
 * and checkpoint traces carry the epoch the database file holds.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ControlPlane } from '../../src/control/plane.js';
import { parallelWalStageScenarioId } from '../../src/control/surface.js';
import { memoryTraceSink, type TraceEvent } from '../../src/control/trace.js';
import { ParallelWal } from '../../src/engine/wal.js';
import { PageStore } from '../../src/store/page-store.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDb(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-trace-'));
  dirs.push(dir);
  return path.join(dir, 'db');
}

function traces(events: readonly TraceEvent[], component: string) {
  return events.flatMap((e) => (e.kind === 'trace' && e.component === component ? [e] : []));
}

describe('trace scenarios', () => {
  it('traces every placed batch with the stage scenario id, its lane, epoch and commit sequence', async () => {
    const sink = memoryTraceSink();
    const plane = new ControlPlane({ control: { mode: 'auto' }, trace: sink, controller: false });
    const wal = await ParallelWal.open(tempDb(), { controlPlane: plane, slotCount: 2 });
    const results = [];
    for (let i = 1; i <= 3; i++) {
      results.push(
        await wal.commit({
          txnToken: { id: BigInt(i), epoch: 0 },
          frames: [{ pageNumber: i, pageData: new Uint8Array(100), dbSizeIfCommit: i }],
        }),
      );
    }
    await wal.close();
    const staged = traces(sink.events, 'stager');
    expect(staged).toHaveLength(3);
    for (const [i, record] of staged.entries()) {
      expect(record).toMatchObject({
        scenarioId: parallelWalStageScenarioId,
        event: 'staged',
        epoch: results[i]!.epoch,
        commitSeqLo: results[i]!.commitSeq,
        commitSeqHi: results[i]!.commitSeq,
        bytes: 100,
      });
      expect(record.laneId).not.toBeNull();
    }
  });

  it("sets checkpointEpoch on a store checkpoint's trace record (the store reports to the log's control plane)", async () => {
    const sink = memoryTraceSink();
    const plane = new ControlPlane({ control: { mode: 'auto' }, trace: sink, controller: false });
    const store = await PageStore.open(tempDb(), {
      pageSize: 512,
      autoCheckpoint: false,
      controlPlane: plane,
      slotCount: 1,
    });
    await store.commit([{ pageNumber: 1, data: new Uint8Array(512).fill(1) }]);
    const result = await store.checkpoint();
    expect(result.checkpointEpoch).not.toBeNull();
    await store.close();
    const checkpoints = traces(sink.events, 'checkpoint');
    expect(checkpoints).toHaveLength(1);
    expect(checkpoints[0]).toMatchObject({
      event: 'checkpoint_done',
      checkpointEpoch: result.checkpointEpoch,
      bytes: 512,
    });
  });
});
