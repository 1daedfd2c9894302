import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FallbackState } from '../../src/control/fallback.js';
import { createDeferred } from '../../src/engine/deferred.js';
import { isWalError } from '../../src/errors.js';
import { nodeFileSystem, type WalFileSystem } from '../../src/storage/fs.js';
import { listSegments, segmentPath } from '../../src/storage/segment-files.js';
import { readStoreHeader, storeHeaderPath } from '../../src/store/header.js';
import {
  checkpointControlFromFallback,
  PageStore,
  storeLogForTests,
} from '../../src/store/page-store.js';
import { awaitPublished } from '../support/published.js';
import { SimulatedFileSystem } from '../support/simulated-fs.js';
import { useTempDb } from '../support/temp-db.js';

let db: string;
useTempDb('db', (paths) => {
  db = paths.db;
});

const PAGE = 512;

/** A page filled with `fill`, its first four bytes the page number (little-endian). */
function page(pageNumber: number, fill: number, size = PAGE): Uint8Array {
  const data = new Uint8Array(size).fill(fill);
  new DataView(data.buffer).setUint32(0, pageNumber, true);
  return data;
}

function filePage(pageNumber: number, size = PAGE): Uint8Array {
  const bytes = fs.readFileSync(db);
  const out = new Uint8Array(size);
  out.set(bytes.subarray((pageNumber - 1) * size, pageNumber * size));
  return out;
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<Error> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(isWalError(error, code), `expected ${code}, got ${String(error)}`).toBe(true);
  return error as Error;
}

describe('PageStore basics', () => {
  it('creates a database file and a header, and reads back a durable commit', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE });
    expect(fs.existsSync(db)).toBe(true);
    expect(fs.existsSync(storeHeaderPath(db))).toBe(true);
    const result = await store.commit([{ pageNumber: 3, data: page(3, 7) }]);
    expect(result.durability).toBe('full');
    expect(result.dbSizePages).toBe(3);
    expect(await store.read(3)).toEqual(page(3, 7));
    expect(await store.read(1)).toEqual(new Uint8Array(PAGE));
    await expectCode(store.read(4), 'ERR_STORE_PAGE_OUT_OF_RANGE');
    await store.close();
  });

  it('accepts a Map of pages and keeps the highest commit per page', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE });
    await Promise.all([
      store.commit(new Map([[1, page(1, 1)]])),
      store.commit(new Map([[1, page(1, 2)]])),
      store.commit(new Map([[1, page(1, 3)]])),
    ]);
    expect(await store.read(1)).toEqual(page(1, 3));
    await store.close();
  });

  it('rejects invalid commits with typed errors before anything is written', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE });
    await expectCode(store.commit([{ pageNumber: 0, data: page(0, 1) }]), 'ERR_INVALID_ARGUMENT');
    await expectCode(store.commit([{ pageNumber: 1.5, data: page(1, 1) }]), 'ERR_INVALID_ARGUMENT');
    await expectCode(
      store.commit([{ pageNumber: 2 ** 32 - 1, data: page(1, 1) }]),
      'ERR_INVALID_ARGUMENT',
    );
    await expectCode(
      store.commit([{ pageNumber: 1, data: new Uint8Array(PAGE - 1) }]),
      'ERR_INVALID_ARGUMENT',
    );
    await expectCode(
      store.commit([
        { pageNumber: 1, data: page(1, 1) },
        { pageNumber: 1, data: page(1, 2) },
      ]),
      'ERR_INVALID_ARGUMENT',
    );
    await expectCode(
      store.commit([{ pageNumber: 5, data: page(5, 1) }], { dbSizePages: 4 }),
      'ERR_INVALID_ARGUMENT',
    );
    await expectCode(store.commit([]), 'ERR_INVALID_ARGUMENT');
    await expectCode(store.read(0), 'ERR_INVALID_ARGUMENT');
    expect(store.stats().commits).toBe(0);
    expect(store.dbSizePages).toBe(0);
    await store.close();
  });

  it('copies the caller buffer: mutating it after commit changes nothing', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE });
    const data = page(1, 9);
    const pending = store.commit([{ pageNumber: 1, data }]);
    data.fill(0);
    await pending;
    expect(await store.read(1)).toEqual(page(1, 9));
    const read = await store.read(1);
    read.fill(1);
    expect(await store.read(1)).toEqual(page(1, 9));
    await store.close();
  });

  it('never shows a commit before it is durable', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE, autoFlush: false });
    await store.log.advanceAndFlush(5000);
    const first = store.commit([{ pageNumber: 1, data: page(1, 1) }]);
    await store.log.advanceAndFlush(5000);
    await first;
    let acknowledged = false;
    const second = store.commit([{ pageNumber: 1, data: page(1, 2) }]).then((r) => {
      acknowledged = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(acknowledged).toBe(false);
    expect(await store.read(1)).toEqual(page(1, 1));
    await store.log.advanceAndFlush(5000);
    await second;
    expect(await store.read(1)).toEqual(page(1, 2));
    await store.close();
  });

  it('refuses a second open of the same database while it is open', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE });
    const error = await expectCode(PageStore.open(db, { pageSize: PAGE }), 'ERR_LOCKED');
    expect((error as { holderPid?: number }).holderPid).toBe(process.pid);
    await store.close();
    const again = await PageStore.open(db);
    await again.close();
  });

  it('rejects use after close with ERR_STORE_CLOSED, and close is idempotent', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE });
    await store.close();
    await store.close();
    await expectCode(store.commit([{ pageNumber: 1, data: page(1, 1) }]), 'ERR_STORE_CLOSED');
    await expectCode(store.read(1), 'ERR_STORE_CLOSED');
    await expectCode(store.checkpoint(), 'ERR_STORE_CLOSED');
  });

  it('closes through Symbol.asyncDispose', async () => {
    {
      await using store = await PageStore.open(db, { pageSize: PAGE });
      await store.commit([{ pageNumber: 1, data: page(1, 5) }]);
    }
    expect(fs.existsSync(`${db}.lock`)).toBe(false);
    const store = await PageStore.open(db);
    expect(await store.read(1)).toEqual(page(1, 5));
    await store.close();
  });
});

