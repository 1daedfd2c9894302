import * as nodeFs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AlreadyRunningError, WalClosedError, WalFailedError } from '../../src/engine/errors.js';
import { InProcessLane } from '../../src/engine/lane.js';
import { parallelWalForPath, removeParallelWal } from '../../src/engine/registry.js';
import { type DurableEpochInfo, ParallelWal, type ParallelWalBatch } from '../../src/engine/wal.js';
import { isWalError } from '../../src/errors.js';
import { nodeFileSystem, type WalFileSystem } from '../../src/storage/fs.js';
import { recoverSegments } from '../../src/storage/recovery.js';
import { listSegments, readSegment, segmentPath } from '../../src/storage/segment-files.js';
import { FaultyFileSystem } from '../support/faulty-fs.js';
import { gatedFileSystem } from '../support/gated-fs.js';
import { awaitPublished } from '../support/published.js';

const dirs: string[] = [];
const opened: ParallelWal[] = [];

function tempDb(name = 'test.db'): string {
  const dir = nodeFs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
  dirs.push(dir);
  return path.join(dir, name);
}

async function open(dbPath: string, config: Parameters<typeof ParallelWal.open>[1] = {}) {
  const wal = await ParallelWal.open(dbPath, config);
  opened.push(wal);
  return wal;
}

afterEach(async () => {
  for (const wal of opened.splice(0)) await wal.close();
  for (const dir of dirs.splice(0)) nodeFs.rmSync(dir, { recursive: true, force: true });
});

