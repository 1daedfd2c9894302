import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ParallelWal } from '../../src/engine/wal.js';
import { isWalError } from '../../src/errors.js';
import { nodeFileSystem } from '../../src/storage/fs.js';
import { listSegments, segmentPath } from '../../src/storage/segment-files.js';
import { readSkippedEpochs } from '../../src/storage/skipped-epochs.js';
import { readStoreHeader } from '../../src/store/header.js';
import { PageStore } from '../../src/store/page-store.js';
import { seededRng } from '../support/rng.js';
import { SimulatedFileSystem } from '../support/simulated-fs.js';
import { useTempDb } from '../support/temp-db.js';

let db: string;
useTempDb('db', (paths) => {
  db = paths.db;
});

const PAGE = 512;

function page(fill: number): Uint8Array {
  return new Uint8Array(PAGE).fill(fill);
}

async function failure(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => null,
    (e: unknown) => e,
  );
}

/** Commits page n (filled with n) for each n, one epoch each, then closes without a checkpoint. */
async function commitPages(store: PageStore, pages: number[]): Promise<void> {
  for (const n of pages) await store.commit([{ pageNumber: n, data: page(n) }]);
}

describe('PageStore.open and a missing epoch', () => {
  it('fails closed on a lost middle segment instead of folding a state that never existed', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE, autoCheckpoint: false });
    await commitPages(store, [1, 2, 3]);
    await store.close();
    expect((await listSegments(db)).map((s) => s.epoch)).toEqual([0n, 1n, 2n]);
    fs.unlinkSync(segmentPath(db, 1n));
    const error = await failure(PageStore.open(db, { pageSize: PAGE }));
    expect(isWalError(error, 'ERR_RECOVERY_GAP')).toBe(true);
    expect((error as Error).message).toContain('segment of epoch 1 is missing');
    // Nothing folded, nothing deleted: the evidence stays.
    expect((await readStoreHeader(db, nodeFileSystem))?.nextEpoch).toBe(0n);
    expect((await listSegments(db)).map((s) => s.epoch)).toEqual([0n, 2n]);
  });

  it('counts a lost first segment after a checkpoint as a gap', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE, autoCheckpoint: false });
    await commitPages(store, [1]);
    await store.checkpoint();
    await commitPages(store, [2, 3]);
    await store.close();
    expect((await readStoreHeader(db, nodeFileSystem))?.nextEpoch).toBe(1n);
    expect((await listSegments(db)).map((s) => s.epoch)).toEqual([1n, 2n]);
    fs.unlinkSync(segmentPath(db, 1n));
    const error = await failure(PageStore.open(db, { pageSize: PAGE }));
    expect(isWalError(error, 'ERR_RECOVERY_GAP')).toBe(true);
    expect((error as Error).message).toContain('segment of epoch 1 is missing');
  });
});