describe('PageStore page size and header', () => {
  it('refuses a page size that is not a power of two in 512..=65536', async () => {
    for (const pageSize of [0, 256, 1000, 131072, 4096.5]) {
      await expectCode(PageStore.open(db, { pageSize }), 'ERR_INVALID_ARGUMENT');
    }
    expect(fs.existsSync(db)).toBe(false);
  });

  it('reports a wrong page size on reopen, and takes the recorded one when none is given', async () => {
    const store = await PageStore.open(db, { pageSize: 1024 });
    await store.commit([{ pageNumber: 1, data: page(1, 1, 1024) }]);
    await store.close();
    const error = await expectCode(
      PageStore.open(db, { pageSize: 4096 }),
      'ERR_STORE_PAGE_SIZE_MISMATCH',
    );
    expect(error.message).toContain('1024');
    expect(fs.existsSync(`${db}.lock`)).toBe(false);
    const again = await PageStore.open(db);
    expect(again.pageSize).toBe(1024);
    expect(await again.read(1)).toEqual(page(1, 1, 1024));
    await again.close();
  });

  it('refuses a database file without a store header', async () => {
    fs.writeFileSync(db, new Uint8Array(4096).fill(1));
    await expectCode(PageStore.open(db), 'ERR_STORE_HEADER_MISSING');
    expect(fs.readFileSync(db).length).toBe(4096);
    expect(fs.existsSync(`${db}.lock`)).toBe(false);
  });

  it('refuses a corrupt header', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE });
    await store.close();
    const bytes = fs.readFileSync(storeHeaderPath(db));
    bytes[13] = (bytes[13] ?? 0) ^ 1;
    fs.writeFileSync(storeHeaderPath(db), bytes);
    await expectCode(PageStore.open(db), 'ERR_STORE_HEADER_CORRUPT');
  });

  it('refuses a header whose database file is gone', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE });
    await store.commit([{ pageNumber: 1, data: page(1, 1) }]);
    await store.close({ checkpoint: true });
    fs.unlinkSync(db);
    await expectCode(PageStore.open(db), 'ERR_STORE_HEADER_MISSING');
  });
});

