/**
 * ThreadedWal: a log whose owner runs on a thread of its own. Commits from
 * the opening thread and from worker threads are durable and recovered;
 * worker commits keep being acknowledged while the opening thread is
 * blocked (a ParallelWal's do not: its owner is that thread); errors cross
 * with their codes; a log thread that dies fails every writer instead of
 * leaving it waiting.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Worker } from 'node:worker_threads';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ThreadedWal } from '../../src/engine/log-thread.js';
import { ParallelWal } from '../../src/engine/wal.js';
import type { WorkerLaneHandle } from '../../src/engine/worker-layout.js';
import { isWalError } from '../../src/errors.js';
import { LockError } from '../../src/storage/lockfile.js';
import { recoverSegments } from '../../src/storage/recovery.js';
import { acks, startWriter, until } from '../support/worker-writers.js';

let dir = '';
let db = '';
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-thread-'));
  db = path.join(dir, 'test.db');
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function page(fill: number): Uint8Array {
  return new Uint8Array(4096).fill(fill);
}

function batch(id: number) {
  return {
    txnToken: { id: BigInt(id), epoch: 0 },
    frames: [{ pageNumber: id, pageData: page(id & 0xff), dbSizeIfCommit: id }],
  };
}

/** Spins this thread for `ms` (nothing else runs on it meanwhile); returns the window. */
function block(ms: number): { from: number; to: number } {
  const from = performance.timeOrigin + performance.now();
  while (performance.timeOrigin + performance.now() < from + ms) {
    // the application's synchronous work
  }
  return { from, to: performance.timeOrigin + performance.now() };
}

/**
 * Starts a worker committing through `handle`; once its first commit is
 * acknowledged, blocks this thread for 400 ms. Returns how many of its
 * commits resolved during the block (50 ms after its start on: a commit
 * acknowledged just before it may resolve a little later).
 */
async function acksWhileBlocked(handle: WorkerLaneHandle): Promise<number> {
  const run = startWriter({
    mode: 'commits',
    handle,
    count: 1_000_000,
    concurrency: 8,
    pageBytes: 4096,
    txnBase: 1,
    close: false,
  });
  expect(await until(() => acks(run.reports).length > 0)).toBe(true);
  const window = block(400);
  // Reports posted meanwhile arrive now; each carries when it resolved.
  await new Promise((r) => setTimeout(r, 50));
  await run.worker.terminate();
  return acks(run.reports).filter((a) => a.at > window.from + 50 && a.at < window.to).length;
}

describe("the log thread and the application's files", () => {
  it("closes none of the application's files when the log closes", async () => {
    const wal = await ThreadedWal.open(db);
    for (let i = 1; i <= 40; i++) await wal.commit(batch(i));
    // Publication runs meanwhile (the log's files are closed and renamed).
    await new Promise((resolve) => setTimeout(resolve, 300));
    // The application's own files take every descriptor number the log freed.
    const mine = Array.from({ length: 200 }, (_, i) =>
      fs.openSync(path.join(dir, `app-${i}`), 'w'),
    );
    await wal.close();
    // The log thread is gone: none of its exit's clean-up may touch our files.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const closedUnderUs = mine.filter((fd) => {
      try {
        fs.fstatSync(fd);
        return false;
      } catch {
        return true;
      }
    });
    for (const fd of mine) if (!closedUnderUs.includes(fd)) fs.closeSync(fd);
    expect(closedUnderUs).toEqual([]);
  });
});