describe('PageStore.open with skipCorrupt', () => {
  it('sets the damaged tail aside for good and never numbers epochs or sequences inside it again', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE, autoCheckpoint: false });
    await commitPages(store, [1, 2, 3]);
    await store.close();
    fs.writeFileSync(segmentPath(db, 1n), Buffer.alloc(40, 0xee));

    const skipping = await PageStore.open(db, { pageSize: PAGE, skipCorrupt: true });
    expect(skipping.recovery.quarantinedSegments).toHaveLength(2);
    const next = await skipping.commit([{ pageNumber: 4, data: page(4) }]);
    // Epochs 1 and 2 (sequences 2 and 3) may live on in replicas: never again.
    expect(next.epoch).toBe(3n);
    expect(next.commitSeq).toBeGreaterThan(3n);
    await skipping.close();
    expect(await readSkippedEpochs(db)).toEqual([
      { firstEpoch: 1n, lastEpoch: 2n, commitSeqCeiling: 3n },
    ]);

    // A plain reopen neither stops at nor calls the given-up range a gap,
    // and the commit acknowledged after the skip is there.
    const reopened = await PageStore.open(db, { pageSize: PAGE });
    expect(await reopened.read(1)).toEqual(page(1));
    expect(await reopened.read(4)).toEqual(page(4));
    expect(await reopened.read(2)).toEqual(new Uint8Array(PAGE));
    const later = await reopened.commit([{ pageNumber: 5, data: page(5) }]);
    expect(later.epoch).toBe(4n);
    expect(later.commitSeq).toBe(next.commitSeq + 1n);
    await reopened.close();
  });

  it('sets aside segments a log writer gave up under their names, so no checkpoint reads them', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE, autoCheckpoint: false });
    await commitPages(store, [1, 2, 3]);
    await store.close();
    fs.writeFileSync(segmentPath(db, 1n), Buffer.alloc(40, 0xee));
    // The log alone skips (records the range) but leaves the files in place.
    await (await ParallelWal.open(db, { skipCorrupt: true })).close();
    expect((await listSegments(db)).map((s) => s.epoch)).toEqual([0n, 1n, 2n]);

    const reopened = await PageStore.open(db, {
      pageSize: PAGE,
      autoCheckpoint: false,
      checkpointSource: 'log',
    });
    expect(reopened.recovery.quarantinedSegments).toHaveLength(2);
    const next = await reopened.commit([{ pageNumber: 4, data: page(4) }]);
    expect(next.epoch).toBe(3n);
    await reopened.checkpoint();
    expect(await reopened.read(1)).toEqual(page(1));
    expect(await reopened.read(4)).toEqual(page(4));
    await reopened.close();
  });

  it('never reuses a given-up epoch or sequence, whatever step a power cut hits during a skip', async () => {
    const DB = '/data/skip.db';
    /** A store with epochs 0..2 (sequences 1..3), all durable, and epoch 1 corrupt. */
    async function damaged(): Promise<SimulatedFileSystem> {
      const disk = new SimulatedFileSystem();
      disk.mkdirSync('/data');
      const store = await PageStore.open(DB, { fs: disk, pageSize: PAGE, autoCheckpoint: false });
      await commitPages(store, [1, 2, 3]);
      await store.close();
      disk.syncAll();
      disk.writeFileSync(segmentPath(DB, 1n), new Uint8Array(40).fill(0xee), { durable: true });
      return disk;
    }
    /** Opens with skipCorrupt and commits page 4; returns its result when acknowledged. */
    async function skipAndCommit(disk: SimulatedFileSystem) {
      let acked: { epoch: bigint; commitSeq: bigint } | null = null;
      let store: PageStore | null = null;
      try {
        store = await PageStore.open(DB, { fs: disk, skipCorrupt: true });
        acked = await store.commit([{ pageNumber: 4, data: page(4) }]);
        await store.close();
      } catch (error) {
        if (!disk.dead) throw error;
        // The machine is gone: release this process's hold on the database.
        await store?.close().catch(() => undefined);
      }
      return acked;
    }
    const counting = await damaged();
    const from = counting.stepCount;
    await skipAndCommit(counting);
    const steps = counting.stepCount - from;
    expect(steps).toBeGreaterThan(5);
    for (let step = 1; step <= steps; step++) {
      const disk = await damaged();
      disk.armPowerCut(disk.stepCount + step, seededRng(4100 + step));
      const acked = await skipAndCommit(disk);
      const image = disk.dead ? disk.crashedDisk! : disk;
      const store = await PageStore.open(DB, { fs: image, skipCorrupt: true });
      if (acked !== null) expect(await store.read(4), `step ${step}`).toEqual(page(4));
      const next = await store.commit([{ pageNumber: 5, data: page(5) }]);
      expect(next.epoch, `step ${step}`).toBeGreaterThan(acked?.epoch ?? 2n);
      expect(next.commitSeq, `step ${step}`).toBeGreaterThan(acked?.commitSeq ?? 3n);
      await store.close();
    }
  });
});
