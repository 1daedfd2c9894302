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
 */
import { randomBytes } from 'node:crypto';
import type { FallbackState } from '../control/fallback.js';
import {
  type CommitResult,
  type DurableEpochInfo,
  ParallelWal,
  type ParallelWalConfig,
  type ParallelWalStats,
  resolveParallelWalConfig,
} from '../engine/wal.js';
import type { WorkerLaneHandle } from '../engine/worker-layout.js';
import { WalArgumentError } from '../errors.js';
import { U64_MAX, type WalRecord } from '../format/types.js';
import { type LoggableStats, loggableStats } from '../stats-json.js';
import { RecoveryGapError } from '../storage/errors.js';
import { nodeFileSystem, type WalFileHandle, type WalFileSystem } from '../storage/fs.js';
import { acquireLock, type LockHandle } from '../storage/lockfile.js';
import { recoverSegments } from '../storage/recovery.js';
import {
  deleteSegment,
  type FsyncPolicy,
  listSegments,
  readSegment,
  type SegmentFileEntry,
  segmentPath,
  syncSegmentDirectory,
} from '../storage/segment-files.js';
import {
  floorsAfterSkipped,
  recordSkippedEpochs,
  type SkippedEpochRange,
} from '../storage/skipped-epochs.js';
import { checkPageNumber, type PageWrites, prepareCommit } from './commit-batch.js';
import { DatabaseFile } from './db-file.js';
import { describeError, StoreError, StoreErrorCode } from './errors.js';
import { truncationError } from './file-length.js';
import {
  DEFAULT_PAGE_SIZE_BYTES,
  readStoreHeader,
  type StoreHeader,
  validatePageSize,
  writeStoreHeader,
} from './header.js';
import { PageIndex } from './page-index.js';
import {
  applyReplay,
  foldFromIndex,
  foldRecords,
  forEachCommit,
  type ReplayState,
  startReplay,
} from './replay.js';
import { reseedMarkerPath } from './reseed-files.js';

/** Segment files unlinked at once after a checkpoint. */
const DELETE_PARALLELISM = 8;

/**
 * Longest wait, ms, for an acknowledged epoch to be published (segment under
 * its name): by a checkpoint before it folds, and by a read before it looks
 * up a page when commits that bypassed `commit()` (worker writers, the
 * serialized path) await read-back. Publication normally follows the
 * acknowledgement within a directory fsync.
 */
export const PUBLISH_WAIT_TIMEOUT_MS = 30_000;

/** Default of {@link PageStoreOptions.checkpointThresholdBytes}: 64 MiB of segments. */
export const DEFAULT_CHECKPOINT_THRESHOLD_BYTES = 64 * 1024 * 1024;

/** Options of {@link PageStore.commit}. */
export interface CommitOptions {
  /**
   * Database size in pages after the commit (SQLite's `dbSizeIfCommit`). May
   * shrink the database: pages above it are gone and read as zeros if it
   * grows again. Omitted: the size grows to cover the highest page written.
   */
  dbSizePages?: number;
}

/** What a durable store commit reports. */
export interface StoreCommitResult {
  epoch: bigint;
  commitSeq: bigint;
  /** What the acknowledgement guarantees (the log's fsync policy). */
  durability: FsyncPolicy;
  /** Database size in pages after the commit (as far as this process knows). */
  dbSizePages: number;
}

/**
 * The part of the control plane a checkpoint talks to. `checkpoint_conflict`
 * is reported when a checkpoint runs while the control plane needs the
 * serialized path, and (as the root reason) when a checkpoint finds that it
 * cannot fold from its page index because of what the parallel path did (a
 * worker's durable segment could not be read back, or a commit landed in an
 * epoch older than announced): it then folds from the log. The checkpoint
 * still runs either way (it never blocks writers).
 */
export interface CheckpointControl {
  /** True while the control plane runs (or needs) the serialized, one-lane path. */
  serializedPathRequired(): boolean;
  /** Records a fallback with its reason (`checkpointConflict` here). */
  reportFallback(reason: 'checkpointConflict', detail: string): void;
  /**
   * A checkpoint finished (`error` null) or failed: the epoch the file holds
   * now, for the control plane's checkpoint trace record.
   */
  checkpointed?(outcome: CheckpointOutcome): void;
}

/** What {@link CheckpointControl.checkpointed} hears about one checkpoint run. */
export interface CheckpointOutcome {
  /** Last epoch folded into the database file after the run (`null`: none ever). */
  checkpointEpoch: bigint | null;
  /** True when the run conflicted with the serialized path (`checkpoint_conflict`). */
  conflict: boolean;
  pagesWritten: number;
  bytesWritten: number;
  durationMs: number;
  /** Why the run failed; `null` when it succeeded. */
  error: Error | null;
}

/**
 * The checkpoint control of a store: `control` when given, else the log's
 * control plane when it offers the checkpoint calls (a `ControlPlane` does).
 */
function checkpointControlOf(options: PageStoreOptions): CheckpointControl | undefined {
  if (options.control !== undefined) return options.control;
  const plane = options.controlPlane as Partial<CheckpointControl> | undefined;
  if (
    typeof plane?.serializedPathRequired === 'function' &&
    typeof plane.reportFallback === 'function'
  ) {
    return plane as CheckpointControl;
  }
  return undefined;
}

/**
 * Connects checkpoints to the control plane's fallback latch: the serialized
 * path is required while the latch is active, and a conflict enters the
 * latch with reason `checkpointConflict` (counted, traced by its listener).
 */
export function checkpointControlFromFallback(state: FallbackState): CheckpointControl {
  return {
    serializedPathRequired: () => state.active,
    reportFallback: (reason) => {
      state.enter(reason);
    },
  };
}

