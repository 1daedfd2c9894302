/**
 * The lanes of a {@link ParallelWal}: its in-process lanes (one per slot,
 * shared by writer contexts), the serialized path, and the external lanes
 * registered by worker writers, with their release protocol (a released
 * lane is freed only once nothing it held is left to write).
 */

import { WalArgumentError } from '../errors.js';
import { createDeferred, type Deferred } from './deferred.js';
import type { EpochCoordinator } from './epochs.js';
import { NoFreeLaneError } from './errors.js';
import { InProcessLane } from './lane.js';
import type { EngineLane } from './lane-types.js';
import type { ParallelWal } from './wal.js';
import { laneIdMax, type ResolvedParallelWalConfig, SERIALIZED_LANE_ID } from './wal-config.js';

/** Every lane of one log. */
export class LaneTable {
  /** The in-process lanes, index = lane id (`< slotCount`). */
  readonly inProcess: InProcessLane[] = [];
  /** The serialized path: batches a lane refused. */
  readonly serial: InProcessLane;
  private readonly writers: number[] = [];
  private readonly external = new Map<number, EngineLane>();
  private readonly releasing = new Map<number, Deferred<void>>();

  constructor(
    private readonly config: ResolvedParallelWalConfig,
    private readonly coordinator: EpochCoordinator,
    startEpoch: bigint,
  ) {
    const laneOptions = {
      startEpoch,
      formatVersion: config.formatVersion,
      currentEpoch: () => coordinator.currentEpoch,
      onObserve: () => coordinator.noteObserved(),
    };
    for (let laneId = 0; laneId < config.slotCount; laneId++) {
      const lane = new InProcessLane({
        ...laneOptions,
        laneId,
        bufferCapacityBytes: config.bufferCapacityBytes,
        overflowPolicy: config.overflowPolicy,
        overflowFallbackBytes: config.overflowFallbackBytes,
      });
      this.inProcess.push(lane);
      this.writers.push(0);
      coordinator.addLane(lane);
    }
    this.serial = new InProcessLane({
      ...laneOptions,
      laneId: SERIALIZED_LANE_ID,
      bufferCapacityBytes: config.serializedCapacityBytes,
      overflowPolicy: 'blockWriter',
    });
    coordinator.addLane(this.serial);
  }

  /** Lanes held by writer contexts plus registered external lanes. */
  inUse(): number {
    return this.writers.filter((n) => n > 0).length + this.external.size;
  }

  /** Takes the least used in-process lane for a writer context; `release` gives it back. */
  takeWriterLane(activeLanes: number = this.writers.length): {
    lane: InProcessLane;
    release: () => void;
  } {
    // Only the first `activeLanes` (the control plane's lane budget) are handed out.
    const usable = Math.min(this.writers.length, Math.max(1, activeLanes));
    let laneId = 0;
    for (let i = 1; i < usable; i++) {
      if (this.writers[i]! < this.writers[laneId]!) laneId = i;
    }
    this.writers[laneId]! += 1;
    return { lane: this.inProcess[laneId]!, release: () => (this.writers[laneId]! -= 1) };
  }

  /** See {@link ParallelWal.registerLane}. @throws {NoFreeLaneError} */
  register<L extends EngineLane>(create: (laneId: number, startEpoch: bigint) => L): L {
    let laneId = this.config.slotCount;
    while (this.external.has(laneId)) laneId++;
    if (laneId > laneIdMax) throw new NoFreeLaneError(laneIdMax + 1);
    const lane = create(laneId, this.coordinator.appendEpoch);
    if (lane.laneId !== laneId) {
      throw new WalArgumentError(`registered lane has id ${lane.laneId}, expected ${laneId}`);
    }
    this.external.set(laneId, lane);
    this.coordinator.addLane(lane);
    return lane;
  }

  /**
   * Marks an external lane released; the promise resolves once
   * {@link LaneTable.sweep} frees it. `null`: no such lane.
   */
  release(laneId: number): Promise<void> | null {
    if (!this.external.has(laneId)) return null;
    let pending = this.releasing.get(laneId);
    if (pending === undefined) {
      pending = createDeferred<void>();
      this.releasing.set(laneId, pending);
    }
    return pending.promise;
  }

  /** True while `laneId` is released but not yet freed. */
  isReleasing(laneId: number): boolean {
    return this.releasing.has(laneId);
  }

  /**
   * Frees released lanes that hold nothing unflushed (`holds`: the flusher
   * still has records of it sealed); `force` frees every released lane
   * (the log failed or closed: what they held is abandoned).
   */
  sweep(holds: (laneId: number) => boolean, force: boolean): void {
    for (const [laneId, deferred] of this.releasing) {
      const lane = this.external.get(laneId);
      const busy = lane !== undefined && !force && (lane.pendingBytes() > 0 || holds(laneId));
      if (busy) continue;
      this.free(laneId, deferred);
    }
  }

  /** At close: frees every released lane and forgets the writer contexts. */
  closeAll(): void {
    for (const [laneId, deferred] of this.releasing) this.free(laneId, deferred);
    for (let i = 0; i < this.writers.length; i++) this.writers[i] = 0;
  }

  private free(laneId: number, deferred: Deferred<void>): void {
    this.external.delete(laneId);
    this.coordinator.removeLane(laneId);
    this.releasing.delete(laneId);
    deferred.resolve();
  }
}
