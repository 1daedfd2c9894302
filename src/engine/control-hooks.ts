/**
 * What the engine's write path asks the control plane (docs/design.md#control-plane), declared
 * in the engine's own layer so that the engine never imports `control/`:
 * `control/plane.ts`'s `ControlPlane` satisfies this interface structurally,
 * and whoever opens the log (store, CLI, application) passes one in
 * `ParallelWalConfig.controlPlane`. Without it the engine behaves exactly as before.
 *
 * Call sites: placement in `placement.ts`, sealing and flush in `flusher.ts`:
 * - placement: {@link EngineControl.route}, {@link EngineControl.noteLaneRefused},
 *   {@link EngineControl.stageBatch};
 * - sealing: {@link EngineControl.onSealPoint} (while a write is in flight);
 * - flush: {@link EngineControl.prepareEpoch} before the write,
 *   {@link EngineControl.epochDurable} after it and before the epoch is
 *   acknowledged, {@link EngineControl.epochFailed} when it fails.
 *
 * The types of these calls are defined here once; the control plane, a
 * higher layer, imports them rather than declaring its own copies.
 */
import type { WalFileSystem } from '../storage/fs.js';
import type { LaneRecordInput } from './lane.js';

/** The open epoch at a seal decision point. */
export interface SealPointInfo {
  nowMs: number;
  /** Commits placed in the open epoch. */
  pendingCommits: number;
  /** Bytes appended to the open epoch. */
  epochBytes: number;
  /** Age of the open epoch's first commit; 0 when none. */
  oldestPendingAgeMs: number;
  /** Start of the segment write in flight; `null` when the disk is idle. */
  syncInFlightSinceMs: number | null;
  /** Epochs sealed and not yet durable (as frames are not tracked here). */
  backlogFrames: number;
  /** Sum of the lanes' contention events so far. */
  contentionTotal?: number;
  /** The open epoch (the one new appends are tagged with). */
  openEpoch?: bigint;
  /** True at the flusher's own seal (idle disk): the epoch is sealed whatever the decision. */
  sealing?: boolean;
  /** Capacity of an in-process lane buffer (`bufferCapacityBytes`): the most a lane byte budget can give. */
  laneCapacityBytes?: number;
}

/** A record as the engine placed it into a lane, as the control plane stages it. */
export type StageRecordInput = LaneRecordInput;

/** One placed batch, staged for shadow compare. */
export interface StageBatchInput {
  /** Engine lane id the batch went to (any id; the serialized lane included). */
  laneId: number;
  /** Epoch the lane tagged the batch with. */
  epoch: bigint;
  commitSeq: bigint;
  /** The commit's database size (0 = unchanged). */
  dbSizePages: number;
  records: readonly StageRecordInput[];
}

/** What the engine knows about an epoch it is about to write. */
export interface PrepareEpochInput {
  epoch: bigint;
  /** Committed records in canonical order, wire form (the engine's `EpochSegment.chunks`). */
  chunks: readonly Uint8Array[];
  recordCount: number;
  /** Lanes that took part and what each contributed (parallel arrays). */
  laneIds: readonly number[];
  recordsPerCore: readonly number[];
  /** Database size after the epoch's last in-process commit; 0 when unknown. */
  dbSizePages: number;
  /**
   * Raw records of every lane the stager never saw (worker lanes), for shadow
   * compare; pass `[]` when there are none. Giving it declares the staged
   * batches plus these chunks complete: the whole epoch is compared and a
   * diverged epoch can be replaced by the conservative result. Without it only
   * the staged commits are compared (partial), and a divergence cannot be
   * repaired: the epoch must not be acknowledged.
   */
  externalChunks?: readonly Uint8Array[];
}

/** What the engine writes for an epoch, and whether it may acknowledge it. */
export interface PreparedEpochWrite {
  /** Header + records (+ certificate trailer): exactly what to write. Empty for an empty epoch. */
  chunks: Uint8Array[];
  /** False only if the epoch must not be acknowledged at all (the engine fails it). */
  acknowledge: boolean;
}

/** The part of the control plane the engine calls. */
export interface EngineControl {
  /** `serialized`: put this batch on the serialized path (fallback latched, or batch too large). */
  route(batchBytes: number, laneId: number): 'parallel' | 'serialized';
  /** A lane refused a batch (capacity, overflow latch). */
  noteLaneRefused(laneId: number): void;
  /** True when placed batches must be staged for shadow compare. */
  readonly stagingBatches: boolean;
  /** A placed batch (its records, the epoch its lane tagged them with). */
  stageBatch(input: StageBatchInput): unknown;
  /** `sealEpochNow` / `forceConservative`: seal the open epoch now; `null`: keep the engine's rule. */
  onSealPoint(state: SealPointInfo): { action: string } | null;
  /**
   * What to write for an epoch: header + records (+ certificate trailer).
   * `acknowledge: false` means the epoch must not be acknowledged.
   */
  prepareEpoch(input: PrepareEpochInput): PreparedEpochWrite;
  /** The prepared epoch is durable (`latencyMicros`: its write + syncs); called before the ack. */
  epochDurable(prepared: PreparedEpochWrite, latencyMicros: number): void;
  /** The epoch's write failed. */
  epochFailed(epoch: bigint, cause: unknown): void;
  /**
   * In-process lanes writers are spread over now (the controller's lane
   * budget, `increaseLaneBudget` / `decreaseLaneBudget`): commits of the
   * calling thread and new writers (`openWriter`) use only the first
   * `min(laneBudget, slotCount)` lanes. Absent: all lanes.
   */
  laneBudget?(): number;
  /**
   * Bytes an in-process lane's active buffer may hold before appends go to
   * its overflow list (the controller's lane byte budget, moved by
   * `increaseLaneBudget` / `decreaseLaneBudget`); applied to the lane at
   * each placement, within `4 KiB ..= bufferCapacityBytes`. Absent: the whole capacity.
   */
  laneByteBudget?(): number;
  /**
   * A fallback reason the engine detected itself: `recoveryGap` when the
   * open finds an epoch missing inside the log (the open then fails closed:
   * acknowledged commits are gone). Latched, counted and traced.
   */
  reportFallback?(reason: 'recoveryGap', detail: string): void;
  /**
   * Called by `ParallelWal.open` (and by the page store before it folds the
   * log) before the log takes writes: checks what the control plane vouches
   * for on disk — the certificate chain, when certificates are on. Rejects
   * to fail the open closed (the reason's typed error); resolves after
   * latching the fallback reason when configured to fall back instead.
   */
  verifyAtOpen?(dbPath: string, options: { fs: WalFileSystem }): Promise<unknown>;
  /**
   * The control plane's own figures (mode, active fallback reason, counts per
   * reason, shadow verdicts, certificates, decisions), shown as
   * `ParallelWal.stats().control`. Opaque to the engine.
   */
  stats?(): unknown;
}
