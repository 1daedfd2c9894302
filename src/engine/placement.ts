/**
 * The commit path of a {@link ParallelWal}: placing a batch into a lane (the
 * commit sequence is drawn, the batch is encoded into the writer's lane,
 * tagged there with the lane's epoch, or, if the lane refuses it or the
 * control plane routes it so, into the engine's serialized path), waiting
 * for room when the serialized path is full, then for the acknowledgement.
 * Placement is synchronous: nothing in it waits.
 */

import type { AckWatermark } from './ack-watermark.js';
import type { EngineControl } from './control-hooks.js';
import { createDeferred, type Deferred } from './deferred.js';
import { BatchTooLargeError } from './errors.js';
import type { Flusher } from './flusher.js';
import type { InProcessLane, LaneRecordInput } from './lane.js';
import type { ParallelWal } from './wal.js';
import { checkBatch, type ResolvedParallelWalConfig } from './wal-config.js';
import type { CommitLatencyHistogram, WalCounters } from './wal-stats.js';
import type { CommitResult, ParallelWalBatch } from './wal-types.js';
import {
  claimCommitSeq,
  commitSeqNotIncreasing,
  releaseCommitSeqClaim,
  returnCommitSeq,
  takeCommitSeq,
} from './worker-layout.js';

const EMPTY_IMAGE = new Uint8Array(0);
/** Per-frame overhead counted by the control plane's routing (record header, roughly). */
const ROUTE_FRAME_OVERHEAD_BYTES = 64;

/** Where a batch landed. */
export interface Placement {
  epoch: bigint;
  commitSeq: bigint;
  dbSizePages: number;
  serialized: boolean;
}

/** What placement works with (owned by the log). */
export interface PlacerOptions {
  serialLane: InProcessLane;
  /** The commit-sequence counter shared with worker lanes. */
  commitSeqCounter: BigInt64Array;
  control: EngineControl | null;
  counters: WalCounters;
  flusher: Flusher;
  /** Commits resolve here: the acknowledged epoch. */
  acks: AckWatermark;
  histogram: CommitLatencyHistogram;
  /** The log's fsync policy, reported in every commit result. */
  durability: ResolvedParallelWalConfig['fsync'];
  /** Throws the log's failure, or `WalClosedError` once it is closing. */
  ensureOpen(): void;
}

/** Bytes the control plane's routing counts for `batch`. */
export function batchRouteBytes(batch: ParallelWalBatch): number {
  let total = 0;
  for (const frame of batch.frames) total += frame.pageData.length + ROUTE_FRAME_OVERHEAD_BYTES;
  return total;
}

/** Places batches; see the module comment. */
export class BatchPlacer {
  /** Resolved after every flush cycle (room may have appeared) and when the log fails. */
  private room: Deferred<void> = createDeferred<void>();

  constructor(private readonly options: PlacerOptions) {}

  /**
   * Commits `batch` through `lane` (`null`: the serialized path) and
   * resolves once its epoch is acknowledged; see {@link ParallelWal.commit}.
   * Waits for a flush when the serialized path is full.
   */
  async commit(batch: ParallelWalBatch, lane: InProcessLane | null): Promise<CommitResult> {
    const { counters, acks } = this.options;
    const started = performance.now();
    let placement: Placement | null;
    try {
      placement = this.place(batch, lane);
      while (placement === null) {
        // The serialized path is full: wait for a flush to make room.
        counters.backpressureWaiters++;
        try {
          await this.room.promise;
        } finally {
          counters.backpressureWaiters--;
        }
        placement = this.place(batch, null);
      }
      // Acknowledged once the data is durable (publication may still follow).
      await acks.when(placement.epoch);
    } catch (error) {
      counters.commitsRejected++;
      throw error;
    }
    counters.commits++;
    this.options.histogram.record(performance.now() - started);
    const { epoch, commitSeq, dbSizePages, serialized } = placement;
    return { epoch, commitSeq, durability: this.options.durability, dbSizePages, serialized };
  }

  /** Wakes the commits waiting for room (a flush cycle ended, or the log failed or closed). */
  signalRoom(): void {
    const room = this.room;
    this.room = createDeferred<void>();
    room.resolve();
  }

  /**
   * Places a batch synchronously: encodes it into `lane` or, if the lane
   * refuses, into the serialized path. The commit sequence is taken at the
   * moment of placement, so sequence order always agrees with epoch order.
   * `null`: the serialized path is full.
   * @throws the log's failure, or `WalClosedError` once it is closing.
   */
  place(batch: ParallelWalBatch, lane: InProcessLane | null): Placement | null {
    this.options.ensureOpen();
    checkBatch(batch);
    const { serialLane, commitSeqCounter, control, counters, flusher } = this.options;
    // The number is drawn from the counter shared with worker lanes. A batch
    // that is not placed (invalid, or the serialized path is full) gives it
    // back unless another thread drew a later one meanwhile (then: a gap).
    // A caller-given number is claimed here, atomically with every other
    // draw and claim (worker lanes included): it must be above all of them,
    // or recovery (which orders by it) would disagree with the order the
    // batches were acknowledged in.
    const given = batch.commitSeq;
    const assigned = given === undefined;
    let claimedFrom: bigint | null = null;
    if (given !== undefined) {
      claimedFrom = claimCommitSeq(commitSeqCounter, given);
      if (claimedFrom === null) throw commitSeqNotIncreasing(given, commitSeqCounter);
    }
    const commitSeq = given ?? takeCommitSeq(commitSeqCounter);
    let placed = false;
    try {
      const records: LaneRecordInput[] = batch.frames.map((frame) => ({
        txnToken: batch.txnToken,
        pageId: frame.pageNumber,
        beginSeq: commitSeq,
        endSeq: commitSeq,
        beforeImage: EMPTY_IMAGE,
        afterImage: frame.pageData,
      }));
      // Control plane: while its fallback is latched (or for a batch over
      // maxParallelCommitBytes) the batch takes the serialized path.
      const target =
        lane !== null && control?.route(batchRouteBytes(batch), lane.laneId) === 'serialized'
          ? null
          : lane;
      let serialized = target === null;
      const byteBudget = control?.laneByteBudget?.();
      if (target !== null && byteBudget !== undefined) target.setByteBudget(byteBudget);
      let outcome = target?.append(records);
      if (outcome === undefined || outcome.kind === 'blocked') {
        if (outcome !== undefined) {
          counters.fallbacks++;
          serialized = true;
          control?.noteLaneRefused(target!.laneId);
        }
        const size = serialLane.measure(records);
        if (size > serialLane.bufferCapacityBytes) {
          throw new BatchTooLargeError(size, serialLane.bufferCapacityBytes);
        }
        outcome = serialLane.append(records);
        if (outcome.kind === 'blocked') {
          flusher.kick();
          return null;
        }
      }
      const dbSizePages = batch.frames[batch.frames.length - 1]!.dbSizeIfCommit;
      if (control !== null) {
        flusher.notePlacement(target, serialized, outcome.epoch, commitSeq, dbSizePages, records);
      }
      flusher.noteDbSize(outcome.epoch, commitSeq, dbSizePages);
      flusher.kick();
      placed = true;
      return { epoch: outcome.epoch, commitSeq, dbSizePages, serialized };
    } finally {
      if (!placed && assigned) returnCommitSeq(commitSeqCounter, commitSeq);
      if (!placed && claimedFrom !== null) {
        releaseCommitSeqClaim(commitSeqCounter, commitSeq, claimedFrom);
      }
    }
  }
}
