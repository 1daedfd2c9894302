/**
 * The page store's public option, result and statistics types, and the
 * defaults they name. The behaviour lives in `page-store.ts` (commit, read,
 * close) and the modules it composes: `checkpoint.ts`, `read-back.ts`,
 * `store-open.ts`, `store-recovery.ts`.
 */
import type { ParallelWalConfig, ParallelWalStats } from '../engine/wal.js';
import type { WorkerLaneHandle } from '../engine/worker-layout.js';
import type { FsyncPolicy } from '../storage/segment-files.js';

/**
 * Longest wait, ms, for an acknowledged epoch to be published (segment under
 * its name): by a checkpoint before it folds, and by a read before it looks
 * up a page when commits that bypassed `commit()` (worker writers, the
 * serialized path) await read-back. Publication normally follows the
 * acknowledgement within a directory fsync.
 */
export const PUBLISH_WAIT_TIMEOUT_MS = 30_000;

/** Default of {@link PageStoreOptions.checkpointThresholdBytes}: 64 MiB of segments. */
export const checkpointThresholdBytesDefault = 64 * 1024 * 1024;

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

/** The checkpoint counters a store reports in its stats. */
export interface CheckpointCounters {
  checkpoints: number;
  autoCheckpoints: number;
  checkpointConflicts: number;
  checkpointPagesWritten: number;
  checkpointBytesWritten: number;
  segmentsDeleted: number;
}

/** A snapshot of the store's counters. */
export interface PageStoreStats extends CheckpointCounters {
  pageSize: number;
  dbSizePages: number;
  /** Last epoch folded into the database file (`null`: none). */
  checkpointEpoch: bigint | null;
  commits: number;
  pagesCommitted: number;
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

/** Options of {@link PageStore.close}. */
export interface StoreCloseOptions {
  /** Fold the whole log into the database file before closing (default false). */
  checkpoint?: boolean;
}