/** Polls `condition` (no timing assertion: only a generous upper bound against hangs). */
async function waitFor(condition: () => boolean, limitMs = 20_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

function sampleBatch(txnId: bigint, commitSeq?: bigint): ParallelWalBatch {
  return {
    txnToken: { id: txnId, epoch: 0 },
    ...(commitSeq === undefined ? {} : { commitSeq }),
    frames: [
      { pageNumber: 7, pageData: new Uint8Array(16).fill(0xaa), dbSizeIfCommit: 0 },
      { pageNumber: 9, pageData: new Uint8Array(24).fill(0xbb), dbSizeIfCommit: 12 },
    ],
  };
}

function pageBatch(txnId: number, pageNumber: number, fill: number, bytes = 64): ParallelWalBatch {
  return {
    txnToken: { id: BigInt(txnId), epoch: 0 },
    frames: [
      { pageNumber, pageData: new Uint8Array(bytes).fill(fill), dbSizeIfCommit: pageNumber },
    ],
  };
}

describe('ParallelWal (seed coordinator tests)', () => {
  it('starts at epoch 0 with nothing durable and no ticker', async () => {
    const wal = await open(tempDb());
    expect(wal.currentEpoch).toBe(0n);
    expect(wal.durableEpoch()).toBeNull();
    expect(wal.isRunning()).toBe(false);
  });

  it('gives a thread a stable slot below slotCount', async () => {
    const wal = await open(tempDb(), { slotCount: 4 });
    const first = wal.threadSlot();
    expect(wal.threadSlot()).toBe(first);
    expect(first).toBeLessThan(4);
  });

  it('gives writers stable lanes and reuses them after close', async () => {
    const wal = await open(tempDb(), { slotCount: 2 });
    const a = wal.openWriter();
    const b = wal.openWriter();
    expect([a.laneId, b.laneId].sort()).toEqual([0, 1]);
    expect(wal.stats().lanesInUse).toBe(2);
    await a.close();
    const c = wal.openWriter();
    expect(c.laneId).toBe(a.laneId);
    await expect(a.commit(pageBatch(1, 1, 1))).rejects.toBeInstanceOf(WalClosedError);
    const result = await c.commit(pageBatch(1, 1, 1));
    expect(result.commitSeq).toBe(1n);
    await b.close();
    await c.close();
    expect(wal.stats().lanesInUse).toBe(0);
  });

  it('returns one coordinator per path from the registry, even for concurrent opens', async () => {
    const db = tempDb('registry.db');
    const [one, two] = await Promise.all([parallelWalForPath(db), parallelWalForPath(db)]);
    const three = await parallelWalForPath(path.join(path.dirname(db), '.', 'registry.db'));
    expect(one).toBe(two);
    expect(one).toBe(three);
    await removeParallelWal(db);
    expect(one.stats().closed).toBe(true);
    const fresh = await parallelWalForPath(db);
    expect(fresh).not.toBe(one);
    await removeParallelWal(db);
    await removeParallelWal(db);
  });

  it('starts and stops the ticker: a second start fails, stop is idempotent', async () => {
    const wal = await open(tempDb(), { slotCount: 4, epochIntervalMs: 5 });
    expect(wal.isRunning()).toBe(false);
    wal.start();
    expect(wal.isRunning()).toBe(true);
    expect(() => wal.start()).toThrow(AlreadyRunningError);
    expect(() => wal.start()).toThrow('coordinator already running');
    await new Promise((resolve) => setTimeout(resolve, 25));
    await wal.stop();
    expect(wal.isRunning()).toBe(false);
    await wal.stop();
    expect(wal.isRunning()).toBe(false);
  });

  it('leaves no epoch number without a segment while the ticker runs idle between commits', async () => {
    const db = tempDb();
    const wal = await open(db, { slotCount: 2, epochIntervalMs: 5, autoFlush: false });
    wal.start();
    const first = await wal.commit(pageBatch(1, 1, 0x01));
    // Many idle ticks (each used to seal an empty epoch, leaving a hole).
    await new Promise((resolve) => setTimeout(resolve, 60));
    const second = await wal.commit(pageBatch(2, 2, 0x02));
    await wal.stop();
    expect(second.epoch).toBe(first.epoch + 1n);
    await wal.close();
    expect((await listSegments(db)).map((s) => s.epoch)).toEqual([first.epoch, second.epoch]);
    expect((await recoverSegments(db)).records).toHaveLength(2);
  });

  it('restarts the ticker after its parent signal was aborted', async () => {
    const wal = await open(tempDb(), { slotCount: 2, epochIntervalMs: 5 });
    const parent = new AbortController();
    wal.start(parent.signal);
    parent.abort();
    expect(wal.isRunning()).toBe(false);
    const replacement = new AbortController();
    wal.start(replacement.signal);
    expect(wal.isRunning()).toBe(true);
    await wal.stop();
    expect(wal.isRunning()).toBe(false);
  });

  it('persists the exact frame payloads of a submitted batch', async () => {
    const db = tempDb('submit_batch.db');
    const wal = await open(db, { slotCount: 1, autoFlush: false });
    const epoch = wal.submitBatch(sampleBatch(11n, 77n));
    expect(epoch).toBe(0n);
    expect(await wal.advanceAndFlush(5_000)).toBe(1n);
    expect(wal.durableEpoch()).toBe(0n);
    const { records } = await readSegment(segmentPath(db, 0n));
    expect(records).toHaveLength(2);
    expect(records[0]!.txnToken.id).toBe(11n);
    expect(records[0]!.beginSeq).toBe(77n);
    expect(records[0]!.endSeq).toBe(77n);
    expect(records[0]!.pageId).toBe(7);
    expect(records[0]!.afterImage).toEqual(new Uint8Array(16).fill(0xaa));
    expect(records[1]!.pageId).toBe(9);
    expect(records[1]!.afterImage).toEqual(new Uint8Array(24).fill(0xbb));
  });

  it('never marks an epoch durable when its segment write fails', async () => {
    const db = tempDb('write_failure.db');
    const wal = await open(db, { slotCount: 1, autoFlush: false, lock: false });
    wal.submitBatch(sampleBatch(21n, 99n));
    nodeFs.rmSync(path.dirname(db), { recursive: true });
    const error = await wal.advanceAndFlush(5_000).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WalFailedError);
    expect((error as WalFailedError).code).toBe('ERR_WAL_FAILED');
    expect((error as WalFailedError).message).toContain('write_segment(0) failed');
    expect((error as WalFailedError).cause).toBeDefined();
    expect(wal.durableEpoch()).toBeNull();
    await expect(wal.waitForEpochDurable(0n, 10)).rejects.toBeDefined();
  });
});

