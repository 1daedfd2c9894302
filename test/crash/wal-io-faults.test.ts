/**
 * I/O faults under the engine: EIO and ENOSPC at each kind of call the log
 * makes, and the fsyncgate pattern. The log must never acknowledge an epoch
 * whose write or sync failed, must reject the affected commits (and every
 * later one) with ERR_WAL_FAILED carrying the cause, must keep earlier epochs
 * intact, and must reopen cleanly once the fault is gone — also after a power
 * cut that drops everything not synced.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { WalFailedError } from '../../src/engine/errors.js';
import { ParallelWal } from '../../src/engine/wal.js';
import { WalError } from '../../src/errors.js';
import { lockPath } from '../../src/storage/lockfile.js';
import { recoverSegments } from '../../src/storage/recovery.js';
import {
  type CommitAck,
  checkRecovered,
  describeReport,
  reportIsClean,
} from '../support/commit-oracle.js';
import { type FaultRule, FaultyFileSystem } from '../support/faulty-fs.js';
import { seededRng } from '../support/rng.js';
import { SimulatedFileSystem } from '../support/simulated-fs.js';
import { batchFor, runWorkload, settleWithin, type WorkloadPlan } from '../support/wal-workload.js';

/** A fresh database name per test: a failed test must not leave the next one locked out. */
let DB = '/data/app.db';
let dbCounter = 0;
beforeEach(() => {
  dbCounter += 1;
  DB = `/data/app-${dbCounter}.db`;
});
const HANG_MS = 15_000;

/** True when `error` or one of its causes carries the file-system code. */
function causeChainHas(error: unknown, code: string): boolean {
  let e: unknown = error;
  for (let depth = 0; depth < 8 && typeof e === 'object' && e !== null; depth++) {
    const o = e as { code?: unknown; errno?: unknown; cause?: unknown };
    if (o.code === code || o.errno === code) return true;
    e = o.cause;
  }
  return false;
}

interface FaultCase {
  name: string;
  rule: FaultRule;
}

/** Faults on the steady-state write path (segment files only, not the lock). */
const WRITE_PATH_FAULTS: FaultCase[] = [
  // Two failures in a row: with precreateSegmentFiles a failed pre-creation is
  // retried inline (not an error), so only the second failure reaches a commit.
  { name: 'open EIO', rule: { kind: 'open', code: 'EIO', path: '-wal-tmp-', times: 2 } },
  { name: 'open ENOSPC', rule: { kind: 'open', code: 'ENOSPC', path: '-wal-tmp-', times: 2 } },
  { name: 'writev EIO', rule: { kind: 'writev', code: 'EIO', path: '-wal-tmp-' } },
  {
    name: 'writev ENOSPC (short write)',
    rule: { kind: 'writev', code: 'ENOSPC', path: '-wal-tmp-', partialBytes: 100 },
  },
  { name: 'datasync EIO', rule: { kind: 'datasync', code: 'EIO', path: '-wal-tmp-' } },
  { name: 'close EIO', rule: { kind: 'close', code: 'EIO', path: '-wal-tmp-' } },
  { name: 'rename EIO', rule: { kind: 'rename', code: 'EIO', path: '-wal-' } },
  { name: 'rename ENOSPC', rule: { kind: 'rename', code: 'ENOSPC', path: '-wal-' } },
  { name: 'directory fsync EIO', rule: { kind: 'syncDirectory', code: 'EIO' } },
  {
    name: 'fsyncgate (failed fdatasync drops the data, the retry "succeeds")',
    rule: { kind: 'fsync', code: 'EIO', path: '-wal-tmp-', dropDirtyData: true },
  },
  {
    name: 'rename fails and so does the cleanup unlink',
    rule: { kind: ['rename', 'unlink'], code: 'EIO', path: '-wal-', times: 2 },
  },
];

const PLAN: WorkloadPlan = {
  seed: 5,
  writers: 3,
  commitsPerWriter: 4,
  burstChance: 0.5,
  maxPageBytes: 900,
};

function freshDisk(): SimulatedFileSystem {
  const sim = new SimulatedFileSystem();
  sim.mkdirSync('/data');
  return sim;
}

