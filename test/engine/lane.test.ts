import { describe, expect, it } from 'vitest';
import { InProcessLane, type LaneRecordInput } from '../../src/engine/lane.js';
import { decodeRecord } from '../../src/format/record.js';
import type { WalRecord } from '../../src/format/types.js';

function input(seq: number, bytes = 16, committed = true): LaneRecordInput {
  return {
    txnToken: { id: BigInt(seq), epoch: 0 },
    pageId: 1 + (seq % 5),
    beginSeq: BigInt(seq),
    endSeq: committed ? BigInt(seq) : null,
    beforeImage: new Uint8Array(0),
    afterImage: new Uint8Array(bytes).fill(seq & 0xff),
  };
}

/** Decodes the wire-form records in `chunks`. */
function decodeChunks(chunks: readonly Uint8Array[]): WalRecord[] {
  const out: WalRecord[] = [];
  for (const chunk of chunks) {
    const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let at = 0;
    while (at < chunk.length) {
      const len = view.getUint32(at, true);
      out.push(decodeRecord(chunk.subarray(at + 4, at + 4 + len), 2));
      at += 4 + len;
    }
  }
  return out;
}

function lane(overrides: Partial<ConstructorParameters<typeof InProcessLane>[0]> = {}) {
  return new InProcessLane({ laneId: 0, startEpoch: 0n, bufferCapacityBytes: 4096, ...overrides });
}

