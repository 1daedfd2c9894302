/**
 * Power loss under the whole engine with the rename-before-ack segment sinks
 * (`storage`, the protocol of format version 1, and `precreate`; the default
 * `earlyAck` sink has its own sweep in early-ack-power-cut.test.ts):
 * ParallelWal workloads (several writers, bursts) on the simulated disk, power cut at every step of a short workload
 * and at random steps of longer ones; then reboot (the recovered disk),
 * recover, reopen, and check with the oracle:
 * - every acknowledged commit is present, in order, byte for byte;
 * - no commit is partly present (all of its pages or none);
 * - recovery with default options succeeds (never silently drops an
 *   acknowledged epoch; it would have to throw first) and throws only typed errors;
 * - the reopened log numbers after everything on disk and keeps working.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { SegmentSinkKind } from '../../src/engine/segment-writer.js';
import { ParallelWal } from '../../src/engine/wal.js';
import type { WalError } from '../../src/errors.js';
import { lockPath } from '../../src/storage/lockfile.js';
import { recoverSegments } from '../../src/storage/recovery.js';
import type { FsyncPolicy } from '../../src/storage/segment-files.js';
import {
  checkRecovered,
  commitPages,
  describeReport,
  reportIsClean,
} from '../support/commit-oracle.js';
import { seededRng } from '../support/rng.js';
import { type CrashModel, SimulatedFileSystem } from '../support/simulated-fs.js';
import {
  batchFor,
  runWorkload,
  settleWithin,
  type WorkloadOutcome,
  type WorkloadPlan,
} from '../support/wal-workload.js';

const DB = '/data/app.db';
const HANG_MS = 15_000;

interface CutRun {
  disk: SimulatedFileSystem;
  outcome: WorkloadOutcome;
  cutFired: boolean;
  steps: number;
}

function freshDisk(): SimulatedFileSystem {
  const fs = new SimulatedFileSystem();
  fs.mkdirSync('/data');
  return fs;
}

const emptyOutcome = (): WorkloadOutcome => ({
  submitted: new Map(),
  acks: [],
  rejections: [],
  untyped: [],
});

/** Runs `plan` on a fresh disk, cutting the power before step `cutStep` (or at the end). */
async function runWithCut(
  plan: WorkloadPlan,
  cutStep: number | null,
  crashSeed: number,
  model: CrashModel,
  fsync: FsyncPolicy = 'full',
  segmentSink: SegmentSinkKind = 'storage',
): Promise<CutRun> {
  const fs = freshDisk();
  if (cutStep !== null) fs.armPowerCut(cutStep, seededRng(crashSeed), model);
  let wal: ParallelWal;
  try {
    wal = await ParallelWal.open(DB, { fs, fsync, slotCount: plan.writers, segmentSink });
  } catch (error) {
    // The machine died during open. What the dying process saw does not
    // matter (the fault-injection tests check error types); the disk does.
    if (!fs.dead) throw error;
    return { disk: fs.crashedDisk!, outcome: emptyOutcome(), cutFired: true, steps: fs.stepCount };
  }
  const outcome = await settleWithin(runWorkload(wal, plan), HANG_MS, 'workload');
  await settleWithin(
    wal.close().catch(() => undefined),
    HANG_MS,
    'close',
  );
  const cutFired = fs.dead;
  const disk = fs.crashedDisk ?? fs.powerCut(seededRng(crashSeed), model);
  return { disk, outcome, cutFired, steps: fs.stepCount };
}

/** Reboots `disk`, recovers, checks the oracle, reopens and commits once more. */
async function checkReboot(run: CutRun, plan: WorkloadPlan, context: string): Promise<void> {
  const { disk, outcome } = run;
  expect(outcome.untyped, `${context}: untyped rejections`).toEqual([]);
  for (const error of outcome.rejections) {
    expect(['ERR_WAL_FAILED', 'ERR_WAL_CLOSED'], `${context}: ${String(error)}`).toContain(
      (error as WalError).code,
    );
  }
  if (!run.cutFired)
    expect(outcome.rejections, `${context}: rejections without a fault`).toEqual([]);
  // A reboot: the process that held the lock is gone.
  disk.removeSync(lockPath(DB));
  const recovered = await recoverSegments(DB, { fs: disk }).catch((error: unknown) => {
    throw new Error(`${context}: default recovery failed: ${String(error)}`);
  });
  const expected = (id: bigint) => outcome.submitted.get(id);
  const report = checkRecovered(recovered.records, expected, outcome.acks, { contiguousFrom: 1n });
  expect(reportIsClean(report), `${context}: ${describeReport(report)}`).toBe(true);

  const wal = await ParallelWal.open(DB, { fs: disk, slotCount: 2 });
  const extraId = 1n << 40n;
  const extra = await wal.commit(batchFor(plan, extraId));
  await wal.close();
  let topSeq = 0n;
  let topEpoch = -1n;
  for (const r of recovered.records) {
    if (r.beginSeq > topSeq) topSeq = r.beginSeq;
    if (r.epoch > topEpoch) topEpoch = r.epoch;
  }
  expect(extra.commitSeq, `${context}: reopened log reused a commit sequence`).toBe(topSeq + 1n);
  expect(extra.epoch > topEpoch, `${context}: reopened log reused an epoch`).toBe(true);
  const again = await recoverSegments(DB, { fs: disk });
  const withExtra = (id: bigint) =>
    id === extraId ? commitPages(plan.seed, extraId, plan.maxPageBytes) : expected(id);
  const acks = [
    ...outcome.acks,
    { txnId: extraId, epoch: extra.epoch, commitSeq: extra.commitSeq },
  ];
  const second = checkRecovered(again.records, withExtra, acks, { contiguousFrom: 1n });
  expect(reportIsClean(second), `${context} after reopen: ${describeReport(second)}`).toBe(true);
}

