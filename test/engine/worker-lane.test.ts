/**
 * The shared lane's state machine, driven from one thread: the owner side
 * (SharedLane/WorkerLanePool, through a fake engine) and a writer attached on
 * the same thread, so every step is deterministic.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { WalFailedError } from '../../src/engine/errors.js';
import type { SharedLane } from '../../src/engine/shared-lane.js';
import {
  attachWriter,
  type WorkerBatch,
  type WorkerLaneHandle,
  type WorkerWriter,
} from '../../src/engine/worker.js';
import { LANE_LOCK_TIMEOUT_CODE, LaneWord, LogWord } from '../../src/engine/worker-layout.js';
import { decodeChunks, FakeOwner } from '../fixtures/fake-owner.js';

function batch(txnId: number, pageBytes = 100, frames = 1): WorkerBatch {
  return {
    txnToken: { id: BigInt(txnId), epoch: 0 },
    frames: Array.from({ length: frames }, (_, i) => ({
      pageNumber: i + 1,
      pageData: new Uint8Array(pageBytes).fill(txnId & 0xff),
      dbSizeIfCommit: frames,
    })),
  };
}

/** Waits (bounded) for an asynchronous message-port delivery to show, instead of assuming one timer suffices. */
function eventually(assertion: () => void): Promise<void> {
  return vi.waitFor(assertion, { timeout: 10_000, interval: 5 });
}

/** Lets queued tasks (port messages, waitAsync resolutions) run: only before a negative check. */
function turn(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 5));
}

const open: WorkerWriter[] = [];
const owners: FakeOwner[] = [];
afterEach(async () => {
  // Closing the log settles whatever a test left waiting, so writers can close.
  for (const o of owners.splice(0)) o.pool.close();
  for (const w of open.splice(0)) await w.close();
});

function setup(options: ConstructorParameters<typeof FakeOwner>[0] = {}): {
  owner: FakeOwner;
  lane: SharedLane;
  writer: WorkerWriter;
  handle: WorkerLaneHandle;
} {
  const owner = new FakeOwner(options);
  owners.push(owner);
  const handle = owner.pool.createHandle();
  const writer = attachWriter(handle);
  open.push(writer);
  const lane = owner.pool.lanes()[0]!;
  return { owner, lane, writer, handle };
}

