/**
 * Crashes at every step of a checkpoint (and of a whole store workload):
 * power cuts on the simulated disk under several crash models, and an I/O
 * error at the k-th file-system call for every k. After the reboot (or the
 * fault), reopening the store must give exactly the acknowledged state:
 * every acknowledged commit present, an unacknowledged one all or nothing.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { isWalError } from '../../src/errors.js';
import { nodeFileSystem, type WalFileSystem } from '../../src/storage/fs.js';
import { PageStore } from '../../src/store/page-store.js';
import { type FaultKind, FaultyFileSystem } from '../support/faulty-fs.js';
import { awaitPublished } from '../support/published.js';
import { seededRng } from '../support/rng.js';
import { type CrashModel, SimulatedFileSystem } from '../support/simulated-fs.js';

const PAGE = 512;
/** Where checkpoints take images from, for the suite running now (both are tested). */
let source: 'memory' | 'log' = 'memory';
const DB = '/data/app.db';
const ALL_KINDS: FaultKind[] = [
  'open',
  'write',
  'writev',
  'read',
  'datasync',
  'sync',
  'truncate',
  'close',
  'readFile',
  'stat',
  'readdir',
  'rename',
  'unlink',
  'mkdir',
  'syncDirectory',
];

function page(pageNumber: number, fill: number): Uint8Array {
  const data = new Uint8Array(PAGE).fill(fill);
  new DataView(data.buffer).setUint32(0, pageNumber, true);
  return data;
}

/** The database as a reader sees it: size and every page's bytes. */
interface DbState {
  size: number;
  pages: Map<number, Uint8Array>;
}

type Op =
  | { kind: 'commit'; pages: Array<[number, number]>; dbSizePages?: number }
  | { kind: 'checkpoint' };

/**
 * Builds a base (checkpointed), then a shrink, a regrow, overwrites and a
 * growth — so the final checkpoint truncates, writes, extends, fsyncs,
 * replaces the header and deletes segments.
 */
const WORKLOAD: Op[] = [
  {
    kind: 'commit',
    pages: [
      [1, 1],
      [2, 1],
      [3, 1],
      [4, 1],
      [5, 1],
      [6, 1],
    ],
  },
  { kind: 'checkpoint' },
  { kind: 'commit', pages: [[2, 2]], dbSizePages: 4 },
  { kind: 'commit', pages: [[7, 7]] },
  {
    kind: 'commit',
    pages: [
      [1, 11],
      [3, 33],
    ],
  },
  { kind: 'commit', pages: [[8, 8]] },
];
const MAX_PAGE = 10;

/** The state after each number of acknowledged commits (index 0 = empty database). */
function modelStates(ops: readonly Op[]): DbState[] {
  const states: DbState[] = [{ size: 0, pages: new Map() }];
  let size = 0;
  const content = new Map<number, Uint8Array>();
  for (const op of ops) {
    if (op.kind !== 'commit') continue;
    let maxPage = 0;
    for (const [p, fill] of op.pages) {
      content.set(p, page(p, fill));
      maxPage = Math.max(maxPage, p);
    }
    if (op.dbSizePages !== undefined) {
      for (const p of [...content.keys()]) if (p > op.dbSizePages) content.delete(p);
      size = op.dbSizePages;
    } else {
      size = Math.max(size, maxPage);
    }
    const pages = new Map<number, Uint8Array>();
    for (let p = 1; p <= size; p++) pages.set(p, content.get(p) ?? new Uint8Array(PAGE));
    states.push({ size, pages });
  }
  return states;
}
const MODELS = modelStates(WORKLOAD);

async function runOps(
  store: PageStore,
  ops: readonly Op[],
  onAck: () => void,
  before?: (index: number) => void,
): Promise<void> {
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    before?.(i);
    if (op.kind === 'checkpoint') {
      await store.checkpoint();
    } else {
      const pages = op.pages.map(([p, fill]) => ({ pageNumber: p, data: page(p, fill) }));
      await store.commit(
        pages,
        op.dbSizePages === undefined ? {} : { dbSizePages: op.dbSizePages },
      );
      onAck();
    }
  }
}