describe('in-process lane state machine', () => {
  it('walks writable -> sealed -> flushing -> writable with double buffering', () => {
    const l = lane();
    expect(l.append([input(1)])).toEqual({ kind: 'appended', epoch: 0n, overflowed: false });
    expect(l.activeState()).toEqual({ kind: 'writable' });
    expect(l.advance(1n)).toBe(true);
    expect(l.activeState()).toEqual({ kind: 'sealed', epoch: 0n });
    const share = l.beginFlush(0n);
    expect(share?.recordCount).toBe(1);
    expect(l.flushState()).toEqual({ kind: 'flushing', epoch: 0n });
    // Writers keep appending into the other buffer while the disk works.
    expect(l.activeState()).toEqual({ kind: 'writable' });
    expect(l.append([input(2)])).toMatchObject({ kind: 'appended', epoch: 1n, overflowed: false });
    l.completeFlush(0n);
    expect(l.flushState()).toEqual({ kind: 'writable' });
    expect(l.pendingBytes()).toBeGreaterThan(0);
  });

  it("flushes an epoch in place, queued behind the one being written, and swaps at that one's completeFlush", () => {
    const l = lane();
    l.append([input(1)]);
    l.advance(1n);
    l.beginFlush(0n); // epoch 0 is being written
    l.append([input(2)]);
    l.advance(2n);
    // Epoch 1 flushes where it is: its bytes are handed over without a swap.
    const ahead = l.beginFlush(1n)!;
    expect(decodeChunks(ahead.chunks).map((r) => [r.beginSeq, r.epoch])).toEqual([[2n, 1n]]);
    expect(l.activeState()).toEqual({ kind: 'flushing', epoch: 1n });
    expect(l.flushState()).toEqual({ kind: 'flushing', epoch: 0n });
    // Nothing is appended over the buffer being written: the next commit overflows.
    expect(l.append([input(3)])).toMatchObject({ kind: 'appended', epoch: 2n, overflowed: true });
    expect(l.pendingBytes()).toBeGreaterThan(0);
    // Epoch 0 done: epoch 1 takes the flush buffer's place, writers the cleared one.
    l.completeFlush(0n);
    expect(l.flushState()).toEqual({ kind: 'flushing', epoch: 1n });
    expect(l.activeState()).toEqual({ kind: 'writable' });
    expect(l.overflowBytes).toBe(0); // drained into the writable buffer
    l.completeFlush(1n);
    expect(l.flushState()).toEqual({ kind: 'writable' });
    l.advance(3n);
    const last = l.beginFlush(2n)!;
    expect(decodeChunks(last.chunks).map((r) => [r.beginSeq, r.epoch])).toEqual([[3n, 2n]]);
    // The bytes handed over for epoch 1 were never written over.
    expect(decodeChunks(ahead.chunks).map((r) => r.beginSeq)).toEqual([2n]);
  });

  it('stores records encoded and tagged with the lane epoch', () => {
    const l = lane();
    l.advance(1n);
    l.advance(2n);
    l.append([input(7, 40)]);
    l.advance(3n);
    const share = l.beginFlush(2n)!;
    const [record] = decodeChunks(share.chunks);
    expect(record?.epoch).toBe(2n);
    expect(record?.afterImage).toEqual(new Uint8Array(40).fill(7));
  });

  it('advancing an empty lane seals nothing and beginFlush returns null', () => {
    const l = lane();
    expect(l.advance(1n)).toBe(false);
    expect(l.beginFlush(0n)).toBeNull();
  });

  it('sealed lane refuses appends under blockWriter and tags the next epoch under allocateOverflow', () => {
    const blocking = lane({ overflowPolicy: 'blockWriter' });
    blocking.append([input(1)]);
    blocking.advance(1n);
    expect(blocking.append([input(2)])).toEqual({ kind: 'blocked', reason: 'capacity' });
    expect(blocking.contentionEvents()).toBe(1);

    const overflowing = lane();
    overflowing.append([input(1)]);
    overflowing.advance(1n);
    expect(overflowing.append([input(2)])).toEqual({
      kind: 'appended',
      epoch: 1n,
      overflowed: true,
    });
    // The sealed epoch holds only its own record; the overflowed one waits for epoch 1.
    const share = overflowing.beginFlush(0n)!;
    expect(decodeChunks(share.chunks).map((r) => r.beginSeq)).toEqual([1n]);
    // Drained into the (now writable) active buffer, still tagged epoch 1.
    expect(overflowing.overflowBytes).toBe(0);
    overflowing.completeFlush(0n);
    overflowing.advance(2n);
    const next = overflowing.beginFlush(1n)!;
    expect(decodeChunks(next.chunks).map((r) => [r.beginSeq, r.epoch])).toEqual([[2n, 1n]]);
  });

  it('blockWriter refuses a batch past capacity; allocateOverflow queues it', () => {
    const blocking = lane({ overflowPolicy: 'blockWriter' });
    const big = input(1, 3000);
    expect(blocking.append([big]).kind).toBe('appended');
    expect(blocking.append([input(2, 3000)])).toEqual({ kind: 'blocked', reason: 'capacity' });

    const overflowing = lane();
    overflowing.append([input(1, 3000)]);
    expect(overflowing.append([input(2, 3000)])).toMatchObject({ overflowed: true, epoch: 0n });
    expect(overflowing.overflowBytes).toBeGreaterThan(3000);
  });

  it('overflow records flush with their own epoch, never straddling into the next', () => {
    const l = lane();
    l.append([input(1, 3000)]);
    l.append([input(2, 3000)]); // overflow, epoch 0
    l.advance(1n);
    l.append([input(3, 100)]); // active is sealed: overflow, epoch 1
    const share = l.beginFlush(0n)!;
    const records = decodeChunks(share.chunks);
    expect(records.map((r) => [r.beginSeq, r.epoch])).toEqual([
      [1n, 0n],
      [2n, 0n],
    ]);
    expect(share.recordCount).toBe(2);
    l.completeFlush(0n);
    l.advance(2n);
    const later = decodeChunks(l.beginFlush(1n)!.chunks);
    expect(later.map((r) => [r.beginSeq, r.epoch])).toEqual([[3n, 1n]]);
  });

  it('latches fallback once overflow passes the threshold and clears it when overflow drains', () => {
    const l = lane({ overflowFallbackBytes: 5000 });
    l.append([input(1, 3500)]);
    expect(l.append([input(2, 3500)])).toMatchObject({ overflowed: true });
    expect(l.fallbackLatched).toBe(false);
    expect(l.append([input(3, 3500)])).toMatchObject({ overflowed: true });
    expect(l.fallbackLatched).toBe(true);
    expect(l.append([input(4, 10)])).toEqual({ kind: 'blocked', reason: 'fallbackLatched' });
    l.advance(1n);
    l.beginFlush(0n);
    expect(l.overflowBytes).toBe(0);
    expect(l.fallbackLatched).toBe(false);
    expect(l.append([input(5, 10)]).kind).toBe('appended');
    expect(l.laneCounters().fallbackLatches).toBe(1);
  });

  it('a single batch larger than capacity latches fallback and is refused', () => {
    const l = lane();
    expect(l.append([input(1, 5000)])).toEqual({ kind: 'blocked', reason: 'tooLarge' });
    expect(l.fallbackLatched).toBe(true);
    expect(l.append([input(2, 10)])).toEqual({ kind: 'blocked', reason: 'fallbackLatched' });
  });

  it('a batch is appended atomically or not at all', () => {
    const l = lane();
    const bad = { ...input(2), pageId: 0 };
    expect(() => l.append([input(1), bad])).toThrow(/page_id/);
    expect(l.pendingBytes()).toBe(0);
    l.append([input(3), input(4)]);
    l.advance(1n);
    expect(l.beginFlush(0n)?.recordCount).toBe(2);
  });

  it('forceSerializedDrain returns active ++ flush ++ overflow and resets the lane', () => {
    const l = lane();
    l.append([input(1, 100)]);
    l.advance(1n);
    l.beginFlush(0n); // record 1 now in the flush buffer
    l.append([input(2, 3000)]); // active, epoch 1
    l.append([input(3, 3000)]); // overflow, epoch 1
    const drained = l.forceSerializedDrain();
    expect(decodeChunks(drained.chunks).map((r) => r.beginSeq)).toEqual([2n, 1n, 3n]);
    expect(drained.recordCount).toBe(3);
    expect(l.activeState()).toEqual({ kind: 'writable' });
    expect(l.flushState()).toEqual({ kind: 'writable' });
    expect(l.pendingBytes()).toBe(0);
    expect(l.overflowBytes).toBe(0);
  });

  it('rejects illegal transitions instead of wedging', () => {
    const l = lane();
    l.append([input(1)]);
    l.advance(1n);
    l.beginFlush(0n);
    l.append([input(2)]);
    l.advance(2n);
    expect(l.beginFlush(1n)?.recordCount).toBe(1); // queued behind epoch 0
    // Epoch 0 is still being written: epoch 1 cannot complete before it.
    expect(() => l.completeFlush(1n)).toThrow(/flush buffer is flushing\{0\}/);
    l.completeFlush(0n);
    l.completeFlush(1n);
    expect(l.flushState()).toEqual({ kind: 'writable' });
    expect(() => l.advance(2n)).toThrow(/does not move past/);
  });

  it('keeps aborted records in the lane (the flusher drops them)', () => {
    const l = lane();
    l.append([input(1, 8, false)]);
    l.advance(1n);
    expect(decodeChunks(l.beginFlush(0n)!.chunks)[0]?.endSeq).toBeNull();
  });
});