describe('ThreadedWal', () => {
  it('makes commits from the opening thread and from worker threads durable, and recovery finds every one', async () => {
    const wal = await ThreadedWal.open(db, { fsync: 'full' });
    const own = await Promise.all(Array.from({ length: 40 }, (_, i) => wal.commit(batch(i + 1))));
    for (const ack of own) expect(ack.durability).toBe('full');
    const handles: WorkerLaneHandle[] = [await wal.workerHandle(), await wal.workerHandle()];
    const runs = handles.map((handle, w) =>
      startWriter({
        mode: 'commits',
        handle,
        count: 60,
        concurrency: 6,
        pageBytes: 4096,
        txnBase: 1_000 * (w + 1),
        close: true,
      }),
    );
    await Promise.all(runs.map((r) => r.exited));
    const workerAcks = runs.flatMap((r) => acks(r.reports));
    expect(workerAcks).toHaveLength(120);
    const stats = await wal.stats();
    expect(stats.segmentsWritten).toBeGreaterThan(0);
    expect(JSON.parse(JSON.stringify(stats)).segmentsWritten).toBe(stats.segmentsWritten);
    await wal.close();

    const recovered = await recoverSegments(db);
    const onDisk = new Map(recovered.records.map((r) => [r.txnToken.id, r]));
    for (let i = 1; i <= 40; i++) expect(onDisk.has(BigInt(i))).toBe(true);
    for (const ack of workerAcks) {
      expect(onDisk.get(ack.txnId)?.beginSeq).toBe(ack.commitSeq);
    }
    // Sequences are unique across the opening thread and the workers.
    const seqs = [...own.map((a) => a.commitSeq), ...workerAcks.map((a) => a.commitSeq)];
    expect(new Set(seqs).size).toBe(seqs.length);
  });

  it('keeps acknowledging worker commits while the opening thread is blocked', async () => {
    const wal = await ThreadedWal.open(db, { fsync: 'full' });
    expect(await acksWhileBlocked(await wal.workerHandle())).toBeGreaterThan(0);
    await wal.close();
  });

  it('contrast: a ParallelWal acknowledges no worker commit while its owner thread is blocked', async () => {
    const wal = await ParallelWal.open(db, { fsync: 'full' });
    expect(await acksWhileBlocked(wal.workerHandle())).toBe(0);
    await wal.close();
  });

  it('refuses options that cannot cross threads, and brings the log thread’s errors back with their codes', async () => {
    await expect(ThreadedWal.open(db, { fs: {} } as never)).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
    });
    await expect(ThreadedWal.open(db, { controlPlane: {} } as never)).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
    });
    await expect(ThreadedWal.open(db, { autoFlush: false })).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
    });
    await expect(ThreadedWal.open('')).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    // Validated on the log's thread, thrown here with its class and code.
    const bad = await ThreadedWal.open(db, { slotCount: -1 }).catch((e: unknown) => e);
    expect(isWalError(bad, 'ERR_INVALID_ARGUMENT')).toBe(true);
    expect((bad as Error).message).toMatch(/slotCount/);

    const first = await ThreadedWal.open(db);
    const second = await ThreadedWal.open(db).catch((e: unknown) => e);
    expect(isWalError(second, 'ERR_LOCKED')).toBe(true);
    expect(second).toBeInstanceOf(LockError);
    expect((second as LockError).holderPid).toBe(process.pid);
    await first.close();
    // The lock is released with the close: the log opens again.
    const again = await ThreadedWal.open(db);
    await again.close();
  });

  it('rejects commits and requests after close; close is idempotent', async () => {
    const wal = await ThreadedWal.open(db);
    await wal.commit(batch(1));
    await Promise.all([wal.close(), wal.close()]);
    await wal.close();
    await expect(wal.commit(batch(2))).rejects.toMatchObject({ code: 'ERR_WAL_CLOSED' });
    await expect(wal.workerHandle()).rejects.toMatchObject({ code: 'ERR_WAL_CLOSED' });
    await expect(wal.stats()).rejects.toMatchObject({ code: 'ERR_WAL_CLOSED' });
  });

  it('fails every writer, instead of leaving it waiting, when the log thread dies', async () => {
    const wal = await ThreadedWal.open(db, { fsync: 'full' });
    await wal.commit(batch(1));
    const run = startWriter({
      mode: 'commits',
      handle: await wal.workerHandle(),
      count: 1_000_000,
      concurrency: 4,
      pageBytes: 4096,
      txnBase: 100,
      close: false,
    });
    expect(await until(() => acks(run.reports).length > 0)).toBe(true);
    // The log's thread, gone in the middle of the load (a bug or a terminate).
    await (wal as unknown as { host: Worker }).host.terminate();
    // Its commits waiting then are rejected (their outcome is unknown until
    // the log is reopened), whether the writer learns it from the shared
    // failure word or from its lane's port closing first.
    expect(
      await until(() =>
        run.reports.some((r) => r.kind === 'rejected' && r.code === 'ERR_WAL_FAILED'),
      ),
    ).toBe(true);
    await expect(wal.commit(batch(2))).rejects.toMatchObject({ code: 'ERR_WAL_FAILED' });
    await expect(wal.workerHandle()).rejects.toMatchObject({ code: 'ERR_WAL_FAILED' });
    // The writer's later commits fail the same way (not as closed).
    const countBefore = run.reports.length;
    await until(() => run.reports.length > countBefore + 4, 2_000);
    const later = run.reports.slice(countBefore).filter((r) => r.kind === 'rejected');
    for (const r of later) expect(r).toMatchObject({ code: 'ERR_WAL_FAILED' });
    await wal.close();
    await run.worker.terminate();
    // The thread's end released the lock: the log reopens in this process,
    // with every acknowledged commit.
    const acked = acks(run.reports);
    const reopened = await ParallelWal.open(db);
    await reopened.close();
    const onDisk = new Set((await recoverSegments(db)).records.map((r) => r.txnToken.id));
    expect(onDisk.has(1n)).toBe(true);
    for (const ack of acked) expect(onDisk.has(ack.txnId)).toBe(true);
  });

  it('fails the log, instead of hanging its close, when its thread dies right after opening it', async () => {
    let host: Worker | null = null;
    const grab = (worker: Worker): void => {
      host ??= worker;
    };
    process.on('worker', grab);
    const opening = ThreadedWal.open(db, { fsync: 'full' });
    // The thread starts a few turns later (it loads its program meanwhile).
    for (let turn = 0; host === null && turn < 1000; turn++) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    process.off('worker', grab);
    // Block this thread while the log's thread opens the log and posts that it
    // did; then end that thread before this one has read the message: its
    // message and its exit then arrive in one task.
    const nap = new Int32Array(new SharedArrayBuffer(4));
    const deadline = Date.now() + 20_000;
    while (!fs.existsSync(`${db}.lock`) && Date.now() < deadline) Atomics.wait(nap, 0, 0, 10);
    Atomics.wait(nap, 0, 0, 1_500);
    expect(host).not.toBeNull();
    const ended = (host as unknown as Worker).terminate();
    Atomics.wait(nap, 0, 0, 500); // it ends while this thread is still blocked
    const wal = await opening;
    await ended;
    await expect(wal.commit(batch(1))).rejects.toMatchObject({ code: 'ERR_WAL_FAILED' });
    await expect(wal.stats()).rejects.toMatchObject({ code: 'ERR_WAL_FAILED' });
    const closed = await Promise.race([
      wal.close().then(() => 'closed'),
      new Promise<string>((resolve) => setTimeout(() => resolve('hung'), 3_000).unref()),
    ]);
    expect(closed).toBe('closed');
  });

  it('rejects commits waiting on the serialized path with ERR_WAL_FAILED, not as closed, when the log thread dies', async () => {
    // Batches larger than a lane buffer take the owner's serialized path
    // (over the lane's port); whether the owner wrote them is unknown once
    // it is gone, so they must not be reported as never committed.
    const wal = await ThreadedWal.open(db, { bufferCapacityBytes: 4096 });
    const big = (id: number) => ({
      txnToken: { id: BigInt(id), epoch: 0 },
      frames: [1, 2].map((n) => ({ pageNumber: n, pageData: page(n), dbSizeIfCommit: 2 })),
    });
    const settled = Array.from({ length: 8 }, (_, i) =>
      wal.commit(big(i + 1)).then(
        () => 'ok',
        (e: { code?: string }) => e.code,
      ),
    );
    await (wal as unknown as { host: Worker }).host.terminate();
    const outcomes = await Promise.all(settled);
    expect(outcomes).not.toContain('ERR_WAL_CLOSED');
    for (const o of outcomes) expect(['ok', 'ERR_WAL_FAILED']).toContain(o);
    await wal.close();
  });
});
