import { describe, expect, it } from 'vitest';
import { EpochCoordinator } from '../../src/engine/epochs.js';
import { DurableTimeoutError, FenceTimeoutError } from '../../src/engine/errors.js';
import { InProcessLane, type LaneRecordInput } from '../../src/engine/lane.js';
import { decodeRecord } from '../../src/format/record.js';
import type { WalRecord } from '../../src/format/types.js';

function input(txn: number, seq: number, pageId = 1, committed = true): LaneRecordInput {
  return {
    txnToken: { id: BigInt(txn), epoch: 0 },
    pageId,
    beginSeq: BigInt(seq),
    endSeq: committed ? BigInt(seq) : null,
    beforeImage: new Uint8Array(0),
    afterImage: new Uint8Array([txn, seq, pageId]),
  };
}

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

function setup(laneCount: number) {
  const coordinator = new EpochCoordinator();
  const lanes: InProcessLane[] = [];
  for (let laneId = 0; laneId < laneCount; laneId++) {
    const lane = new InProcessLane({
      laneId,
      startEpoch: 0n,
      currentEpoch: () => coordinator.currentEpoch,
      onObserve: () => coordinator.noteObserved(),
    });
    lanes.push(lane);
    coordinator.addLane(lane);
  }
  return { coordinator, lanes };
}

describe('epoch coordinator', () => {
  it('publishes currentEpoch first and moves appendEpoch after sealing', () => {
    const { coordinator, lanes } = setup(2);
    lanes[0]!.append([input(1, 1)]);
    const result = coordinator.advanceNow();
    expect(result).toEqual({ sealedEpoch: 0n, newEpoch: 1n, sealedLaneIds: [0] });
    expect(coordinator.currentEpoch).toBe(1n);
    expect(coordinator.appendEpoch).toBe(1n);
    expect(lanes[0]!.activeState()).toEqual({ kind: 'sealed', epoch: 0n });
    expect(lanes[1]!.activeState()).toEqual({ kind: 'writable' });
  });

  it('a fence waits until every listed lane observes the new epoch', async () => {
    const { coordinator, lanes } = setup(2);
    const advancing = coordinator.advance({ fenceLanes: lanes, timeoutMs: 10_000 });
    expect(coordinator.currentEpoch).toBe(1n);
    expect(coordinator.appendEpoch).toBe(0n);
    // Appends during the fence observe epoch 1 but are still tagged epoch 0.
    expect(lanes[0]!.append([input(1, 1)])).toMatchObject({ epoch: 0n });
    await Promise.resolve();
    expect(lanes[1]!.append([input(2, 2)])).toMatchObject({ epoch: 0n });
    const result = await advancing;
    expect(result.sealedLaneIds).toEqual([0, 1]);
    const segment = coordinator.flushEpoch(0n);
    expect(decodeChunks(segment.chunks).map((r) => r.epoch)).toEqual([0n, 0n]);
  });

  it('a fence that times out rolls the advance back and fails with a typed error', async () => {
    const { coordinator, lanes } = setup(2);
    lanes[0]!.append([input(1, 1)]);
    const failure = await coordinator
      .advance({ fenceLanes: [lanes[1]!], timeoutMs: 5 })
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(FenceTimeoutError);
    expect((failure as FenceTimeoutError).code).toBe('ERR_EPOCH_FENCE_TIMEOUT');
    expect((failure as FenceTimeoutError).laneIds).toEqual([1]);
    expect(coordinator.currentEpoch).toBe(0n);
    expect(coordinator.appendEpoch).toBe(0n);
    expect(lanes[0]!.activeState()).toEqual({ kind: 'writable' });
    // The coordinator is usable again after the rollback.
    expect(coordinator.advanceNow().sealedLaneIds).toEqual([0]);
  });

  it('flushes a group across lanes in canonical order with recordsPerCore', () => {
    const { coordinator, lanes } = setup(3);
    lanes[2]!.append([input(5, 10, 3), input(5, 10, 1)]);
    lanes[0]!.append([input(9, 30, 2)]);
    lanes[1]!.append([input(7, 20, 4)]);
    lanes[0]!.append([input(3, 10, 2)]);
    coordinator.advanceNow();
    const segment = coordinator.flushEpoch(0n);
    const records = decodeChunks(segment.chunks);
    expect(records.map((r) => [r.beginSeq, r.txnToken.id, r.pageId])).toEqual([
      [10n, 3n, 2],
      [10n, 5n, 1],
      [10n, 5n, 3],
      [20n, 7n, 4],
      [30n, 9n, 2],
    ]);
    expect(segment.laneIds).toEqual([0, 1, 2]);
    expect(segment.recordsPerCore).toEqual([2, 1, 2]);
    expect(segment.recordCount).toBe(5);
    expect(segment.commitSeqLo).toBe(10n);
    expect(segment.commitSeqHi).toBe(30n);
    expect(segment.byteCount).toBe(segment.chunks.reduce((n, c) => n + c.length, 0));
  });

  it('drops aborted records at flush and cleans their lane for reuse', () => {
    const { coordinator, lanes } = setup(1);
    lanes[0]!.append([input(1, 1, 1, false), input(1, 1, 2, false)]);
    lanes[0]!.append([input(2, 2)]);
    coordinator.advanceNow();
    const segment = coordinator.flushEpoch(0n);
    expect(segment.droppedAborted).toBe(2);
    expect(decodeChunks(segment.chunks).map((r) => r.txnToken.id)).toEqual([2n]);
    coordinator.completeFlush(0n, segment.laneIds);
    expect(lanes[0]!.flushState()).toEqual({ kind: 'writable' });
    expect(lanes[0]!.pendingBytes()).toBe(0);
  });

  it('writers waiting for an epoch are released only when it becomes durable', async () => {
    const { coordinator } = setup(1);
    let released = false;
    const waiting = coordinator.waitForEpochDurable(1n, 60_000).then(() => {
      released = true;
    });
    coordinator.markEpochDurable(0n);
    await new Promise((resolve) => setImmediate(resolve));
    expect(released).toBe(false);
    coordinator.markEpochDurable(2n);
    await waiting;
    expect(released).toBe(true);
  });

  it('durable epoch keeps the maximum', () => {
    const { coordinator } = setup(1);
    expect(coordinator.durableEpoch).toBeNull();
    coordinator.markEpochDurable(5n);
    coordinator.markEpochDurable(3n);
    expect(coordinator.durableEpoch).toBe(5n);
    expect(coordinator.isDurable(4n)).toBe(true);
    expect(coordinator.isDurable(6n)).toBe(false);
  });

  it('waitForEpochDurable times out with a typed error', async () => {
    const { coordinator } = setup(1);
    const error = await coordinator.waitForEpochDurable(0n, 1).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DurableTimeoutError);
    expect((error as DurableTimeoutError).code).toBe('ERR_EPOCH_DURABLE_TIMEOUT');
  });

  it('a failure rejects current and later waiters', async () => {
    const { coordinator } = setup(1);
    const waiting = coordinator.whenDurable(0n);
    coordinator.fail(new Error('disk gone'));
    await expect(waiting).rejects.toThrow('disk gone');
    await expect(coordinator.whenDurable(7n)).rejects.toThrow('disk gone');
  });

  it('refuses to flush an epoch that is still open', () => {
    const { coordinator } = setup(1);
    expect(() => coordinator.flushEpoch(0n)).toThrow(/still open/);
  });
});
