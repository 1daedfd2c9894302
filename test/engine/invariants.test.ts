/**
 * The engine's invariant assertions (src/engine/invariant.ts): each one is
 * driven here with the bad sequence it exists to catch and must fire with
 * `ERR_ENGINE_INVARIANT`; the rest of the suite is the proof that normal
 * operation never trips them.
 */
import * as nodeFs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AckWatermark } from '../../src/engine/ack-watermark.js';
import { EpochCoordinator } from '../../src/engine/epochs.js';
import { EngineInvariantError, WalFailedError } from '../../src/engine/errors.js';
import { invariant } from '../../src/engine/invariant.js';
import { InProcessLane, type LaneRecordInput } from '../../src/engine/lane.js';
import type { EngineLane, SealedLaneData } from '../../src/engine/lane-types.js';
import { ParallelWal } from '../../src/engine/wal.js';
import { attachWriter, type WorkerWriter } from '../../src/engine/worker.js';
import { FakeOwner } from '../fixtures/fake-owner.js';

const INVARIANT = { name: 'EngineInvariantError', code: 'ERR_ENGINE_INVARIANT' };

function input(seq: number, committed = true): LaneRecordInput {
  return {
    txnToken: { id: BigInt(seq), epoch: 0 },
    pageId: 1,
    beginSeq: BigInt(seq),
    endSeq: committed ? BigInt(seq) : null,
    beforeImage: new Uint8Array(0),
    afterImage: new Uint8Array([seq & 0xff]),
  };
}

function coordinatorWithLane(): { coordinator: EpochCoordinator; lane: InProcessLane } {
  const coordinator = new EpochCoordinator();
  const lane = new InProcessLane({ laneId: 0, startEpoch: 0n });
  coordinator.addLane(lane);
  return { coordinator, lane };
}

/** Calls `fn` and returns what it threw. */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected a throw');
}

/** A lane that hands the flusher a share of every epoch without ever sealing one. */
class UnsealedLane implements EngineLane {
  constructor(readonly laneId: number) {}
  advance(): boolean {
    return false;
  }
  beginFlush(epoch: bigint): SealedLaneData {
    return { laneId: this.laneId, epoch, chunks: [], recordCount: 0, byteCount: 0 };
  }
  completeFlush(): void {}
  pendingBytes(): number {
    return 0;
  }
  contentionEvents(): number {
    return 0;
  }
}

describe('the invariant helper', () => {
  it('throws EngineInvariantError with ERR_ENGINE_INVARIANT and the message when the condition fails', () => {
    const error = thrown(() => invariant(false, 'lanes disagree'));
    expect(error).toBeInstanceOf(EngineInvariantError);
    expect(error).toMatchObject({ code: 'ERR_ENGINE_INVARIANT', message: 'lanes disagree' });
    expect(() => invariant(false, () => `built ${1 + 1}`)).toThrow('built 2');
  });

  it('does not build a lazy message while the condition holds', () => {
    let built = 0;
    invariant(true, () => {
      built++;
      return 'never';
    });
    expect(built).toBe(0);
  });
});

describe('epochs only grow', () => {
  it('fires when the coordinator is asked to flush an epoch below one already flushed', () => {
    const { coordinator, lane } = coordinatorWithLane();
    lane.append([input(1)]);
    coordinator.advanceNow();
    lane.append([input(2)]);
    coordinator.advanceNow();
    const later = coordinator.flushEpoch(1n);
    expect(later.recordCount).toBe(1);
    expect(() => coordinator.flushEpoch(0n)).toThrow(
      expect.objectContaining({ ...INVARIANT, message: 'flush of epoch 0 after epoch 1' }),
    );
  });

  it('fires when the same epoch is flushed twice', () => {
    const { coordinator, lane } = coordinatorWithLane();
    lane.append([input(1)]);
    coordinator.advanceNow();
    const segment = coordinator.flushEpoch(0n);
    coordinator.completeFlush(0n, segment.laneIds);
    expect(() => coordinator.flushEpoch(0n)).toThrow(expect.objectContaining(INVARIANT));
  });

  it('fires when an acknowledgement does not move the watermark up', () => {
    const acks = new AckWatermark(null);
    acks.noteSynced(5n);
    acks.advance(4n);
    acks.advance(5n);
    expect(acks.epoch).toBe(5n);
    expect(() => acks.advance(5n)).toThrow(
      expect.objectContaining({ ...INVARIANT, message: 'acknowledging 5 after 5' }),
    );
    expect(() => acks.advance(3n)).toThrow(expect.objectContaining(INVARIANT));
    expect(acks.epoch).toBe(5n);
  });
});

describe('an acknowledged epoch is never above the synced epoch', () => {
  it('fires when an epoch is acknowledged before its durable write returned', async () => {
    const acks = new AckWatermark(2n);
    const waiting = acks.when(3n);
    expect(() => acks.advance(3n)).toThrow(
      expect.objectContaining({
        ...INVARIANT,
        message: 'acknowledging 3 with epochs only up to 2 synced',
      }),
    );
    expect(acks.epoch).toBe(2n);
    acks.noteSynced(3n);
    acks.advance(3n);
    await expect(waiting).resolves.toBeUndefined();
  });

  it('fires on a fresh log that acknowledges with nothing synced', () => {
    expect(() => new AckWatermark(null).advance(0n)).toThrow(expect.objectContaining(INVARIANT));
  });
});