describe('PageStore recovery and checkpoint', () => {
  it('recovers acknowledged commits into the file on reopen, then deletes the applied segments', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE, autoCheckpoint: false });
    for (let i = 1; i <= 10; i++) await store.commit([{ pageNumber: i, data: page(i, i) }]);
    await store.close();
    expect((await listSegments(db)).length).toBeGreaterThan(1);
    const again = await PageStore.open(db);
    expect(again.recovery.segmentsApplied).toBeGreaterThan(1);
    for (let i = 1; i <= 10; i++) expect(filePage(i)).toEqual(page(i, i));
    // Every applied segment goes: the header's floors keep the log from reusing an epoch.
    expect((await listSegments(db)).length).toBe(0);
    const header = await readStoreHeader(db, nodeFileSystem);
    expect(header?.dbSizePages).toBe(10);
    const result = await again.commit([{ pageNumber: 1, data: page(1, 99) }]);
    expect(result.epoch).toBeGreaterThanOrEqual(header?.nextEpoch ?? 0n);
    expect(result.commitSeq).toBeGreaterThan(header?.checkpointCommitSeq ?? 0n);
    await again.close();
    const third = await PageStore.open(db);
    expect(await third.read(1)).toEqual(page(1, 99));
    expect(await third.read(10)).toEqual(page(10, 10));
    await third.close();
  });

  it('never mistakes new segments for applied ones when every segment file was removed behind its back', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE, autoCheckpoint: false });
    for (let i = 1; i <= 5; i++) await store.commit([{ pageNumber: 1, data: page(1, i) }]);
    await store.close({ checkpoint: true });
    const header = await readStoreHeader(db, nodeFileSystem);
    expect(header?.nextEpoch).toBeGreaterThan(1n);
    for (const s of await listSegments(db)) fs.unlinkSync(s.path);
    const again = await PageStore.open(db);
    // The log continues at the header's next epoch (never below it), and the
    // header never moves down.
    expect(again.log.currentEpoch).toBe(header?.nextEpoch);
    const committed = await again.commit([{ pageNumber: 2, data: page(2, 9) }]);
    expect(committed.epoch).toBeGreaterThanOrEqual(header?.nextEpoch ?? 0n);
    expect(committed.commitSeq).toBeGreaterThan(header?.checkpointCommitSeq ?? 0n);
    expect((await readStoreHeader(db, nodeFileSystem))?.nextEpoch).toBe(header?.nextEpoch);
    await again.close();
    const third = await PageStore.open(db);
    expect(await third.read(1)).toEqual(page(1, 5));
    expect(await third.read(2)).toEqual(page(2, 9));
    await third.close();
  });

  it('checkpoints into the file, moves the header, and deletes folded segments', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE, autoCheckpoint: false });
    for (let i = 1; i <= 5; i++) await store.commit([{ pageNumber: i, data: page(i, 1) }]);
    await store.commit([{ pageNumber: 2, data: page(2, 2) }]);
    await awaitPublished(store.log);
    const before = (await listSegments(db)).length;
    const result = await store.checkpoint();
    expect(result.segmentsApplied).toBe(before);
    expect(result.pagesWritten).toBe(5);
    expect(result.dbSizePages).toBe(5);
    expect(filePage(2)).toEqual(page(2, 2));
    expect(fs.statSync(db).size).toBe(5 * PAGE);
    expect((await listSegments(db)).length).toBe(0);
    const header = await readStoreHeader(db, nodeFileSystem);
    expect(header?.nextEpoch).toBe((result.checkpointEpoch ?? -1n) + 1n);
    expect(store.stats().indexPages).toBe(0);
    expect(await store.read(2)).toEqual(page(2, 2));
    const empty = await store.checkpoint();
    expect(empty.pagesWritten).toBe(0);
    await store.close();
  });

  it('keeps commits flowing during a checkpoint and loses none of them', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE, autoCheckpoint: false });
    let stop = false;
    const latest = new Map<number, number>();
    const writers = [1, 2, 3].map(async (w) => {
      let n = 0;
      while (!stop) {
        n++;
        const pageNumber = w * 10 + (n % 5);
        await store.commit([{ pageNumber, data: page(pageNumber, n % 250) }]);
        latest.set(pageNumber, n % 250);
      }
    });
    for (let i = 0; i < 5; i++) {
      await new Promise((r) => setTimeout(r, 10));
      await store.checkpoint();
    }
    stop = true;
    await Promise.all(writers);
    for (const [pageNumber, fill] of latest) {
      expect(await store.read(pageNumber)).toEqual(page(pageNumber, fill));
    }
    await store.close({ checkpoint: true });
    for (const [pageNumber, fill] of latest)
      expect(filePage(pageNumber)).toEqual(page(pageNumber, fill));
    const again = await PageStore.open(db);
    for (const [pageNumber, fill] of latest) {
      expect(await again.read(pageNumber)).toEqual(page(pageNumber, fill));
    }
    await again.close();
  });

  it('checkpoints automatically once the log passes the threshold', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE, checkpointThresholdBytes: 4096 });
    for (let i = 1; i <= 30; i++) await store.commit([{ pageNumber: i, data: page(i, 3) }]);
    await store.close();
    const stats = store.stats();
    expect(stats.autoCheckpoints).toBeGreaterThan(0);
    expect(stats.checkpoints).toBeGreaterThan(0);
    expect(stats.lastCheckpointError).toBeNull();
  });

  it('runs an automatic checkpoint over what is published, without waiting for what is only acknowledged', async () => {
    // The rename (publication) of a segment in `held` waits for its release.
    const held = new Map<string, ReturnType<typeof createDeferred<void>>>();
    const renaming = new Set<string>();
    const gated: WalFileSystem = {
      ...nodeFileSystem,
      async rename(from, to) {
        renaming.add(path.basename(to));
        await held.get(path.basename(to))?.promise;
        return nodeFileSystem.rename(from, to);
      },
    };
    const segmentName = (epoch: bigint) => path.basename(segmentPath(db, epoch));
    const store = await PageStore.open(db, {
      fs: gated,
      pageSize: PAGE,
      checkpointThresholdBytes: 1,
    });
    // Epoch A is acknowledged with its name held back; epoch B after it.
    const a = store.log.appendEpoch;
    held.set(segmentName(a), createDeferred<void>());
    held.set(segmentName(a + 1n), createDeferred<void>());
    await store.commit([{ pageNumber: 1, data: page(1, 1) }]);
    expect(store.log.acknowledgedEpoch()).toBe(a);
    // A's publication has begun: B's goes to a batch of its own.
    for (let i = 0; i < 500 && !renaming.has(segmentName(a)); i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await store.commit([{ pageNumber: 2, data: page(2, 2) }]);
    expect(store.log.acknowledgedEpoch()).toBe(a + 1n);
    // A is published now (its publication starts the automatic checkpoint);
    // B's name stays held.
    held.get(segmentName(a))!.resolve();
    await store.log.waitForEpochDurable(a, 10_000);
    // The run folds A and ends; before, it waited for B's publication (30 s,
    // then failed) and under load fell behind for good.
    for (let i = 0; i < 200 && store.stats().checkpoints === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(store.stats().autoCheckpoints).toBeGreaterThan(0);
    expect(store.stats().checkpoints).toBeGreaterThan(0);
    expect(store.log.durableEpoch()).toBe(a);
    expect(filePage(1)).toEqual(page(1, 1));
    held.get(segmentName(a + 1n))!.resolve();
    await store.close();
    const again = await PageStore.open(db);
    expect(await again.read(1)).toEqual(page(1, 1));
    expect(await again.read(2)).toEqual(page(2, 2));
    await again.close();
  });

  it('shrinks and regrows: cut pages read as zeros, before and after checkpoint and reopen', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE, autoCheckpoint: false });
    const pages = Array.from({ length: 8 }, (_, i) => ({
      pageNumber: i + 1,
      data: page(i + 1, 8),
    }));
    await store.commit(pages);
    await store.checkpoint();
    expect(fs.statSync(db).size).toBe(8 * PAGE);
    await store.commit([{ pageNumber: 2, data: page(2, 20) }], { dbSizePages: 3 });
    expect(store.dbSizePages).toBe(3);
    await expectCode(store.read(4), 'ERR_STORE_PAGE_OUT_OF_RANGE');
    await store.commit([{ pageNumber: 6, data: page(6, 60) }]);
    expect(store.dbSizePages).toBe(6);
    expect(await store.read(5)).toEqual(new Uint8Array(PAGE));
    expect(await store.read(6)).toEqual(page(6, 60));
    expect(await store.read(3)).toEqual(page(3, 8));
    await store.checkpoint();
    expect(fs.statSync(db).size).toBe(6 * PAGE);
    expect(filePage(5)).toEqual(new Uint8Array(PAGE));
    expect(await store.read(5)).toEqual(new Uint8Array(PAGE));
    await store.commit([], { dbSizePages: 2 });
    await store.close();
    const again = await PageStore.open(db);
    expect(again.dbSizePages).toBe(2);
    expect(fs.statSync(db).size).toBe(2 * PAGE);
    expect(await again.read(2)).toEqual(page(2, 20));
    await expectCode(again.read(3), 'ERR_STORE_PAGE_OUT_OF_RANGE');
    await again.close();
  });

  it('reports checkpoint_conflict to the control plane when it needs the serialized path', async () => {
    const reported: string[] = [];
    let serialized = false;
    const store = await PageStore.open(db, {
      pageSize: PAGE,
      autoCheckpoint: false,
      control: {
        serializedPathRequired: () => serialized,
        reportFallback: (reason) => reported.push(reason),
      },
    });
    await store.commit([{ pageNumber: 1, data: page(1, 1) }]);
    expect((await store.checkpoint()).conflict).toBe(false);
    serialized = true;
    await store.commit([{ pageNumber: 1, data: page(1, 2) }]);
    const result = await store.checkpoint();
    expect(result.conflict).toBe(true);
    expect(result.pagesWritten).toBe(1);
    expect(reported).toEqual(['checkpointConflict']);
    expect(store.stats().checkpointConflicts).toBe(1);
    await store.close();
  });
});