/** Options of {@link PageStore.open}: the log's configuration plus the store's own. */
export interface PageStoreOptions extends Omit<ParallelWalConfig, 'lock'> {
  /** Page size in bytes for a new database (512 ..= 65536, a power of two; default 4096). An existing database must match when given. */
  pageSize?: number;
  /** Checkpoint automatically once the log holds this many bytes of segments (default 64 MiB). */
  checkpointThresholdBytes?: number;
  /** Automatic checkpoints on (default true). */
  autoCheckpoint?: boolean;
  /**
   * Where a checkpoint takes page images from: `memory` (default) — the
   * index of durable commits, no re-read; `log` — read the segments back. The
   * store falls back to `log` by itself whenever it cannot vouch for the
   * index (a read-back of a worker's segment failed, or the log placed a
   * commit in an epoch older than announced).
   */
  checkpointSource?: 'memory' | 'log';
  /**
   * Control-plane hook for `checkpoint_conflict` and checkpoint traces.
   * Default: the log's `controlPlane` when it offers these calls.
   */
  control?: CheckpointControl;
  /**
   * Segment retention for a replicated store, asked before every deletion
   * (checkpoint and recovery on open). Returns the highest epoch that may be
   * deleted once folded — the cluster's replicated epoch: segments with a
   * greater epoch stay on disk even when folded, until a later checkpoint
   * finds them replicated. `null`: nothing is replicated yet, so no segment
   * is deleted. Retained segments are not replayed again (they are below the
   * header's next epoch). Omitted: folded segments are deleted at once.
   * See `openReplicatedStore` in `replicated-store.ts`.
   */
  retainSegmentsAbove?: () => bigint | null;
}

/** What a checkpoint (or recovery) did. */
export interface CheckpointResult {
  /** Last epoch folded into the file (`null`: none ever). */
  checkpointEpoch: bigint | null;
  /** Where the page images came from: the in-memory index, or the segments read back. */
  source: 'memory' | 'log';
  /** Segments read and folded. */
  segmentsApplied: number;
  /** Segments deleted afterwards. */
  segmentsDeleted: number;
  /** Pages written into the database file. */
  pagesWritten: number;
  /** Bytes written into the database file. */
  bytesWritten: number;
  /** Database size in pages the file now has. */
  dbSizePages: number;
  /** True when the control plane needed the serialized path meanwhile (`checkpoint_conflict`). */
  conflict: boolean;
  /** Wall time, ms. */
  durationMs: number;
  /** Wall time of the steps, ms: fold (collect images), write (file + fsync), header, delete. */
  phasesMs: { fold: number; write: number; header: number; delete: number };
}

/** What `PageStore.open` recovered from the log. */
export interface StoreRecoveryReport extends CheckpointResult {
  /** Segments that were unusable and set aside (only with `skipCorrupt`). */
  quarantinedSegments: string[];
}

/** A snapshot of the store's counters. */
export interface PageStoreStats {
  pageSize: number;
  dbSizePages: number;
  /** Last epoch folded into the database file (`null`: none). */
  checkpointEpoch: bigint | null;
  commits: number;
  pagesCommitted: number;
  checkpoints: number;
  autoCheckpoints: number;
  checkpointConflicts: number;
  checkpointPagesWritten: number;
  checkpointBytesWritten: number;
  segmentsDeleted: number;
  /** Bytes of durable segments written since the last checkpoint. */
  logBytesSinceCheckpoint: number;
  /** Pages and bytes held by the in-memory index. */
  indexPages: number;
  indexBytes: number;
  /** Durable epochs read back from disk for worker commits. */
  epochsIngested: number;
  /** The last automatic checkpoint's failure, if it failed. */
  lastCheckpointError: Error | null;
  wal: ParallelWalStats;
}

/** What `store.workerHandle()` returns; post it to a worker (transfer `lane.port`). */
export interface StoreWorkerHandle {
  readonly kind: 'pwal-store-worker';
  readonly pageSize: number;
  readonly lane: WorkerLaneHandle;
}

/**
 * The database file held still by {@link PageStore.withCheckpointImage}: no
 * checkpoint writes it while the image is held.
 *
 * Every epoch `<= epoch` is in the file. A checkpoint folding from memory
 * writes each page's NEWEST acknowledged image, which may belong to an epoch
 * after the one it folds through (the log keeps those epochs, so local
 * recovery rewrites them); a failed checkpoint may have written the file
 * without moving the header. So the file is exactly the database as of
 * `epoch` only where no commit of the epochs `epoch + 1 ..= consistentEpoch`
 * wrote or cut a page: replaying those epochs over it yields exactly the
 * database as of `consistentEpoch` (or of any later epoch replayed to).
 */
export interface CheckpointImage {
  /** Last epoch folded into the file (`null`: none ever; then `dbSizePages` is 0). */
  epoch: bigint | null;
  /**
   * The first epoch whose state the image plus the log after `epoch` can
   * reproduce exactly (`>= epoch`): `epoch` while no checkpoint has written
   * the file since the store was opened (recovery folds the log exactly) or
   * when no commit is known above it; else the newest epoch whose images the
   * file may already hold.
   */
  consistentEpoch: bigint | null;
  /** Page size in bytes. */
  pageSize: number;
  /** Database size in pages as of `epoch` (the header's): the file's pages `1 ..= dbSizePages`. */
  dbSizePages: number;
  /** Highest commit sequence folded into the file (`0n`: none). */
  commitSeq: bigint;
  /**
   * `length` bytes of the database file from `offset` (zeros past its end).
   * Only while the image is held.
   * @throws {StoreError} `ERR_STORE_CLOSED` once the image is released;
   * `ERR_STORE_IO` when the read fails; {@link WalArgumentError} for an
   * offset or length that is not a non-negative safe integer.
   */
  read(offset: number, length: number): Promise<Uint8Array>;
}

/**
 * What {@link PageStore.log} exposes of the log under a store: everything
 * that reads its state or waits for it, nothing that writes records or
 * closes it (the store owns both).
 */
