/**
 * Public types of a {@link ParallelWal}'s commit path: the batches writers
 * submit, what a commit reports, and what an epoch announces when durable.
 */

import type { TxnToken } from '../format/types.js';
import type { FsyncPolicy } from '../storage/segment-files.js';
import type { ParallelWal } from './wal.js';

/** One page of a commit batch. */
export interface ParallelWalFrame {
  /** Page number, u32 >= 1. */
  pageNumber: number;
  /** The page's new content (<= 65536 bytes). */
  pageData: Uint8Array;
  /**
   * Database size in pages after the commit (as SQLite's WAL frame header
   * carries it on the commit frame; 0 on other frames). **Not persisted:**
   * the segment format has no field for it, so the log keeps it in memory
   * only and reports it in the commit result and in {@link DurableEpochInfo};
   * recovered records carry none. The layer above owns it and must write it
   * into its own commits (the page store's size record, docs/format.md
   * section 5.2), or in its page 1 header as SQLite does.
   */
  dbSizeIfCommit: number;
}

/** One transaction's pages. */
export interface ParallelWalBatch {
  txnToken: TxnToken;
  /**
   * Commit sequence (u64, below 2^64 - 1). Omit it to let the log assign
   * the next one. A caller-given sequence must be above every sequence placed
   * so far, by any writer (worker lanes included); one that is not is
   * rejected with `ERR_INVALID_ARGUMENT` and nothing is written, because
   * recovery replays an epoch in sequence order and must agree with the
   * order commits were acknowledged in. The check is atomic with placement.
   */
  commitSeq?: bigint;
  frames: readonly ParallelWalFrame[];
}

/** What a durable commit reports. */
export interface CommitResult {
  /** The epoch whose segment holds the commit. */
  epoch: bigint;
  commitSeq: bigint;
  /**
   * What the acknowledgement guarantees: `full`/`normal` — the segment's
   * bytes were fdatasynced into a file whose directory entry is durable
   * (with the `earlyAck` sink a temporary name until it is published;
   * recovery adopts it); `off` — it was handed to the OS only (lost on power
   * failure, survives a process crash).
   */
  durability: FsyncPolicy;
  /** The last frame's `dbSizeIfCommit` (from memory: the log does not persist it). */
  dbSizePages: number;
  /** True when the batch took the serialized path (its lane refused it). */
  serialized: boolean;
}

/** Announced to {@link ParallelWal.onDurable} listeners, in epoch order. */
export interface DurableEpochInfo {
  epoch: bigint;
  /**
   * Always `true` now: every sealed epoch gets a segment file, header-only
   * when all its records were aborted (`recordCount` 0). Kept for listeners
   * written when empty epochs wrote nothing.
   */
  segmentWritten: boolean;
  recordCount: number;
  /** Bytes written (header included); 0 when no segment was written. */
  bytes: number;
  laneIds: readonly number[];
  recordsPerCore: readonly number[];
  commitSeqLo: bigint | null;
  commitSeqHi: bigint | null;
  /** dbSizeIfCommit of the epoch's highest in-process commit, if known (memory only, never recovered). */
  dbSizePages: number | null;
}

/** A writer context with its own lane; see {@link ParallelWal.openWriter}. */
export interface WalWriter extends AsyncDisposable {
  /** Stable for the writer's lifetime, `< slotCount`. */
  readonly laneId: number;
  /** Like {@link ParallelWal.commit}, through this writer's lane. */
  commit(batch: ParallelWalBatch): Promise<CommitResult>;
  /** Gives the lane back (other writers may reuse it). Idempotent. */
  close(): Promise<void>;
}