describe('a lane is sealed before it is flushed', () => {
  it('fires when an in-process lane is asked to flush its open epoch', () => {
    const lane = new InProcessLane({ laneId: 3, startEpoch: 4n });
    lane.append([input(1)]);
    expect(() => lane.beginFlush(4n)).toThrow(
      expect.objectContaining({
        ...INVARIANT,
        message: 'lane 3: flush of epoch 4 before it was sealed',
      }),
    );
    // Nothing moved: the records are still appended and unsealed.
    expect(lane.activeState()).toEqual({ kind: 'writable' });
    expect(lane.pendingBytes()).toBeGreaterThan(0);
  });

  it('fires when a lane hands the coordinator records of an epoch it did not seal', () => {
    const { coordinator, lane } = coordinatorWithLane();
    coordinator.addLane(new UnsealedLane(7));
    lane.append([input(1)]);
    expect(coordinator.advanceNow().sealedLaneIds).toEqual([0]);
    expect(() => coordinator.flushEpoch(0n)).toThrow(
      expect.objectContaining({
        ...INVARIANT,
        message: 'lane 7 handed over epoch 0 without sealing it',
      }),
    );
  });

  describe('through the log', () => {
    const dirs: string[] = [];
    afterEach(() => {
      for (const dir of dirs.splice(0)) nodeFs.rmSync(dir, { recursive: true, force: true });
    });

    it('fails the log with the invariant as the cause and acknowledges nothing', async () => {
      const dir = nodeFs.mkdtempSync(path.join(os.tmpdir(), 'pwal-invariant-'));
      dirs.push(dir);
      const wal = await ParallelWal.open(path.join(dir, 'test.db'), { slotCount: 1 });
      try {
        wal.registerLane((laneId) => new UnsealedLane(laneId));
        const commit = wal.commit({
          txnToken: { id: 1n, epoch: 0 },
          frames: [{ pageNumber: 1, pageData: new Uint8Array(16), dbSizeIfCommit: 1 }],
        });
        const error = await commit.catch((e: unknown) => e);
        expect(error).toBeInstanceOf(WalFailedError);
        expect((error as WalFailedError).cause).toBeInstanceOf(EngineInvariantError);
        expect(wal.isFailed).toBe(true);
        expect(wal.acknowledgedEpoch()).toBeNull();
      } finally {
        await wal.close();
      }
    });
  });
});

describe('commit sequences grow from one segment to the next', () => {
  it('fires when a segment starts at or below the previous segment’s last sequence', () => {
    const { coordinator, lane } = coordinatorWithLane();
    lane.append([input(10)]);
    lane.append([input(12)]);
    coordinator.advanceNow();
    const first = coordinator.flushEpoch(0n);
    expect([first.commitSeqLo, first.commitSeqHi]).toEqual([10n, 12n]);
    coordinator.completeFlush(0n, first.laneIds);
    lane.append([input(12)]);
    coordinator.advanceNow();
    expect(() => coordinator.flushEpoch(1n)).toThrow(
      expect.objectContaining({
        ...INVARIANT,
        message: 'epoch 1 starts at commit sequence 12, not above 12',
      }),
    );
  });

  it('allows gaps, and epochs whose records were all aborted', () => {
    const { coordinator, lane } = coordinatorWithLane();
    lane.append([input(10)]);
    coordinator.advanceNow();
    coordinator.completeFlush(0n, coordinator.flushEpoch(0n).laneIds);
    // Aborted records carry no commit sequence that counts.
    lane.append([input(3, false)]);
    coordinator.advanceNow();
    const aborted = coordinator.flushEpoch(1n);
    expect(aborted.commitSeqLo).toBeNull();
    coordinator.completeFlush(1n, aborted.laneIds);
    lane.append([input(14)]);
    coordinator.advanceNow();
    expect(coordinator.flushEpoch(2n).commitSeqLo).toBe(14n);
  });
});

describe('a worker lane seals only the epoch it was tagged with', () => {
  const owners: FakeOwner[] = [];
  const writers: WorkerWriter[] = [];
  afterEach(async () => {
    for (const owner of owners.splice(0)) owner.pool.close();
    for (const writer of writers.splice(0)) await writer.close();
  });

  it('fires when the lane is advanced past an epoch it never sealed', () => {
    const owner = new FakeOwner();
    owners.push(owner);
    const writer = attachWriter(owner.pool.createHandle());
    writers.push(writer);
    const lane = owner.pool.lanes()[0]!;
    void writer
      .commit({
        txnToken: { id: 1n, epoch: 0 },
        frames: [{ pageNumber: 1, pageData: new Uint8Array(8), dbSizeIfCommit: 1 }],
      })
      .catch(() => {});
    expect(lane.bufferState(0)).toMatchObject({ kind: 'writable', epoch: 1n, recordCount: 1 });
    // Epoch 2 skipped: the buffer's records are tagged 1, not 2.
    expect(() => lane.advance(3n)).toThrow(
      expect.objectContaining({
        ...INVARIANT,
        message: `lane ${lane.laneId}: sealing epoch 2, buffer tagged 1 (lane at 1)`,
      }),
    );
    // Nothing sealed, the lane lock released: one epoch at a time still works.
    expect(lane.bufferState(0)).toMatchObject({ kind: 'writable', epoch: 1n });
    expect(lane.advance(2n)).toBe(true);
    expect(lane.bufferState(0)).toMatchObject({ kind: 'sealed', epoch: 1n });
  });
});