async function readState(store: PageStore): Promise<DbState> {
  const size = store.dbSizePages;
  const pages = new Map<number, Uint8Array>();
  for (let p = 1; p <= size; p++) pages.set(p, await store.read(p));
  for (let p = size + 1; p <= MAX_PAGE; p++) {
    const error = await store.read(p).then(
      () => null,
      (e: unknown) => e,
    );
    expect(isWalError(error, 'ERR_STORE_PAGE_OUT_OF_RANGE')).toBe(true);
  }
  return { size, pages };
}

function sameState(a: DbState, b: DbState): boolean {
  if (a.size !== b.size) return false;
  for (let p = 1; p <= a.size; p++) {
    if (!Buffer.from(a.pages.get(p)!).equals(Buffer.from(b.pages.get(p)!))) return false;
  }
  return true;
}

/** Reopens on `disk`, checks the state is one of `allowed`, checkpoints, and checks again after another reopen. */
async function checkReopen(
  disk: WalFileSystem,
  allowed: readonly DbState[],
  what: string,
): Promise<void> {
  const store = await PageStore.open(DB, {
    fs: disk,
    autoCheckpoint: false,
    checkpointSource: source,
  });
  const seen = await readState(store);
  expect(
    allowed.some((s) => sameState(s, seen)),
    `${what}: size ${seen.size}, allowed sizes ${allowed.map((s) => s.size).join('/')}`,
  ).toBe(true);
  // The recovered store works: a checkpoint and a reopen keep the same state.
  await store.close({ checkpoint: true });
  const again = await PageStore.open(DB, {
    fs: disk,
    autoCheckpoint: false,
    checkpointSource: source,
  });
  expect(sameState(await readState(again), seen), `${what}: after a second reopen`).toBe(true);
  await again.close();
}

function freshDisk(): SimulatedFileSystem {
  const disk = new SimulatedFileSystem();
  disk.mkdirSync('/data');
  return disk;
}

interface CutOutcome {
  fired: boolean;
  acked: number;
  disk: SimulatedFileSystem;
}

/** Runs the workload on a fresh disk with a power cut armed before `cutStep` (relative to `fromOp`'s start when given). */
async function runWithCut(
  cutStep: number,
  model: CrashModel,
  seed: number,
  fromOp: number | null,
): Promise<CutOutcome> {
  const disk = freshDisk();
  let acked = 0;
  const arm = () => disk.armPowerCut(disk.stepCount + cutStep, seededRng(seed), model);
  if (fromOp === null) arm();
  let store: PageStore | null = null;
  try {
    store = await PageStore.open(DB, {
      fs: disk,
      pageSize: PAGE,
      autoCheckpoint: false,
      checkpointSource: source,
    });
    await runOps(
      store,
      WORKLOAD,
      () => acked++,
      (i) => {
        if (i === fromOp) arm();
      },
    );
    await store.close();
  } catch (error) {
    if (!disk.dead) throw error;
    // Whatever the dying process saw, only typed errors.
    expect(error, String(error)).toHaveProperty('code');
    // Let go of the in-process lock registration of the dead store.
    await store?.close().catch(() => undefined);
  }
  return { fired: disk.dead, acked, disk: disk.dead ? disk.crashedDisk! : disk };
}

/** Steps the workload takes in total, and from the start of op `fromOp`. */
async function countSteps(fromOp: number | null): Promise<number> {
  const disk = freshDisk();
  let startAt = 0;
  const store = await PageStore.open(DB, {
    fs: disk,
    pageSize: PAGE,
    autoCheckpoint: false,
    checkpointSource: source,
  });
  await runOps(
    store,
    WORKLOAD,
    () => undefined,
    (i) => {
      if (i === fromOp) startAt = disk.stepCount;
    },
  );
  await store.close();
  return disk.stepCount - startAt;
}

const MODELS_TO_TRY: Array<{ name: string; model: CrashModel; seeds: number[] }> = [
  { name: 'random data, subset of dir ops', model: {}, seeds: [1, 2, 3] },
  { name: 'journal order (prefix)', model: { dirOps: 'prefix' }, seeds: [4, 5] },
  { name: 'process crash (keep all)', model: { data: 'keepAll', dirOps: 'keepAll' }, seeds: [6] },
];

