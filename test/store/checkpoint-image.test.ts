/**
 * `PageStore.withCheckpointImage`: the database file held still (no
 * checkpoint writes it) while a callback reads it, for base snapshots.
 */
import * as fs from 'node:fs';
import { describe, expect, it, vi } from 'vitest';
import { isWalError } from '../../src/errors.js';
import { type CheckpointImage, PageStore } from '../../src/store/page-store.js';
import { useTempDb } from '../support/temp-db.js';

let db: string;
useTempDb('db', (paths) => {
  db = paths.db;
});

const PAGE = 512;

/** A unique page image: the writer's serial number, then the page number. */
function image(serial: number, pageNumber: number): Uint8Array {
  const data = new Uint8Array(PAGE).fill(serial & 0xff);
  const view = new DataView(data.buffer);
  view.setUint32(0, serial, true);
  view.setUint32(4, pageNumber, true);
  return data;
}

/** Every durable commit, with where the log put it. */
interface LoggedCommit {
  epoch: bigint;
  commitSeq: bigint;
  pages: Map<number, Uint8Array>;
}

/** Records every commit the store acknowledged (grow-only workloads: no explicit sizes). */
class Oracle {
  readonly commits: LoggedCommit[] = [];
  private serial = 0;

  async commit(store: PageStore, pageNumbers: number[]): Promise<LoggedCommit> {
    const pages = new Map(pageNumbers.map((p) => [p, image(++this.serial, p)] as const));
    const result = await store.commit(pages);
    const logged = { epoch: result.epoch, commitSeq: result.commitSeq, pages };
    this.commits.push(logged);
    return logged;
  }

  /** Commits of epochs in `(after, through]`, in recovery order. */
  between(after: bigint | null, through: bigint | null): LoggedCommit[] {
    return this.commits
      .filter((c) => (after === null || c.epoch > after) && through !== null && c.epoch <= through)
      .sort((a, b) =>
        a.epoch !== b.epoch ? (a.epoch < b.epoch ? -1 : 1) : a.commitSeq < b.commitSeq ? -1 : 1,
      );
  }

  /** The database file's bytes as of `epoch` (pages 1..size, zeros where never written). */
  stateAt(epoch: bigint | null): Uint8Array {
    return overlay(new Uint8Array(0), this.between(null, epoch));
  }
}

/** `base` with `commits` applied in order (grows to cover their pages). */
function overlay(base: Uint8Array, commits: readonly LoggedCommit[]): Uint8Array {
  let pages = base.length / PAGE;
  for (const c of commits) for (const p of c.pages.keys()) pages = Math.max(pages, p);
  const out = new Uint8Array(pages * PAGE);
  out.set(base);
  for (const c of commits) for (const [p, data] of c.pages) out.set(data, (p - 1) * PAGE);
  return out;
}

async function wholeImage(img: CheckpointImage): Promise<Uint8Array> {
  return img.read(0, img.dbSizePages * img.pageSize);
}

function fileBytes(): Uint8Array {
  return new Uint8Array(fs.readFileSync(db));
}

async function codeOf(promise: Promise<unknown>): Promise<string | null> {
  return promise.then(
    () => null,
    (error: unknown) => (isWalError(error) ? error.code : `not a WalError: ${String(error)}`),
  );
}

