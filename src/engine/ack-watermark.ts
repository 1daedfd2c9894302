/**
 * The acknowledgement watermark of the log: the highest epoch whose commits
 * may be acknowledged (its data is durable, possibly still under a temporary
 * name: see `segment-writer.ts`, `EarlyAckSegmentSink`). It runs ahead of the
 * coordinator's durable (published) epoch by the publications in flight.
 * Waiters for any epoch <= the watermark are released when it moves.
 */
import { createDeferred, type Deferred } from './deferred.js';

/** `max`-only epoch watermark with one shared promise per awaited epoch. */
export class AckWatermark {
  private value: bigint | null;
  private failure: Error | null = null;
  private readonly waiters = new Map<bigint, Deferred<void>>();

  constructor(initial: bigint | null) {
    this.value = initial;
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

  /** `watermark = max(watermark, epoch)`; releases every waiter at or below it. */
  advance(epoch: bigint): void {
    if (this.failure !== null) return; // nothing is acknowledged after a failure
    if (this.value !== null && epoch <= this.value) return;
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