const MODELS: CrashModel[] = [{}, { dirOps: 'prefix' }, { data: 'dropAll', dirOps: 'dropAll' }];

describe('ParallelWal under power cuts (simulated disk)', () => {
  for (const sink of ['storage', 'precreate'] as const) {
    it(`keeps every acknowledged commit whole, cut at every step of a short workload (segmentSink ${sink})`, async () => {
      const plan: WorkloadPlan = {
        seed: 42,
        writers: 3,
        commitsPerWriter: 6,
        burstChance: 0.3,
        maxPageBytes: 700,
      };
      const dry = await runWithCut(plan, null, 0, {}, 'full', sink);
      expect(dry.outcome.acks.length).toBe(18);
      expect(dry.steps).toBeGreaterThan(20);
      let runs = 0;
      let withAcks = 0;
      for (let cut = 1; cut <= dry.steps + 1; cut++) {
        for (let m = 0; m < MODELS.length; m++) {
          const seed = cut * 10 + m;
          const run = await runWithCut(plan, cut, seed, MODELS[m]!, 'full', sink);
          await checkReboot(
            run,
            plan,
            `cut at step ${cut}, crash seed ${seed}, model ${m}, sink ${sink}`,
          );
          runs += 1;
          if (run.outcome.acks.length > 0) withAcks += 1;
        }
      }
      expect(runs).toBe((dry.steps + 1) * MODELS.length);

      expect(withAcks).toBeGreaterThan(runs / 3);
      console.log(`power cut at every step: ${dry.steps} steps, ${runs} cuts`);
    });
  }

  it('keeps every acknowledged commit whole, cut at random steps of long workloads (fast-check)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 1_000_000 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.integer(),
        fc.constantFrom(0, 1, 2),
        fc.constantFrom<FsyncPolicy>('full', 'normal'),
        fc.constantFrom<SegmentSinkKind>('storage', 'precreate'),
        async (seed, cutAt, crashSeed, m, fsync, sink) => {
          const plan: WorkloadPlan = {
            seed,
            writers: 1 + (seed % 4),
            commitsPerWriter: 12,
            burstChance: 0.4,
            maxPageBytes: 1500,
          };
          const dry = await runWithCut(plan, null, 0, {}, fsync, sink);
          const cut = 1 + Math.floor(cutAt * dry.steps);
          const run = await runWithCut(plan, cut, crashSeed, MODELS[m]!, fsync, sink);
          await checkReboot(
            run,
            plan,
            `seed ${seed}, cut ${cut}/${dry.steps}, crash seed ${crashSeed}, sink ${sink}`,
          );
        },
      ),
      { numRuns: 25 },
    );
  });

  it('with fsync off, survives a process crash (page cache kept) at every step', async () => {
    const plan: WorkloadPlan = {
      seed: 7,
      writers: 2,
      commitsPerWriter: 3,
      burstChance: 0.5,
      maxPageBytes: 300,
    };
    const processCrash: CrashModel = { data: 'keepAll', dirOps: 'keepAll' };
    const dry = await runWithCut(plan, null, 0, processCrash, 'off');
    for (let cut = 1; cut <= dry.steps + 1; cut++) {
      const run = await runWithCut(plan, cut, cut, processCrash, 'off');
      await checkReboot(run, plan, `fsync off, process crash at step ${cut}`);
    }
  });

  it('with fsync off, power loss can lose acknowledged commits (the ack says durability "off")', async () => {
    const plan: WorkloadPlan = {
      seed: 9,
      writers: 2,
      commitsPerWriter: 4,
      burstChance: 0,
      maxPageBytes: 300,
    };
    const run = await runWithCut(plan, null, 1, { data: 'dropAll', dirOps: 'dropAll' }, 'off');
    expect(run.outcome.acks.length).toBe(8);
    run.disk.removeSync(lockPath(DB));
    const recovered = await recoverSegments(DB, { fs: run.disk, skipCorrupt: true });
    const report = checkRecovered(
      recovered.records,
      (id) => run.outcome.submitted.get(id),
      run.outcome.acks,
    );
    // The oracle notices: this is exactly what `full` and `normal` prevent.
    expect(report.lost.length).toBeGreaterThan(0);
  });
});