function tick(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

describe('PageStore.withCheckpointImage', () => {
  it('hands out the file as of the checkpoint while commits flow, and queues a checkpoint asked for meanwhile until it settles', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE, autoCheckpoint: false });
    const oracle = new Oracle();
    for (let i = 0; i < 6; i++) await oracle.commit(store, [1, 2 + i, 9]);
    const folded = (await store.checkpoint()).checkpointEpoch;
    const events: string[] = [];
    let queued: Promise<{ checkpointEpoch: bigint | null }> | null = null;
    const during: LoggedCommit[] = [];
    const seen = await store.withCheckpointImage(async (img) => {
      expect(img.epoch).toBe(folded);
      // Nothing committed since the checkpoint: the image is exact.
      expect(img.consistentEpoch).toBe(folded);
      expect(img.pageSize).toBe(PAGE);
      expect(img.dbSizePages).toBe(9);
      const before = await wholeImage(img);
      expect(before).toEqual(fileBytes());
      queued = store.checkpoint();
      void queued.then(() => events.push('checkpoint done'));
      for (let i = 0; i < 20; i++) during.push(await oracle.commit(store, [1, 3, 10 + i]));
      await tick(30);
      // The checkpoint had every chance to run: it must not have touched the file.
      expect(fileBytes()).toEqual(before);
      expect(await wholeImage(img)).toEqual(before);
      expect(store.stats().checkpoints).toBe(1);
      expect(await store.read(29)).toEqual(during[19]!.pages.get(29));
      events.push('fn done');
      return before;
    });
    expect(seen).toEqual(oracle.stateAt(folded));
    const result = await queued!;
    expect(events).toEqual(['fn done', 'checkpoint done']);
    // The queued run folded the commits made while the image was held.
    const newest = during[during.length - 1]!.epoch;
    expect(result.checkpointEpoch! >= newest).toBe(true);
    expect(fileBytes()).toEqual(oracle.stateAt(result.checkpointEpoch));
    await store.close();
  });

  it('reproduces the database as of consistentEpoch once the epochs after the image are replayed over it, with checkpoints racing commits', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE, autoCheckpoint: false });
    const oracle = new Oracle();
    let stop = false;
    const writers = [0, 1, 2].map(async (w) => {
      for (let n = 0; !stop; n++) await oracle.commit(store, [1 + ((n + w) % 7), 8 + w]);
    });
    const images: { img: Omit<CheckpointImage, 'read'>; bytes: Uint8Array }[] = [];
    for (let round = 0; round < 12; round++) {
      await tick(3);
      const checkpoint = store.checkpoint();
      if (round % 2 === 0) await checkpoint;
      await store.withCheckpointImage(async (img) => {
        const { read: _read, ...fields } = img;
        images.push({ img: fields, bytes: await wholeImage(img) });
        await tick(2); // commits keep landing while the image is held
        expect(await wholeImage(img)).toEqual(images[images.length - 1]!.bytes);
      });
      await checkpoint;
    }
    stop = true;
    await Promise.all(writers);
    for (const { img, bytes } of images) {
      // Nothing folded yet (a checkpoint ahead of the first durable commit): an empty file.
      if (img.epoch !== null) expect(img.consistentEpoch! >= img.epoch).toBe(true);
      expect(bytes.length).toBe(img.dbSizePages * PAGE);
      expect(bytes.length).toBe(oracle.stateAt(img.epoch).length);
      const replayed = overlay(bytes, oracle.between(img.epoch, img.consistentEpoch));
      expect(replayed).toEqual(oracle.stateAt(img.consistentEpoch));
    }
    await store.close();
  });

  it('is exact as of its epoch while no checkpoint has written the file since open, commits or not', async () => {
    const oracle = new Oracle();
    const first = await PageStore.open(db, { pageSize: PAGE, autoCheckpoint: false });
    for (let i = 0; i < 5; i++) await oracle.commit(first, [1 + i, 6]);
    await first.close({ checkpoint: true });
    const store = await PageStore.open(db, { autoCheckpoint: false });
    const folded = store.checkpointEpoch;
    for (let i = 0; i < 5; i++) await oracle.commit(store, [1, 2, 7 + i]);
    await store.withCheckpointImage(async (img) => {
      expect(img.epoch).toBe(folded);
      expect(img.consistentEpoch).toBe(folded);
      expect(await wholeImage(img)).toEqual(oracle.stateAt(folded));
    });
    await store.close();
  });

  it('holds automatic checkpoints off while the image is held and lets them run afterwards', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE, checkpointThresholdBytes: 2048 });
    const oracle = new Oracle();
    await oracle.commit(store, [1, 2]);
    await store.checkpoint();
    const checkpointsBefore = store.stats().checkpoints;
    const autoBefore = store.stats().autoCheckpoints;
    await store.withCheckpointImage(async (img) => {
      const before = await wholeImage(img);
      for (let i = 0; i < 12; i++) await oracle.commit(store, [1, 2, 3 + i]);
      // The threshold was passed: an automatic checkpoint was asked for...
      await vi.waitFor(() => expect(store.stats().autoCheckpoints).toBeGreaterThan(autoBefore), {
        timeout: 10_000,
      });
      await tick(30);
      // ...but it waits for the image.
      expect(store.stats().checkpoints).toBe(checkpointsBefore);
      expect(fileBytes()).toEqual(before);
    });
    await vi.waitFor(() => expect(store.stats().checkpoints).toBeGreaterThan(checkpointsBefore), {
      timeout: 10_000,
    });
    expect(store.stats().lastCheckpointError).toBeNull();
    await store.close();
  });

  it('starts only after a running checkpoint finished, and sees what it folded', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE, autoCheckpoint: false });
    const oracle = new Oracle();
    for (let i = 0; i < 5; i++) await oracle.commit(store, [i + 1]);
    const events: string[] = [];
    const running = store.checkpoint().then((r) => {
      events.push('checkpoint done');
      return r;
    });
    const epoch = await store.withCheckpointImage(async (img) => {
      events.push('fn');
      expect(await wholeImage(img)).toEqual(oracle.stateAt(img.epoch));
      return img.epoch;
    });
    expect(events).toEqual(['checkpoint done', 'fn']);
    expect(epoch).toBe((await running).checkpointEpoch);
    await store.close();
  });

  it('passes on the callback’s rejection, then releases the file (reads refused, checkpoints run again)', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE, autoCheckpoint: false });
    const oracle = new Oracle();
    await oracle.commit(store, [1]);
    await store.checkpoint();
    let leaked: CheckpointImage | null = null;
    const failure = new Error('upload failed');
    await expect(
      store.withCheckpointImage(async (img) => {
        leaked = img;
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect(await codeOf(leaked!.read(0, PAGE))).toBe('ERR_STORE_CLOSED');
    const committed = await oracle.commit(store, [2]);
    const result = await store.checkpoint();
    expect(result.checkpointEpoch! >= committed.epoch).toBe(true);
    await store.close();
  });

  it('reads zeros past the end of the file, rejects bad ranges, and hands an empty database out as no epoch', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE, autoCheckpoint: false });
    await store.withCheckpointImage(async (img) => {
      expect(img.epoch).toBeNull();
      expect(img.consistentEpoch).toBeNull();
      expect(img.dbSizePages).toBe(0);
      expect(img.commitSeq).toBe(0n);
      expect(await img.read(0, 3 * PAGE)).toEqual(new Uint8Array(3 * PAGE));
      expect(await codeOf(img.read(-1, 4))).toBe('ERR_INVALID_ARGUMENT');
      expect(await codeOf(img.read(0, 1.5))).toBe('ERR_INVALID_ARGUMENT');
    });
    const oracle = new Oracle();
    await oracle.commit(store, [2]);
    await store.checkpoint();
    await store.withCheckpointImage(async (img) => {
      expect(img.dbSizePages).toBe(2);
      expect(img.commitSeq > 0n).toBe(true);
      const tail = await img.read(PAGE + 8, 2 * PAGE);
      expect(tail.subarray(0, PAGE - 8)).toEqual(oracle.stateAt(img.epoch).subarray(PAGE + 8));
      expect(tail.subarray(PAGE - 8)).toEqual(new Uint8Array(PAGE + 8));
    });
    await store.close();
  });

  it('makes close() wait for the callback, and refuses a closed store', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE, autoCheckpoint: false });
    const oracle = new Oracle();
    await oracle.commit(store, [1, 2]);
    await store.checkpoint();
    const events: string[] = [];
    let closing: Promise<void> | null = null;
    await store.withCheckpointImage(async (img) => {
      closing = store.close().then(() => {
        events.push('closed');
      });
      await tick(20);
      // The file is still open for the image while close() waits.
      expect(await wholeImage(img)).toEqual(oracle.stateAt(img.epoch));
      events.push('fn done');
    });
    await closing;
    expect(events).toEqual(['fn done', 'closed']);
    expect(await codeOf(store.withCheckpointImage(async () => 1))).toBe('ERR_STORE_CLOSED');
  });
});
