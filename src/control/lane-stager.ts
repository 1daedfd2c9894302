/**
 * The lane stager (docs/design.md#shadow-compare): per-lane FIFO queues of staged commit batches
 * with their frame backlogs, and the leases that give each writer context a
 * stable lane.
 *
 * The original derived a lane from a process-wide modular thread counter (and a
 * test-only reset). Here a writer context leases a lane explicitly, keeps it for
 * its lifetime, and gives it back with {@link LaneStager.releaseLane}; freed
 * lanes are handed out again, lowest id first.
 */
import { threadId } from 'node:worker_threads';
import { WalArgumentError } from '../errors.js';
import { type ControlSurface, laneCount, type ShadowVerdict } from './surface.js';

/** One staged commit batch in a lane's queue. */
export interface LaneBatch<T> {
  /** From {@link LaneStager.nextBatchId}: 1, 2, 3, … */
  batchId: bigint;
  laneId: number;
  /** Frames (pages) in the batch; the lane's backlog grows by this much. */
  stagedFrameCount: number;
  /** Time spent staging the batch, for traces. */
  stagingElapsedNs: bigint;
  shadowVerdict: ShadowVerdict;
  payload: T;
}

/** Names a staged batch for flush or discard: the seed's `TransactionFrameBatchContext`. */
export interface BatchContext {
  batchId: bigint;
  laneId: number;
}

/** Something that identifies a writer for its lifetime: an object, a worker's thread id, a name. */
export type WriterContext = object | number | string;

/**
 * Per-lane FIFO queues of staged batches and the lane leases of writer contexts.
 * Single-threaded: lives on the owner thread; worker writers are identified by
 * their context (for example their `threadId`).
 */
export class LaneStager<T> {
  readonly control: ControlSurface;
  #nextBatchId = 1n;
  readonly #laneCount: number;
  readonly #queues = new Map<number, LaneBatch<T>[]>();
  readonly #backlogFrames = new Map<number, number>();
  readonly #leases = new Map<WriterContext, number>();
  /** Writers holding each lane; a lane with no holder is free. */
  readonly #holders: Uint32Array;
  #laneBudget: number;

  constructor(control: ControlSurface) {
    this.control = control;
    this.#laneCount = laneCount(control);
    this.#holders = new Uint32Array(this.#laneCount);
    this.#laneBudget = this.#laneCount;
  }

  /** A fresh batch id: 1, 2, 3, … (never reused by this stager). */
  nextBatchId(): bigint {
    const id = this.#nextBatchId;
    this.#nextBatchId += 1n;
    return id;
  }

  /** Lanes new writers are spread over (1 ..= laneCount); set by the controller. */
  get laneBudget(): number {
    return this.#laneBudget;
  }

  /**
   * Limits the lanes given to writers that lease from now on to `0 ..< budget`
   * (clamped to 1 ..= laneCount). Writers keep the lane they hold.
   */
  setLaneBudget(budget: number): void {
    this.#laneBudget = Math.min(this.#laneCount, Math.max(1, Math.floor(budget)));
  }

  /** 1 in `conservative`, else the override or the machine's parallelism, clamped to 1..=laneCountMax (1024). */
  laneCount(): number {
    return this.#laneCount;
  }

