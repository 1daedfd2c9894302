/**
 * The read-only replica store: epochs of a real primary (a PageStore) applied
 * in order must read exactly as the primary did at each epoch — while
 * applying and flushing, across reopen, after a power cut at every step of a
 * flush, and after promotion (opening the replica as a PageStore).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isWalError } from '../../src/errors.js';
import { listSegments } from '../../src/storage/segment-files.js';
import { PageStore } from '../../src/store/page-store.js';
import { ReplicaStore } from '../../src/store/replica-store.js';
import { seededRng } from '../support/rng.js';
import { type CrashModel, SimulatedFileSystem } from '../support/simulated-fs.js';

const PAGE = 512;

interface DbState {
  size: number;
  pages: Map<number, Uint8Array>;
}

interface PrimaryEpoch {
  epoch: bigint;
  segment: Uint8Array;
  /** The primary's state after this epoch. */
  state: DbState;
}

function page(pageNumber: number, fill: number): Uint8Array {
  const data = new Uint8Array(PAGE).fill(fill);
  new DataView(data.buffer).setUint32(0, pageNumber, true);
  return data;
}

type Commit = { pages: Array<[number, number]>; dbSizePages?: number };
/** Growth, overwrites, a shrink, a regrow past the old size, more overwrites. */
const WORKLOAD: Commit[] = [
  { pages: [1, 2, 3, 4, 5, 6].map((p) => [p, 1] as [number, number]) },
  { pages: [[2, 2]] },
  { pages: [[7, 7]] },
  { pages: [[3, 3]], dbSizePages: 4 },
  { pages: [[9, 9]] },
  {
    pages: [
      [1, 11],
      [6, 66],
    ],
  },
  { pages: [], dbSizePages: 2 },
  { pages: [[10, 10]] },
  {
    pages: [
      [4, 44],
      [5, 55],
    ],
  },
];

let primary: PrimaryEpoch[] = [];
const dirs: string[] = [];

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-replica-'));
  dirs.push(dir);
  return dir;
}

async function readAll(read: (p: number) => Promise<Uint8Array>, size: number): Promise<DbState> {
  const pages = new Map<number, Uint8Array>();
  for (let p = 1; p <= size; p++) pages.set(p, await read(p));
  return { size, pages };
}

function expectState(seen: DbState, want: DbState, what: string): void {
  expect(seen.size, `${what}: size`).toBe(want.size);
  for (let p = 1; p <= want.size; p++) {
    expect(
      Buffer.from(seen.pages.get(p)!).equals(Buffer.from(want.pages.get(p)!)),
      `${what}: page ${p}`,
    ).toBe(true);
  }
}

function sameState(a: DbState, b: DbState): boolean {
  if (a.size !== b.size) return false;
  for (let p = 1; p <= a.size; p++) {
    if (!Buffer.from(a.pages.get(p)!).equals(Buffer.from(b.pages.get(p)!))) return false;
  }
  return true;
}

const EMPTY: DbState = { size: 0, pages: new Map() };

function stateAt(epoch: bigint | null): DbState {
  if (epoch === null) return EMPTY;
  let found = EMPTY;
  for (const e of primary) if (e.epoch <= epoch) found = e.state;
  return found;
}

/** Runs the workload on a real PageStore, one commit per epoch, keeping every segment. */
beforeAll(async () => {
  const db = path.join(tempDir(), 'primary.db');
  const store = await PageStore.open(db, { pageSize: PAGE, autoCheckpoint: false });
  const states: Array<{ epoch: bigint; state: DbState }> = [];
  for (const commit of WORKLOAD) {
    const result = await store.commit(
      commit.pages.map(([p, fill]) => ({ pageNumber: p, data: page(p, fill) })),
      commit.dbSizePages === undefined ? {} : { dbSizePages: commit.dbSizePages },
    );
    states.push({
      epoch: result.epoch,
      state: await readAll((p) => store.read(p), store.dbSizePages),
    });
  }
  await store.close();
  const segments = new Map<bigint, Uint8Array>();
  for (const entry of await listSegments(db))
    segments.set(entry.epoch, fs.readFileSync(entry.path));
  primary = states.map(({ epoch, state }) => ({ epoch, state, segment: segments.get(epoch)! }));
  expect(primary.every((e) => e.segment !== undefined)).toBe(true);
  expect(new Set(primary.map((e) => e.epoch)).size).toBe(WORKLOAD.length);
});

