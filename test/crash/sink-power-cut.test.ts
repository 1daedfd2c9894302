/**
 * Power loss under ParallelWal with the early-acknowledging sinks, each run
 * through the same sweeps:
 * - `earlyAck`: acknowledge after the fdatasync into a pre-created file whose
 *   name is durable; rename and directory fsync later;
 * - `pool` (`segmentSink: 'pool'`): write in place into a pre-written pool
 *   file, fdatasync, acknowledge; cut, rename and directory fsync later (torn
 *   and reordered sectors of the overwritten pool files included).
 * Power cut at every step of a short workload (three crash models) and at
 * random steps of longer ones; after reboot, read-only recovery (which replays
 * adoptable temporary or pool files in place, ignoring a pool file's stale
 * bytes) and a reopen (which adopts them) both hold every acknowledged commit,
 * whole, in order, with no commit-sequence holes, and the reopened log numbers
 * after all of it.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { FsyncPolicy } from '../../src/storage/segment-files.js';
import {
  checkRandomCut,
  checkReboot,
  cutAtEveryStep,
  MODELS,
  processCrashAtEveryStep,
  runWithCut,
} from '../support/power-cut.js';
import type { WorkloadPlan } from '../support/wal-workload.js';

const SINKS = [
  { sink: 'earlyAck', sweepSeed: 43, fsyncOffSeed: 8 },
  { sink: 'pool', sweepSeed: 44, fsyncOffSeed: 10 },
] as const;

describe.each(SINKS)(
  'pipelined flushing under power cuts (simulated disk, $sink sink)',
  ({ sink }) => {
    it('keeps every acknowledged commit whole when waves are split and writes start before acknowledgements or queue behind the one in flight', async () => {
      // 301 closed-loop writers: the first wave shares one epoch, the second is
      // split (151 + 150); the 151 return while the 150 are written and, as
      // many as the epoch in flight, are queued behind it; the 150 return
      // while the 151 are written, fewer, and are sealed and started when that
      // write returns.
      const plan: WorkloadPlan = {
        seed: 45,
        writers: 301,
        commitsPerWriter: 4,
        burstChance: 0,
        maxPageBytes: 300,
      };
      const dry = await runWithCut(plan, null, 0, {}, 'full', sink);
      expect(dry.outcome.acks.length).toBe(1204);
      expect(dry.flush.waveSplits).toBeGreaterThanOrEqual(1);
      expect(dry.flush.pipelinedSeals).toBeGreaterThanOrEqual(1);
      expect(dry.flush.queuedWrites).toBeGreaterThanOrEqual(1);
      const cuts = 60;
      let withAcks = 0;
      for (let i = 0; i < cuts; i++) {
        const cut = 1 + Math.floor(((i + 0.5) / cuts) * dry.steps);
        const m = i % MODELS.length;
        const seed = 4500 + i;
        const run = await runWithCut(plan, cut, seed, MODELS[m]!, 'full', sink);
        await checkReboot(
          run,
          plan,
          `waves: cut ${cut}/${dry.steps}, crash seed ${seed}, model ${m}`,
        );
        if (run.outcome.acks.length > 0) withAcks++;
      }
      // Most cuts fell after some acknowledgements: the check had something to lose.
      expect(withAcks).toBeGreaterThan(cuts / 2);
    });
  },
);

describe.each(SINKS)(
  'ParallelWal with the $sink sink under power cuts (simulated disk)',
  ({ sink, sweepSeed, fsyncOffSeed }) => {
    it('keeps every acknowledged commit whole, cut at every step of a short workload', async () => {
      const plan: WorkloadPlan = {
        seed: sweepSeed,
        writers: 3,
        commitsPerWriter: 6,
        burstChance: 0.3,
        maxPageBytes: 700,
      };
      const dry = await runWithCut(plan, null, 0, {}, 'full', sink);
      expect(dry.outcome.acks.length).toBe(18);
      const {
        runs,
        withAcks,
        pendingAdoption: acksBeforePublish,
      } = await cutAtEveryStep(
        plan,
        dry.steps,
        sink,
        (cut, seed, m) => `${sink}: cut at step ${cut}, crash seed ${seed}, model ${m}`,
      );
      expect(runs).toBe((dry.steps + 1) * MODELS.length);
      expect(withAcks).toBeGreaterThan(runs / 3);
      // The sweep really cut between an acknowledgement and its publication.
      expect(acksBeforePublish).toBeGreaterThan(0);
    });

    it('keeps every acknowledged commit whole, cut at random steps of long workloads (fast-check)', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 1, max: 1_000_000 }),
          fc.double({ min: 0, max: 1, noNaN: true }),
          fc.integer(),
          fc.constantFrom(0, 1, 2),
          fc.constantFrom<FsyncPolicy>('full', 'normal'),
          (seed, cutAt, crashSeed, m, fsync) =>
            checkRandomCut(
              seed,
              cutAt,
              crashSeed,
              m,
              fsync,
              sink,
              (cut, steps) => `${sink}: seed ${seed}, cut ${cut}/${steps}, crash seed ${crashSeed}`,
            ),
        ),
        { numRuns: 20 },
      );
    });

    it('with fsync off, survives a process crash (page cache kept) at every step', async () => {
      const plan: WorkloadPlan = {
        seed: fsyncOffSeed,
        writers: 2,
        commitsPerWriter: 3,
        burstChance: 0.5,
        maxPageBytes: 300,
      };
      await processCrashAtEveryStep(
        plan,
        sink,
        (cut) => `${sink}, fsync off, process crash at step ${cut}`,
      );
    });
  },
);
