/**
 * Power loss under the whole engine with the rename-before-ack segment sinks
 * (`storage`, the protocol of format version 1, and `precreate`; the default
 * `earlyAck` sink has its own sweep in sink-power-cut.test.ts):
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
import { lockPath } from '../../src/storage/lockfile.js';
import { recoverSegments } from '../../src/storage/recovery.js';
import type { FsyncPolicy } from '../../src/storage/segment-files.js';
import { checkRecovered } from '../support/commit-oracle.js';
import {
  checkRandomCut,
  cutAtEveryStep,
  DB,
  MODELS,
  processCrashAtEveryStep,
  runWithCut,
} from '../support/power-cut.js';
import type { WorkloadPlan } from '../support/wal-workload.js';

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
      const { runs, withAcks } = await cutAtEveryStep(
        plan,
        dry.steps,
        sink,
        (cut, seed, m) => `cut at step ${cut}, crash seed ${seed}, model ${m}, sink ${sink}`,
        sink,
      );
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
        (seed, cutAt, crashSeed, m, fsync, sink) =>
          checkRandomCut(
            seed,
            cutAt,
            crashSeed,
            m,
            fsync,
            sink,
            (cut, steps) =>
              `seed ${seed}, cut ${cut}/${steps}, crash seed ${crashSeed}, sink ${sink}`,
          ),
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
    await processCrashAtEveryStep(
      plan,
      'storage',
      (cut) => `fsync off, process crash at step ${cut}`,
    );
  });

  it('with fsync off, power loss can lose acknowledged commits (the ack says durability "off")', async () => {
    const plan: WorkloadPlan = {
      seed: 9,
      writers: 2,
      commitsPerWriter: 4,
      burstChance: 0,
      maxPageBytes: 300,
    };
    const run = await runWithCut(
      plan,
      null,
      1,
      { data: 'dropAll', dirOps: 'dropAll' },
      'off',
      'storage',
    );
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