export type StoreLogView = Pick<
  ParallelWal,
  | 'dbPath'
  | 'config'
  | 'currentEpoch'
  | 'appendEpoch'
  | 'durableEpoch'
  | 'acknowledgedEpoch'
  | 'isFailed'
  | 'isRunning'
  | 'waitForEpochDurable'
  | 'advanceAndFlush'
  | 'onDurable'
  | 'onAcknowledged'
  | 'onFailed'
  | 'stats'
  | 'resetLatencyHistogram'
>;

/** A frozen object forwarding the {@link StoreLogView} members to `wal`, and nothing else. */
function readOnlyLog(wal: ParallelWal): StoreLogView {
  return Object.freeze({
    get dbPath() {
      return wal.dbPath;
    },
    get config() {
      return wal.config;
    },
    get currentEpoch() {
      return wal.currentEpoch;
    },
    get appendEpoch() {
      return wal.appendEpoch;
    },
    get isFailed() {
      return wal.isFailed;
    },
    durableEpoch: () => wal.durableEpoch(),
    acknowledgedEpoch: () => wal.acknowledgedEpoch(),
    isRunning: () => wal.isRunning(),
    waitForEpochDurable: (epoch: bigint, timeoutMs: number) =>
      wal.waitForEpochDurable(epoch, timeoutMs),
    advanceAndFlush: (timeoutMs: number) => wal.advanceAndFlush(timeoutMs),
    onDurable: (listener: (info: DurableEpochInfo) => void) => wal.onDurable(listener),
    onAcknowledged: (listener: (epoch: bigint, info: DurableEpochInfo) => void) =>
      wal.onAcknowledged(listener),
    onFailed: (listener: Parameters<ParallelWal['onFailed']>[0]) => wal.onFailed(listener),
    stats: () => wal.stats(),
    resetLatencyHistogram: () => wal.resetLatencyHistogram(),
  });
}

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

/** Options of {@link PageStore.close}. */
export interface StoreCloseOptions {
  /** Fold the whole log into the database file before closing (default false). */
  checkpoint?: boolean;
}

/** A database file protected by the parallel write-ahead log. */
export class PageStore implements AsyncDisposable {
  private readonly index: PageIndex;
  private closing = false;
  private closed = false;
  private closePromise: Promise<void> | null = null;
  private nextTxnId = 1n;
  /** Bytes of each durable segment not yet checkpointed. */
  private readonly segmentBytes = new Map<bigint, number>();
  private logBytes = 0;
  private checkpointRunning: Promise<CheckpointResult> | null = null;
  private checkpointQueued: Promise<CheckpointResult> | null = null;
  private autoCheckpoint: Promise<void> | null = null;
  private workersAttached = false;
  /**
   * Highest acknowledged epoch holding commits that did not pass through
   * commit() (worker lanes, the serialized path): they reach the index only
   * once that epoch is published and read back, so `read` waits for it.
   */
  private readBackEpoch: bigint | null = null;
  private readonly removeAckListener: () => void;
  /** Own commits not yet in the index, by the append epoch read before submitting (a lower bound of their epoch). */
  private readonly pendingFloors = new Map<bigint, number>();
  /** False once the index cannot be trusted as a checkpoint source. */
  private memorySourceOk = true;
  /** True once a checkpoint reported that it could not trust the index (`checkpoint_conflict`). */
  private conflictReported = false;
  /** Lane ids below this are the log's in-process lanes, used by commit(). */
  private readonly inProcessLanes: number;
  private ingestChain: Promise<void> = Promise.resolve();
  private ingestError: Error | null = null;
  private readonly removeListener: () => void;
  private readonly counters = {
    commits: 0,
    pagesCommitted: 0,
    checkpoints: 0,
    autoCheckpoints: 0,
    checkpointConflicts: 0,
    checkpointPagesWritten: 0,
    checkpointBytesWritten: 0,
    segmentsDeleted: 0,
    epochsIngested: 0,
  };
  private lastCheckpointError: Error | null = null;
  /**
   * The newest epoch whose page images the database file may hold beyond
   * its header's epoch (memory checkpoints write each page's newest image);
   * `null` while the file is exactly the header's epoch (after recovery).
   */
  private fileNewestEpoch: bigint | null = null;

  private readonly logView: StoreLogView;

  private constructor(
    /** Path of the database file. */
    readonly path: string,
    /** Page size in bytes. */
    readonly pageSize: number,
    private header: StoreHeader,
    private readonly file: DatabaseFile,
    private readonly wal: ParallelWal,
    private readonly lock: LockHandle,
    private readonly fs: WalFileSystem,
    private readonly options: PageStoreOptions,
    /** What opening recovered from the log. */
    readonly recovery: StoreRecoveryReport,
  ) {
    this.index = new PageIndex(header.dbSizePages, header.nextEpoch - 1n);
    this.logView = readOnlyLog(wal);
    storeLogs.set(this, wal);
    this.inProcessLanes = resolveParallelWalConfig(options).slotCount;
    this.removeListener = wal.onDurable((info) => this.onDurable(info));
    this.removeAckListener = wal.onAcknowledged((epoch, info) => {
      if (info.segmentWritten && this.needsReadBack(info)) this.readBackEpoch = epoch;
    });
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
    if (typeof path !== 'string' || path.length === 0) {
      throw new WalArgumentError('path must be a non-empty string');
    }
    if (options.pageSize !== undefined) validatePageSize(options.pageSize);
    const threshold = options.checkpointThresholdBytes ?? DEFAULT_CHECKPOINT_THRESHOLD_BYTES;
    if (!Number.isSafeInteger(threshold) || threshold < 1) {
      throw new WalArgumentError(
        `checkpointThresholdBytes must be a positive integer, got ${threshold}`,
      );
    }
    const fs = options.fs ?? nodeFileSystem;
    const lock = await acquireLock(path, { fs, lockTimeoutMs: options.lockTimeoutMs });
    let file: DatabaseFile | null = null;
    let wal: ParallelWal | null = null;
    try {
      await refuseUnfinishedReseed(path, fs);
      // Certificates on: check the chain before folding (and deleting) any
      // segment; the log's own open then finds it verified.
      await options.controlPlane?.verifyAtOpen?.(path, { fs });
      const opened = await openDatabaseFile(path, options.pageSize, fs);
      file = opened.file;
      const recovered = await recoverIntoFile(path, opened.file, opened.header, fs, {
        skipCorrupt: options.skipCorrupt ?? false,
        allowEpochGaps: options.allowEpochGaps ?? false,
        ...(options.retainSegmentsAbove === undefined
          ? {}
          : { retainSegmentsAbove: options.retainSegmentsAbove }),
      });
      const header = recovered.header;
      const { lock: _ignored, ...walConfig } = options as ParallelWalConfig;
      // The header's floors keep the log's numbering increasing for the
      // database's whole life: a checkpoint deletes the segments it folded,
      // and new epochs (and commit sequences) must never look already folded.
      // Epochs given up with skipCorrupt (set aside, possibly on replicas)
      // are never numbered again either.
      const skipped = floorsAfterSkipped(recovered.skippedRanges);
      wal = await ParallelWal.open(path, {
        ...walConfig,
        fs,
        lock: false,
        firstEpoch: floorOf(walConfig.firstEpoch, maxOf(header.nextEpoch, skipped.epoch)),
        firstCommitSeq: floorOf(
          walConfig.firstCommitSeq,
          maxOf(header.checkpointCommitSeq + 1n, skipped.commitSeq),
        ),
      });
      return new PageStore(
        path,
        header.pageSize,
        header,
        opened.file,
        wal,
        lock,
        fs,
        options,
        recovered.report,
      );
    } catch (error) {
      // A missing epoch: the control plane latches recovery_gap (the open
      // still fails closed).
      if (error instanceof RecoveryGapError) {
        options.controlPlane?.reportFallback?.('recoveryGap', error.message);
      }
      await wal?.close().catch(() => undefined);
      await file?.close().catch(() => undefined);
      await lock.release().catch(() => undefined);
      throw error;
    }
  }