describe('PageStore commits that bypass commit() (worker lanes, serialized path)', () => {
  it('reads back durable segments of other lanes into the index, then checkpoints them', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE, autoCheckpoint: false });
    await store.commit([{ pageNumber: 1, data: page(1, 1) }]);
    // What a worker's fallback does: a batch straight into the log's serialized path.
    const direct = await storeLogForTests(store).commitSerialized({
      txnToken: { id: 1n << 50n, epoch: 0 },
      frames: [
        { pageNumber: 1, pageData: page(1, 40), dbSizeIfCommit: 0 },
        { pageNumber: 4, pageData: page(4, 44), dbSizeIfCommit: 4 },
      ],
    });
    expect(direct.serialized).toBe(true);
    expect(await store.read(1)).toEqual(page(1, 40));
    expect(await store.read(4)).toEqual(page(4, 44));
    expect(store.dbSizePages).toBe(4);
    expect(store.stats().epochsIngested).toBeGreaterThan(0);
    // A later commit() to the same page wins, whatever order the index learnt them in.
    await store.commit([{ pageNumber: 1, data: page(1, 2) }]);
    expect(await store.read(1)).toEqual(page(1, 2));
    await store.checkpoint();
    expect(filePage(4)).toEqual(page(4, 44));
    expect(filePage(1)).toEqual(page(1, 2));
    await store.close();
  });
});

