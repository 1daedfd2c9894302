/**
 * Power cuts with worker-thread writers: two workers append into shared
 * lanes while an async writer commits on the owner thread; the simulated disk
 * loses power at a random step; after reboot every acknowledgement (from
 * either kind of writer) must be in the log, whole.
 */
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { ParallelWal } from '../../src/engine/wal.js';
import { workerHandleTransferList } from '../../src/engine/worker.js';
import { lockPath } from '../../src/storage/lockfile.js';
import { recoverSegments } from '../../src/storage/recovery.js';
import {
  type CommitAck,
  checkRecovered,
  commitPages,
  describeReport,
  reportIsClean,
} from '../support/commit-oracle.js';
import { seededRng } from '../support/rng.js';
import { SimulatedFileSystem } from '../support/simulated-fs.js';
import { batchFor, settleWithin, type WorkloadPlan } from '../support/wal-workload.js';

const HANG_MS = 30_000;
const PLAN: WorkloadPlan = {
  seed: 21,
  writers: 1,
  commitsPerWriter: 0,
  burstChance: 0,
  maxPageBytes: 800,
};
const PER_WORKER = 30;

interface RunResult {
  acks: CommitAck[];
  rejections: string[];
  workerAcks: number;
  disk: SimulatedFileSystem;
}

async function run(
  db: string,
  cutStep: number | null,
  crashSeed: number,
): Promise<RunResult & { steps: number }> {
  const sim = new SimulatedFileSystem();
  sim.mkdirSync('/data');
  const wal = await ParallelWal.open(db, { fs: sim, slotCount: 2 });
  if (cutStep !== null) sim.armPowerCut(sim.stepCount + cutStep, seededRng(crashSeed));
  const result: RunResult = { acks: [], rejections: [], workerAcks: 0, disk: sim };
  const workers = [0, 1].map((i) => {
    const handle = wal.workerHandle();
    const worker = new Worker(path.join(import.meta.dirname, 'sim-worker-entry.mjs'), {
      workerData: {
        handle,
        runSeed: PLAN.seed,
        txnBase: 1_000_000n + BigInt(i),
        stride: 4n,
        count: PER_WORKER,
        maxPageBytes: PLAN.maxPageBytes,
      },
      transferList: workerHandleTransferList(handle),
    });
    return new Promise<void>((resolve, reject) => {
      worker.on(
        'message',
        (m: 'done' | { txnId: bigint; epoch?: bigint; commitSeq?: bigint; code?: string }) => {
          if (m === 'done') return resolve();
          if (m.code !== undefined) result.rejections.push(m.code);
          else {
            result.acks.push({ txnId: m.txnId, epoch: m.epoch!, commitSeq: m.commitSeq! });
            result.workerAcks += 1;
          }
        },
      );
      worker.on('error', reject);
      worker.on('exit', () => resolve());
    });
  });
  const owner = (async () => {
    for (let i = 0; i < PER_WORKER; i++) {
      const id = 2_000_000n + BigInt(i);
      try {
        const r = await wal.commit(batchFor(PLAN, id));
        result.acks.push({ txnId: id, epoch: r.epoch, commitSeq: r.commitSeq });
      } catch (error) {
        result.rejections.push((error as { code?: string }).code ?? `untyped: ${String(error)}`);
      }
    }
  })();
  await settleWithin(Promise.all([...workers, owner]), HANG_MS, 'writers');
  await settleWithin(
    wal.close().catch(() => undefined),
    HANG_MS,
    'close',
  );
  const steps = sim.stepCount;
  result.disk = sim.crashedDisk ?? sim.powerCut(seededRng(crashSeed));
  return { ...result, steps };
}

describe('ParallelWal with worker writers under power cuts (simulated disk)', () => {
  it('keeps every acknowledgement of worker and async writers whole after a cut at random steps', async () => {
    const dry = await run('/data/w0.db', null, 0);
    expect(dry.rejections).toEqual([]);
    expect(dry.workerAcks).toBe(2 * PER_WORKER);
    const rng = seededRng(8);
    let cutMidway = 0;
    for (let i = 1; i <= 6; i++) {
      const db = `/data/w${i}.db`;
      const cut = 1 + Math.floor(rng() * dry.steps);
      const result = await run(db, cut, i);
      for (const code of result.rejections)
        expect(['ERR_WAL_FAILED', 'ERR_WAL_CLOSED']).toContain(code);
      result.disk.removeSync(lockPath(db));
      const recovered = await recoverSegments(db, { fs: result.disk });
      const report = checkRecovered(
        recovered.records,
        (id) => commitPages(PLAN.seed, id, PLAN.maxPageBytes),
        result.acks,
        { contiguousFrom: 1n },
      );
      expect(reportIsClean(report), `cut ${cut}: ${describeReport(report)}`).toBe(true);
      if (result.workerAcks > 0 && result.rejections.length > 0) cutMidway += 1;
    }
    // The cuts landed while workers were committing, not only before or after.
    expect(cutMidway).toBeGreaterThan(0);
  }, 120_000);
});
