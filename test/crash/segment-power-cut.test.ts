/**
 * Power cuts under the storage layer's durable write protocol: after a cut at
 * any step, listing and recovery see each segment whole or not at all (never
 * a wrong one), and every segment whose write returned is present.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { WalError } from '../../src/errors.js';
import { encodeSegment } from '../../src/format/segment.js';
import type { FormatVersion, WalRecord } from '../../src/format/types.js';
import type { WalFileSystem } from '../../src/storage/fs.js';
import { recoverSegments } from '../../src/storage/recovery.js';
import {
  type FsyncPolicy,
  listSegments,
  segmentPath,
  writeSegment,
  writeSegmentFile,
} from '../../src/storage/segment-files.js';
import { randomRecords, recordArbitrary } from '../support/records.js';
import { type Rng, seededRng } from '../support/rng.js';
import { type CrashModel, SimulatedFileSystem } from '../support/simulated-fs.js';

const DB = '/data/test.db';

interface SegmentPlan {
  epoch: bigint;
  records: WalRecord[];
  version: FormatVersion;
  /** Written through writeSegmentFile (pre-encoded chunks) rather than writeSegment. */
  asChunks: boolean;
}

function freshDisk(): SimulatedFileSystem {
  const fs = new SimulatedFileSystem();
  fs.mkdirSync('/data');
  fs.writeFileSync(DB, new Uint8Array(0));
  return fs;
}

/** Splits bytes into a few chunks at arbitrary points (as lanes hand them over). */
function chunked(bytes: Uint8Array, rng: Rng): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  let at = 0;
  while (at < bytes.length) {
    const size = Math.max(1, Math.floor(rng() * (bytes.length - at + 1)));
    chunks.push(bytes.subarray(at, at + size));
    at += size;
  }
  return chunks;
}

/**
 * Runs the plan sequentially (or all at once) on `fs`; returns the epochs
 * whose write returned. Failed writes (the power went) are swallowed.
 */
async function runPlan(
  fs: SimulatedFileSystem,
  plan: readonly SegmentPlan[],
  fsync: FsyncPolicy,
  concurrent: boolean,
  via: WalFileSystem = fs,
): Promise<Set<bigint>> {
  return runPlanVia(fs, via, plan, fsync, concurrent);
}

async function runPlanVia(
  sim: SimulatedFileSystem,
  fs: WalFileSystem,
  plan: readonly SegmentPlan[],
  fsync: FsyncPolicy,
  concurrent: boolean,
): Promise<Set<bigint>> {
  const acked = new Set<bigint>();
  const one = async (s: SegmentPlan) => {
    try {
      if (s.asChunks) {
        const bytes = encodeSegment(s.epoch, s.records, s.version);
        await writeSegmentFile(DB, s.epoch, chunked(bytes, seededRng(Number(s.epoch))), {
          fs,
          fsync,
        });
      } else {
        await writeSegment(
          DB,
          { epoch: s.epoch, records: s.records },
          { fs, fsync, formatVersion: s.version },
        );
      }
      acked.add(s.epoch);
    } catch (error) {
      if (!sim.dead) throw error;
      if (!(error instanceof WalError))
        throw new Error(`untyped error from storage: ${String(error)}`);
    }
  };
  if (concurrent) await Promise.all(plan.map(one));
  else for (const s of plan) await one(s);
  return acked;
}

/**
 * Checks the disk after a cut: recovery succeeds, every present segment is
 * byte for byte what was written, every acknowledged one is present.
 */
async function checkAfterCut(
  disk: SimulatedFileSystem,
  plan: readonly SegmentPlan[],
  acked: ReadonlySet<bigint>,
): Promise<void> {
  const expected = new Map(
    plan.map((s) => [s.epoch, encodeSegment(s.epoch, s.records, s.version)]),
  );
  const listed = await listSegments(DB, { fs: disk });
  const result = await recoverSegments(DB, { fs: disk });
  expect(result.epochs).toEqual(listed.map((e) => e.epoch));
  expect(result.stoppedAt).toBeNull();
  for (const entry of listed) {
    const want = expected.get(entry.epoch);
    expect(want, `unexpected segment ${entry.path}`).toBeDefined();
    expect(disk.readFileSync(entry.path), `segment ${entry.epoch} differs`).toEqual(want);
  }
  for (const epoch of acked) {
    expect(disk.readFileSync(segmentPath(DB, epoch)), `acknowledged epoch ${epoch} lost`).toEqual(
      expected.get(epoch),
    );
  }
  const total = listed.reduce((n, e) => n + expected.get(e.epoch)!.length, 0);
  expect(result.bytesRead).toBe(total);
}

function seededPlan(seed: number, segments: number): SegmentPlan[] {
  const rng = seededRng(seed);
  return Array.from({ length: segments }, (_, i) => {
    const epoch = BigInt(i + 1);
    return {
      epoch,
      records: randomRecords(rng, epoch, 1 + Math.floor(rng() * 6), 1200),
      version: rng() < 0.3 ? 1 : 2,
      asChunks: rng() < 0.5,
    };
  });
}

async function stepsOf(plan: readonly SegmentPlan[], fsync: FsyncPolicy, concurrent: boolean) {
  const fs = freshDisk();
  await runPlan(fs, plan, fsync, concurrent);
  return fs.stepCount;
}