describe('shared lane state machine', () => {
  it('appends to the active buffer tagged with the lane epoch', () => {
    const { lane, writer } = setup();
    void writer.commit(batch(1));
    const s = lane.bufferState(0);
    expect(s).toMatchObject({ kind: 'writable', epoch: 1n, recordCount: 1, active: true });
    expect(s.usedBytes).toBeGreaterThan(100);
    expect(lane.pendingBytes()).toBe(s.usedBytes);
  });

  it('seals on advance and keeps appending in the other buffer before beginFlush, then clears on completeFlush', async () => {
    const { owner, lane, writer } = setup();
    void writer.commit(batch(1));
    expect(lane.advance(2n)).toBe(true);
    expect(lane.bufferState(0)).toMatchObject({ kind: 'sealed', epoch: 1n, active: false });
    expect(lane.bufferState(1)).toMatchObject({ kind: 'writable', epoch: 2n, active: true });
    expect(lane.pendingBytes()).toBe(0);

    // Between the seal and beginFlush the lane takes the commit (tagged with
    // the new epoch); it does not go to the serialized path.
    void writer.commit(batch(2));
    expect(lane.bufferState(1)).toMatchObject({ recordCount: 1, epoch: 2n });
    expect(lane.pendingBytes()).toBe(lane.bufferState(1).usedBytes);

    const data = lane.beginFlush(1n);
    expect(data).not.toBeNull();
    expect(data!.recordCount).toBe(1);
    expect(decodeChunks(data!.chunks).map((r) => [r.txnToken.id, r.epoch])).toEqual([[1n, 1n]]);
    expect(lane.bufferState(0)).toMatchObject({ kind: 'flushing', epoch: 1n, active: false });
    expect(lane.bufferState(1)).toMatchObject({ kind: 'writable', epoch: 2n, active: true });

    // Double buffering: appends continue in the other buffer during the flush.
    void writer.commit(batch(3));
    expect(lane.bufferState(1)).toMatchObject({ recordCount: 2, epoch: 2n });

    lane.completeFlush(1n);
    expect(lane.bufferState(0)).toMatchObject({
      kind: 'writable',
      epoch: 2n,
      usedBytes: 0,
      recordCount: 0,
    });
    lane.advance(3n);
    expect(decodeChunks(lane.beginFlush(2n)!.chunks).map((r) => [r.txnToken.id, r.epoch])).toEqual([
      [2n, 2n],
      [3n, 2n],
    ]);
    await turn();
    expect(owner.serializedCommits).toBe(0);
    expect(lane.fallbacks()).toBe(0);
  });

  it('re-tags an empty writable buffer on advance and seals nothing', () => {
    const { lane, writer } = setup();
    expect(lane.advance(2n)).toBe(false);
    expect(lane.bufferState(0)).toMatchObject({ kind: 'writable', epoch: 2n });
    void writer.commit(batch(1));
    lane.advance(3n);
    const data = lane.beginFlush(2n);
    expect(decodeChunks(data!.chunks)[0]!.epoch).toBe(2n);
  });

  it('returns null from beginFlush for an epoch the lane did not seal', () => {
    const { lane, writer } = setup();
    void writer.commit(batch(1));
    expect(lane.beginFlush(1n)).toBeNull();
    lane.advance(2n);
    expect(lane.beginFlush(2n)).toBeNull();
    expect(lane.beginFlush(1n)).not.toBeNull();
  });

  it('flushes in place when the other buffer is still flushing, and appends in the freed buffer before the second flush ends', async () => {
    const { owner, lane, writer } = setup();
    void writer.commit(batch(1));
    lane.advance(2n);
    lane.beginFlush(1n); // buffer 0 flushing, buffer 1 active
    void writer.commit(batch(2));
    lane.advance(3n); // buffer 1 sealed at 2 while buffer 0 still flushes (pipelining)
    expect(lane.bufferState(1)).toMatchObject({ kind: 'sealed', active: true });
    const second = lane.beginFlush(2n);
    expect(decodeChunks(second!.chunks).map((r) => [r.txnToken.id, r.epoch])).toEqual([[2n, 2n]]);
    expect(lane.bufferState(1)).toMatchObject({ kind: 'flushing', active: true });

    void writer.commit(batch(3)); // nothing writable: serialized path
    await eventually(() => expect(owner.serializedCommits).toBe(1));

    // Buffer 0 is free again while buffer 1 still flushes: appends go there.
    lane.completeFlush(1n);
    expect(lane.bufferState(0)).toMatchObject({ kind: 'writable', epoch: 3n, active: true });
    void writer.commit(batch(4));
    expect(lane.bufferState(0)).toMatchObject({ recordCount: 1, epoch: 3n });
    lane.completeFlush(2n);
    expect(lane.bufferState(1)).toMatchObject({ kind: 'writable', epoch: 3n, usedBytes: 0 });
    lane.advance(4n);
    expect(decodeChunks(lane.beginFlush(3n)!.chunks).map((r) => [r.txnToken.id, r.epoch])).toEqual([
      [4n, 3n],
    ]);
    expect(lane.fallbacks()).toBe(1);
  });

  it('waits for a free buffer when two epochs are sealed before either flushes', async () => {
    const { owner, lane, writer } = setup();
    void writer.commit(batch(1));
    lane.advance(2n); // buffer 0 sealed at 1, buffer 1 active
    void writer.commit(batch(2));
    lane.advance(3n); // buffer 1 sealed at 2: no free buffer
    expect(lane.bufferState(0)).toMatchObject({ kind: 'sealed', epoch: 1n });
    expect(lane.bufferState(1)).toMatchObject({ kind: 'sealed', epoch: 2n, active: true });
    void writer.commit(batch(3));
    await eventually(() => expect(owner.serializedCommits).toBe(1));
    expect(decodeChunks(lane.beginFlush(1n)!.chunks).map((r) => r.txnToken.id)).toEqual([1n]);
    expect(decodeChunks(lane.beginFlush(2n)!.chunks).map((r) => r.txnToken.id)).toEqual([2n]);
    lane.completeFlush(1n);
    void writer.commit(batch(4));
    expect(lane.bufferState(0)).toMatchObject({ active: true, epoch: 3n, recordCount: 1 });
    lane.completeFlush(2n);
    lane.advance(4n);
    expect(decodeChunks(lane.beginFlush(3n)!.chunks).map((r) => [r.txnToken.id, r.epoch])).toEqual([
      [4n, 3n],
    ]);
  });

  it('sends a commit to the serialized path when the active buffer is full, never splitting it', async () => {
    const { owner, lane, writer } = setup({ bufferCapacityBytes: 10_000 });
    void writer.commit(batch(1, 4096));
    void writer.commit(batch(2, 4096));
    const before = lane.bufferState(0).usedBytes;
    void writer.commit(batch(3, 4096)); // does not fit the remaining ~1.8 KB
    await eventually(() => expect(owner.serializedCommits).toBe(1));
    expect(lane.bufferState(0).usedBytes).toBe(before);
    expect(lane.fallbacks()).toBe(1);
    // A batch larger than a whole buffer goes there too, in one piece.
    void writer.commit(batch(4, 4096, 3));
    await eventually(() => expect(owner.serializedCommits).toBe(2));
    expect(lane.bufferState(0).usedBytes).toBe(before);
  });
});