  /** Database size in pages after the latest durable commit. */
  get dbSizePages(): number {
    return this.index.dbSizePages;
  }

  /** Last epoch folded into the database file (`null`: none). */
  get checkpointEpoch(): bigint | null {
    return this.header.nextEpoch === 0n ? null : this.header.nextEpoch - 1n;
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
    this.pendingFloors.set(floor, (this.pendingFloors.get(floor) ?? 0) + 1);
    let result: CommitResult;
    try {
      result = await this.wal.commit({
        txnToken: { id: txnId, epoch: 0 },
        frames: prepared.frames,
      });
      // Never expected; if the log ever did it, memory checkpoints could
      // miss this commit, so fold from the log from now on.
      if (result.epoch < floor) this.memorySourceOk = false;
      // Durable now: make it visible. (A checkpoint that already folded this
      // epoch makes the index ignore it: the file has it, or something newer.)
      this.index.apply(
        { epoch: result.epoch, commitSeq: result.commitSeq },
        prepared.pages,
        prepared,
      );
    } finally {
      const left = (this.pendingFloors.get(floor) ?? 1) - 1;
      if (left === 0) this.pendingFloors.delete(floor);
      else this.pendingFloors.set(floor, left);
    }
    this.counters.commits++;
    this.counters.pagesCommitted += prepared.pages.length;
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
    if (this.readBackEpoch !== null) {
      await this.waitForAcknowledgedPublished('read', this.readBackEpoch);
    }
    // Commits read back from the log (workers) must be in the index first.
    await this.ingestChain;
    if (this.ingestError !== null) throw this.ingestError;
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
      return await this.file.readPage(pageNumber);
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
    return this.scheduleCheckpoint();
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
    // A checkpoint started before this call may still be writing the file,
    // and a queued one would start without waiting for the hold below.
    for (;;) {
      const busy = this.checkpointQueued ?? this.checkpointRunning;
      if (busy === null) break;
      await busy.catch(() => undefined);
    }
    this.ensureOpen();
    const header = this.header;
    // The hold stands in for a running checkpoint: every checkpoint scheduled
    // while it is installed awaits it before starting, and closeOnce awaits
    // it before closing the file. It never rejects; its value reaches no
    // caller of checkpoint() (they get the queued run's own result).
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const hold = released.then(
      (): CheckpointResult => ({
        checkpointEpoch: this.checkpointEpoch,
        source: 'memory',
        segmentsApplied: 0,
        segmentsDeleted: 0,
        pagesWritten: 0,
        bytesWritten: 0,
        dbSizePages: this.header.dbSizePages,
        conflict: false,
        durationMs: 0,
        phasesMs: { fold: 0, write: 0, header: 0, delete: 0 },
      }),
    );
    this.checkpointRunning = hold;
    let held = true;
    let handle: WalFileHandle | null = null;
    try {
      try {
        handle = await this.fs.open(this.path, 'read');
      } catch (error) {
        throw new StoreError(
          StoreErrorCode.io,
          `cannot open ${this.path} for a checkpoint image: ${describeError(error)}`,
          { cause: error },
        );
      }
      const file = handle;
      const epoch = header.nextEpoch === 0n ? null : header.nextEpoch - 1n;
      // The file is exactly the header's epoch until a memory checkpoint
      // wrote images of later commits into it (recorded in fileNewestEpoch
      // before the write, so a run that failed after writing counts too).
      // Commits read back from the log that failed to reach the index are
      // bounded by the published epoch instead.
      let consistent = epoch;
      const raise = (candidate: bigint | null | undefined): void => {
        if (candidate !== null && candidate !== undefined && (consistent ?? -1n) < candidate)
          consistent = candidate;
      };
      raise(this.fileNewestEpoch);
      if (this.ingestError !== null) raise(this.wal.durableEpoch());
      const path = this.path;
      return await fn({
        epoch,
        consistentEpoch: consistent,
        pageSize: header.pageSize,
        dbSizePages: header.dbSizePages,
        commitSeq: header.checkpointCommitSeq,
        async read(offset: number, length: number): Promise<Uint8Array> {
          if (!Number.isSafeInteger(offset) || offset < 0)
            throw new WalArgumentError(`offset must be a non-negative safe integer, got ${offset}`);
          if (!Number.isSafeInteger(length) || length < 0)
            throw new WalArgumentError(`length must be a non-negative safe integer, got ${length}`);
          if (!held) {
            throw new StoreError(
              StoreErrorCode.closed,
              `the checkpoint image of ${path} was released (read after its callback settled)`,
            );
          }
          const into = new Uint8Array(length);
          let done = 0;
          try {
            while (done < length) {
              const n = await file.read(into.subarray(done), offset + done, length - done);
              if (n <= 0) break; // end of file: the rest stays zero
              done += n;
            }
          } catch (error) {
            throw new StoreError(
              StoreErrorCode.io,
              `cannot read ${path} at offset ${offset + done}: ${describeError(error)}`,
              { cause: error },
            );
          }
          return into;
        },
      });
    } finally {
      held = false;
      await handle?.close().catch(() => undefined);
      if (this.checkpointRunning === hold) this.checkpointRunning = null;
      release();
    }
  }

