/**
 * Read-back: commits that did not pass through `PageStore.commit` (worker
 * lanes, and the log's serialized path that a worker's fallback takes) reach
 * the page index by reading their durable segment back from disk, once the
 * epoch is published (under its segment name). Until then a read waits for
 * that epoch, so a read after such a commit resolved sees it.
 */
import type { DurableEpochInfo, ParallelWal } from '../engine/wal.js';
import type { WalRecord } from '../format/types.js';
import { readSegment, segmentPath } from '../storage/segment-files.js';
import { describeError, StoreError, StoreErrorCode } from './errors.js';
import { PUBLISH_WAIT_TIMEOUT_MS } from './page-store-types.js';
import { forEachCommit } from './replay.js';
import type { StoreCore } from './store-core.js';

/**
 * Waits until `acknowledged` (default: the epoch acknowledged now) is
 * published (no wait when it is already, as always with the `storage` and
 * `precreate` sinks).
 * @throws {StoreError} `ERR_STORE_NOT_PUBLISHED` on timeout or log failure.
 */
export async function waitForAcknowledgedPublished(
  wal: ParallelWal,
  path: string,
  purpose: 'read' | 'checkpoint',
  acknowledged = wal.acknowledgedEpoch(),
): Promise<void> {
  if (acknowledged === null) return;
  const published = wal.durableEpoch();
  if (published !== null && published >= acknowledged) return;
  try {
    await wal.waitForEpochDurable(acknowledged, PUBLISH_WAIT_TIMEOUT_MS);
  } catch (error) {
    throw new StoreError(
      StoreErrorCode.notPublished,
      `${purpose} of ${path}: acknowledged epoch ${acknowledged} was not published: ${describeError(error)}`,
      { cause: error },
    );
  }
}

/** The read-back of one store's durable segments into its page index. */
export class ReadBack {
  private workersAttached = false;
  /**
   * Highest acknowledged epoch holding commits that did not pass through
   * commit(): they reach the index only once that epoch is published and
   * read back, so `read` waits for it.
   */
  private readBackEpoch: bigint | null = null;
  /** Read-backs in epoch order, one after another. Never rejects. */
  private chain: Promise<void> = Promise.resolve();
  private failure: Error | null = null;
  /** Durable epochs read back so far. */
  epochsIngested = 0;

  constructor(
    private readonly core: StoreCore,
    /** Lane ids below this are the log's in-process lanes, used by commit(). */
    private readonly inProcessLanes: number,
  ) {}

  /**
   * Why a read-back failed (the index then misses commits the log holds), or
   * `null`. Once set, a memory checkpoint can no longer vouch for the index.
   */
  get error(): Error | null {
    return this.failure;
  }

  /** Worker commits reach the log without passing through the store: read every durable segment back from now on. */
  attachWorkers(): void {
    this.workersAttached = true;
  }

  /** The log acknowledged `epoch`: a read must wait for it when it needs a read-back. */
  onAcknowledged(epoch: bigint, info: DurableEpochInfo): void {
    if (info.segmentWritten && this.needsReadBack(info)) this.readBackEpoch = epoch;
  }

  /** The log published an epoch: schedule its read-back when it needs one. */
  onDurable(info: DurableEpochInfo): void {
    if (!info.segmentWritten || !this.needsReadBack(info)) return;
    const epoch = info.epoch;
    this.chain = this.chain.then(() => this.ingest(epoch));
  }

  /** Settles once every read-back scheduled so far has run. */
  settled(): Promise<void> {
    return this.chain;
  }

  /**
   * Before a read: waits until every acknowledged epoch that needs a
   * read-back is published and read back.
   * @throws {StoreError} `ERR_STORE_NOT_PUBLISHED`; the read-back's failure.
   */
  async beforeRead(): Promise<void> {
    if (this.readBackEpoch !== null) {
      await waitForAcknowledgedPublished(this.core.wal, this.core.path, 'read', this.readBackEpoch);
    }
    await this.chain;
    if (this.failure !== null) throw this.failure;
  }

  /** True when an epoch's records did not all pass through commit() (read back into the index). */
  private needsReadBack(info: DurableEpochInfo): boolean {
    return this.workersAttached || info.laneIds.some((id) => id >= this.inProcessLanes);
  }

  /** Reads a durable segment back into the index (for commits made by workers). Never rejects. */
  private async ingest(epoch: bigint): Promise<void> {
    const { core } = this;
    if (epoch < core.header.nextEpoch) return; // already in the file
    const path = segmentPath(core.path, epoch);
    let records: WalRecord[];
    try {
      records = (await readSegment(path, { fs: core.fs })).records;
    } catch (error) {
      // Folded and deleted by a checkpoint meanwhile: the file has it.
      if (epoch < core.header.nextEpoch) return;
      this.failure = new StoreError(
        StoreErrorCode.io,
        `cannot read back durable segment of epoch ${epoch}: ${describeError(error)}`,
        { cause: error },
      );
      return;
    }
    try {
      forEachCommit(records, core.header.nextEpoch, core.pageSize, path, (c) =>
        core.index.apply(c.stamp, c.pages, c),
      );
      this.epochsIngested++;
    } catch (error) {
      this.failure = error instanceof Error ? error : new Error(String(error));
    }
  }
}