const MODELS: CrashModel[] = [
  {},
  { dirOps: 'prefix' },
  { data: 'dropAll', dirOps: 'dropAll' },
  { data: 'keepAll', dirOps: 'keepAll' },
];

describe('segment writes under power cuts', () => {
  for (const fsync of ['full', 'normal'] as const) {
    it(`keeps every returned segment and never shows a wrong one, cut at every step (fsync ${fsync})`, async () => {
      for (const concurrent of [false, true]) {
        const plan = seededPlan(concurrent ? 11 : 7, 4);
        const steps = await stepsOf(plan, fsync, concurrent);
        expect(steps).toBeGreaterThan(4 * 5);
        for (let cut = 1; cut <= steps + 1; cut++) {
          for (let m = 0; m < MODELS.length * 2; m++) {
            const fs = freshDisk();
            const seed = cut * 100 + m;
            fs.armPowerCut(cut, seededRng(seed), MODELS[m % MODELS.length]);
            const acked = await runPlan(fs, plan, fsync, concurrent);
            const disk = fs.crashedDisk ?? fs.powerCut(seededRng(seed), MODELS[m % MODELS.length]);
            await checkAfterCut(disk, plan, acked).catch((error: unknown) => {
              throw new Error(
                `cut at step ${cut}, crash seed ${seed}, concurrent ${concurrent}: ${String(error)}`,
              );
            });
          }
        }
      }
    });
  }

  it('keeps every returned segment under random workloads and random cuts (fast-check)', async () => {
    const segmentArb = (epoch: bigint) =>
      fc.record({
        records: fc.array(recordArbitrary(epoch, 900), { minLength: 0, maxLength: 5 }),
        version: fc.constantFrom<FormatVersion>(1, 2),
        asChunks: fc.boolean(),
      });
    await fc.assert(
      fc.asyncProperty(
        fc
          .integer({ min: 1, max: 5 })
          .chain((n) =>
            fc.tuple(...Array.from({ length: n }, (_, i) => segmentArb(BigInt(i + 1)))),
          ),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.integer(),
        fc.boolean(),
        async (segments, cutAt, crashSeed, concurrent) => {
          const plan = segments.map((s, i) => ({ ...s, epoch: BigInt(i + 1) }));
          const steps = await stepsOf(plan, 'full', concurrent);
          const fs = freshDisk();
          fs.armPowerCut(1 + Math.floor(cutAt * steps), seededRng(crashSeed));
          const acked = await runPlan(fs, plan, 'full', concurrent);
          await checkAfterCut(fs.crashedDisk ?? fs.powerCut(seededRng(crashSeed)), plan, acked);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('never exposes a partial segment after a process crash, even with fsync off', async () => {
    const plan = seededPlan(3, 4);
    const steps = await stepsOf(plan, 'off', false);
    for (let cut = 1; cut <= steps + 1; cut++) {
      const fs = freshDisk();
      const processCrash: CrashModel = { data: 'keepAll', dirOps: 'keepAll' };
      fs.armPowerCut(cut, seededRng(cut), processCrash);
      const acked = await runPlan(fs, plan, 'off', false);
      await checkAfterCut(fs.crashedDisk ?? fs.powerCut(seededRng(cut), processCrash), plan, acked);
    }
  });

  it('with fsync off, power loss may lose or garble segments but recovery only throws typed errors', async () => {
    let garbled = 0;
    for (let seed = 0; seed < 200; seed++) {
      const plan = seededPlan(seed, 3);
      const fs = freshDisk();
      await runPlan(fs, plan, 'off', false);
      const disk = fs.powerCut(seededRng(seed));
      try {
        await recoverSegments(DB, { fs: disk });
      } catch (error) {
        expect(error).toBeInstanceOf(WalError);
        garbled += 1;
      }
      const lenient = await recoverSegments(DB, { fs: disk, skipCorrupt: true });
      expect(lenient.epochs.length + lenient.partialSegments.length).toBe(
        (await listSegments(DB, { fs: disk })).length,
      );
    }
    // The model is hostile enough to show why fsync matters.
    expect(garbled).toBeGreaterThan(0);
  });

  it('catches a protocol that skips a sync step (the harness can fail)', async () => {
    const plan = seededPlan(5, 3);
    const skip = (sim: SimulatedFileSystem, what: 'datasync' | 'syncDirectory'): WalFileSystem => ({
      open: async (p, mode) => {
        const handle = await sim.open(p, mode);
        if (what === 'datasync') handle.datasync = async () => undefined;
        return handle;
      },
      readFile: (p) => sim.readFile(p),
      stat: (p) => sim.stat(p),
      readdir: (p) => sim.readdir(p),
      rename: (a, b) => sim.rename(a, b),
      unlink: (p) => sim.unlink(p),
      mkdir: (p, o) => sim.mkdir(p, o),
      syncDirectory: async (p) => (what === 'syncDirectory' ? undefined : sim.syncDirectory(p)),
    });
    for (const what of ['datasync', 'syncDirectory'] as const) {
      let caught = 0;
      for (let seed = 0; seed < 40; seed++) {
        const fs = freshDisk();
        const acked = await runPlan(fs, plan, 'full', false, skip(fs, what));
        const disk = fs.powerCut(seededRng(seed));
        const failed = await checkAfterCut(disk, plan, acked).then(
          () => false,
          () => true,
        );
        if (failed) caught += 1;
      }
      expect(caught, `a missing ${what} went unnoticed`).toBeGreaterThan(0);
    }
  });
});
