import { describe, expect, it } from 'vitest';
import { openReplicatedStore } from '../../src/replication/replicated-store.js';
import { nodeFileSystem } from '../../src/storage/fs.js';
import { listSegments } from '../../src/storage/segment-files.js';
import { readStoreHeader } from '../../src/store/header.js';
import { PageStore } from '../../src/store/page-store.js';
import { awaitPublished } from '../support/published.js';
import { useTempDb } from '../support/temp-db.js';

let db: string;
useTempDb('db', (paths) => {
  db = paths.db;
});

const PAGE = 512;

function page(fill: number): Uint8Array {
  return new Uint8Array(PAGE).fill(fill);
}

async function epochsOnDisk(): Promise<bigint[]> {
  return (await listSegments(db)).map((s) => s.epoch);
}

describe('segment retention (retainSegmentsAbove)', () => {
  it('keeps every folded segment while nothing is replicated, and never replays them again', async () => {
    const store = await PageStore.open(db, {
      pageSize: PAGE,
      autoCheckpoint: false,
      retainSegmentsAbove: () => null,
    });
    for (let i = 1; i <= 4; i++) await store.commit([{ pageNumber: i, data: page(i) }]);
    await awaitPublished(store.log);
    const before = await epochsOnDisk();
    const result = await store.checkpoint();
    expect(result.pagesWritten).toBe(4);
    expect(result.segmentsDeleted).toBe(0);
    expect(await epochsOnDisk()).toEqual(before);
    const header = await readStoreHeader(db, nodeFileSystem);
    expect(header?.nextEpoch).toBe((result.checkpointEpoch ?? -1n) + 1n);
    await store.close();
    // Recovery on open keeps them too, and applies nothing twice.
    const again = await PageStore.open(db, { retainSegmentsAbove: () => null });
    expect(again.recovery.segmentsApplied).toBe(0);
    expect(again.recovery.segmentsDeleted).toBe(0);
    expect(await epochsOnDisk()).toEqual(before);
    const next = await again.commit([{ pageNumber: 1, data: page(9) }]);
    expect(next.epoch).toBeGreaterThan(before.at(-1)!);
    expect(await again.read(1)).toEqual(page(9));
    expect(await again.read(4)).toEqual(page(4));
    await again.close();
  });

  it('deletes folded segments up to the replicated epoch only, the rest once it moves on', async () => {
    let replicated: bigint | null = null;
    const store = await PageStore.open(db, {
      pageSize: PAGE,
      autoCheckpoint: false,
      retainSegmentsAbove: () => replicated,
    });
    for (let i = 1; i <= 6; i++) await store.commit([{ pageNumber: i, data: page(i) }]);
    await awaitPublished(store.log);
    const all = await epochsOnDisk();
    expect(all.length).toBeGreaterThan(2);
    replicated = all[1]!;
    const first = await store.checkpoint();
    expect(first.segmentsDeleted).toBe(2);
    expect(await epochsOnDisk()).toEqual(all.slice(2));
    await store.close();
    // Recovery on open asks again: the cluster caught up meanwhile.
    replicated = all.at(-1)!;
    const again = await PageStore.open(db, { retainSegmentsAbove: () => replicated });
    expect(again.recovery.segmentsDeleted).toBe(all.length - 2);
    expect(await epochsOnDisk()).toEqual([]);
    for (let i = 1; i <= 6; i++) expect(await again.read(i)).toEqual(page(i));
    await again.close();
  });
});

describe('openReplicatedStore', () => {
  it('keeps every segment while the cluster is unreachable, and still commits and checkpoints', async () => {
    const replicated = await openReplicatedStore(db, {
      pageSize: PAGE,
      autoCheckpoint: false,
      closeFlushTimeoutMs: 0,
      replication: { servers: 'nats://127.0.0.1:1', connectTimeoutMs: 200, stream: 'RSTORE' },
    });
    const { store } = replicated;
    try {
      for (let i = 1; i <= 3; i++) await store.commit([{ pageNumber: i, data: page(i) }]);
      await awaitPublished(store.log);
      const before = await epochsOnDisk();
      const result = await store.checkpoint();
      expect(result.pagesWritten).toBe(3);
      expect(result.segmentsDeleted).toBe(0);
      expect(await epochsOnDisk()).toEqual(before);
      expect(replicated.replicator.replicatedEpoch()).toBeNull();
      expect(replicated.replicator.localDurableEpoch()).toBe(store.log.durableEpoch());
    } finally {
      await replicated.close({ checkpoint: true });
    }
    expect((await epochsOnDisk()).length).toBeGreaterThan(0);
  });
});
