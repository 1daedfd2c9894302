/**
 * The pool sink on the simulated disk, power cut at every step: folded
 * segments (complete, valid, of older epochs) are recycled into the pool,
 * then new epochs of varied sizes are written over them in place (shorter
 * ones leave stale bytes behind, longer ones extend the file) and published.
 * A power cut at any step mixes old and new sectors of a reused file, drops
 * unsynced writes and loses directory operations (crash models below). After
 * reboot, read-only recovery and adoption must both hold every acknowledged
 * epoch byte for byte as a contiguous run from the floor, never an epoch
 * below the floor from a temporary file, and leave no pool file behind.
 */
import { describe, expect, it } from 'vitest';
import { PoolSegmentSink } from '../../src/engine/pool-sink.js';
import { encodeSegment } from '../../src/format/segment.js';
import type { WalRecord } from '../../src/format/types.js';
import { adoptOrRemoveTemporaryFiles } from '../../src/storage/adoption.js';
import { recoverSegments } from '../../src/storage/recovery.js';
import { listSegments, readSegment, segmentPath } from '../../src/storage/segment-files.js';
import { type Rng, randInt, seededRng } from '../support/rng.js';
import { type CrashModel, SimulatedFileSystem } from '../support/simulated-fs.js';

const DB = '/data/app.db';
/** Epochs below this are folded (a store's header); their segments get recycled. */
const FLOOR = 4n;

const MODELS: CrashModel[] = [
  {},
  { dirOps: 'prefix' },
  { data: 'dropAll', dirOps: 'dropAll' },
  { data: 'random', dirOps: 'keepAll', reorderSectors: true, tornSectors: true },
];

function recordsOf(epoch: bigint, rng: Rng, count: number, size: number): WalRecord[] {
  return Array.from({ length: count }, (_, i) => {
    const image = new Uint8Array(size);
    for (let b = 0; b < size; b++) image[b] = Math.floor(rng() * 256);
    const seq = epoch * 100n + BigInt(i) + 1n;
    return {
      txnToken: { id: seq, epoch: 0 },
      epoch,
      pageId: 1 + i,
      beginSeq: seq,
      endSeq: seq,
      beforeImage: new Uint8Array(0),
      afterImage: image,
    };
  });
}

/** The bytes of every epoch of a run: old (folded) ones and new ones. */
function plan(seed: number): Map<bigint, Uint8Array> {
  const rng = seededRng(seed);
  const out = new Map<bigint, Uint8Array>();
  // Old segments: long (many sectors), so new epochs written over them leave stale tails.
  for (let e = 0n; e < FLOOR; e++) out.set(e, encodeSegment(e, recordsOf(e, rng, 3, 900), 2));
  for (let e = FLOOR; e < FLOOR + 7n; e++) {
    const count = randInt(rng, 1, 4);
    out.set(e, encodeSegment(e, recordsOf(e, rng, count, randInt(rng, 100, 1400)), 2));
  }
  return out;
}

interface Run {
  disk: SimulatedFileSystem;
  acked: bigint[];
  steps: number;
  stats: ReturnType<PoolSegmentSink['poolStats']> | null;
}

async function run(
  seed: number,
  cut: number | null,
  crashSeed: number,
  model: CrashModel,
): Promise<Run> {
  const fs = new SimulatedFileSystem();
  fs.mkdirSync('/data');
  const bytes = plan(seed);
  for (let e = 0n; e < FLOOR; e++) fs.writeFileSync(segmentPath(DB, e), bytes.get(e)!);
  if (cut !== null) fs.armPowerCut(cut, seededRng(crashSeed), model);
  const acked: bigint[] = [];
  let stats: ReturnType<PoolSegmentSink['poolStats']> | null = null;
  const sink = new PoolSegmentSink(DB, fs, 'full', {
    poolSize: 3,
    startEpoch: FLOOR,
    prefill: false,
  });
  try {
    await sink.recycle(
      [...bytes.keys()]
        .filter((e) => e < FLOOR)
        .map((epoch) => ({ epoch, path: segmentPath(DB, epoch) })),
      FLOOR,
    );
    const published: Promise<void>[] = [];
    for (let e = FLOOR; e < FLOOR + 7n; e++) {
      const written = await sink.write(e, [bytes.get(e)!]);
      acked.push(e);
      if (written.published !== null) published.push(written.published);
    }
    await Promise.all(published);
    stats = sink.poolStats();
    await sink.dispose();
  } catch (error) {
    if (!fs.dead) throw error;
    await sink.dispose().catch(() => {});
  }
  const disk = fs.crashedDisk ?? fs.powerCut(seededRng(crashSeed), model);
  return { disk, acked, steps: fs.stepCount, stats };
}