describe('worker commit acknowledgement', () => {
  it('resolves a commit only once its epoch is durable', async () => {
    const { owner, writer } = setup({ durability: 'normal' });
    let ack: unknown = null;
    void writer.commit(batch(7)).then((a) => {
      ack = a;
    });
    await turn();
    expect(ack).toBeNull();
    owner.pool.markDurable(0n);
    await turn();
    expect(ack).toBeNull();
    owner.tick();
    await eventually(() => expect(ack).toEqual({ epoch: 1n, commitSeq: 1n, durability: 'normal' }));
  });

  it('rings the doorbell once for the commits of one turn, after the last of them', async () => {
    const { owner, writer, lane, handle } = setup();
    const logWords = new Int32Array(handle.log);
    const doorbell = (): number => Atomics.load(logWords, LogWord.doorbell);
    const before = doorbell();
    for (let i = 1; i <= 5; i++) void writer.commit(batch(i));
    expect(lane.bufferState(0).recordCount).toBe(5);
    expect(doorbell()).toBe(before);
    await eventually(() => expect(owner.appendNotifications).toBe(1));
    expect(doorbell()).toBe(before + 1);
    void writer.commit(batch(6));
    await eventually(() => expect(doorbell()).toBe(before + 2));
  });

  it('assigns unique increasing commit sequence numbers shared with the serialized path', async () => {
    const { owner, writer } = setup({ bufferCapacityBytes: 1000 });
    const acks = [writer.commit(batch(1)), writer.commit(batch(2))];
    // Larger than a lane buffer: this one goes to the owner.
    acks.push(writer.commit(batch(3, 2000)));
    await eventually(() => expect(owner.serializedCommits).toBe(1));
    owner.tick(); // flushes epoch 1: the lane's two and the serialized one
    acks.push(writer.commit(batch(4)));
    owner.tick();
    const seqs = (await Promise.all(acks)).map((a) => a.commitSeq);
    expect(seqs).toEqual([1n, 2n, 3n, 4n]);
    const flushed = owner.flushed.map((f) => f.record.beginSeq);
    expect([...flushed].sort((a, b) => Number(a - b))).toEqual([1n, 2n, 3n, 4n]);
  });

  it('keeps commit sequences given by the caller', async () => {
    const { owner, writer } = setup();
    const ack = writer.commit({ ...batch(1), commitSeq: 900n });
    owner.tick();
    expect((await ack).commitSeq).toBe(900n);
    expect(owner.flushed[0]!.record.endSeq).toBe(900n);
  });

  it('rejects waiting and later commits with ERR_WAL_FAILED and the cause', async () => {
    const { owner, writer } = setup();
    const waiting = writer.commit(batch(1));
    const eio = Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
    owner.fail(new WalFailedError('write of epoch 1 failed', 1n, { cause: eio }));
    await expect(waiting).rejects.toMatchObject({
      code: 'ERR_WAL_FAILED',
      message: expect.stringContaining('EIO: i/o error'),
    });
    await expect(writer.commit(batch(2))).rejects.toMatchObject({ code: 'ERR_WAL_FAILED' });
  });

  it('rejects commits after close with ERR_WAL_CLOSED', async () => {
    const { writer } = setup();
    await writer.close();
    await expect(writer.commit(batch(1))).rejects.toMatchObject({ code: 'ERR_WAL_CLOSED' });
  });

  it('rejects an invalid batch with the format error and appends nothing', async () => {
    const { lane, writer } = setup();
    await expect(
      writer.commit({ txnToken: { id: 0n, epoch: 0 }, frames: batch(1).frames }),
    ).rejects.toMatchObject({ code: 'ERR_INVALID_RECORD' });
    expect(lane.bufferState(0).usedBytes).toBe(0);
  });
});

