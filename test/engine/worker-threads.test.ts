/**
 * Worker writers on real threads: through a real ParallelWal (durability,
 * recovery, failure) and through the fake engine (epoch races, dead workers).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ParallelWal } from '../../src/engine/wal.js';
import type { WorkerLaneHandle } from '../../src/engine/worker-layout.js';
import { decodeSegmentHeader } from '../../src/format/segment.js';
import { SEGMENT_HEADER_BYTES } from '../../src/format/types.js';
import { nodeFileSystem, type WalFileSystem } from '../../src/storage/fs.js';
import { recoverSegments } from '../../src/storage/recovery.js';
import { FakeOwner } from '../fixtures/fake-owner.js';
import type { WriterReport } from '../fixtures/worker-writer.js';
import { acks, startWriter, until } from '../support/worker-writers.js';

let dir = '';
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/**
 * Records the epochs whose segment bytes (header + records,
 * under whatever name) were fdatasynced: what an acknowledgement needs with
 * every sink (the default `earlyAck` acknowledges there, before the rename).
 */
function recordingFs(failDatasyncAfter = Number.POSITIVE_INFINITY): {
  fs: WalFileSystem;
  synced: Set<bigint>;
} {
  const synced = new Set<bigint>();
  let datasyncs = 0;
  const wrapped: WalFileSystem = {
    ...nodeFileSystem,
    async open(p, mode) {
      const handle = await nodeFileSystem.open(p, mode);
      let written: bigint | null = null;
      return {
        path: handle.path,
        write: (d, at) => handle.write(d, at),
        async writev(c, at) {
          const head = c[0];
          written = null;
          if (at === 0 && head !== undefined && head.length >= SEGMENT_HEADER_BYTES) {
            // A segment's header; a pool file's zero fill is not one.
            try {
              written = decodeSegmentHeader(head).epoch;
            } catch {
              written = null;
            }
          }
          return handle.writev(c, at);
        },
        read: (into, at, len) => handle.read(into, at, len),
        truncate: (n) => handle.truncate(n),
        size: () => handle.size(),
        close: () => handle.close(),
        sync: () => handle.sync(),
        async datasync() {
          // Only a segment's fdatasync counts (not a pool file's fill or cut).
          if (written === null) return handle.datasync();
          datasyncs++;
          if (datasyncs > failDatasyncAfter) {
            throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
          }
          await handle.datasync();
          if (written !== null) synced.add(written);
        },
      };
    },
  };
  return { fs: wrapped, synced };
}

