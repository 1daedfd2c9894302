/**
 * The listeners of a {@link ParallelWal}: acknowledged epochs, published
 * (durable) epochs, and the one failure. A listener that throws never breaks
 * the flusher: the exception is swallowed and counted.
 */

import type { WalFailedError } from './errors.js';
import type { DurableEpochInfo } from './wal-types.js';

/** Listener sets of one log, with the count of exceptions they threw. */
export class WalListeners {
  /** Exceptions thrown by listeners (swallowed). */
  errors = 0;
  private readonly acked = new Set<(epoch: bigint, info: DurableEpochInfo) => void>();
  private readonly durable = new Set<(info: DurableEpochInfo) => void>();
  private readonly failed = new Set<(error: WalFailedError) => void>();

  /** Adds an acknowledgement listener; returns its remover. */
  onAcknowledged(listener: (epoch: bigint, info: DurableEpochInfo) => void): () => void {
    this.acked.add(listener);
    return () => this.acked.delete(listener);
  }

  /** Adds a publication listener; returns its remover. */
  onDurable(listener: (info: DurableEpochInfo) => void): () => void {
    this.durable.add(listener);
    return () => this.durable.delete(listener);
  }

  /** Adds a failure listener (called now if `failure` is already set); returns its remover. */
  onFailed(listener: (error: WalFailedError) => void, failure: WalFailedError | null): () => void {
    if (failure !== null) {
      this.call(() => listener(failure));
      return () => {};
    }
    this.failed.add(listener);
    return () => this.failed.delete(listener);
  }

  /** Tells the acknowledgement listeners. */
  acknowledged(epoch: bigint, info: DurableEpochInfo): void {
    for (const listener of this.acked) this.call(() => listener(epoch, info));
  }

  /** Tells the publication listeners. */
  published(info: DurableEpochInfo): void {
    for (const listener of this.durable) this.call(() => listener(info));
  }

  /** Tells the failure listeners, once: they are forgotten afterwards. */
  failedWith(failure: WalFailedError): void {
    for (const listener of this.failed) this.call(() => listener(failure));
    this.failed.clear();
  }

  private call(call: () => void): void {
    try {
      call();
    } catch {
      // A listener's bug must not break the flusher; it is counted.
      this.errors++;
    }
  }
}