describe('ParallelWal commits', () => {
  it('acknowledges a commit only once durable, with honest durability and dbSize', async () => {
    const db = tempDb();
    const wal = await open(db, { fsync: 'normal' });
    const seen: DurableEpochInfo[] = [];
    wal.onDurable((info) => seen.push(info));
    const result = await wal.commit(sampleBatch(5n));
    expect(result).toEqual({
      epoch: 0n,
      commitSeq: 1n,
      durability: 'normal',
      dbSizePages: 12,
      serialized: false,
    });
    // Resolved = acknowledged (data durable); publication (the segment under
    // its name, onDurable) may follow in the background with earlyAck.
    expect(wal.acknowledgedEpoch()).toBe(0n);
    await wal.waitForEpochDurable(0n, 10_000);
    expect(wal.durableEpoch()).toBe(0n);
    expect((await listSegments(db)).map((s) => s.epoch)).toEqual([0n]);
    expect(seen[0]).toMatchObject({
      epoch: 0n,
      segmentWritten: true,
      recordCount: 2,
      commitSeqLo: 1n,
      commitSeqHi: 1n,
      dbSizePages: 12,
    });
    // earlyAck: the directory fsync that made the pre-created files' names
    // durable, the data's fdatasync (the ack), the publication's directory fsync.
    expect(wal.stats()).toMatchObject({ commits: 1, segmentsWritten: 1, fsyncs: 3 });
    expect(wal.stats().segmentPool).toBeNull();
    expect(wal.stats().commitLatencyMicros.count).toBe(1);
  });

  it('assigns increasing commit sequences and groups a turn of commits into one epoch', async () => {
    const wal = await open(tempDb());
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => wal.commit(pageBatch(i + 1, 1 + (i % 4), i))),
    );
    expect(results.map((r) => r.commitSeq)).toEqual(
      Array.from({ length: 50 }, (_, i) => BigInt(i + 1)),
    );
    expect(new Set(results.map((r) => r.epoch)).size).toBe(1);
    expect(wal.stats().segmentsWritten).toBe(1);
  });

  it('continues epochs and commit sequences after reopen without touching old segments', async () => {
    const db = tempDb();
    const first = await ParallelWal.open(db);
    await first.commit(pageBatch(1, 1, 1));
    await first.commit(pageBatch(2, 2, 2));
    await first.close();
    const before = await listSegments(db);
    const bytesBefore = before.map((s) => nodeFs.readFileSync(s.path));
    const second = await open(db);
    expect(second.currentEpoch).toBe(before[before.length - 1]!.epoch + 1n);
    const result = await second.commit(pageBatch(3, 3, 3));
    expect(result.commitSeq).toBe(3n);
    expect(result.epoch).toBeGreaterThan(before[before.length - 1]!.epoch);
    for (const [i, segment] of before.entries()) {
      expect(nodeFs.readFileSync(segment.path)).toEqual(bytesBefore[i]);
    }
  });

  it('fails closed on a corrupt segment unless skipCorrupt, and then numbers after it', async () => {
    const db = tempDb();
    const wal = await ParallelWal.open(db);
    await wal.commit(pageBatch(1, 1, 1));
    await wal.close();
    nodeFs.writeFileSync(segmentPath(db, 1n), new Uint8Array([1, 2, 3]));
    await expect(ParallelWal.open(db)).rejects.toMatchObject({ code: 'ERR_SEGMENT_CORRUPT' });
    const skipping = await open(db, { skipCorrupt: true });
    expect(skipping.currentEpoch).toBe(2n);
    const result = await skipping.commit(pageBatch(2, 1, 2));
    expect(result.epoch).toBe(2n);
    expect(nodeFs.readFileSync(segmentPath(db, 1n))).toEqual(Buffer.from([1, 2, 3]));
  });

  it('fails closed on a segment whose header names another epoch than its file', async () => {
    const db = tempDb();
    const wal = await ParallelWal.open(db);
    await wal.commit(pageBatch(1, 1, 1));
    await wal.close();
    nodeFs.renameSync(segmentPath(db, 0n), segmentPath(db, 3n));
    await expect(ParallelWal.open(db)).rejects.toMatchObject({
      code: 'ERR_SEGMENT_CORRUPT',
      message: expect.stringContaining('mismatched epoch'),
    });
  });

  it('removes temporary files of an interrupted write when opening', async () => {
    const db = tempDb();
    const leftover = `${db}-wal-tmp-0000000000000003-0123456789ab`;
    nodeFs.writeFileSync(leftover, 'partial');
    await open(db);
    expect(nodeFs.existsSync(leftover)).toBe(false);
  });

  it('sends a refused batch through the serialized path and still commits it', async () => {
    const db = tempDb();
    const wal = await open(db, {
      slotCount: 1,
      bufferCapacityBytes: 4096,
      overflowPolicy: 'blockWriter',
    });
    const big = pageBatch(1, 1, 0x11, 6000);
    const result = await wal.commit(big);
    expect(result.serialized).toBe(true);
    expect(wal.stats().fallbacks).toBe(1);
    // The commit resolved at the acknowledgement; the rename may still be under
    // way, and a directory listing taken during it can show both names.
    await awaitPublished(wal);
    const { records } = await recoverSegments(db);
    expect(records.map((r) => r.afterImage.length)).toEqual([6000]);
  });

  it('commits through the serialized entry point', async () => {
    const wal = await open(tempDb());
    const result = await wal.commitSerialized(pageBatch(1, 1, 1));
    expect(result.serialized).toBe(true);
    expect(wal.stats().fallbacks).toBe(0);
  });

  it('rejects malformed batches and configurations with typed errors', async () => {
    const db = tempDb();
    await expect(ParallelWal.open(db, { slotCount: 0 })).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
    });
    await expect(ParallelWal.open(db, { epochIntervalMs: 0 })).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
    });
    await expect(
      ParallelWal.open(db, { fsync: 'sometimes' as unknown as 'full' }),
    ).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    await expect(ParallelWal.open(db, { bufferCapacityBytes: 10 })).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
    });
    const wal = await open(db);
    await expect(wal.commit({ txnToken: { id: 1n, epoch: 0 }, frames: [] })).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
    });
    await expect(wal.commit(pageBatch(0, 1, 1))).rejects.toMatchObject({
      code: 'ERR_INVALID_RECORD',
    });
    await expect(wal.commit(pageBatch(1, 0, 1))).rejects.toMatchObject({
      code: 'ERR_INVALID_RECORD',
    });
    // A rejected batch consumed no commit sequence.
    expect((await wal.commit(pageBatch(1, 1, 1))).commitSeq).toBe(1n);
  });

  it('pipelines: commits arriving during a write fill the next epoch, sealed early past maxEpochBytes', async () => {
    const gated = gatedFileSystem();
    const db = tempDb();
    const wal = await open(db, { fs: gated.fs, maxEpochBytes: 4096, slotCount: 1 });
    const first = wal.commit(pageBatch(1, 1, 1, 100));
    await waitFor(gated.waiting);
    // The disk is busy with epoch 0: these land in later epochs.
    const during = Array.from({ length: 40 }, (_, i) => wal.commit(pageBatch(i + 2, 2, i, 200)));
    expect(wal.stats().earlySeals).toBeGreaterThanOrEqual(1);
    expect(wal.stats().queueDepths.sealedEpochs).toBe(1);
    expect(gated.release()).toBe(true);
    const results = await Promise.all([first, ...during]);
    expect(results[0]!.epoch).toBe(0n);
    const epochs = results.slice(1).map((r) => r.epoch);
    expect(Math.min(...epochs.map(Number))).toBeGreaterThan(0);
    // Commit order agrees with epoch order.
    for (let i = 1; i < results.length; i++) {
      expect(results[i]!.epoch >= results[i - 1]!.epoch).toBe(true);
    }
    expect(wal.acknowledgedEpoch()).toBe(results.at(-1)!.epoch);
    await awaitPublished(wal);
    const recovered = await recoverSegments(db);
    expect(recovered.records.map((r) => r.beginSeq)).toEqual(results.map((r) => r.commitSeq));
  });

  it('flushes registered external lanes and frees their ids on release', async () => {
    const db = tempDb();
    const wal = await open(db, { slotCount: 2 });
    const lane = wal.registerLane(
      (laneId, startEpoch) => new InProcessLane({ laneId, startEpoch, bufferCapacityBytes: 8192 }),
    );
    expect(lane.laneId).toBe(2);
    const outcome = lane.append([
      {
        txnToken: { id: 9n, epoch: 1 },
        pageId: 4,
        beginSeq: 500n,
        endSeq: 500n,
        beforeImage: new Uint8Array(0),
        afterImage: new Uint8Array([1, 2, 3]),
      },
    ]);
    expect(outcome.kind).toBe('appended');
    wal.notifyAppend();
    const epoch = outcome.kind === 'appended' ? outcome.epoch : -1n;
    await wal.waitForEpochDurable(epoch, 20_000);
    await wal.releaseLane(lane.laneId);
    const again = wal.registerLane(
      (laneId, startEpoch) => new InProcessLane({ laneId, startEpoch }),
    );
    expect(again.laneId).toBe(2);
    const { records } = await recoverSegments(db);
    expect(records.map((r) => [r.txnToken.id, r.beginSeq, r.pageId])).toEqual([[9n, 500n, 4]]);
  });

  it('supports await using (Symbol.asyncDispose)', async () => {
    const db = tempDb();
    {
      await using wal = await ParallelWal.open(db);
      await wal.commit(pageBatch(1, 1, 1));
    }
    // Closed: the lock is free again.
    const again = await open(db);
    expect(again.currentEpoch).toBe(1n);
  });
});

