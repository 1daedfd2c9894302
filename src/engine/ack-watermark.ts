/**
 * The acknowledgement watermark of the log: the highest epoch whose commits
 * may be acknowledged (its data is durable, possibly still under a temporary
 * name: see `segment-writer.ts`, `EarlyAckSegmentSink`). It runs ahead of the
 * coordinator's durable (published) epoch by the publications in flight.
 * Waiters for any epoch <= the watermark are released when it moves.
 */
import { createDeferred, type Deferred } from './deferred.js';
import { invariant } from './invariant.js';

/** Epoch watermark that only grows, with one shared promise per awaited epoch. */
export class AckWatermark {
  private value: bigint | null;
  /** Highest epoch whose durable write (write + fdatasync) returned. */
  private synced: bigint | null;
  private failure: Error | null = null;
  private readonly waiters = new Map<bigint, Deferred<void>>();

  /** `initial`: the epoch already durable on disk (acknowledged and synced), or `null`. */
  constructor(initial: bigint | null) {
    this.value = initial;
    this.synced = initial;
  }

  /** Highest acknowledged epoch, `null` for none. */
  get epoch(): bigint | null {
    return this.value;
  }

  /** Waiting epochs (for stats). */
  get waiting(): number {
    return this.waiters.size;
  }

  /** True when `epoch` is at or below the watermark. */
  covers(epoch: bigint): boolean {
    return this.value !== null && epoch <= this.value;
  }

  /** Resolves once `epoch` is acknowledged; rejects with the failure if the log fails first. */
  when(epoch: bigint): Promise<void> {
    if (this.covers(epoch)) return Promise.resolve();
    if (this.failure !== null) return Promise.reject(this.failure);
    let deferred = this.waiters.get(epoch);
    if (deferred === undefined) {
      deferred = createDeferred<void>();
      this.waiters.set(epoch, deferred);
    }
    return deferred.promise;
  }

  /** The durable write of `epoch` returned: from now on it may be acknowledged. */
  noteSynced(epoch: bigint): void {
    if (this.synced === null || epoch > this.synced) this.synced = epoch;
  }

  /**
   * Moves the watermark up to `epoch` and releases every waiter at or below
   * it. Acknowledged epochs only grow, and never pass the synced one.
   * @throws {EngineInvariantError} for an epoch not above the watermark or
   * above the synced epoch (an engine bug: see `invariant.ts`).
   */
  advance(epoch: bigint): void {
    if (this.failure !== null) return; // nothing is acknowledged after a failure
    const { value, synced } = this;
    invariant(value === null || epoch > value, () => `acknowledging ${epoch} after ${value}`);
    invariant(
      synced !== null && epoch <= synced,
      () => `acknowledging ${epoch} with epochs only up to ${synced} synced`,
    );
    this.value = epoch;
    for (const [waiting, deferred] of this.waiters) {
      if (waiting <= epoch) {
        this.waiters.delete(waiting);
        deferred.resolve();
      }
    }
  }

  /** The log failed: every current and later wait above the watermark rejects with `error`. */
  fail(error: Error): void {
    if (this.failure !== null) return;
    this.failure = error;
    this.rejectAll(error);
  }

  /** Rejects every current waiter (closing). */
  rejectAll(error: Error): void {
    for (const deferred of this.waiters.values()) deferred.reject(error);
    this.waiters.clear();
  }
}
