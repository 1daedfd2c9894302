/**
 * The page store: a database file of fixed-size pages that the log protects.
 *
 * Commits go to the log (`ParallelWal.commit`) and are acknowledged when
 * durable; only then are their pages visible to `read` (through the in-memory
 * {@link PageIndex}). With the log's default `earlyAck` sink an epoch is
 * acknowledged once its data is durable under a temporary name and PUBLISHED
 * (renamed to its segment name, name durable) a little later; the store only
 * ever folds, reads back or deletes published segments. A checkpoint first
 * waits until every epoch acknowledged when it started is published, then
 * folds the published epochs into the database file, makes it durable, moves
 * the store header past them, and only then deletes their segments — so at
 * every instant the database equals the file plus the segments the header
 * has not passed, plus acknowledged temporary files recovery adopts
 * (docs/design.md#recovery).
 *
 * Files: `<db>` (pages, page 1 at offset 0), `<db>-pwal-store` (header, see
 * `header.ts`), `<db>.lock` (one writer process), `<db>-wal-seg-…` (the log).
 *
 * This module is the commit and read path and the public class; the class
 * composes the parts in their own modules: opening and recovery
 * (`store-open.ts`, `store-recovery.ts`), the checkpointer
 * (`checkpoint.ts`, `checkpoint-image.ts`), and the read-back of commits
 * that did not pass through `commit` (`read-back.ts`).
 */
import {
  type CommitResult,
  type DurableEpochInfo,
  type ParallelWal,
  resolveParallelWalConfig,
} from '../engine/wal.js';
import { type LoggableStats, loggableStats } from '../stats-json.js';
import type { LockHandle } from '../storage/lockfile.js';
import { Checkpointer } from './checkpoint.js';
import { type CheckpointImage, lendCheckpointImage } from './checkpoint-image.js';
import { checkPageNumber, type PageWrites, prepareCommit } from './commit-batch.js';
import { describeError, StoreError, StoreErrorCode } from './errors.js';
import { readOnlyLog, type StoreLogView } from './log-view.js';
import { PageIndex } from './page-index.js';
import type {
  CheckpointResult,
  CommitOptions,
  PageStoreOptions,
  PageStoreStats,
  StoreCloseOptions,
  StoreCommitResult,
  StoreRecoveryReport,
  StoreWorkerHandle,
} from './page-store-types.js';
import { PendingCommits } from './pending-commits.js';
import { ReadBack } from './read-back.js';
import { checkpointEpochOf, closedError, type StoreCore } from './store-core.js';
import { type OpenedStore, openStore } from './store-open.js';

// The store's public types live beside it; they are part of this module's surface.
export { checkpointControlFromFallback } from './checkpoint.js';
export type { CheckpointImage } from './checkpoint-image.js';
export type { StoreLogView } from './log-view.js';
export {
  type CheckpointControl,
  type CheckpointOutcome,
  type CheckpointResult,
  type CommitOptions,
  checkpointThresholdBytesDefault,
  type PageStoreOptions,
  type PageStoreStats,
  PUBLISH_WAIT_TIMEOUT_MS,
  type StoreCloseOptions,
  type StoreCommitResult,
  type StoreRecoveryReport,
  type StoreWorkerHandle,
} from './page-store-types.js';

/** The full log of every open store, for {@link storeLogForTests} only. */
const storeLogs = new WeakMap<PageStore, ParallelWal>();

/**
 * The writable log under `store`. Not exported from the package root: tests
 * use it to put a batch on the log's serialized path exactly as a worker's
 * fallback does, which no public call can do from the owner thread.
 * @internal
 */
export function storeLogForTests(store: PageStore): ParallelWal {
  return storeLogs.get(store)!;
}