async function check(r: Run, seed: number, context: string): Promise<void> {
  const bytes = plan(seed);
  const verify = (epochs: readonly bigint[], stage: string) => {
    const fresh = epochs.filter((e) => e >= FLOOR);
    // A contiguous run from the floor that holds every acknowledged epoch.
    expect(fresh, `${context} ${stage}: epochs`).toEqual(
      Array.from({ length: fresh.length }, (_, i) => FLOOR + BigInt(i)),
    );
    expect(fresh.length, `${context} ${stage}: acknowledged epoch lost`).toBeGreaterThanOrEqual(
      r.acked.length,
    );
  };
  const readOnly = await recoverSegments(DB, {
    fs: r.disk,
    floorEpoch: FLOOR,
    firstUnappliedEpoch: FLOOR,
  });
  verify(readOnly.epochs, 'read-only');
  for (const record of readOnly.records) {
    if (record.epoch < FLOOR) continue;
    const want = bytes.get(record.epoch)!;
    expect(want, `${context}: record of an unknown epoch`).toBeDefined();
  }
  const cleanup = await adoptOrRemoveTemporaryFiles(DB, { fs: r.disk, floorEpoch: FLOOR });
  for (const a of cleanup.adopted)
    expect(a.epoch >= FLOOR, `${context}: adopted old epoch ${a.epoch}`).toBe(true);
  expect(r.disk.listSync('/data')!.filter((n) => n.includes('-wal-tmp-'))).toEqual([]);
  const segments = await listSegments(DB, { fs: r.disk });
  verify(
    segments.map((s) => s.epoch),
    'after adoption',
  );
  for (const s of segments) {
    // Exact bytes: no stale tail under a segment name, no mixed sectors.
    expect(r.disk.readFileSync(s.path), `${context}: segment ${s.epoch}`).toEqual(
      bytes.get(s.epoch),
    );
    await readSegment(s.path, { fs: r.disk });
  }
  const after = await recoverSegments(DB, {
    fs: r.disk,
    floorEpoch: FLOOR,
    firstUnappliedEpoch: FLOOR,
  });
  expect(after.epochs).toEqual(segments.map((s) => s.epoch));
}

describe('the pool sink under power cuts (torn overwrites of reused files)', () => {
  it('keeps every acknowledged epoch whole and never adopts an older one, cut at every step', async () => {
    const seeds = [1];
    let cuts = 0;
    let withAcks = 0;
    for (const seed of seeds) {
      const dry = await run(seed, null, 0, {});
      expect(dry.acked).toHaveLength(7);
      // Three folded segments were recycled and written over; new, empty files took the rest.
      expect(dry.stats).toMatchObject({ recycled: 3, reused: 7 });
      expect(dry.stats!.created).toBeGreaterThan(0);
      for (let cut = 1; cut <= dry.steps + 1; cut++) {
        for (let m = 0; m < MODELS.length; m++) {
          const crashSeed = seed * 100_000 + cut * 10 + m;
          const r = await run(seed, cut, crashSeed, MODELS[m]!);
          await check(
            r,
            seed,
            `seed ${seed}, cut at step ${cut}/${dry.steps}, model ${m}, crash seed ${crashSeed}`,
          );
          cuts++;
          if (r.acked.length > 0) withAcks++;
        }
      }
    }
    expect(withAcks).toBeGreaterThan(cuts / 3);
  }, 240_000);
});