describe('PageStore and the control plane fallback latch', () => {
  it('counts checkpoint_conflict in the latch when a checkpoint runs on the serialized path', async () => {
    const transitions: string[] = [];
    const fallback = new FallbackState((t) => transitions.push(`${t.kind}:${t.reason}`));
    const store = await PageStore.open(db, {
      pageSize: PAGE,
      autoCheckpoint: false,
      control: checkpointControlFromFallback(fallback),
    });
    await store.commit([{ pageNumber: 1, data: page(1, 1) }]);
    await store.checkpoint();
    expect(fallback.counts().checkpointConflict).toBe(0);
    fallback.enter('laneOverflow');
    await store.commit([{ pageNumber: 1, data: page(1, 2) }]);
    const result = await store.checkpoint();
    expect(result.conflict).toBe(true);
    expect(fallback.counts().checkpointConflict).toBe(1);
    expect(fallback.reason).toBe('laneOverflow');
    expect(transitions).toEqual(['enter:laneOverflow', 'enter:checkpointConflict']);
    expect(filePage(1)).toEqual(page(1, 2));
    await store.close();
  });
});

describe('PageStore memory checkpoints racing acknowledgements', () => {
  it('keeps every acknowledged commit with a checkpoint started at each durable epoch', async () => {
    // A disk whose calls settle on microtasks: a checkpoint can then run
    // between an epoch becoming durable and its commits reaching the index.
    const disk = new SimulatedFileSystem();
    disk.mkdirSync('/data');
    const simDb = '/data/db';
    const store = await PageStore.open(simDb, { fs: disk, pageSize: PAGE, autoCheckpoint: false });
    const checkpoints: Promise<unknown>[] = [];
    // The worst moment: right as an epoch becomes durable, before the
    // commits of that epoch got back to commit() and into the index.
    const stopListening = store.log.onDurable(() => {
      checkpoints.push(store.checkpoint());
    });
    const latest = new Map<number, number>();
    await Promise.all(
      [0, 1, 2, 3].map(async (w) => {
        for (let n = 1; n <= 40; n++) {
          const pageNumber = 1 + w * 3 + (n % 3);
          await store.commit([{ pageNumber, data: page(pageNumber, n) }]);
          latest.set(pageNumber, n);
        }
      }),
    );
    stopListening();
    const results = (await Promise.all(checkpoints)) as Array<{
      source: string;
      pagesWritten: number;
    }>;
    expect(results.every((r) => r.source === 'memory')).toBe(true);
    expect(results.some((r) => r.pagesWritten > 0)).toBe(true);
    await store.close();
    const again = await PageStore.open(simDb, { fs: disk });
    for (const [pageNumber, fill] of latest) {
      expect(await again.read(pageNumber), `page ${pageNumber}`).toEqual(page(pageNumber, fill));
    }
    await again.close();
  });
});

