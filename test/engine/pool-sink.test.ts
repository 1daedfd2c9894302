/**
 * The pool sink (`segmentSink: 'pool'`): epochs written into new, empty
 * pool files or in place into recycled ones, published with a cut to the
 * exact segment length,
 * folded segments taken back into a bounded pool, failures typed and never
 * acknowledged.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { PoolSegmentSink } from '../../src/engine/pool-sink.js';
import { ParallelWal } from '../../src/engine/wal.js';
import { isWalError, WalArgumentError } from '../../src/errors.js';
import { encodeSegment } from '../../src/format/segment.js';
import { nodeFileSystem } from '../../src/storage/fs.js';
import { recoverSegments } from '../../src/storage/recovery.js';
import { listSegments, readSegment, segmentPath } from '../../src/storage/segment-files.js';
import { PageStore } from '../../src/store/page-store.js';
import { recordFor } from '../storage/helpers.js';
import { FaultyFileSystem } from '../support/faulty-fs.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function tempDb(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
  dirs.push(dir);
  return path.join(dir, 'a.db');
}

const poolNames = (db: string) =>
  fs.readdirSync(path.dirname(db)).filter((n) => n.includes('-wal-tmp-pool-'));

const segmentOf = (epoch: bigint, size: number) =>
  encodeSegment(epoch, [recordFor(epoch, { txnId: epoch + 1n, pageId: 2, size })], 2);

describe('PoolSegmentSink', () => {
  it('writes over a longer recycled segment in place and publishes exactly the new segment', async () => {
    const db = tempDb();
    for (let e = 0n; e < 3n; e++) fs.writeFileSync(segmentPath(db, e), segmentOf(e, 9000));
    const sink = new PoolSegmentSink(db, nodeFileSystem, 'full', {
      poolSize: 2,
      startEpoch: 3n,
      prefill: false,
    });
    const entries = (await listSegments(db)).filter((e) => e.epoch < 3n);
    expect(await sink.recycle(entries, 3n)).toBe(3);
    // Two taken (the bound), one unlinked.
    expect(poolNames(db)).toHaveLength(2);
    expect(await listSegments(db)).toEqual([]);
    const fresh = segmentOf(3n, 100);
    const written = await sink.write(3n, [fresh]);
    expect(written.bytes).toBe(fresh.length);
    sink.publishNow();
    await written.published;
    expect(new Uint8Array(fs.readFileSync(segmentPath(db, 3n)))).toEqual(fresh);
    expect(sink.poolStats()).toMatchObject({ size: 2, recycled: 2, reused: 1 });
    await sink.dispose();
    expect(poolNames(db)).toEqual([]);
  });

  it('creates new pool files empty, under one directory fsync, and an epoch written into one allocates only its own bytes', async () => {
    const db = tempDb();
    const sink = new PoolSegmentSink(db, nodeFileSystem, 'full', { poolSize: 3, startEpoch: 0n });
    const first = segmentOf(0n, 5000);
    // The write waits for the pool's creation (started at construction).
    const written = await sink.write(0n, [first]);
    expect(written.bytes).toBe(first.length);
    const names = poolNames(db);
    expect(names).toHaveLength(3);
    const sizes = names.map((n) => fs.statSync(path.join(path.dirname(db), n)).size).sort();
    // Two untouched files hold nothing (no fill); the written one holds exactly the segment.
    expect(sizes).toEqual([0, 0, first.length].sort());
    // One directory fsync for the three creations, one fdatasync for the epoch.
    expect(sink.syncCalls()).toBe(2);
    expect(sink.poolStats()).toMatchObject({ size: 3, created: 3, reused: 1, recycled: 0 });
    sink.publishNow();
    await written.published;
    expect(new Uint8Array(fs.readFileSync(segmentPath(db, 0n)))).toEqual(first);
    await sink.dispose();
    expect(poolNames(db)).toEqual([]);
  });

  it('refuses to recycle a segment at or above the floor (ERR_INVALID_ARGUMENT)', async () => {
    const db = tempDb();
    fs.writeFileSync(segmentPath(db, 5n), segmentOf(5n, 10));
    const sink = new PoolSegmentSink(db, nodeFileSystem, 'full', {
      poolSize: 2,
      startEpoch: 6n,
      prefill: false,
    });
    const error = await sink.recycle(await listSegments(db), 5n).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WalArgumentError);
    expect(isWalError(error, 'ERR_INVALID_ARGUMENT')).toBe(true);
    expect(fs.existsSync(segmentPath(db, 5n))).toBe(true);
    await sink.dispose();
  });

  it('validates the pool size', () => {
    for (const poolSize of [0, -1, 257, 2.5]) {
      expect(
        () =>
          new PoolSegmentSink('/x/a.db', nodeFileSystem, 'full', {
            poolSize,
            startEpoch: 0n,
            prefill: false,
          }),
      ).toThrow(WalArgumentError);
    }
  });
});

describe('ParallelWal with the pool sink', () => {
  it('a failed fdatasync of the in-place write acknowledges nothing, fails typed, and leaves nothing to adopt', async () => {
    const db = tempDb();
    const faulty = new FaultyFileSystem(nodeFileSystem);
    const wal = await ParallelWal.open(db, { fs: faulty, segmentSink: 'pool', slotCount: 1 });
    const first = await wal.commit({
      txnToken: { id: 1n, epoch: 0 },
      frames: [{ pageNumber: 1, pageData: new Uint8Array(64).fill(1), dbSizeIfCommit: 1 }],
    });
    await wal.waitForEpochDurable(first.epoch, 10_000);
    faulty.inject({ kind: 'datasync', code: 'EIO' });
    const failed = await wal
      .commit({
        txnToken: { id: 2n, epoch: 0 },
        frames: [{ pageNumber: 1, pageData: new Uint8Array(64).fill(2), dbSizeIfCommit: 1 }],
      })
      .catch((e: unknown) => e);
    expect(isWalError(failed, 'ERR_WAL_FAILED')).toBe(true);
    expect(String((failed as Error).message)).toContain('EIO');
    expect(wal.acknowledgedEpoch()).toBe(first.epoch);
    await wal.close();
    faulty.heal();
    const { records } = await recoverSegments(db);
    expect(records.map((r) => r.txnToken.id)).toEqual([1n]);
  });

  it('a page store recycles folded segments into the pool; the directory stays bounded and every commit reads back', async () => {
    const db = tempDb();
    const store = await PageStore.open(db, {
      pageSize: 512,
      segmentSink: 'pool',
      segmentPoolSize: 3,
      autoCheckpoint: false,
    });
    const pageOf = (n: number, round: number) => new Uint8Array(512).fill((n * 7 + round) & 0xff);
    let maxFiles = 0;
    for (let round = 0; round < 12; round++) {
      for (let n = 1; n <= 4; n++) await store.commit([{ pageNumber: n, data: pageOf(n, round) }]);
      await store.checkpoint();
      const names = fs.readdirSync(path.dirname(db));
      maxFiles = Math.max(maxFiles, names.filter((x) => x.includes('-wal-')).length);
    }
    const pool = store.log.stats().segmentPool!;
    expect(pool.recycled).toBeGreaterThan(0);
    expect(pool.ready).toBeLessThanOrEqual(3);
    // Pool files (at most 3) plus at most the unfolded tail.
    expect(maxFiles).toBeLessThanOrEqual(3 + 4);
    for (let n = 1; n <= 4; n++) expect(await store.read(n)).toEqual(pageOf(n, 11));
    await store.close();
    const reopened = await PageStore.open(db, { pageSize: 512, segmentSink: 'pool' });
    for (let n = 1; n <= 4; n++) expect(await reopened.read(n)).toEqual(pageOf(n, 11));
    await reopened.close();
    for (const s of await listSegments(db)) await readSegment(s.path);
  });
});