describe('lane lifecycle', () => {
  it('releases a closed writer lane once drained and reuses it; the old handle cannot attach', async () => {
    const owner = new FakeOwner();
    const handle = owner.pool.createHandle();
    const writer = attachWriter(handle);
    const pending = writer.commit(batch(1));
    const closing = writer.close();
    owner.tick();
    await pending;
    await closing;
    await eventually(() => expect(owner.released).toEqual([handle.laneId]));
    expect(owner.pool.stats()).toMatchObject({ lanesInUse: 0, lanesFree: 1 });

    const again = owner.pool.createHandle();
    expect(again.laneId).toBe(handle.laneId);
    expect(again.generation).toBe(handle.generation + 1);
    expect(() => attachWriter(handle)).toThrow(/stale/);
    const w2 = attachWriter(again);
    open.push(w2);
    expect(() => attachWriter(again)).toThrow(/already has a writer/);
    const ack = w2.commit(batch(2));
    owner.tick();
    expect((await ack).epoch).toBe(owner.epoch - 1n);
  });

  it('keeps a released lane registered until its sealed records are flushed', async () => {
    const owner = new FakeOwner();
    const handle = owner.pool.createHandle();
    const writer = attachWriter(handle);
    void writer.commit(batch(1));
    handle.port.close(); // as when the worker exits without closing its writer
    await turn();
    expect(owner.released).toEqual([]);
    expect(owner.pool.stats().lanesInUse).toBe(1);
    owner.tick();
    await eventually(() => expect(owner.released).toEqual([handle.laneId]));
    expect(owner.pool.stats()).toMatchObject({ lanesInUse: 0, lanesFree: 1 });
    expect(owner.flushed.map((f) => f.record.txnToken.id)).toEqual([1n]);
  });

  it('fails a lock wait on a lane whose holder never releases it, with a typed error', () => {
    const { owner, lane } = setup({ ownerLockWaitMaxMs: 20 });
    const control = new Int32Array(lane.control);
    Atomics.store(control, LaneWord.lock, 1);
    expect(() => owner.tick()).toThrow(expect.objectContaining({ code: LANE_LOCK_TIMEOUT_CODE }));
    Atomics.store(control, LaneWord.lock, 0);
    expect(() => owner.tick()).not.toThrow();
  });
});
