/**
 * A {@link ParallelWal} whose durable epochs are shipped to a NATS JetStream
 * stream, with a per-commit choice of durability:
 *
 * - `local` (default): the commit resolves when its epoch is durable on the
 *   local disk; shipping happens asynchronously in the background.
 * - `replicated`: the commit resolves only when the cluster acknowledged its
 *   epoch (with a stream of 3 replicas: a majority stored it). If that does
 *   not happen within the commit's timeout it rejects with
 *   {@link ReplicationTimeoutError} (`ERR_REPLICATION_TIMEOUT`) — never a
 *   silent downgrade; the error says the epoch is durable locally.
 *
 * The engine is not modified: the replicator listens on the engine's
 * `onDurable` hook. An unreachable cluster never blocks local commits.
 */
import type {
  CommitResult,
  ParallelWalBatch,
  ParallelWalConfig,
  ParallelWalStats,
} from '../engine/wal.js';
import { ParallelWal } from '../engine/wal.js';
import { type LoggableStats, loggableStats } from '../stats-json.js';
import { ReplicationError, ReplicationErrorCode } from './errors.js';
import { requireNatsPeers } from './nats/client.js';
import { Replicator } from './replicator.js';
import {
  type ReplicatorOptions,
  type ReplicatorStats,
  replicationTimeoutMsDefault,
  savedReplicatedEpoch,
} from './replicator-options.js';

/** How far a commit must get before it resolves. */
export type CommitDurability = 'local' | 'replicated';

/** Per-commit options of {@link ReplicatedWal.commit}. */
export interface ReplicatedCommitOptions {
  /** Default: the log's `defaultDurability` (itself `local` by default). */
  durability?: CommitDurability;
  /** Wait for the cluster's acknowledgement after local durability, ms (default 10 s). */
  timeoutMs?: number;
}

/** What a commit through {@link ReplicatedWal} reports. */
export interface ReplicatedCommitResult extends CommitResult {
  /** True when the cluster acknowledged the epoch before the commit resolved. */
  replicated: boolean;
}

/** Configuration of {@link ReplicatedWal.open}. */
export interface ReplicatedWalConfig extends ParallelWalConfig {
  /** Where and how to ship epochs (`dbPath`, `fs` and the durable epoch come from the log). */
  replication: Omit<ReplicatorOptions, 'dbPath' | 'fs' | 'initialDurableEpoch'>;
  /** Durability of commits that do not say (default `local`). */
  defaultDurability?: CommitDurability;
  /** Default wait of replicated commits, ms (default 10 s). */
  replicationTimeoutMs?: number;
  /** At close, wait at most this long for shipping to catch up (default 5 s; 0: do not wait). */
  closeFlushTimeoutMs?: number;
}

/** Statistics of both halves. */
export interface ReplicatedWalStats {
  wal: ParallelWalStats;
  replication: ReplicatorStats;
}

/** Default bound of the catch-up wait in {@link ReplicatedWal.close}. */
export const closeFlushTimeoutMsDefault = 5_000;

/** A local parallel WAL plus a replicator; see the module comment. */
export class ReplicatedWal implements AsyncDisposable {
  private readonly unsubscribe: () => void;
  private closed = false;

  private constructor(
    /** The local log (for everything but commit durability: workers, stats, ticker). */
    readonly wal: ParallelWal,
    /** The replicator (watermarks, `replicatedEpoch()` for checkpoint protection). */
    readonly replicator: Replicator,
    private readonly defaultDurability: CommitDurability,
    private readonly replicationTimeoutMs: number,
    private readonly closeFlushTimeoutMs: number,
  ) {
    this.unsubscribe = wal.onDurable((info) =>
      replicator.notifyDurable(info.epoch, info.segmentWritten),
    );
  }

  /**
   * Opens the local log, then the replicator (which connects in the
   * background: an unreachable cluster does not fail the open). The log
   * numbers new epochs above the replicated watermark saved beside the
   * database (`firstEpoch` floor `replicatedEpoch + 1`), so segments deleted
   * after they were replicated (a checkpoint) never make it reuse an epoch.
   */
  static async open(dbPath: string, config: ReplicatedWalConfig): Promise<ReplicatedWal> {
    // A missing NATS package fails before the log is opened.
    await requireNatsPeers();
    const replicatedAtOpen = await savedReplicatedEpoch({
      ...config.replication,
      dbPath,
      fs: config.fs,
    });
    const floor = replicatedAtOpen === null ? 0n : replicatedAtOpen + 1n;
    const wal = await ParallelWal.open(dbPath, {
      ...config,
      // A non-bigint is passed on for the log to reject.
      firstEpoch:
        typeof config.firstEpoch !== 'bigint'
          ? (config.firstEpoch ?? floor)
          : config.firstEpoch > floor
            ? config.firstEpoch
            : floor,
    });
    let replicator: Replicator | null = null;
    try {
      replicator = await Replicator.open({
        ...config.replication,
        dbPath,
        fs: config.fs,
        initialDurableEpoch: wal.durableEpoch() ?? undefined,
      });
      // The floor above makes this impossible: an invariant check.
      const replicated = replicator.replicatedEpoch();
      if (replicated !== null && wal.currentEpoch <= replicated) {
        throw new ReplicationError(
          ReplicationErrorCode.conflict,
          `the log would write epoch ${wal.currentEpoch} but epochs up to ${replicated} are already replicated`,
        );
      }
      return new ReplicatedWal(
        wal,
        replicator,
        config.defaultDurability ?? 'local',
        config.replicationTimeoutMs ?? replicationTimeoutMsDefault,
        config.closeFlushTimeoutMs ?? closeFlushTimeoutMsDefault,
      );
    } catch (error) {
      await replicator?.close();
      await wal.close();
      throw error;
    }
  }

  /**
   * Commits `batch`. Resolves when it is durable locally (`local`) or
   * acknowledged by the cluster (`replicated`).
   * @throws everything {@link ParallelWal.commit} throws; for `replicated`
   * also {@link ReplicationTimeoutError} (`ERR_REPLICATION_TIMEOUT`) or the
   * replicator's failure (`ERR_REPLICATION_CONFLICT`, …).
   */
  async commit(
    batch: ParallelWalBatch,
    options: ReplicatedCommitOptions = {},
  ): Promise<ReplicatedCommitResult> {
    const durability = options.durability ?? this.defaultDurability;
    const result = await this.wal.commit(batch);
    if (durability === 'local') {
      const replicated = this.replicator.replicatedEpoch();
      return { ...result, replicated: replicated !== null && result.epoch <= replicated };
    }
    await this.replicator.waitForReplicated(
      result.epoch,
      options.timeoutMs ?? this.replicationTimeoutMs,
    );
    return { ...result, replicated: true };
  }

  /**
   * Highest epoch acknowledged by the cluster (`null`: none). A store deletes
   * no segment above it.
   */
  replicatedEpoch(): bigint | null {
    return this.replicator.replicatedEpoch();
  }

  /** Both halves' statistics. */
  stats(): LoggableStats<ReplicatedWalStats> {
    return loggableStats({ wal: this.wal.stats(), replication: this.replicator.stats() });
  }

  /**
   * Closes the log (flushing it), waits a bounded time for shipping to catch
   * up, then closes the replicator. Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.wal.close();
    } finally {
      this.unsubscribe();
      if (this.closeFlushTimeoutMs > 0) {
        await this.replicator.flush(this.closeFlushTimeoutMs).catch(() => {
          // Not caught up in time: the next open ships the rest.
        });
      }
      await this.replicator.close();
    }
  }

  /** `await using` support. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