describe('ParallelWal with pre-created segment files', () => {
  it('writes the same segments and leaves no temporary file behind', async () => {
    const db = tempDb();
    const wal = await ParallelWal.open(db, { precreateSegmentFiles: true });
    for (let i = 1; i <= 5; i++) await wal.commit(pageBatch(i, i, i));
    await wal.close();
    const names = nodeFs.readdirSync(path.dirname(db));
    expect(names.filter((n) => n.includes('-wal-tmp-'))).toEqual([]);
    const { records, epochs } = await recoverSegments(db);
    expect(epochs).toHaveLength(5);
    expect(records.map((r) => r.beginSeq)).toEqual([1n, 2n, 3n, 4n, 5n]);
  });

  it('never acknowledges an epoch whose fdatasync failed', async () => {
    const db = tempDb();
    const faulty = new FaultyFileSystem(nodeFileSystem);
    const wal = await open(db, { fs: faulty, precreateSegmentFiles: true });
    await wal.commit(pageBatch(1, 1, 1));
    faulty.inject({ kind: 'datasync' });
    await expect(wal.commit(pageBatch(2, 1, 2))).rejects.toMatchObject({ code: 'ERR_WAL_FAILED' });
    await wal.close();
    const { records } = await recoverSegments(db);
    expect(records.map((r) => r.beginSeq)).toEqual([1n]);
    expect(nodeFs.readdirSync(path.dirname(db)).filter((n) => n.includes('-wal-tmp-'))).toEqual([]);
  });
});

