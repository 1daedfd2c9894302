/**
 * Power loss under ParallelWal with the `pool` sink (`segmentSink: 'pool'`:
 * write in place into a pre-written pool file, fdatasync,
 * acknowledge; cut, rename and directory fsync later): power cut at every
 * step of a short workload (three crash models; torn and reordered sectors
 * of the overwritten pool files included) and at random steps of longer
 * ones; after reboot, read-only recovery (which replays adoptable pool files
 * in place, ignoring their stale bytes) and a reopen (which adopts them) both
 * hold every acknowledged commit, whole, in order, with no commit-sequence
 * holes, and the reopened log numbers after all of it.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { FsyncPolicy } from '../../src/storage/segment-files.js';
import {
  checkRandomCut,
  cutAtEveryStep,
  MODELS,
  processCrashAtEveryStep,
  runWithCut,
} from '../support/power-cut.js';
import type { WorkloadPlan } from '../support/wal-workload.js';

const SINK = 'pool';

describe('ParallelWal with the pool sink under power cuts (simulated disk)', () => {
  it('keeps every acknowledged commit whole, cut at every step of a short workload', async () => {
    const plan: WorkloadPlan = {
      seed: 44,
      writers: 3,
      commitsPerWriter: 6,
      burstChance: 0.3,
      maxPageBytes: 700,
    };
    const dry = await runWithCut(plan, null, 0, {}, 'full', SINK);
    expect(dry.outcome.acks.length).toBe(18);
    const {
      runs,
      withAcks,
      pendingAdoption: acksBeforePublish,
    } = await cutAtEveryStep(
      plan,
      dry.steps,
      SINK,
      (cut, seed, m) => `pool: cut at step ${cut}, crash seed ${seed}, model ${m}`,
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
            SINK,
            (cut, steps) => `pool: seed ${seed}, cut ${cut}/${steps}, crash seed ${crashSeed}`,
          ),
      ),
      { numRuns: 20 },
    );
  });

  it('with fsync off, survives a process crash (page cache kept) at every step', async () => {
    const plan: WorkloadPlan = {
      seed: 10,
      writers: 2,
      commitsPerWriter: 3,
      burstChance: 0.5,
      maxPageBytes: 300,
    };
    await processCrashAtEveryStep(
      plan,
      SINK,
      (cut) => `earlyAck, fsync off, process crash at step ${cut}`,
    );
  });
});