/** A database file protected by the parallel write-ahead log. */
export class PageStore implements AsyncDisposable {
  private readonly core: StoreCore;
  private readonly wal: ParallelWal;
  private readonly lock: LockHandle;
  private readonly index: PageIndex;
  private readonly pending = new PendingCommits();
  private readonly readBack: ReadBack;
  private readonly checkpointer: Checkpointer;
  private readonly logView: StoreLogView;
  private closing = false;
  private closed = false;
  private closePromise: Promise<void> | null = null;
  private nextTxnId = 1n;
  private commits = 0;
  private pagesCommitted = 0;
  private readonly removeListener: () => void;
  private readonly removeAckListener: () => void;
  /** Path of the database file. */
  readonly path: string;
  /** Page size in bytes. */
  readonly pageSize: number;
  /** What opening recovered from the log. */
  readonly recovery: StoreRecoveryReport;

  private constructor(path: string, opened: OpenedStore, options: PageStoreOptions) {
    const { header, wal } = opened;
    this.path = path;
    this.pageSize = header.pageSize;
    this.recovery = opened.recovery;
    this.wal = wal;
    this.lock = opened.lock;
    this.index = new PageIndex(header.dbSizePages, header.nextEpoch - 1n);
    this.core = {
      path: this.path,
      pageSize: this.pageSize,
      fs: opened.fs,
      file: opened.file,
      wal,
      index: this.index,
      options,
      header,
    };
    this.readBack = new ReadBack(this.core, resolveParallelWalConfig(options).slotCount);
    this.checkpointer = new Checkpointer(this.core, this.readBack, this.pending);
    this.logView = readOnlyLog(wal);
    storeLogs.set(this, wal);
    this.removeListener = wal.onDurable((info) => this.onDurable(info));
    this.removeAckListener = wal.onAcknowledged((epoch, info) =>
      this.readBack.onAcknowledged(epoch, info),
    );
  }

  /**
   * Opens (or creates) the database at `path`: takes the writer lock, folds
   * the log's durable epochs into the database file (fsync, header, and only
   * then deletes the applied segments), and opens the log.
   * @throws {LockError} `ERR_LOCKED` naming the holder; {@link StoreError}
   * (`ERR_STORE_PAGE_SIZE_MISMATCH`, `ERR_STORE_HEADER_CORRUPT`, …); the
   * storage layer's `SegmentCorruptError` when a segment is unusable (unless
   * `skipCorrupt`); `ERR_STORE_FILE_TRUNCATED` when the database file is
   * shorter than its header and the log allow (pages missing).
   */
  static async open(path: string, options: PageStoreOptions = {}): Promise<PageStore> {
    return new PageStore(path, await openStore(path, options), options);
  }

  /** Database size in pages after the latest durable commit. */
  get dbSizePages(): number {
    return this.index.dbSizePages;
  }

  /** Last epoch folded into the database file (`null`: none). */
  get checkpointEpoch(): bigint | null {
    return checkpointEpochOf(this.core.header);
  }

  /**
   * A read-only view of the log under the store: its epochs, stats, durable
   * and acknowledgement hooks, and {@link ParallelWal.advanceAndFlush}. It has
   * no way to write: the store's log holds records only the store may
   * write (page-sized images, its size records, its transaction ids), and
   * every write must reach the page index. Commit through
   * {@link PageStore.commit}, or from a worker through {@link PageStore.workerHandle}.
   */
  get log(): StoreLogView {
    return this.logView;
  }