describe('lane byte budget', () => {
  const RECORD_BYTES = 8192;
  /** Encoded size of one `input(seq, RECORD_BYTES)` batch. */
  const batchBytes = (l: InProcessLane): number => l.measure([input(1, RECORD_BYTES)]);

  it('sends appends past the byte budget to the overflow list, below the capacity', () => {
    const l = lane({ bufferCapacityBytes: 1024 * 1024 });
    l.setByteBudget(3 * batchBytes(l));
    expect(l.laneByteBudget).toBe(3 * batchBytes(l));
    for (let seq = 1; seq <= 3; seq++) {
      expect(l.append([input(seq, RECORD_BYTES)])).toMatchObject({ overflowed: false });
    }
    expect(l.append([input(4, RECORD_BYTES)])).toMatchObject({ overflowed: true });
    expect(l.laneCounters().contentionEvents).toBe(1);
    // A larger budget takes the next append into the buffer again.
    l.setByteBudget(5 * batchBytes(l));
    expect(l.append([input(5, RECORD_BYTES)])).toMatchObject({ overflowed: false });
  });

  it('clamps the budget to 4 KiB ..= the capacity and still takes one batch larger than it into an empty buffer', () => {
    const l = lane({ bufferCapacityBytes: 64 * 1024 });
    l.setByteBudget(10 * 1024 * 1024);
    expect(l.laneByteBudget).toBe(64 * 1024);
    l.setByteBudget(1);
    expect(l.laneByteBudget).toBe(4096);
    l.setByteBudget(Number.POSITIVE_INFINITY);
    expect(l.laneByteBudget).toBe(64 * 1024);
    l.setByteBudget(4096);
    expect(l.append([input(1, RECORD_BYTES)])).toEqual({
      kind: 'appended',
      epoch: 0n,
      overflowed: false,
    });
    expect(l.append([input(2, RECORD_BYTES)])).toMatchObject({ overflowed: true });
    expect(l.fallbackLatched).toBe(false);
  });

  it('gives an arena larger than a lowered budget back when its flush completes', () => {
    const l = lane({ bufferCapacityBytes: 1024 * 1024 });
    for (let seq = 1; seq <= 40; seq++) l.append([input(seq, RECORD_BYTES)]);
    const grown = l.arenaBytes();
    expect(grown).toBeGreaterThanOrEqual(40 * RECORD_BYTES);
    l.advance(1n);
    l.beginFlush(0n);
    l.setByteBudget(64 * 1024);
    l.completeFlush(0n);
    expect(l.arenaBytes()).toBeLessThan(grown);
    expect(l.arenaBytes()).toBeLessThanOrEqual(64 * 1024);
  });
});