describe('PageStore.log is a read-only view of the log', () => {
  it('offers no way to write records or close the log, so no acknowledged commit can bypass the page index', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE, autoCheckpoint: false });
    const view = store.log as unknown as Record<string, unknown>;
    for (const writer of [
      'commit',
      'commitSerialized',
      'submitBatch',
      'openWriter',
      'workerHandle',
      'registerLane',
      'releaseLane',
      'notifyAppend',
      'start',
      'stop',
      'close',
    ]) {
      expect(view[writer], writer).toBeUndefined();
    }
    expect(Object.isFrozen(store.log)).toBe(true);
    // @ts-expect-error the view has no commit(): writes go through PageStore.commit
    expect(store.log.commit).toBeUndefined();
    await store.close();
  });

  it('still reports the epochs, stats and durable announcements of commits made through the store', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE, autoCheckpoint: false });
    const durable: bigint[] = [];
    const stop = store.log.onDurable((info) => {
      if (info.segmentWritten) durable.push(info.epoch);
    });
    const result = await store.commit([{ pageNumber: 1, data: page(1, 9) }]);
    expect(store.log.acknowledgedEpoch()).toBe(result.epoch);
    await store.log.waitForEpochDurable(result.epoch, 5000);
    expect(durable).toContain(result.epoch);
    expect(store.log.stats().commits).toBe(1);
    expect(store.log.dbPath).toBe(db);
    expect(store.log.isFailed).toBe(false);
    stop();
    // The commit survives a checkpoint and a reopen.
    await store.checkpoint();
    await store.close();
    const again = await PageStore.open(db, { pageSize: PAGE });
    expect(await again.read(1)).toEqual(page(1, 9));
    await again.close();
  });
});