  /**
   * Commits pages durably: resolves once the log acknowledged the commit
   * durable, and from then on `read` returns these images.
   * @throws {WalArgumentError} for a page number outside 1 ..= 2^32-2, a
   * duplicate page, an image whose length is not the page size, or a size
   * below a page written; {@link StoreError} `ERR_STORE_CLOSED`; the log's
   * typed errors (`ERR_WAL_FAILED`, …) when it cannot make the commit durable.
   */
  async commit(pages: PageWrites, options: CommitOptions = {}): Promise<StoreCommitResult> {
    this.ensureOpen();
    const prepared = prepareCommit(
      pages,
      options.dbSizePages,
      this.pageSize,
      this.index.dbSizePages,
    );
    const txnId = this.nextTxnId++;
    // Registered until the commit is in the index: a memory checkpoint must
    // not fold an epoch this commit may land in before it is indexed.
    const floor = this.wal.appendEpoch;
    this.pending.begin(floor);
    let result: CommitResult;
    try {
      result = await this.wal.commit({
        txnToken: { id: txnId, epoch: 0 },
        frames: prepared.frames,
      });
      this.pending.landed(floor, result.epoch);
      // Durable now: make it visible. (A checkpoint that already folded this
      // epoch makes the index ignore it: the file has it, or something newer.)
      this.index.apply(
        { epoch: result.epoch, commitSeq: result.commitSeq },
        prepared.pages,
        prepared,
      );
    } finally {
      this.pending.end(floor);
    }
    this.commits++;
    this.pagesCommitted += prepared.pages.length;
    return {
      epoch: result.epoch,
      commitSeq: result.commitSeq,
      durability: result.durability,
      dbSizePages: this.index.dbSizePages,
    };
  }

  /**
   * The latest durable image of a page: from the index of commits since the
   * last checkpoint, else from the database file; zeros for a page inside the
   * database that was never written (or was cut off by a shrink).
   * Commits that did not pass through {@link PageStore.commit} (worker
   * writers, the log's serialized path) enter the index only once their
   * epoch is published and read back: a read first waits for that, so a read
   * after such a commit resolved (at its acknowledgement) sees it.
   * @throws {StoreError} `ERR_STORE_PAGE_OUT_OF_RANGE` above the database size;
   * `ERR_INVALID_ARGUMENT` for a page number < 1; `ERR_STORE_NOT_PUBLISHED`
   * when such an acknowledged epoch is not published within
   * `PUBLISH_WAIT_TIMEOUT_MS` or the log failed before publishing it.
   */
  async read(pageNumber: number): Promise<Uint8Array> {
    this.ensureOpen();
    checkPageNumber(pageNumber);
    // Commits read back from the log (workers) must be in the index first.
    await this.readBack.beforeRead();
    if (pageNumber > this.index.dbSizePages) {
      throw new StoreError(
        StoreErrorCode.pageOutOfRange,
        `page ${pageNumber} is past the end of ${this.path} (${this.index.dbSizePages} pages)`,
      );
    }
    const found = this.index.lookup(pageNumber);
    if (found.kind === 'page') return found.data.slice();
    if (found.kind === 'zeros') return new Uint8Array(this.pageSize);
    try {
      return await this.core.file.readPage(pageNumber);
    } catch (error) {
      throw new StoreError(
        StoreErrorCode.io,
        `cannot read page ${pageNumber} of ${this.path}: ${describeError(error)}`,
        { cause: error },
      );
    }
  }

  /**
   * Folds every durable epoch into the database file: newest image of every
   * page, fsync, header moved past them (durably), then their segments
   * deleted. Every epoch acknowledged before the call is folded: the run
   * first waits (at most `PUBLISH_WAIT_TIMEOUT_MS`) until the epoch
   * acknowledged as it starts is published; it never folds or deletes an
   * unpublished epoch. Commits keep flowing meanwhile (into newer epochs); a
   * checkpoint never waits for a commit. Concurrent calls share one run.
   * @throws {StoreError} `ERR_STORE_CHECKPOINT_FAILED` (nothing lost: the log
   * keeps every segment the header has not passed; its `cause` is an
   * `ERR_STORE_NOT_PUBLISHED` error when publication did not come).
   */
  checkpoint(): Promise<CheckpointResult> {
    if (this.closed) return Promise.reject(closedError(this.path));
    return this.checkpointer.schedule();
  }