afterAll(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

async function replicaState(replica: ReplicaStore): Promise<DbState> {
  return readAll((p) => replica.read(p), replica.dbSizePages);
}

describe('ReplicaStore', () => {
  it('reads exactly the primary state of every applied epoch, before and after flushes, and after reopen', async () => {
    const db = path.join(tempDir(), 'replica.db');
    const replica = await ReplicaStore.open(db);
    expect(replica.pageSize).toBeNull();
    expect(replica.isEmpty).toBe(true);
    for (const [i, e] of primary.entries()) {
      expect(await replica.applyEpoch(e.epoch, e.segment)).toBe(true);
      expect(replica.appliedEpoch()).toBe(e.epoch);
      expectState(await replicaState(replica), e.state, `epoch ${e.epoch} applied`);
      if (i % 3 === 1) {
        expect(await replica.flush()).toBe(e.epoch);
        expect(replica.durableEpoch()).toBe(e.epoch);
        expectState(await replicaState(replica), e.state, `epoch ${e.epoch} flushed`);
      }
    }
    // The page size was learned from the first image.
    expect(replica.pageSize).toBe(PAGE);
    // Pages past the size are out of range, as on the primary.
    const last = primary.at(-1)!;
    const beyond = await replica.read(last.state.size + 1).catch((error: unknown) => error);
    expect(isWalError(beyond, 'ERR_STORE_PAGE_OUT_OF_RANGE')).toBe(true);
    // Offered again (a restarted follower): ignored.
    expect(await replica.applyEpoch(primary[2]!.epoch, primary[2]!.segment)).toBe(false);
    expectState(await replicaState(replica), last.state, 'after a stale epoch');
    await replica.close();
    // No journal left behind.
    expect(await listSegments(db)).toEqual([]);

    const reopened = await ReplicaStore.open(db);
    expect(reopened.durableEpoch()).toBe(last.epoch);
    expect(reopened.appliedEpoch()).toBe(last.epoch);
    expectState(await replicaState(reopened), last.state, 'reopened');
    await reopened.close();
  });

  it('is promoted by opening it as a PageStore, whose log continues above the last applied epoch', async () => {
    const db = path.join(tempDir(), 'promote.db');
    const replica = await ReplicaStore.open(db);
    const upTo = primary[5]!;
    for (const e of primary.slice(0, 6)) await replica.applyEpoch(e.epoch, e.segment);
    await replica.close();
    const promoted = await PageStore.open(db, { autoCheckpoint: false });
    try {
      expect(promoted.pageSize).toBe(PAGE);
      expectState(
        await readAll((p) => promoted.read(p), promoted.dbSizePages),
        upTo.state,
        'promoted',
      );
      const next = await promoted.commit([{ pageNumber: 1, data: page(1, 200) }]);
      expect(next.epoch > upTo.epoch).toBe(true);
      expect(Buffer.from(await promoted.read(1)).equals(Buffer.from(page(1, 200)))).toBe(true);
    } finally {
      await promoted.close();
    }
  });

  it('serves multi-page reads as of one epoch while epochs are applied and flushed', async () => {
    const db = path.join(tempDir(), 'concurrent.db');
    const replica = await ReplicaStore.open(db, { pageSize: PAGE });
    let done = false;
    let checked = 0;
    const reader = (async () => {
      while (!done) {
        const size = replica.dbSizePages;
        const numbers = Array.from({ length: size }, (_, k) => k + 1);
        let result: { epoch: bigint | null; pages: Uint8Array[] };
        try {
          result = await replica.readPages(numbers);
        } catch (error) {
          // The size moved down between reading it and the read: retry.
          if (isWalError(error, 'ERR_STORE_PAGE_OUT_OF_RANGE')) continue;
          throw error;
        }
        const want = stateAt(result.epoch);
        const seen: DbState = {
          size: want.size,
          pages: new Map(result.pages.slice(0, want.size).map((data, k) => [k + 1, data])),
        };
        if (numbers.length >= want.size) expectState(seen, want, `reader at ${result.epoch}`);
        checked++;
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    for (let round = 0; round < 3; round++) {
      for (const e of primary) {
        if (round === 0) await replica.applyEpoch(e.epoch, e.segment);
        await replica.flush();
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
    done = true;
    await reader;
    expect(checked).toBeGreaterThan(0);
    await replica.close();
  });

  it('installs a snapshot only into an empty replica, then applies the following epochs', async () => {
    const db = path.join(tempDir(), 'snapshot.db');
    const base = primary[4]!;
    const image = new Uint8Array(base.state.size * PAGE);
    for (const [p, data] of base.state.pages) image.set(data, (p - 1) * PAGE);
    const replica = await ReplicaStore.open(db);
    await replica.installSnapshot(
      { epoch: base.epoch, pageSize: PAGE, dbSizePages: base.state.size, commitSeq: 5n },
      async (write) => {
        // Chunks that do not line up with pages.
        for (let at = 0; at < image.length; at += 700)
          await write(image.subarray(at, at + 700), at);
      },
    );
    expect(replica.durableEpoch()).toBe(base.epoch);
    expectState(await replicaState(replica), base.state, 'snapshot');
    const again = await replica
      .installSnapshot({ epoch: 1n, pageSize: PAGE, dbSizePages: 0, commitSeq: 0n }, async () => {})
      .catch((error: unknown) => error);
    expect(isWalError(again, 'ERR_STORE_REPLICA_STATE')).toBe(true);
    for (const e of primary.slice(5)) await replica.applyEpoch(e.epoch, e.segment);
    expectState(await replicaState(replica), primary.at(-1)!.state, 'after the snapshot');
    await replica.close();
  });

  it('rejects an epoch of another page size or a segment of another epoch, applying nothing', async () => {
    const db = path.join(tempDir(), 'mismatch.db');
    const replica = await ReplicaStore.open(db, { pageSize: 1024 });
    const wrongSize = await replica
      .applyEpoch(primary[0]!.epoch, primary[0]!.segment)
      .catch((error: unknown) => error);
    expect(isWalError(wrongSize, 'ERR_STORE_RECOVERY_FAILED')).toBe(true);
    expect(replica.appliedEpoch()).toBeNull();
    await replica.close();

    const other = await ReplicaStore.open(path.join(tempDir(), 'epoch.db'));
    const wrongEpoch = await other
      .applyEpoch(primary[1]!.epoch + 100n, primary[1]!.segment)
      .catch((error: unknown) => error);
    expect(isWalError(wrongEpoch, 'ERR_STORE_REPLICA_STATE')).toBe(true);
    expect(other.appliedEpoch()).toBeNull();
    await other.close();
  });

  it('is refused while a primary holds the database', async () => {
    const db = path.join(tempDir(), 'locked.db');
    const store = await PageStore.open(db, { pageSize: PAGE });
    try {
      const error = await ReplicaStore.open(db).catch((e: unknown) => e);
      expect(isWalError(error, 'ERR_LOCKED')).toBe(true);
    } finally {
      await store.close();
    }
  });

  it('re-seeds from a newer snapshot: reads wait for it and then see exactly it; an older snapshot is refused', async () => {
    const db = path.join(tempDir(), 'reseed.db');
    const replica = await ReplicaStore.open(db);
    for (const e of primary.slice(0, 3)) await replica.applyEpoch(e.epoch, e.segment);
    await replica.flush();
    const target = primary[6]!;
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const reseeding = replica.reseed(snapshotImageOf(target), async (write) => {
      await gate;
      await write(imageBytes(target.state), 0);
    });
    // A read issued during the re-seed waits and sees the new state whole.
    await new Promise((resolve) => setImmediate(resolve));
    const reading = replica.readPages(Array.from({ length: target.state.size }, (_, k) => k + 1));
    release();
    await reseeding;
    const { epoch, pages } = await reading;
    expect(epoch).toBe(target.epoch);
    pages.forEach((data, i) => {
      expect(Buffer.from(data).equals(Buffer.from(target.state.pages.get(i + 1)!))).toBe(true);
    });
    expect(replica.durableEpoch()).toBe(target.epoch);
    expectState(await replicaState(replica), target.state, 're-seeded');
    const older = await replica
      .reseed(snapshotImageOf(primary[4]!), async () => {})
      .catch((error: unknown) => error);
    expect(isWalError(older, 'ERR_STORE_REPLICA_STATE')).toBe(true);
    // It goes on with the epochs after the snapshot.
    for (const e of primary.slice(7)) await replica.applyEpoch(e.epoch, e.segment);
    expectState(await replicaState(replica), primary.at(-1)!.state, 'after the re-seed');
    await replica.close();
    expect(fs.readdirSync(path.dirname(db)).filter((f) => f.includes('pwal-reseed'))).toEqual([]);
  });

  describe('power cut at every step of a re-seed', () => {
    const DB = '/data/reseed.db';
    async function run(disk: SimulatedFileSystem, armAt: (() => void) | null) {
      const replica = await ReplicaStore.open(DB, { fs: disk });
      try {
        for (const e of primary.slice(0, 3)) await replica.applyEpoch(e.epoch, e.segment);
        await replica.flush();
        armAt?.();
        const target = primary[6]!;
        await replica.reseed(snapshotImageOf(target), async (write) => {
          const bytes = imageBytes(target.state);
          for (let at = 0; at < bytes.length; at += 1000)
            await write(bytes.subarray(at, at + 1000), at);
        });
        await replica.close();
      } catch (error) {
        if (!disk.dead) throw error;
        expect(error, String(error)).toHaveProperty('code');
        await replica.close({ flush: false }).catch(() => undefined);
      }
    }

    it('reopens at the old epoch or the snapshot, whole, and is promotable after a replica open', async () => {
      const before = primary[2]!;
      const after = primary[6]!;
      const count = new SimulatedFileSystem();
      count.mkdirSync('/data');
      let from = 0;
      await run(count, () => {
        from = count.stepCount;
      });
      const steps = count.stepCount - from;
      const outcomes = new Set<bigint | null>();
      let refusedAsDatabase = 0;
      for (let step = 1; step <= steps; step++) {
        const disk = new SimulatedFileSystem();
        disk.mkdirSync('/data');
        await run(disk, () =>
          disk.armPowerCut(disk.stepCount + step, seededRng(7000 + step), { dirOps: 'prefix' }),
        );
        const image = disk.dead ? disk.crashedDisk! : disk;
        // Opened as a database first: refused while a switch is unfinished.
        const early = await PageStore.open(DB, { fs: image, autoCheckpoint: false }).catch(
          (error: unknown) => error,
        );
        if (early instanceof PageStore) await early.close();
        else {
          expect(
            isWalError(early, 'ERR_STORE_REPLICA_STATE'),
            `step ${step}: ${String(early)}`,
          ).toBe(true);
          refusedAsDatabase++;
        }
        const reopened = await ReplicaStore.open(DB, { fs: image });
        const durable = reopened.durableEpoch();
        outcomes.add(durable);
        expect([before.epoch, after.epoch], `step ${step}`).toContain(durable);
        expect(sameState(await replicaState(reopened), stateAt(durable)), `step ${step}`).toBe(
          true,
        );
        await reopened.close();
        const promoted = await PageStore.open(DB, { fs: image, autoCheckpoint: false });
        const promotedState = await readAll((p) => promoted.read(p), promoted.dbSizePages);
        expect(sameState(promotedState, stateAt(durable)), `step ${step}: promoted`).toBe(true);
        await promoted.close();
      }
      expect(outcomes).toEqual(new Set([before.epoch, after.epoch]));
      expect(refusedAsDatabase).toBeGreaterThan(0);
    });
  });

  describe('power cut at every step of a flush', () => {
    const DB = '/data/replica.db';
    const MODELS: Array<{ name: string; model: CrashModel; seed: number }> = [
      { name: 'random data, subset of dir ops', model: {}, seed: 1 },
      { name: 'journal order (prefix)', model: { dirOps: 'prefix' }, seed: 2 },
    ];

    /** Applies the first `split` epochs and flushes, then the rest and flushes (the cut is in this flush). */
    async function run(disk: SimulatedFileSystem, split: number, armAt: (() => void) | null) {
      const replica = await ReplicaStore.open(DB, { fs: disk });
      try {
        for (const e of primary.slice(0, split)) await replica.applyEpoch(e.epoch, e.segment);
        await replica.flush();
        for (const e of primary.slice(split)) await replica.applyEpoch(e.epoch, e.segment);
        armAt?.();
        await replica.flush();
        await replica.close();
      } catch (error) {
        if (!disk.dead) throw error;
        expect(error, String(error)).toHaveProperty('code');
        await replica.close({ flush: false }).catch(() => undefined);
      }
    }

    for (const { name, model, seed } of MODELS) {
      it(`(${name}) leaves the replica at one of the two flushed epochs, whole, and promotable`, async () => {
        const split = 3;
        const before = primary[split - 1]!;
        const after = primary.at(-1)!;
        const count = new SimulatedFileSystem();
        count.mkdirSync('/data');
        let from = 0;
        await run(count, split, () => {
          from = count.stepCount;
        });
        const steps = count.stepCount - from;
        expect(steps).toBeGreaterThan(5);
        const outcomes = new Set<bigint | null>();
        let fired = 0;
        for (let step = 1; step <= steps; step++) {
          const disk = new SimulatedFileSystem();
          disk.mkdirSync('/data');
          await run(disk, split, () =>
            disk.armPowerCut(disk.stepCount + step, seededRng(seed * 1000 + step), model),
          );
          const image = disk.dead ? disk.crashedDisk! : disk;
          const reopened = await ReplicaStore.open(DB, { fs: image });
          const durable = reopened.durableEpoch();
          outcomes.add(durable);
          if (disk.dead) fired++;
          expect([before.epoch, after.epoch], `step ${step}`).toContain(durable);
          const seen = await replicaState(reopened);
          expect(sameState(seen, stateAt(durable)), `step ${step}: state of epoch ${durable}`).toBe(
            true,
          );
          await reopened.close();
          const promoted = await PageStore.open(DB, { fs: image, autoCheckpoint: false });
          const promotedState = await readAll((p) => promoted.read(p), promoted.dbSizePages);
          expect(sameState(promotedState, stateAt(durable)), `step ${step}: promoted`).toBe(true);
          await promoted.close();
        }
        // The cut landed inside the flush, on both sides of the header replace.
        expect(fired).toBeGreaterThan(steps / 2);
        expect(outcomes).toEqual(new Set([before.epoch, after.epoch]));
      });
    }
  });
});

function imageBytes(state: DbState): Uint8Array {
  const bytes = new Uint8Array(state.size * PAGE);
  for (const [p, data] of state.pages) bytes.set(data, (p - 1) * PAGE);
  return bytes;
}

function snapshotImageOf(e: PrimaryEpoch) {
  return { epoch: e.epoch, pageSize: PAGE, dbSizePages: e.state.size, commitSeq: 0n };
}
