/**
 * Publication in epoch order, for the flusher: an acknowledged epoch is
 * published (durable epoch moved, durability listeners told) once its
 * segment is under its name — the sink's `published` — and every epoch before
 * it is published. Empty epochs too, behind the ones before them.
 */
import type { AckWatermark } from './ack-watermark.js';
import type { EpochCoordinator } from './epochs.js';
import type { DurableEpochInfo } from './wal-types.js';

/** What publication tells the log. */
export interface PublisherHost {
  /** `info.epoch` is published: tell the durability listeners. */
  published(info: DurableEpochInfo): void;
  /** Puts the log in the failed state (first failure wins). */
  enterFailed(cause: unknown, epoch: bigint | null): unknown;
}

/** Chains each acknowledged epoch's publication behind the earlier ones. */
export class EpochPublisher {
  /** Publications in epoch order. Never rejects. */
  private tail: Promise<void> = Promise.resolve();
  private pending = 0;

  constructor(
    private readonly coordinator: EpochCoordinator,
    private readonly acks: AckWatermark,
    private readonly host: PublisherHost,
  ) {}

  /** Acknowledged epochs whose publication is pending. */
  get waiting(): number {
    return this.pending;
  }

  /** Settles once every publication chained so far has run. Never rejects. */
  get settled(): Promise<void> {
    return this.tail;
  }

  /** Publishes acknowledged `info` once `published` (null: already under its name) settles, in epoch order. */
  publishInOrder(info: DurableEpochInfo, published: Promise<void> | null): void {
    const publish = (): void => {
      this.coordinator.markEpochDurable(info.epoch);
      this.host.published(info);
    };
    if (published === null && this.pending === 0) {
      // Already under its name and nothing before it pending: publish now
      // (the storage and precreate sinks always take this path).
      publish();
      return;
    }
    this.pending++;
    this.tail = this.tail
      .then(() => published)
      .finally(() => {
        this.pending--;
      })
      .then(publish, (cause: unknown) => {
        // Acknowledged epochs stay acknowledged (recovery adopts them);
        // nothing after them will be.
        this.host.enterFailed(cause, this.firstUnacknowledgedEpoch());
      });
  }

  /** The lowest epoch not acknowledged (what a failure in publication fails). */
  private firstUnacknowledgedEpoch(): bigint {
    const acked = this.acks.epoch;
    return acked === null ? 0n : acked + 1n;
  }
}