describe('ParallelWal failure and close', () => {
  it('enters the failed state on an fsync error, rejects waiting and later commits, and recovers on reopen', async () => {
    const db = tempDb();
    const faulty = new FaultyFileSystem(nodeFileSystem);
    const wal = await open(db, { fs: faulty, slotCount: 2 });
    const good = await wal.commit(pageBatch(1, 1, 0x01));
    const failures: WalFailedError[] = [];
    wal.onFailed((error) => failures.push(error));
    faulty.inject({ kind: 'datasync', code: 'EIO' });
    const doomed = await wal.commit(pageBatch(2, 1, 0x02)).catch((e: unknown) => e);
    expect(doomed).toBeInstanceOf(WalFailedError);
    expect(isWalError(doomed, 'ERR_WAL_FAILED')).toBe(true);
    expect((doomed as WalFailedError).message).toMatch(/write_segment\(\d+\) failed/);
    expect((doomed as WalFailedError).cause).toMatchObject({ code: 'ERR_IO' });
    expect(failures).toHaveLength(1);
    await expect(wal.commit(pageBatch(3, 1, 0x03))).rejects.toBeInstanceOf(WalFailedError);
    expect(() => wal.submitBatch(pageBatch(4, 1, 4))).toThrow(WalFailedError);
    // The good commit stays acknowledged (with earlyAck its publication may
    // not have happened before the failure: recovery adopts it), nothing later.
    expect(wal.acknowledgedEpoch()).toBe(good.epoch);
    expect(wal.durableEpoch() ?? -1n).toBeLessThanOrEqual(good.epoch);
    await wal.close();
    faulty.heal();
    const reopened = await open(db, { fs: faulty });
    const { records } = await recoverSegments(db);
    expect(records.map((r) => r.beginSeq)).toEqual([1n]);
    expect((await reopened.commit(pageBatch(5, 1, 5))).commitSeq).toBe(2n);
  });

  it('a failed rename or directory fsync is never acknowledged either (storage sink: rename before ack)', async () => {
    for (const kind of ['rename', 'syncDirectory'] as const) {
      const db = tempDb();
      const faulty = new FaultyFileSystem(nodeFileSystem);
      // The rename-before-ack protocol (default for format version 1).
      const wal = await open(db, { fs: faulty, segmentSink: 'storage' });
      faulty.inject({ kind });
      await expect(wal.commit(pageBatch(1, 1, 1))).rejects.toMatchObject({
        code: 'ERR_WAL_FAILED',
      });
      expect(wal.durableEpoch()).toBeNull();
      expect(wal.acknowledgedEpoch()).toBeNull();
      expect(wal.stats().commits).toBe(0);
    }
  });

  for (const sink of ['earlyAck', 'pool'] as const)
    it(`with the ${sink} sink, a failed rename or directory fsync after the ack keeps the ack, fails the log, and the epoch is recovered on reopen`, async () => {
      for (const kind of ['rename', 'syncDirectory'] as const) {
        const db = tempDb();
        const faulty = new FaultyFileSystem(nodeFileSystem);
        const wal = await open(db, { fs: faulty, segmentSink: sink });
        expect(wal.config.segmentSink).toBe(sink);
        const first = await wal.commit(pageBatch(1, 1, 1));
        await wal.waitForEpochDurable(first.epoch, 10_000);
        // The next publication (rename, then one directory fsync) fails.
        faulty.inject({ kind });
        const acked = await wal.commit(pageBatch(2, 1, 2));
        expect(wal.acknowledgedEpoch()).toBe(acked.epoch);
        // Its publication fails: the log fails, the acknowledgement stands.
        await expect(wal.waitForEpochDurable(acked.epoch, 10_000)).rejects.toMatchObject({
          code: 'ERR_WAL_FAILED',
        });
        const later = await wal.commit(pageBatch(3, 1, 3)).catch((e: unknown) => e);
        expect(isWalError(later, 'ERR_WAL_FAILED'), kind).toBe(true);
        expect(wal.acknowledgedEpoch()).toBe(acked.epoch);
        expect(wal.durableEpoch()).toBe(first.epoch);
        await wal.close();
        faulty.heal();
        const reopened = await open(db);
        expect(reopened.durableEpoch()).toBe(acked.epoch);
        const { records } = await recoverSegments(db);
        expect(records.map((r) => r.beginSeq)).toEqual([first.commitSeq, acked.commitSeq]);
        await reopened.close();
      }
    });

  it('settles every commit racing with close: acknowledged and durable, or rejected as closed', async () => {
    const db = tempDb();
    const wal = await ParallelWal.open(db, { slotCount: 4 });
    const outcomes: Promise<{ ok: boolean; seq?: bigint; code?: string }>[] = [];
    const attempt = (i: number) =>
      wal.commit(pageBatch(i + 1, 1 + (i % 8), i & 0xff)).then(
        (r) => ({ ok: true, seq: r.commitSeq }),
        (e: unknown) => ({ ok: false, code: (e as { code?: string }).code }),
      );
    for (let i = 0; i < 200; i++) outcomes.push(attempt(i));
    const closing = wal.close();
    for (let i = 200; i < 300; i++) outcomes.push(attempt(i));
    await closing;
    const settled = await Promise.all(outcomes);
    const acked = settled.filter((o) => o.ok).map((o) => o.seq!);
    expect(acked).toHaveLength(200);
    expect(settled.slice(200).every((o) => !o.ok && o.code === 'ERR_WAL_CLOSED')).toBe(true);
    const { records } = await recoverSegments(db);
    expect(records.map((r) => r.beginSeq)).toEqual(acked);
    await wal.close();
  });
});