  /**
   * The lane of `writer` (default: the calling thread). Stable for the writer's
   * lifetime. A new writer gets the lowest free lane below the lane budget; when every such lane is held,
   * it shares the least-held lane (lowest id on ties).
   */
  currentLaneId(writer: WriterContext = threadId): number {
    const held = this.#leases.get(writer);
    if (held !== undefined) return held;
    let best = 0;
    for (let lane = 0; lane < this.#laneBudget; lane++) {
      if (this.#holders[lane] === 0) {
        best = lane;
        break;
      }
      if (this.#holders[lane]! < this.#holders[best]!) best = lane;
    }
    this.#holders[best]! += 1;
    this.#leases.set(writer, best);
    return best;
  }

  /** Gives `writer`'s lane back (on close or worker exit). Returns false if it held none. */
  releaseLane(writer: WriterContext = threadId): boolean {
    const lane = this.#leases.get(writer);
    if (lane === undefined) return false;
    this.#leases.delete(writer);
    this.#holders[lane]! -= 1;
    return true;
  }

  /** Writers currently holding a lane. */
  activeWriters(): number {
    return this.#leases.size;
  }

  /** Frames staged in `laneId` and not yet taken or discarded. */
  currentLaneBacklog(laneId: number): number {
    return this.#backlogFrames.get(laneId) ?? 0;
  }

  /** Frames staged across all lanes. */
  totalBacklog(): number {
    let total = 0;
    for (const frames of this.#backlogFrames.values()) total += frames;
    return total;
  }

  /**
   * Appends `batch` to its lane's queue; returns the lane's backlog in frames after it.
   * @throws {WalArgumentError} if the lane id is outside `0 ..< laneCount` or the frame count is not a u32.
   */
  recordBatch(batch: LaneBatch<T>): number {
    const { laneId, stagedFrameCount } = batch;
    if (!Number.isInteger(laneId) || laneId < 0 || laneId >= this.#laneCount) {
      throw new WalArgumentError(`lane id ${laneId} is outside 0..${this.#laneCount}`);
    }
    if (
      !Number.isInteger(stagedFrameCount) ||
      stagedFrameCount < 0 ||
      stagedFrameCount > 0xffffffff
    ) {
      throw new WalArgumentError(`staged frame count ${stagedFrameCount} is not a u32`);
    }
    let queue = this.#queues.get(laneId);
    if (queue === undefined) {
      queue = [];
      this.#queues.set(laneId, queue);
    }
    queue.push(batch);
    const backlog = (this.#backlogFrames.get(laneId) ?? 0) + stagedFrameCount;
    this.#backlogFrames.set(laneId, backlog);
    return backlog;
  }

  /**
   * Verify, then drain. First checks, changing nothing, that for every lane the
   * listed contexts are exactly that lane's queue prefix in order (contexts of
   * different lanes may interleave). On any mismatch returns `null` and the
   * queues are untouched. Otherwise removes those batches and returns them by id.
   */
  takeBatchesForFlush(contexts: readonly BatchContext[]): Map<bigint, LaneBatch<T>> | null {
    const offsets = new Map<number, number>();
    for (const context of contexts) {
      const offset = offsets.get(context.laneId) ?? 0;
      const candidate = this.#queues.get(context.laneId)?.[offset];
      if (candidate === undefined || candidate.batchId !== context.batchId) return null;
      offsets.set(context.laneId, offset + 1);
    }
    const taken = new Map<bigint, LaneBatch<T>>();
    for (const [laneId, count] of offsets) {
      const queue = this.#queues.get(laneId)!;
      for (const batch of queue.splice(0, count)) {
        taken.set(batch.batchId, batch);
        this.#subtractBacklog(laneId, batch.stagedFrameCount);
      }
      if (queue.length === 0) this.#queues.delete(laneId);
    }
    return taken;
  }

  /**
   * Removes the listed batch ids wherever they are in any lane's queue.
   * Idempotent; unknown ids are ignored. Returns how many batches were removed.
   */
  discardBatchesForFlush(contexts: readonly BatchContext[]): number {
    if (contexts.length === 0) return 0;
    const ids = new Set<bigint>();
    for (const context of contexts) ids.add(context.batchId);
    let removed = 0;
    for (const [laneId, queue] of this.#queues) {
      const retained = queue.filter((batch) => {
        if (!ids.has(batch.batchId)) return true;
        removed += 1;
        this.#subtractBacklog(laneId, batch.stagedFrameCount);
        return false;
      });
      if (retained.length === 0) this.#queues.delete(laneId);
      else if (retained.length !== queue.length) this.#queues.set(laneId, retained);
    }
    return removed;
  }

  /** Batches queued in `laneId`, oldest first (a copy). */
  queuedBatches(laneId: number): LaneBatch<T>[] {
    return [...(this.#queues.get(laneId) ?? [])];
  }

  #subtractBacklog(laneId: number, frames: number): void {
    const backlog = Math.max(0, (this.#backlogFrames.get(laneId) ?? 0) - frames);
    if (backlog === 0) this.#backlogFrames.delete(laneId);
    else this.#backlogFrames.set(laneId, backlog);
  }
}