  private scheduleCheckpoint(): Promise<CheckpointResult> {
    // A run already started may have chosen its epoch before our caller's
    // commits became durable: queue one more run behind it (shared by all
    // callers that arrive meanwhile).
    if (this.checkpointQueued !== null) return this.checkpointQueued;
    const before = this.checkpointRunning;
    let run!: Promise<CheckpointResult>;
    run = (async () => {
      // Yield first: `run` is assigned before this body touches it.
      await (before ?? Promise.resolve()).catch(() => undefined);
      this.checkpointQueued = null;
      this.checkpointRunning = run;
      try {
        return await this.runCheckpoint();
      } finally {
        if (this.checkpointRunning === run) this.checkpointRunning = null;
      }
    })();
    this.checkpointQueued = run;
    return run;
  }

  private async runCheckpoint(): Promise<CheckpointResult> {
    const control = checkpointControlOf(this.options);
    const started = performance.now();
    try {
      const result = await this.runCheckpointOnce(control, started);
      control?.checkpointed?.({ ...result, error: null });
      return result;
    } catch (error) {
      control?.checkpointed?.({
        checkpointEpoch: this.checkpointEpoch,
        conflict: false,
        pagesWritten: 0,
        bytesWritten: 0,
        durationMs: performance.now() - started,
        error: error instanceof Error ? error : new Error(String(error)),
      });
      throw error;
    }
  }

  private async runCheckpointOnce(
    control: CheckpointControl | undefined,
    started: number,
  ): Promise<CheckpointResult> {
    // Conflict when the serialized path is needed as the checkpoint starts,
    // or became needed while it ran (checked again at the end).
    let conflict = false;
    const checkConflict = (): void => {
      if (conflict || !(control?.serializedPathRequired() ?? false)) return;
      conflict = true;
      this.counters.checkpointConflicts++;
      control?.reportFallback(
        'checkpointConflict',
        `checkpoint of ${this.path} ran while the serialized path was required`,
      );
    };
    checkConflict();
    // Everything acknowledged before this run must be folded: wait until it
    // is published (under its segment name). Never fold an unpublished epoch.
    try {
      await this.waitForAcknowledgedPublished('checkpoint');
    } catch (error) {
      throw new StoreError(
        StoreErrorCode.checkpointFailed,
        `checkpoint of ${this.path} failed: ${describeError(error)}`,
        { cause: error },
      );
    }
    // Read the durable (published) epoch first: every epoch up to it has had
    // its read-back (if any) scheduled already, so draining the chain covers it.
    const durable = this.wal.durableEpoch();
    await this.ingestChain;
    const memoryWanted = (this.options.checkpointSource ?? 'memory') === 'memory';
    const fromMemory = memoryWanted && this.memorySourceOk && this.ingestError === null;
    if (memoryWanted && !fromMemory && !this.conflictReported) {
      // The parallel path did something the checkpoint's index cannot vouch
      // for (a worker's segment not read back, a commit placed in an epoch
      // older than announced): fold from the log, and ask the control plane
      // for the serialized path, where every commit passes through commit().
      this.conflictReported = true;
      conflict = true;
      this.counters.checkpointConflicts++;
      control?.reportFallback(
        'checkpointConflict',
        `checkpoint of ${this.path} cannot fold from its page index (${describeError(this.ingestError ?? 'a commit landed in an epoch older than announced')}): folding from the log`,
      );
    }
    let through = durable;
    if (fromMemory && through !== null) {
      // Commits still on their way into the index constrain the fold: each
      // lands in an epoch >= the append epoch read before it was submitted.
      for (const floor of this.pendingFloors.keys()) {
        if (floor - 1n < through) through = floor - 1n;
      }
    }
    const result: CheckpointResult = {
      checkpointEpoch: this.checkpointEpoch,
      source: fromMemory ? 'memory' : 'log',
      segmentsApplied: 0,
      segmentsDeleted: 0,
      pagesWritten: 0,
      bytesWritten: 0,
      dbSizePages: this.header.dbSizePages,
      conflict,
      durationMs: 0,
      phasesMs: { fold: 0, write: 0, header: 0, delete: 0 },
    };
    if (through === null || through < this.header.nextEpoch) {
      checkConflict();
      result.conflict = conflict;
      result.durationMs = performance.now() - started;
      return result;
    }
    const last = through;
    try {
      let mark = performance.now();
      const lap = (): number => {
        const now = performance.now();
        const ms = now - mark;
        mark = now;
        return ms;
      };
      const entries = (await listSegments(this.path, { fs: this.fs })).filter(
        (e) => e.epoch >= this.header.nextEpoch && e.epoch <= last,
      );
      const state = fromMemory ? this.foldFromMemory(last) : await this.foldFromLog(entries);
      // A memory fold writes each page's newest image, possibly of a commit
      // after `last`: from now on (even if this run fails after writing) the
      // file may hold images up to the newest indexed epoch.
      if (fromMemory) this.raiseFileNewest(this.index.sizeThrough(U64_MAX).lastStamp?.epoch);
      result.phasesMs.fold = lap();
      result.pagesWritten = await applyReplay(this.file, state);
      result.bytesWritten = result.pagesWritten * this.pageSize;
      result.segmentsApplied = entries.length;
      result.phasesMs.write = lap();
      const header: StoreHeader = {
        pageSize: this.pageSize,
        dbSizePages: state.sizePages,
        nextEpoch: last + 1n,
        checkpointCommitSeq: state.lastStamp?.commitSeq ?? this.header.checkpointCommitSeq,
      };
      // The file is durable; now the header, durably — and only after that
      // may the segments go (a crash in between replays them, idempotently).
      await writeStoreHeader(this.path, header, this.fs);
      this.header = header;
      this.index.pruneThrough(last, state.sizePages);
      result.phasesMs.header = lap();
      // Folded segments go back into the log's pool of reusable files (or are unlinked).
      result.segmentsDeleted = await deleteFolded(
        this.path,
        this.fs,
        deletableThrough(last, this.options.retainSegmentsAbove),
        (doomed) => this.wal.recycleSegments(doomed, header.nextEpoch),
      );
      result.phasesMs.delete = lap();
      for (const epoch of [...this.segmentBytes.keys()]) {
        if (epoch <= last) {
          this.logBytes -= this.segmentBytes.get(epoch)!;
          this.segmentBytes.delete(epoch);
        }
      }
      result.checkpointEpoch = last;
      result.dbSizePages = state.sizePages;
    } catch (error) {
      if (error instanceof StoreError && error.code === StoreErrorCode.checkpointFailed)
        throw error;
      throw new StoreError(
        StoreErrorCode.checkpointFailed,
        `checkpoint of ${this.path} failed: ${describeError(error)}`,
        { cause: error },
      );
    }
    checkConflict();
    result.conflict = conflict;
    this.counters.checkpoints++;
    this.counters.checkpointPagesWritten += result.pagesWritten;
    this.counters.checkpointBytesWritten += result.bytesWritten;
    this.counters.segmentsDeleted += result.segmentsDeleted;
    result.durationMs = performance.now() - started;
    return result;
  }