describe.each(['memory', 'log'] as const)(
  'store crash safety (checkpoint from %s): power cuts',
  (from) => {
    beforeAll(() => {
      source = from;
    });
    it('models the workload as expected (sanity of the oracle)', async () => {
      const disk = freshDisk();
      const store = await PageStore.open(DB, {
        fs: disk,
        pageSize: PAGE,
        autoCheckpoint: false,
        checkpointSource: source,
      });
      await runOps(store, WORKLOAD, () => undefined);
      expect(sameState(await readState(store), MODELS[MODELS.length - 1]!)).toBe(true);
      await store.close();
    });

    it('recovers the acknowledged state after a power cut at every step of the final checkpoint', async () => {
      const lastCheckpoint = WORKLOAD.length; // appended below
      const ops = [...WORKLOAD, { kind: 'checkpoint' } as const];
      const steps = await (async () => {
        const disk = freshDisk();
        const store = await PageStore.open(DB, {
          fs: disk,
          pageSize: PAGE,
          autoCheckpoint: false,
          checkpointSource: source,
        });
        await runOps(store, WORKLOAD, () => undefined);
        const before = disk.stepCount;
        await store.checkpoint();
        const after = disk.stepCount;
        await store.close();
        return after - before;
      })();
      expect(steps).toBeGreaterThan(10);
      const final = MODELS[MODELS.length - 1]!;
      let cuts = 0;
      for (const { name, model, seeds } of MODELS_TO_TRY) {
        for (const seed of seeds) {
          for (let k = 1; k <= steps; k++) {
            const disk = freshDisk();
            const store = await PageStore.open(DB, {
              fs: disk,
              pageSize: PAGE,
              autoCheckpoint: false,
              checkpointSource: source,
            });
            await runOps(store, ops.slice(0, lastCheckpoint), () => undefined);
            disk.armPowerCut(disk.stepCount + k, seededRng(seed * 1000 + k), model);
            const error = await store.checkpoint().then(
              () => null,
              (e: unknown) => e,
            );
            expect(disk.dead, `${name} seed ${seed} step ${k}: the cut fired`).toBe(true);
            expect(isWalError(error, 'ERR_STORE_CHECKPOINT_FAILED'), String(error)).toBe(true);
            await store.close().catch(() => undefined);
            await checkReopen(disk.crashedDisk!, [final], `${name} seed ${seed} step ${k}`);
            cuts++;
          }
        }
      }
      expect(cuts).toBe(steps * 6);
    });

    it('never loses an acknowledged commit nor shows half a commit, cut anywhere in the workload', async () => {
      const total = await countSteps(null);
      for (const { name, model, seeds } of MODELS_TO_TRY) {
        for (const seed of seeds) {
          for (let k = 1; k <= total; k++) {
            const run = await runWithCut(k, model, seed * 7919 + k, null);
            if (!run.fired) continue;
            // The commit in flight at the cut may or may not have made it.
            const allowed = MODELS.slice(run.acked, run.acked + 2);
            const canOpen = await PageStore.open(DB, {
              fs: run.disk,
              autoCheckpoint: false,
              checkpointSource: source,
            }).then(
              async (s) => {
                await s.close();
                return true;
              },
              (e: unknown) => {
                // Only an empty disk (cut before the database existed) may refuse to open.
                expect(run.acked, `${name} seed ${seed} step ${k}: ${String(e)}`).toBe(0);
                return false;
              },
            );
            if (canOpen) await checkReopen(run.disk, allowed, `${name} seed ${seed} step ${k}`);
          }
        }
      }
    });

    it('survives a power cut at every step of recovery on open', async () => {
      // A crashed disk with segments to replay: the workload without its checkpoints' cleanup.
      const base = freshDisk();
      const store = await PageStore.open(DB, {
        fs: base,
        pageSize: PAGE,
        autoCheckpoint: false,
        checkpointSource: source,
      });
      await runOps(store, WORKLOAD, () => undefined);
      await store.close();
      const image = base.crashImage(seededRng(1), { data: 'keepAll', dirOps: 'keepAll' });
      const probe = image.crashImage(seededRng(2), { data: 'keepAll', dirOps: 'keepAll' });
      const before = probe.stepCount;
      const opened = await PageStore.open(DB, {
        fs: probe,
        autoCheckpoint: false,
        checkpointSource: source,
      });
      const steps = probe.stepCount - before;
      await opened.close();
      expect(steps).toBeGreaterThan(5);
      const final = MODELS[MODELS.length - 1]!;
      for (let k = 1; k <= steps; k++) {
        for (const seed of [1, 2]) {
          const disk = image.crashImage(seededRng(seed), { data: 'keepAll', dirOps: 'keepAll' });
          disk.armPowerCut(disk.stepCount + k, seededRng(seed + k), {});
          const error = await PageStore.open(DB, {
            fs: disk,
            autoCheckpoint: false,
            checkpointSource: source,
          }).then(
            async (s) => {
              await s.close().catch(() => undefined);
              return null;
            },
            (e: unknown) => e,
          );
          if (!disk.dead) continue;
          if (error !== null) expect(error, String(error)).toHaveProperty('code');
          await checkReopen(disk.crashedDisk!, [final], `recovery step ${k} seed ${seed}`);
        }
      }
    });
  },
);

