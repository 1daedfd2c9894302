/**
 * The shared harness of the engine power-cut sweeps
 * (test/crash/wal-power-cut.test.ts, test/crash/sink-power-cut.test.ts):
 * run a workload on a simulated disk with a power cut at a chosen step, then
 * reboot, recover, check the commit oracle, reopen and commit once more.
 */
import { expect } from 'vitest';
import type { SegmentSinkKind } from '../../src/engine/segment-writer.js';
import { ParallelWal } from '../../src/engine/wal.js';
import type { WalError } from '../../src/errors.js';
import { lockPath } from '../../src/storage/lockfile.js';
import { recoverSegments } from '../../src/storage/recovery.js';
import type { FsyncPolicy } from '../../src/storage/segment-files.js';
import { checkRecovered, commitPages, describeReport, reportIsClean } from './commit-oracle.js';
import { seededRng } from './rng.js';
import { type CrashModel, SimulatedFileSystem } from './simulated-fs.js';
import {
  batchFor,
  runWorkload,
  settleWithin,
  type WorkloadOutcome,
  type WorkloadPlan,
} from './wal-workload.js';

/** The database path on the simulated disk. */
export const DB = '/data/app.db';
const HANG_MS = 15_000;

/** One run of a workload with a power cut, and the disk it left. */
export interface CutRun {
  disk: SimulatedFileSystem;
  outcome: WorkloadOutcome;
  cutFired: boolean;
  steps: number;
  /** Adoptable temporary files found after the cut (set by checkReboot). */
  pendingAdoption: number;
  /** The flusher's pipelining during the run (`wal.stats()` after the workload; zeros if open failed). */
  flush: { pipelinedSeals: number; waveSplits: number; queuedWrites: number };
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
export async function runWithCut(
  plan: WorkloadPlan,
  cutStep: number | null,
  crashSeed: number,
  model: CrashModel,
  fsync: FsyncPolicy = 'full',
  segmentSink?: SegmentSinkKind,
): Promise<CutRun> {
  const fs = freshDisk();
  if (cutStep !== null) fs.armPowerCut(cutStep, seededRng(crashSeed), model);
  let wal: ParallelWal;
  try {
    wal = await ParallelWal.open(DB, {
      fs,
      fsync,
      slotCount: plan.writers,
      ...(segmentSink === undefined ? {} : { segmentSink }),
    });
  } catch (error) {
    // The machine died during open. What the dying process saw does not
    // matter (the fault-injection tests check error types); the disk does.
    if (!fs.dead) throw error;
    return {
      disk: fs.crashedDisk!,
      outcome: emptyOutcome(),
      cutFired: true,
      steps: fs.stepCount,
      pendingAdoption: 0,
      flush: { pipelinedSeals: 0, waveSplits: 0, queuedWrites: 0 },
    };
  }
  const outcome = await settleWithin(runWorkload(wal, plan), HANG_MS, 'workload');
  const { pipelinedSeals, waveSplits, queuedWrites } = wal.stats();
  await settleWithin(
    wal.close().catch(() => undefined),
    HANG_MS,
    'close',
  );
  const cutFired = fs.dead;
  const disk = fs.crashedDisk ?? fs.powerCut(seededRng(crashSeed), model);
  return {
    disk,
    outcome,
    cutFired,
    steps: fs.stepCount,
    pendingAdoption: 0,
    flush: { pipelinedSeals, waveSplits, queuedWrites },
  };
}

/**
 * Reboots `disk`, recovers read-only, checks the oracle, reopens (with the same
 * sink as the run), commits once more and checks again.
 */
export async function checkReboot(
  run: CutRun,
  plan: WorkloadPlan,
  context: string,
  segmentSink?: SegmentSinkKind,
): Promise<void> {
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
  run.pendingAdoption = recovered.pendingAdoption.length;
  const expected = (id: bigint) => outcome.submitted.get(id);
  const report = checkRecovered(recovered.records, expected, outcome.acks, { contiguousFrom: 1n });
  expect(reportIsClean(report), `${context}: ${describeReport(report)}`).toBe(true);

  const wal = await ParallelWal.open(DB, {
    fs: disk,
    slotCount: 2,
    ...(segmentSink === undefined ? {} : { segmentSink }),
  });
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

/** No loss beyond the model's defaults; directory ops kept as a prefix; everything unsynced dropped. */
export const MODELS: CrashModel[] = [
  {},
  { dirOps: 'prefix' },
  { data: 'dropAll', dirOps: 'dropAll' },
];

/** What {@link cutAtEveryStep} counted. */
export interface SweepCounts {
  runs: number;
  /** Runs in which some commit was acknowledged before the cut. */
  withAcks: number;
  /** Runs whose reboot found adoptable temporary or pool files. */
  pendingAdoption: number;
}

/**
 * Cuts the power at every step 1..`steps + 1` of `plan` (written with
 * `sink`, fsync `full`) under each of {@link MODELS}, and checks each
 * reboot (reopened with `reopenSink`).
 */
export async function cutAtEveryStep(
  plan: WorkloadPlan,
  steps: number,
  sink: SegmentSinkKind,
  context: (cut: number, seed: number, model: number) => string,
  reopenSink?: SegmentSinkKind,
): Promise<SweepCounts> {
  const counts: SweepCounts = { runs: 0, withAcks: 0, pendingAdoption: 0 };
  for (let cut = 1; cut <= steps + 1; cut++) {
    for (let m = 0; m < MODELS.length; m++) {
      const seed = cut * 10 + m;
      const run = await runWithCut(plan, cut, seed, MODELS[m]!, 'full', sink);
      await checkReboot(run, plan, context(cut, seed, m), reopenSink);
      counts.runs += 1;
      if (run.outcome.acks.length > 0) counts.withAcks += 1;
      if (run.pendingAdoption > 0) counts.pendingAdoption += 1;
    }
  }
  return counts;
}

/**
 * One case of the random-cut property: a long workload from `seed`, a dry
 * run to count its steps, a cut at fraction `cutAt` of them under
 * `MODELS[model]`, and the reboot check (reopened with `sink`).
 */
export async function checkRandomCut(
  seed: number,
  cutAt: number,
  crashSeed: number,
  model: number,
  fsync: FsyncPolicy,
  sink: SegmentSinkKind,
  context: (cut: number, steps: number) => string,
): Promise<void> {
  const plan: WorkloadPlan = {
    seed,
    writers: 1 + (seed % 4),
    commitsPerWriter: 12,
    burstChance: 0.4,
    maxPageBytes: 1500,
  };
  const dry = await runWithCut(plan, null, 0, {}, fsync, sink);
  const cut = 1 + Math.floor(cutAt * dry.steps);
  const run = await runWithCut(plan, cut, crashSeed, MODELS[model]!, fsync, sink);
  await checkReboot(run, plan, context(cut, dry.steps), sink);
}

/**
 * With fsync `off`, a process crash (page cache kept) at every step of
 * `plan` written with `sink`; each reboot checked (reopened with `sink`).
 */
export async function processCrashAtEveryStep(
  plan: WorkloadPlan,
  sink: SegmentSinkKind,
  context: (cut: number) => string,
): Promise<void> {
  const processCrash: CrashModel = { data: 'keepAll', dirOps: 'keepAll' };
  const dry = await runWithCut(plan, null, 0, processCrash, 'off', sink);
  for (let cut = 1; cut <= dry.steps + 1; cut++) {
    const run = await runWithCut(plan, cut, cut, processCrash, 'off', sink);
    await checkReboot(run, plan, context(cut), sink);
  }
}