/** Reboots (drop all unsynced state), reopens, checks the oracle and commits once more. */
async function rebootAndCheck(
  sim: SimulatedFileSystem,
  submitted: Map<bigint, ReturnType<typeof batchFor>>,
  acks: readonly CommitAck[],
  context: string,
): Promise<void> {
  const disk = sim.crashImage(seededRng(1), { data: 'dropAll', dirOps: 'dropAll' });
  disk.removeSync(lockPath(DB));
  const recovered = await recoverSegments(DB, { fs: disk });
  const pagesOf = (id: bigint) =>
    submitted.get(id)?.frames.map((f) => ({ pageId: f.pageNumber, data: f.pageData }));
  const report = checkRecovered(recovered.records, pagesOf, acks, { contiguousFrom: 1n });
  expect(reportIsClean(report), `${context}: ${describeReport(report)}`).toBe(true);
  const wal = await ParallelWal.open(DB, { fs: disk });
  await wal.commit(batchFor(PLAN, 1n << 41n));
  await wal.close();
}

/**
 * Waits for the publication of every acknowledged epoch (the earlyAck sink
 * batches it; a fault in it is known, and refuses later commits, once it ran).
 */
async function publishAcknowledged(wal: ParallelWal): Promise<void> {
  const acknowledged = wal.acknowledgedEpoch();
  if (acknowledged === null) return;
  await wal.waitForEpochDurable(acknowledged, HANG_MS).catch(() => undefined);
}