describe('ParallelWal.stats().fsyncs', () => {
  it('counts the sync calls the segment protocol really issues, per sink', async () => {
    const counts: Record<string, number> = {};
    for (const segmentSink of ['storage', 'precreate', 'earlyAck'] as const) {
      const db = tempDb();
      let syncs = 0;
      const fs: WalFileSystem = {
        ...nodeFileSystem,
        async open(path, mode) {
          const handle = await nodeFileSystem.open(path, mode);
          return Object.assign(Object.create(handle) as typeof handle, {
            datasync: async () => {
              syncs++;
              await handle.datasync();
            },
            sync: async () => {
              syncs++;
              await handle.sync();
            },
          });
        },
        async syncDirectory(dir) {
          syncs++;
          await nodeFileSystem.syncDirectory(dir);
        },
      };
      // No lock, a fresh directory: every sync below is the segment protocol's.
      const wal = await ParallelWal.open(db, { segmentSink, fs, lock: false });
      for (let i = 1; i <= 3; i++) {
        await wal.commit({
          txnToken: { id: BigInt(i), epoch: 0 },
          frames: [{ pageNumber: i, pageData: new Uint8Array(64), dbSizeIfCommit: 3 }],
        });
      }
      await wal.close();
      // Everything the log synced for its segments, and nothing it did not.
      expect(wal.stats().fsyncs).toBe(syncs);
      counts[segmentSink] = wal.stats().fsyncs;
    }
    // rename-before-ack pays two syncs per epoch; earlyAck one per epoch plus batched directory fsyncs.
    expect(counts.storage).toBe(6);
    expect(counts.precreate).toBe(6);
    expect(counts.earlyAck).toBeLessThan(6);
  });
});
