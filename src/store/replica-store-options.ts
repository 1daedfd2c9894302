/**
 * What a {@link ReplicaStore} is opened with, installs and reports.
 */
import type { WalFileSystem } from '../storage/fs.js';
import type { ReplicaStore } from './replica-store.js';

/** Page size of a replica created before any page image told it the primary's, in bytes. */
export const REPLICA_FALLBACK_PAGE_SIZE_BYTES = 4096;
/** Longest wait of a read for the replica to reach a snapshot's consistent epoch. */
export const REPLICA_CONSISTENT_WAIT_MS = 30_000;

/** Options of {@link ReplicaStore.open}. */
export interface ReplicaStoreOptions {
  /**
   * The primary's page size. Default: the replica's own (from its header),
   * else learned from the first page image applied or the snapshot installed.
   */
  pageSize?: number;
  fs?: WalFileSystem;
  /** How long open waits for another holder of the database's lock, in ms (default 0). */
  lockTimeoutMs?: number;
}

/** What a snapshot installed into an empty replica holds. */
export interface ReplicaSnapshotImage {
  /** The database state through this epoch, inclusive. */
  epoch: bigint;
  pageSize: number;
  dbSizePages: number;
  /** Last commit sequence folded into the image. */
  commitSeq: bigint;
  /**
   * The image may hold pages of epochs up to this one (a page store's memory
   * checkpoint writes each page's newest image): reads wait until the
   * replica has applied it, the first epoch whose state it shows exactly.
   */
  consistentEpoch?: bigint | null;
}

/** Counters of a {@link ReplicaStore}. */
export interface ReplicaStoreStats {
  pageSize: number | null;
  dbSizePages: number;
  appliedEpoch: bigint | null;
  durableEpoch: bigint | null;
  epochsApplied: number;
  /** Epochs offered again at or below the applied one (after a restart), ignored. */
  epochsSkipped: number;
  commitsApplied: number;
  flushes: number;
  pagesFlushed: number;
  snapshotsInstalled: number;
  /** Times the whole content was replaced by a newer snapshot ({@link ReplicaStore.reseed}). */
  reseeds: number;
  /** Pages applied and not yet flushed into the database file. */
  pendingPages: number;
  pendingBytes: number;
}