  /**
   * The fold of epochs `<= through` from the index, which holds every durable
   * commit since the last checkpoint. Pages whose latest image is newer than
   * `through` are written with that image: still correct, because their
   * segments stay and a replay after a crash rewrites them.
   */
  private foldFromMemory(through: bigint): ReplayState {
    return foldFromIndex(this.index, through);
  }

  /** The fold of the given segments, read back from disk. */
  private async foldFromLog(entries: readonly SegmentFileEntry[]): Promise<ReplayState> {
    const state = startReplay(this.header.dbSizePages);
    for (const entry of entries) {
      const { header, records } = await readSegment(entry.path, { fs: this.fs });
      if (header.epoch !== entry.epoch) {
        throw new StoreError(
          StoreErrorCode.checkpointFailed,
          `segment ${entry.path} has mismatched epoch: header=${header.epoch}, filename=${entry.epoch}`,
        );
      }
      foldRecords(state, records, this.header.nextEpoch, this.pageSize, entry.path);
    }
    return state;
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
    this.workersAttached = true;
    return { kind: 'pwal-store-worker', pageSize: this.pageSize, lane };
  }

  private raiseFileNewest(epoch: bigint | null | undefined): void {
    if (epoch === null || epoch === undefined) return;
    if (this.fileNewestEpoch === null || epoch > this.fileNewestEpoch) this.fileNewestEpoch = epoch;
  }

