/**
 * The background publication of acknowledged epochs, shared by the sinks
 * that acknowledge at data durability and name the segment later
 * (`EarlyAckSegmentSink`, `PoolSegmentSink`): the queue of acknowledged
 * epochs, the chain of publication batches in epoch order, and the rule for
 * when a batch starts. What a batch does (close, rename, refill, directory
 * fsync) stays with each sink.
 */
import type { Deferred } from './deferred.js';

/** Acknowledged epochs queued for publication that start a publication batch at once. */
export const earlyAckPublishBatchMax = 8;

/**
 * Publish the queue once no write has started for this many event-loop turns
 * (`setImmediate` hops, microseconds when idle). Counted in turns rather than
 * milliseconds so that the order of file operations depends only on the order
 * of events, never on the clock (the crash harness replays it step by step);
 * two turns let a closed-loop committer's next epoch (sealed one turn after
 * the commit resolves) start first.
 */
export const EARLY_ACK_PUBLISH_IDLE_TURNS = 2;

/** An acknowledged epoch: its `published` settles when its batch has run. */
export interface Publishable {
  published: Deferred<void>;
}

/** Queued epochs and the chain of their publication batches (see the file comment). */
export class PublicationQueue<T extends Publishable> {
  /** Acknowledged epochs not yet handed to a batch, in epoch order. */
  private queue: T[] = [];
  /** Publication batches, chained in epoch order. Never rejects. */
  private tail: Promise<void> = Promise.resolve();
  private idleTimer: NodeJS.Immediate | null = null;
  /** A batch is chained and has not started: it will take the queue. */
  private chained = false;
  private batches = 0;
  private epochs = 0;

  /**
   * @param publishBatch publishes one batch and settles each epoch's
   *   `published` itself.
   * @param onUnexpected called if `publishBatch` throws (not expected) before
   *   the batch's epochs are rejected with the same error.
   */
  constructor(
    private readonly publishBatch: (batch: readonly T[]) => Promise<void>,
    private readonly onUnexpected: (cause: Error) => void,
  ) {}

  /** Epochs queued and not yet handed to a batch (a chained batch takes them when it starts). */
  get waiting(): number {
    return this.queue.length;
  }

  /** Batches chained and not finished: the running one, and at most one waiting. */
  get batchesInFlight(): number {
    return this.batches;
  }

  /** Epochs in those batches. */
  get epochsInFlight(): number {
    return this.epochs;
  }

  /** Settles once every batch started so far has finished. Never rejects. */
  get settled(): Promise<void> {
    return this.tail;
  }

  push(item: T): void {
    this.queue.push(item);
  }

  /**
   * Starts publishing every epoch queued so far (no idle wait): a batch is
   * chained behind the running one, and takes what is queued when it
   * starts. So at most one batch waits, and under load batches grow instead
   * of queueing up: a chain of fixed-size batches, each paying its own
   * closes, creations and directory fsync, fell behind a pipelined flush
   * for good (acknowledged epochs waiting for their names by the thousand).
   */
  publishNow(): void {
    this.cancelIdle();
    if (this.queue.length === 0 || this.chained) return;
    this.chained = true;
    this.batches++;
    let batch: T[] = [];
    this.tail = this.tail
      .then(() => {
        this.chained = false;
        batch = this.queue;
        this.queue = [];
        this.epochs += batch.length;
        return batch.length === 0 ? undefined : this.publishBatch(batch);
      })
      .catch((error: unknown) => {
        // Not expected (publishBatch settles every epoch itself); never leave one hanging.
        const cause = error instanceof Error ? error : new Error(String(error));
        this.onUnexpected(cause);
        for (const item of batch) item.published.reject(cause);
      })
      .finally(() => {
        this.batches--;
        this.epochs -= batch.length;
      });
  }

  /**
   * After a write: publish now if `urgent` (the sink is stopping, failing
   * or short of files) or the queue is full; else once idle for
   * {@link EARLY_ACK_PUBLISH_IDLE_TURNS} turns.
   */
  schedule(urgent: boolean): void {
    if (this.queue.length === 0) return;
    if (urgent || this.queue.length >= earlyAckPublishBatchMax) {
      this.publishNow();
      return;
    }
    if (this.idleTimer !== null) return;
    let turns = EARLY_ACK_PUBLISH_IDLE_TURNS;
    const hop = (): void => {
      turns--;
      if (turns > 0) {
        this.idleTimer = setImmediate(hop);
        return;
      }
      this.idleTimer = null;
      this.publishNow();
    };
    this.idleTimer = setImmediate(hop);
  }

  /** A write starts: the queue is not idle. */
  cancelIdle(): void {
    if (this.idleTimer === null) return;
    clearImmediate(this.idleTimer);
    this.idleTimer = null;
  }
}