describe('worker writers through ParallelWal', () => {
  it('acknowledges only durable commits; after reopen every acknowledged commit is there once, in commit order', async () => {
    const db = path.join(dir, 'db.sqlite');
    const recording = recordingFs();
    const wal = await ParallelWal.open(db, { fsync: 'normal', fs: recording.fs, slotCount: 2 });
    const ackedBeforeDurable: string[] = [];
    const checkDurable = (epoch: bigint, who: string): void => {
      // Acknowledged = the segment's data fdatasynced (under a name already
      // durable with earlyAck, or renamed with storage) and the log says so.
      const acknowledged = wal.acknowledgedEpoch();
      if (!recording.synced.has(epoch) || acknowledged === null || acknowledged < epoch)
        ackedBeforeDurable.push(`${who}@${epoch}`);
    };
    const writers = [1_000_000, 2_000_000].map((txnBase) =>
      startWriter(
        {
          mode: 'commits',
          handle: wal.workerHandle(),
          count: 1500,
          concurrency: 16,
          pageBytes: 256,
          txnBase,
          close: true,
        },
        (r) => {
          if (r.kind === 'ack') checkDurable(r.epoch, `txn ${r.txnId}`);
        },
      ),
    );
    const ownerAcks: { txnId: bigint; epoch: bigint; commitSeq: bigint }[] = [];
    let next = 1;
    const committer = async (): Promise<void> => {
      while (next <= 1000) {
        const txnId = BigInt(next++);
        const ack = await wal.commit({
          txnToken: { id: txnId, epoch: 0 },
          frames: [{ pageNumber: 1, pageData: new Uint8Array(256).fill(1), dbSizeIfCommit: 1 }],
        });
        checkDurable(ack.epoch, `txn ${txnId}`);
        ownerAcks.push({ txnId, epoch: ack.epoch, commitSeq: ack.commitSeq });
      }
    };
    await Promise.all(Array.from({ length: 32 }, committer));
    for (const w of writers) expect(await w.exited).toBe(0);
    await wal.close();

    const all = [...ownerAcks, ...writers.flatMap((w) => acks(w.reports))];
    expect(all.length).toBe(4000);
    expect(writers.flatMap((w) => w.reports).filter((r) => r.kind === 'rejected')).toEqual([]);
    expect(ackedBeforeDurable).toEqual([]);

    const recovered = await recoverSegments(db);
    const byTxn = new Map<bigint, { epoch: bigint; seq: bigint }[]>();
    for (const r of recovered.records) {
      const list = byTxn.get(r.txnToken.id) ?? [];
      list.push({ epoch: r.epoch, seq: r.beginSeq });
      byTxn.set(r.txnToken.id, list);
    }
    expect(recovered.records.length).toBe(all.length);
    for (const ack of all) {
      expect(byTxn.get(ack.txnId)).toEqual([{ epoch: ack.epoch, seq: ack.commitSeq }]);
    }
    // Recovery order (epoch, beginSeq, …) is commit order: sequences strictly increase.
    const seqs = recovered.records.map((r) => r.beginSeq);
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]!).toBeGreaterThan(seqs[i - 1]!);
  });

  it('releases the lane of an exited worker and hands it to the next writer', async () => {
    const wal = await ParallelWal.open(path.join(dir, 'db'), { fsync: 'off', slotCount: 1 });
    const first = wal.workerHandle();
    const run = startWriter({
      mode: 'commits',
      handle: first,
      count: 20,
      concurrency: 4,
      pageBytes: 64,
      txnBase: 1,
      close: false, // just exits: the owner sees the port close
    });
    expect(await run.exited).toBe(0);
    expect(acks(run.reports).length).toBe(20);
    expect(await until(() => wal.stats().lanesInUse === 0)).toBe(true);
    const second = wal.workerHandle();
    expect(second.laneId).toBe(first.laneId);
    expect(second.generation).toBeGreaterThan(first.generation);
    second.port.close();
    await wal.close();
  });

  it('rejects waiting and later worker commits with ERR_WAL_FAILED carrying the fsync error', async () => {
    const db = path.join(dir, 'db');
    const recording = recordingFs(3);
    const wal = await ParallelWal.open(db, { fsync: 'full', fs: recording.fs, slotCount: 1 });
    const run = startWriter({
      mode: 'commits',
      handle: wal.workerHandle(),
      count: 300,
      concurrency: 8,
      pageBytes: 64,
      txnBase: 1,
      close: true,
    });
    expect(await run.exited).toBe(0);
    await wal.close();
    const rejected = run.reports.filter(
      (r): r is Extract<WriterReport, { kind: 'rejected' }> => r.kind === 'rejected',
    );
    expect(rejected.length).toBeGreaterThan(0);
    for (const r of rejected) {
      expect(r.code).toBe('ERR_WAL_FAILED');
      expect(r.message).toContain('EIO');
    }
    // Whatever was acknowledged before the failure is on disk.
    const recovered = await recoverSegments(db);
    const onDisk = new Set(recovered.records.map((r) => r.txnToken.id));
    for (const ack of acks(run.reports)) expect(onDisk.has(ack.txnId)).toBe(true);
  });
});