describe.each(['memory', 'log'] as const)(
  'store crash safety (checkpoint from %s): an I/O error at every call of a checkpoint',
  (from) => {
    beforeAll(() => {
      source = from;
    });
    it('fails the checkpoint with a typed error, keeps serving, and loses nothing (real disk)', async () => {
      const final = MODELS[MODELS.length - 1]!;
      const counting = new FaultyFileSystem(nodeFileSystem);
      const countDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
      let steps: number;
      try {
        const db = path.join(countDir, 'db');
        const store = await PageStore.open(db, {
          fs: counting,
          pageSize: PAGE,
          autoCheckpoint: false,
          checkpointSource: source,
        });
        await runOps(store, WORKLOAD, () => undefined);
        // Count the checkpoint's own I/O: the log's background publication
        // (earlyAck sink) of the last acknowledged epoch is done first.
        await awaitPublished(store.log);
        const callsBefore = [...counting.calls.values()].reduce((a, b) => a + b, 0);
        await store.checkpoint();
        steps = [...counting.calls.values()].reduce((a, b) => a + b, 0) - callsBefore;
        await store.close();
      } finally {
        fs.rmSync(countDir, { recursive: true, force: true });
      }
      expect(steps).toBeGreaterThan(10);
      for (let k = 1; k <= steps; k++) {
        for (const heal of [true, false]) {
          const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
          try {
            const db = path.join(dir, 'db');
            const faulty = new FaultyFileSystem(nodeFileSystem);
            const store = await PageStore.open(db, {
              fs: faulty,
              pageSize: PAGE,
              autoCheckpoint: false,
              checkpointSource: source,
            });
            await runOps(store, WORKLOAD, () => undefined);
            await awaitPublished(store.log);
            faulty.inject({ kind: ALL_KINDS, nth: k, code: k % 2 === 0 ? 'EIO' : 'ENOSPC' });
            const error = await store.checkpoint().then(
              () => null,
              (e: unknown) => e,
            );
            // Cleanup-only steps (after the header moved) may be absorbed; otherwise typed.
            if (error !== null) {
              expect(
                isWalError(error, 'ERR_STORE_CHECKPOINT_FAILED'),
                `step ${k}: ${String(error)}`,
              ).toBe(true);
            }
            if (heal) {
              faulty.heal();
              expect(
                sameState(await readState(store), final),
                `step ${k}: reads after the fault`,
              ).toBe(true);
              await store.checkpoint();
              expect(sameState(await readState(store), final), `step ${k}: after a retry`).toBe(
                true,
              );
            }
            await store.close().catch(() => undefined);
            const again = await PageStore.open(db, {
              autoCheckpoint: false,
              checkpointSource: source,
            });
            expect(
              sameState(await readState(again), final),
              `step ${k} heal=${heal}: reopened`,
            ).toBe(true);
            await again.close();
          } finally {
            fs.rmSync(dir, { recursive: true, force: true });
          }
        }
      }
    });
  },
);