describe('ParallelWal under I/O faults', () => {
  // Every segment sink: earlyAck (the default), precreate, storage (format version 1's protocol).
  for (const segmentSink of ['earlyAck', 'precreate', 'storage'] as const)
    for (const { name, rule } of WRITE_PATH_FAULTS) {
      it(`fails closed on ${name}: nothing acknowledged after it, typed cause, earlier epochs intact, clean reopen (segmentSink ${segmentSink})`, async () => {
        const sim = freshDisk();
        const faulty = new FaultyFileSystem(sim);
        const wal = await ParallelWal.open(DB, { fs: faulty, slotCount: 3, segmentSink });
        const submitted = new Map<bigint, ReturnType<typeof batchFor>>();
        const acks: CommitAck[] = [];
        // Before the fault: a few durable epochs.
        for (let id = 1n; id <= 3n; id++) {
          const batch = batchFor(PLAN, id);
          submitted.set(id, batch);
          const r = await wal.commit(batch);
          acks.push({ txnId: id, epoch: r.epoch, commitSeq: r.commitSeq });
        }
        await publishAcknowledged(wal);
        const before = acks.length;
        faulty.inject(rule);
        const failed: unknown[] = [];
        // Two waves, so that at least two epochs are written under the fault.
        const wave = (from: number) =>
          Array.from({ length: 4 }, (_, i) => {
            const id = 100n + BigInt(from + i);
            const batch = batchFor(PLAN, id);
            submitted.set(id, batch);
            return wal.commit(batch).then(
              (r) => {
                acks.push({ txnId: id, epoch: r.epoch, commitSeq: r.commitSeq });
              },
              (error: unknown) => {
                failed.push(error);
              },
            );
          });
        await settleWithin(Promise.all(wave(0)), HANG_MS, 'first wave under fault');
        await publishAcknowledged(wal);
        await settleWithin(Promise.all(wave(4)), HANG_MS, 'second wave under fault');
        await publishAcknowledged(wal);
        expect(faulty.fired.length, 'the fault never fired').toBeGreaterThan(0);
        expect(failed.length, 'no commit was rejected').toBeGreaterThan(0);
        expect(wal.isFailed).toBe(true);
        const code = rule.code ?? 'EIO';
        let failedEpoch: bigint | null = null;
        for (const error of failed) {
          expect(error).toBeInstanceOf(WalError);
          expect((error as WalError).code).toBe('ERR_WAL_FAILED');
          expect(
            causeChainHas(error, code),
            `cause of ${String(error)} does not name ${code}`,
          ).toBe(true);
          if (error instanceof WalFailedError && error.epoch !== null) failedEpoch = error.epoch;
        }
        expect(failedEpoch).not.toBeNull();
        // Nothing at or after the failed epoch was acknowledged.
        for (const ack of acks)
          expect(ack.epoch < failedEpoch!, `acked epoch ${ack.epoch}`).toBe(true);
        expect(acks.length).toBeGreaterThanOrEqual(before);
        // The log refuses from now on, even though the fault is gone.
        faulty.heal();
        await expect(wal.commit(batchFor(PLAN, 999n))).rejects.toMatchObject({
          code: 'ERR_WAL_FAILED',
        });
        await settleWithin(wal.close(), HANG_MS, 'close of a failed log');
        // Clean reopen on the same (live) disk once the fault is gone.
        const reopened = await ParallelWal.open(DB, { fs: faulty });
        const after = batchFor(PLAN, 500n);
        submitted.set(500n, after);
        const r = await reopened.commit(after);
        acks.push({ txnId: 500n, epoch: r.epoch, commitSeq: r.commitSeq });
        await reopened.close();
        // And after a power cut that keeps only what was synced.
        await rebootAndCheck(sim, submitted, acks, name);
      });
    }

  it('after fsyncgate nothing later is acknowledged, even though a retried fsync "succeeds"', async () => {
    const sim = freshDisk();
    const faulty = new FaultyFileSystem(sim, [
      { kind: 'datasync', code: 'EIO', path: '-wal-tmp-', nth: 3, dropDirtyData: true },
    ]);
    const wal = await ParallelWal.open(DB, { fs: faulty, slotCount: 2 });
    const outcome = await settleWithin(
      runWorkload(wal, { ...PLAN, commitsPerWriter: 6 }),
      HANG_MS,
      'workload',
    );
    const datasyncs = faulty.calls.get('datasync') ?? 0;
    expect(faulty.fired.length).toBe(1);
    // Later datasyncs would succeed; the log must not have tried to ack anything after.
    const failedAt = (outcome.rejections[0] as WalFailedError).epoch!;
    for (const ack of outcome.acks) expect(ack.epoch < failedAt).toBe(true);
    expect(outcome.rejections.length + outcome.acks.length).toBe(outcome.submitted.size);
    expect(datasyncs).toBe(3);
    await wal.close();
    const submitted = new Map([...outcome.submitted.keys()].map((id) => [id, batchFor(PLAN, id)]));
    await rebootAndCheck(sim, submitted, outcome.acks, 'fsyncgate workload');
  });

  const OPEN_FAULTS: FaultCase[] = [
    { name: 'readdir EIO', rule: { kind: 'readdir', code: 'EIO' } },
    { name: 'lock create EIO', rule: { kind: 'open', code: 'EIO', path: '.lock' } },
    { name: 'lock create ENOSPC', rule: { kind: 'open', code: 'ENOSPC', path: '.lock' } },
    { name: 'lock write ENOSPC', rule: { kind: 'write', code: 'ENOSPC', path: '.lock' } },
    // The lock file is not fsynced: its contents only name the holder for
    // messages, and no kernel lock survives a reboot anyway.
    { name: 'lock write EIO', rule: { kind: 'write', code: 'EIO', path: '.lock' } },
    { name: 'lock close EIO', rule: { kind: 'close', code: 'EIO', path: '.lock' } },
    { name: 'segment read EIO', rule: { kind: 'readFile', code: 'EIO', path: '-wal-seg-' } },
  ];
  for (const { name, rule } of OPEN_FAULTS) {
    it(`open fails with a typed error on ${name}, then opens once the fault is gone`, async () => {
      const sim = freshDisk();
      // A log with data in it.
      const first = await ParallelWal.open(DB, { fs: sim });
      const acks: CommitAck[] = [];
      for (let id = 1n; id <= 3n; id++) {
        const r = await first.commit(batchFor(PLAN, id));
        acks.push({ txnId: id, epoch: r.epoch, commitSeq: r.commitSeq });
      }
      await first.close();
      const faulty = new FaultyFileSystem(sim, [rule]);
      const error = await ParallelWal.open(DB, { fs: faulty }).then(
        async (w) => {
          await w.close();
          return null;
        },
        (e: unknown) => e,
      );
      expect(faulty.fired.length, 'the fault never fired').toBeGreaterThan(0);
      expect(error, 'open succeeded despite the fault').toBeInstanceOf(WalError);
      expect(causeChainHas(error, rule.code ?? 'EIO'), String(error)).toBe(true);
      faulty.heal();
      const wal = await ParallelWal.open(DB, { fs: faulty });
      const r = await wal.commit(batchFor(PLAN, 10n));
      acks.push({ txnId: 10n, epoch: r.epoch, commitSeq: r.commitSeq });
      await wal.close();
      const submitted = new Map([1n, 2n, 3n, 10n].map((id) => [id, batchFor(PLAN, id)]));
      await rebootAndCheck(sim, submitted, acks, name);
    });
  }
});