describe('worker writers racing the epoch fence (fake engine)', () => {
  it('tags every record with the epoch it is flushed in, and commit order agrees with epoch order', async () => {
    const owner = new FakeOwner({ durability: 'off' });
    let stop = false;
    const ticker = (async () => {
      while (!stop) {
        owner.tick();
        await new Promise((r) => setImmediate(r));
      }
    })();
    const runs = [1, 100_000].map((txnBase) =>
      startWriter({
        mode: 'commits',
        handle: owner.pool.createHandle(),
        count: 2000,
        concurrency: 8,
        pageBytes: 128,
        txnBase,
        close: true,
      }),
    );
    for (const r of runs) expect(await r.exited).toBe(0);
    stop = true;
    await ticker;
    owner.tick();

    const acked = runs.flatMap((r) => acks(r.reports));
    expect(acked.length).toBe(4000);
    const flushed = owner.flushed;
    expect(flushed.length).toBe(4000);
    for (const f of flushed) expect(f.record.epoch).toBe(f.flushEpoch);
    const byTxn = new Map(flushed.map((f) => [f.record.txnToken.id, f.record]));
    for (const a of acked) {
      expect(byTxn.get(a.txnId)).toMatchObject({ epoch: a.epoch, beginSeq: a.commitSeq });
    }
    const ordered = [...flushed]
      .map((f) => f.record)
      .sort((x, y) =>
        x.epoch === y.epoch ? Number(x.beginSeq - y.beginSeq) : Number(x.epoch - y.epoch),
      );
    for (let i = 1; i < ordered.length; i++) {
      expect(ordered[i]!.beginSeq).toBeGreaterThan(ordered[i - 1]!.beginSeq);
    }
    // The race really happened: many epochs, and both lanes in some of them.
    const epochs = new Set(flushed.map((f) => f.flushEpoch));
    expect(epochs.size).toBeGreaterThan(10);
    owner.pool.close();
  });

  it('fails commits waiting for durability when the lane port closes with the owner gone, instead of dropping them', async () => {
    // The owner's thread dies without marking the log failed or closed (a
    // ThreadedWal's log thread terminated): only the lane's port closing
    // tells the writer. Its waiting commit must settle, rejected; before,
    // nothing kept the writer's thread alive for it and the promise never
    // settled.
    const owner = new FakeOwner();
    const handle: WorkerLaneHandle = owner.pool.createHandle();
    const run = startWriter({ mode: 'onDemand', handle });
    run.worker.postMessage('commit');
    const appended = await until(() => owner.appendNotifications > 0);
    expect(appended).toBe(true);
    owner.pool.lanes()[0]!.port!.close();
    expect(await until(() => run.reports.some((r) => r.kind === 'rejected'))).toBe(true);
    expect(run.reports.find((r) => r.kind === 'rejected')).toMatchObject({
      code: 'ERR_WAL_FAILED',
    });
    // A later commit fails the same way: the log did not close, its owner is
    // gone (before, it was refused as closed until someone marked the log
    // failed).
    run.worker.postMessage('commit');
    expect(await until(() => run.reports.filter((r) => r.kind === 'rejected').length === 2)).toBe(
      true,
    );
    expect(run.reports.filter((r) => r.kind === 'rejected')[1]).toMatchObject({
      code: 'ERR_WAL_FAILED',
    });
    await run.worker.terminate();
  });

  it('resolves a commit whose epoch was acknowledged before the log failed, even if the writer learns both at once', async () => {
    const owner = new FakeOwner();
    const handle: WorkerLaneHandle = owner.pool.createHandle();
    const run = startWriter({ mode: 'onDemand', handle });
    run.worker.postMessage('commit');
    expect(await until(() => owner.appendNotifications > 0)).toBe(true);
    // In one turn of the owner: the epoch is acknowledged, then the log fails.
    owner.tick();
    owner.pool.fail(new Error('a later epoch failed'));
    expect(await until(() => run.reports.length > 0)).toBe(true);
    expect(run.reports[0]).toMatchObject({ kind: 'ack' });
    await run.worker.terminate();
  });

  it('counts contention when the owner holds a lane lock the worker wants', async () => {
    const owner = new FakeOwner();
    const handle: WorkerLaneHandle = owner.pool.createHandle();
    const control = new Int32Array(handle.control);
    const run = startWriter({ mode: 'onDemand', handle });
    const lane = owner.pool.lanes()[0]!;
    lane.lock();
    run.worker.postMessage('commit');
    // The worker parks on the lock word (value 2) once it has spun out.
    const nap = new Int32Array(new SharedArrayBuffer(4));
    let parked = false;
    for (let i = 0; i < 5_000 && !parked; i++) {
      Atomics.wait(nap, 0, 0, 1);
      parked = Atomics.load(control, 0) === 2;
    }
    lane.unlock();
    expect(parked).toBe(true);
    expect(await until(() => lane.commits() === 1)).toBe(true);
    expect(lane.contentionEvents()).toBe(1);
    owner.tick();
    run.worker.postMessage('close');
    expect(await run.exited).toBe(0);
    expect(acks(run.reports).length).toBe(1);
  });

  it('a worker that dies holding its lane lock does not wedge the lane', async () => {
    const owner = new FakeOwner({ ownerLockWaitMaxMs: 50 });
    const handle = owner.pool.createHandle();
    const run = startWriter({ mode: 'dieHoldingLock', handle });
    expect(await run.exited).toBe(0);
    expect(await until(() => owner.released.includes(handle.laneId))).toBe(true);
    expect(() => owner.tick()).not.toThrow();
    const again = owner.pool.createHandle();
    expect(again.laneId).toBe(handle.laneId);
    const next = startWriter({
      mode: 'commits',
      handle: again,
      count: 5,
      concurrency: 1,
      pageBytes: 64,
      txnBase: 1,
      close: true,
    });
    owner.autoFlush = true;
    expect(await next.exited).toBe(0);
    expect(acks(next.reports).length).toBe(5);
    owner.pool.close();
  });
});