  /**
   * Runs `fn` while no checkpoint (manual, automatic or on close) can write
   * the database file, and hands it the file as a {@link CheckpointImage}
   * (for a base snapshot of a replicated database). Waits for a running or
   * queued checkpoint to finish first; checkpoints asked for while `fn` runs
   * are queued and run once it settles. Commits keep flowing meanwhile (they
   * go to the log, not the file); `close()` waits for `fn`. `fn` must not
   * wait for a checkpoint or for `close()`: they wait for `fn`.
   * @returns what `fn` returns (its rejection is passed on).
   * @throws {StoreError} `ERR_STORE_CLOSED` when the store is closed or
   * closing; `ERR_STORE_IO` when the file cannot be opened for reading.
   */
  async withCheckpointImage<T>(fn: (image: CheckpointImage) => Promise<T>): Promise<T> {
    this.ensureOpen();
    return this.checkpointer.hold(() => {
      this.ensureOpen();
      return lendCheckpointImage(
        this.core,
        this.checkpointer.fileNewestEpoch,
        this.readBack.error !== null,
        fn,
      );
    });
  }

  /**
   * A handle for a worker thread to commit into this store through its own
   * lane (post it with `transferList: [handle.lane.port]`; inside the worker
   * call `attachStoreWriter(handle)` from `store/worker.js`).
   * @throws {StoreError} `ERR_STORE_CLOSED`; the log's errors when it is
   * failed or has no free worker lane.
   */
  workerHandle(): StoreWorkerHandle {
    this.ensureOpen();
    const lane = this.wal.workerHandle();
    // Worker commits reach the log without passing through this object:
    // from now on durable segments are read back into the index.
    this.readBack.attachWorkers();
    return { kind: 'pwal-store-worker', pageSize: this.pageSize, lane };
  }

  /** A snapshot of the store's counters (and the log's). */
  stats(): LoggableStats<PageStoreStats> {
    return loggableStats({
      pageSize: this.pageSize,
      dbSizePages: this.index.dbSizePages,
      checkpointEpoch: this.checkpointEpoch,
      commits: this.commits,
      pagesCommitted: this.pagesCommitted,
      ...this.checkpointer.counters,
      epochsIngested: this.readBack.epochsIngested,
      logBytesSinceCheckpoint: this.checkpointer.logBytesSinceCheckpoint,
      indexPages: this.index.pageCount,
      indexBytes: this.index.byteCount,
      lastCheckpointError: this.checkpointer.lastError,
      wal: this.wal.stats(),
    });
  }

  /**
   * Flushes the log (every commit in flight is acknowledged durable or
   * rejected), checkpoints if asked, closes the files and releases the lock.
   * Idempotent.
   */
  close(options: StoreCloseOptions = {}): Promise<void> {
    this.closePromise ??= this.closeOnce(options);
    return this.closePromise;
  }

  /** Same as {@link PageStore.close} without a checkpoint. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  private async closeOnce(options: StoreCloseOptions): Promise<void> {
    this.closing = true;
    let failure: unknown = null;
    try {
      await this.wal.close();
      await this.readBack.settled();
      await this.checkpointer.settled();
      if (options.checkpoint) await this.checkpointer.schedule();
    } catch (error) {
      failure = error;
    } finally {
      this.removeListener();
      this.removeAckListener();
      this.closed = true;
      await this.core.file.close().catch((error: unknown) => {
        failure ??= error;
      });
      await this.lock.release().catch((error: unknown) => {
        failure ??= error;
      });
    }
    if (failure !== null) throw failure;
  }

  private onDurable(info: DurableEpochInfo): void {
    if (!info.segmentWritten) return;
    this.checkpointer.countSegment(info);
    // Records from lanes other than the in-process ones (worker lanes, and
    // the serialized path that worker fallbacks take) did not pass through
    // commit(): read the durable segment back into the index.
    this.readBack.onDurable(info);
    this.checkpointer.startIfDue(this.closing);
  }

  private ensureOpen(): void {
    if (this.closing || this.closed) throw closedError(this.path);
  }
}