  /** A snapshot of the store's counters (and the log's). */
  stats(): LoggableStats<PageStoreStats> {
    return loggableStats({
      pageSize: this.pageSize,
      dbSizePages: this.index.dbSizePages,
      checkpointEpoch: this.checkpointEpoch,
      ...this.counters,
      logBytesSinceCheckpoint: this.logBytes,
      indexPages: this.index.pageCount,
      indexBytes: this.index.byteCount,
      lastCheckpointError: this.lastCheckpointError,
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
      await this.ingestChain;
      if (this.autoCheckpoint !== null) await this.autoCheckpoint;
      if (this.checkpointRunning !== null) await this.checkpointRunning.catch(() => undefined);
      if (options.checkpoint) await this.scheduleCheckpoint();
    } catch (error) {
      failure = error;
    } finally {
      this.removeListener();
      this.removeAckListener();
      this.closed = true;
      await this.file.close().catch((error: unknown) => {
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
    this.segmentBytes.set(info.epoch, info.bytes);
    this.logBytes += info.bytes;
    // Records from lanes other than the in-process ones (worker lanes, and
    // the serialized path that worker fallbacks take) did not pass through
    // commit(): read the durable segment back into the index.
    if (this.needsReadBack(info)) {
      const epoch = info.epoch;
      this.ingestChain = this.ingestChain.then(() => this.ingest(epoch));
    }
    const threshold = this.options.checkpointThresholdBytes ?? DEFAULT_CHECKPOINT_THRESHOLD_BYTES;
    if (
      (this.options.autoCheckpoint ?? true) &&
      !this.closing &&
      this.autoCheckpoint === null &&
      this.logBytes >= threshold
    ) {
      this.counters.autoCheckpoints++;
      this.autoCheckpoint = this.scheduleCheckpoint().then(
        () => {
          this.lastCheckpointError = null;
          this.autoCheckpoint = null;
        },
        (error: unknown) => {
          this.lastCheckpointError = error instanceof Error ? error : new Error(String(error));
          this.autoCheckpoint = null;
        },
      );
    }
  }

  /** True when an epoch's records did not all pass through commit() (read back into the index). */
  private needsReadBack(info: DurableEpochInfo): boolean {
    return this.workersAttached || info.laneIds.some((id) => id >= this.inProcessLanes);
  }

  /**
   * Waits until `acknowledged` (default: the epoch acknowledged now) is
   * published (no wait when it is already, as always with the `storage` and
   * `precreate` sinks).
   * @throws {StoreError} `ERR_STORE_NOT_PUBLISHED` on timeout or log failure.
   */
  private async waitForAcknowledgedPublished(
    purpose: 'read' | 'checkpoint',
    acknowledged = this.wal.acknowledgedEpoch(),
  ): Promise<void> {
    if (acknowledged === null) return;
    const published = this.wal.durableEpoch();
    if (published !== null && published >= acknowledged) return;
    try {
      await this.wal.waitForEpochDurable(acknowledged, PUBLISH_WAIT_TIMEOUT_MS);
    } catch (error) {
      throw new StoreError(
        StoreErrorCode.notPublished,
        `${purpose} of ${this.path}: acknowledged epoch ${acknowledged} was not published: ${describeError(error)}`,
        { cause: error },
      );
    }
  }

  /** Reads a durable segment back into the index (for commits made by workers). Never rejects. */
  private async ingest(epoch: bigint): Promise<void> {
    if (epoch < this.header.nextEpoch) return; // already in the file
    let records: WalRecord[];
    try {
      records = (await readSegment(segmentPath(this.path, epoch), { fs: this.fs })).records;
    } catch (error) {
      // Folded and deleted by a checkpoint meanwhile: the file has it.
      if (epoch < this.header.nextEpoch) return;
      this.ingestError = new StoreError(
        StoreErrorCode.io,
        `cannot read back durable segment of epoch ${epoch}: ${describeError(error)}`,
        { cause: error },
      );
      return;
    }
    try {
      forEachCommit(
        records,
        this.header.nextEpoch,
        this.pageSize,
        segmentPath(this.path, epoch),
        (c) => this.index.apply(c.stamp, c.pages, c),
      );
      this.counters.epochsIngested++;
    } catch (error) {
      this.ingestError = error instanceof Error ? error : new Error(String(error));
    }
  }

  private ensureOpen(): void {
    if (this.closing || this.closed) throw closedError(this.path);
  }
}

/**
 * A replica interrupted while being re-seeded from a snapshot (see
 * `ReplicaStore.reseed`) may have its new file under its old header until a
 * replica open finishes the switch: never open it as a database before that.
 */
async function refuseUnfinishedReseed(path: string, fs: WalFileSystem): Promise<void> {
  const marker = reseedMarkerPath(path);
  try {
    await fs.stat(marker);
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT') return;
    throw new StoreError(StoreErrorCode.io, `cannot stat ${marker}: ${describeError(error)}`, {
      cause: error,
    });
  }
  throw new StoreError(
    StoreErrorCode.replicaState,
    `${path} is a replica whose re-seed from a snapshot was interrupted (${marker} exists): open it with pwal follow (or ReplicaStore.open) first, which finishes it`,
  );
}

function maxOf(a: bigint, b: bigint | null): bigint {
  return b !== null && b > a ? b : a;
}

/** The higher of a caller's floor and the store's own (a non-bigint is passed on for the log to reject). */
function floorOf(given: bigint | undefined, own: bigint): bigint {
  if (typeof given !== 'bigint') return given ?? own;
  return given > own ? given : own;
}

function closedError(path: string): StoreError {
  return new StoreError(StoreErrorCode.closed, `page store ${path} is closed`);
}

/** Opens or creates the database file and its header. */
export async function openDatabaseFile(
  path: string,
  pageSize: number | undefined,
  fs: WalFileSystem,
): Promise<{ file: DatabaseFile; header: StoreHeader }> {
  let header = await readStoreHeader(path, fs);
  const fileBytes = await fileSize(path, fs);
  if (header === null) {
    if (fileBytes !== null && fileBytes > 0) {
      throw new StoreError(
        StoreErrorCode.headerMissing,
        `${path} exists but has no store header (${path}-pwal-store): not a page store database`,
      );
    }
    header = {
      pageSize: pageSize ?? DEFAULT_PAGE_SIZE_BYTES,
      dbSizePages: 0,
      nextEpoch: 0n,
      checkpointCommitSeq: 0n,
    };
    const file = await DatabaseFile.open(path, header.pageSize, fs, true);
    try {
      // Also makes the new database file's directory entry durable (same directory).
      await writeStoreHeader(path, header, fs);
    } catch (error) {
      await file.close().catch(() => undefined);
      throw new StoreError(StoreErrorCode.io, `cannot create ${path}: ${describeError(error)}`, {
        cause: error,
      });
    }
    return { file, header };
  }
  if (pageSize !== undefined && pageSize !== header.pageSize) {
    throw new StoreError(
      StoreErrorCode.pageSizeMismatch,
      `${path} has page size ${header.pageSize}, opened with page size ${pageSize}`,
    );
  }
  if (fileBytes === null && (header.dbSizePages > 0 || header.nextEpoch > 0n)) {
    throw new StoreError(
      StoreErrorCode.headerMissing,
      `${path} is missing, but its store header says it holds ${header.dbSizePages} pages`,
    );
  }
  const file = await DatabaseFile.open(path, header.pageSize, fs, fileBytes === null);
  return { file, header };
}

/** Size of the regular file at `path`, `null` when there is none. @throws {StoreError} `ERR_STORE_IO` otherwise. */
export async function fileSize(path: string, fs: WalFileSystem): Promise<number | null> {
  try {
    const stat = await fs.stat(path);
    if (stat.kind !== 'file') {
      throw new StoreError(StoreErrorCode.io, `${path} is not a regular file`);
    }
    return stat.size;
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT') return null;
    if (error instanceof StoreError) throw error;
    throw new StoreError(StoreErrorCode.io, `cannot stat ${path}: ${describeError(error)}`, {
      cause: error,
    });
  }
}

/**
 * Recovery on open (and `pwal recover`): fold every durable epoch the header
 * has not passed into the file, fsync, move the header, then delete the
 * applied segments. Segments from the header's next epoch on must be
 * contiguous: a missing one fails closed (`ERR_RECOVERY_GAP`) unless
 * `allowEpochGaps`. With `skipCorrupt`, the unusable (or missing) epoch
 * through the newest one on disk are first recorded as given up
 * (`<db>-wal-skipped`, durably), then the segments among them are renamed
 * aside (`…-wal-corrupt-…`): kept for inspection, never replayed, never
 * numbered again, and not a gap for later recoveries.
 */
export async function recoverIntoFile(
  path: string,
  file: DatabaseFile,
  header: StoreHeader,
  fs: WalFileSystem,
  options: {
    skipCorrupt: boolean;
    allowEpochGaps?: boolean;
    retainSegmentsAbove?: () => bigint | null;
  },
): Promise<{
  header: StoreHeader;
  report: StoreRecoveryReport;
  skippedRanges: SkippedEpochRange[];
}> {
  const started = performance.now();
  const recovered = await recoverSegments(path, {
    fs,
    skipCorrupt: options.skipCorrupt,
    allowEpochGaps: options.allowEpochGaps ?? false,
    firstUnappliedEpoch: header.nextEpoch,
    cleanupTemporaryFiles: true,
    // Epochs below the header's are folded (their segments may all be gone):
    // a temporary or pool file still holding one is stale, never adopted.
    floorEpoch: header.nextEpoch,
    floorCommitSeq: header.checkpointCommitSeq,
  });
  const state = startReplay(header.dbSizePages);
  foldRecords(state, recovered.records, header.nextEpoch, header.pageSize, path);
  const report: StoreRecoveryReport = {
    checkpointEpoch: header.nextEpoch === 0n ? null : header.nextEpoch - 1n,
    source: 'log',
    phasesMs: { fold: 0, write: 0, header: 0, delete: 0 },
    segmentsApplied: recovered.epochs.filter((e) => e >= header.nextEpoch).length,
    segmentsDeleted: 0,
    pagesWritten: 0,
    bytesWritten: 0,
    dbSizePages: header.dbSizePages,
    conflict: false,
    durationMs: 0,
    quarantinedSegments: [],
  };
  const fileBytes = await file.size();
  const truncated = truncationError(path, header, fileBytes, state.minSizePages);
  if (truncated !== null) throw truncated;
  const lengthOk = fileBytes === header.dbSizePages * header.pageSize;
  if (state.commits > 0 || !lengthOk) {
    report.pagesWritten = await applyReplay(file, state);
    report.bytesWritten = report.pagesWritten * header.pageSize;
  }
  const newest = recovered.epochs[recovered.epochs.length - 1];
  let next = header;
  if (newest !== undefined && newest >= header.nextEpoch) {
    next = {
      pageSize: header.pageSize,
      dbSizePages: state.sizePages,
      nextEpoch: newest + 1n,
      checkpointCommitSeq: state.lastStamp?.commitSeq ?? header.checkpointCommitSeq,
    };
    await writeStoreHeader(path, next, fs);
    report.checkpointEpoch = newest;
    report.dbSizePages = state.sizePages;
  }
  let skippedRanges = recovered.skippedRanges;
  if (recovered.rangeToSkip !== null) {
    // Durable before anything is renamed aside or written above it: from now
    // on these epochs (and their commit sequences) are never used again.
    const range = recovered.rangeToSkip;
    if (range.commitSeqCeiling < header.checkpointCommitSeq)
      range.commitSeqCeiling = header.checkpointCommitSeq;
    skippedRanges = await recordSkippedEpochs(path, range, { fs });
  }
  // Given-up segments (this run's and earlier recorded ones still under
  // their names) go aside: never replayed, never folded by a checkpoint.
  const givenUp = [...recovered.partialSegments, ...recovered.skippedSegments];
  for (const partial of givenUp) {
    const aside = partial.replace('-wal-seg-', '-wal-corrupt-');
    const target = `${aside}-${randomBytes(4).toString('hex')}`;
    await fs.rename(partial, target);
    report.quarantinedSegments.push(target);
  }
  if (givenUp.length > 0) await syncSegmentDirectory(path, { fs });
  report.segmentsDeleted = await deleteFolded(
    path,
    fs,
    deletableThrough(next.nextEpoch - 1n, options.retainSegmentsAbove),
  );
  report.durationMs = performance.now() - started;
  return { header: next, report, skippedRanges };
}

/**
 * The highest folded epoch whose segment may be deleted: `folded`, lowered to
 * what retention allows (`-1n`: none, when nothing is replicated yet).
 */
function deletableThrough(folded: bigint, retainSegmentsAbove?: () => bigint | null): bigint {
  if (retainSegmentsAbove === undefined) return folded;
  const replicated = retainSegmentsAbove();
  if (replicated === null) return -1n;
  return replicated < folded ? replicated : folded;
}

/**
 * Deletes the segments of epochs `<= through` (already in the file). The log
 * reopens above the header's next epoch and last folded commit sequence
 * (`firstEpoch` / `firstCommitSeq`), so no segment needs to stay behind to
 * keep it from reusing an epoch. Fsyncs the directory. @returns files deleted.
 */
async function deleteFolded(
  path: string,
  fs: WalFileSystem,
  through: bigint,
  recycle?: (doomed: SegmentFileEntry[]) => Promise<number>,
): Promise<number> {
  if (through < 0n) return 0;
  const all = await listSegments(path, { fs });
  const doomed = all.filter((entry) => entry.epoch <= through);
  if (recycle !== undefined) return recycle(doomed);
  // Unlinks in parallel (freeing a large file's extents takes a while on
  // ext4); one directory fsync then makes them all durable.
  for (let i = 0; i < doomed.length; i += DELETE_PARALLELISM) {
    await Promise.all(
      doomed.slice(i, i + DELETE_PARALLELISM).map((entry) => deleteSegment(entry.path, { fs })),
    );
  }
  if (doomed.length > 0) await syncSegmentDirectory(path, { fs });
  return doomed.length;
}
