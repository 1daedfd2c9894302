/**
 * `ParallelWal`: the coordinator of the parallel write-ahead log
 * (docs/design.md#write-path). Writers
 * append page batches into lanes; the flusher (`flusher.ts`) seals an epoch
 * and writes it as one segment. With the `earlyAck` sink (the default for
 * format version 2) the segment goes into a pre-created temporary file whose
 * name is already durable; after its fdatasync the epoch is ACKNOWLEDGED
 * (commits resolve, `acknowledgedEpoch()`, `onAcknowledged`), and the rename
 * + directory fsync PUBLISH it in the background, in epoch order
 * (`durableEpoch()`, `onDurable`, `waitForEpochDurable`). With `storage` (the
 * default for version 1) or `precreate` both happen at once, after the
 * directory fsync.
 *
 * Failure is final for this instance: any error while writing, syncing or
 * renaming a segment leaves its epoch not durable and first in line (a
 * failed background publication leaves acknowledged epochs acknowledged:
 * their data is durable and recovery adopts it), puts
 * the log in the failed state, and rejects every waiting and later commit
 * with `ERR_WAL_FAILED` (carrying the cause). Reopening recovers from disk.
 *
 * Configuration lives in `wal-config.ts`, the public commit types in
 * `wal-types.ts`, the figures in `wal-stats.ts`; opening in `wal-open.ts`,
 * the commit path (placement, waiting for room and for the acknowledgement)
 * in `placement.ts`, the lanes in `wal-lanes.ts`.
 */

import { threadId } from 'node:worker_threads';
import { WalArgumentError } from '../errors.js';
import { type LoggableStats, loggableStats } from '../stats-json.js';
import type { WalFileSystem } from '../storage/fs.js';
import type { LockHandle } from '../storage/lockfile.js';
import type { SegmentFileEntry } from '../storage/segment-files.js';
import { AckWatermark } from './ack-watermark.js';
import type { EngineControl } from './control-hooks.js';
import { assertTimeoutMs, EpochCoordinator, withTimeout } from './epochs.js';
import {
  AlreadyRunningError,
  BatchTooLargeError,
  DurableTimeoutError,
  WalClosedError,
  WalFailedError,
} from './errors.js';
import { Flusher } from './flusher.js';
import { createDurableWriteExecutor, type DurableWriteExecutor } from './io-executor.js';
import type { EngineLane } from './lane-types.js';
import { WalListeners } from './listeners.js';
import { BatchPlacer, batchRouteBytes } from './placement.js';
import { PoolSegmentSink } from './pool-sink.js';
import { createSegmentSink, recycleFoldedSegments, type SegmentSink } from './segment-writer.js';
import type { ParallelWalConfig, ResolvedParallelWalConfig } from './wal-config.js';
import { LaneTable } from './wal-lanes.js';
import { type OpenedLog, openLog } from './wal-open.js';
import {
  CommitLatencyHistogram,
  createWalCounters,
  type ParallelWalStats,
  walStats,
} from './wal-stats.js';
import type { CommitResult, DurableEpochInfo, ParallelWalBatch, WalWriter } from './wal-types.js';
import { WorkerLanePool } from './worker-lane-pool.js';
import { createCommitSeqCounter, type WorkerLaneHandle } from './worker-layout.js';

export {
  checkBatch,
  epochBytesMaxDefault,
  epochIntervalMsDefault,
  epochIntervalMsMax,
  laneIdMax,
  type ParallelWalConfig,
  type ResolvedParallelWalConfig,
  resolveParallelWalConfig,
  SERIALIZED_LANE_ID,
  serializedCapacityBytesDefault,
  slotCountMax,
} from './wal-config.js';
export type { FlushPhases, LatencySummary, ParallelWalStats } from './wal-stats.js';
export type {
  CommitResult,
  DurableEpochInfo,
  ParallelWalBatch,
  ParallelWalFrame,
  WalWriter,
} from './wal-types.js';

/** Most flush cycles `close()` runs to drain writers that keep appending. */
const closeFlushCyclesMax = 64;

/** A coordinator of the parallel WAL of one database. Create with {@link ParallelWal.open}. */
export class ParallelWal implements AsyncDisposable {
  /** The database path the segments sit beside. */
  readonly dbPath: string;
  /** The validated configuration. */
  readonly config: ResolvedParallelWalConfig;

  private readonly lock: LockHandle | null;
  private readonly sink: SegmentSink;
  /** Where the sink's write + fdatasync run (the I/O thread for the real file system). */
  private readonly executor: DurableWriteExecutor;
  private readonly fs: WalFileSystem;
  private readonly coordinator: EpochCoordinator;
  private readonly lanes: LaneTable;
  /**
   * Next commit sequence number, in shared memory: worker writers draw from
   * the same counter (under their lane lock), so numbers are unique and
   * increasing across threads and agree with epoch order.
   */
  private readonly commitSeqCounter: BigInt64Array;
  /** Worker lanes, created by the first {@link ParallelWal.workerHandle}. */
  private workerLanes: WorkerLanePool | null = null;

  private readonly flusher: Flusher;
  private readonly placer: BatchPlacer;

  private failure: WalFailedError | null = null;
  /** Acknowledged epochs (data durable); `coordinator.durableEpoch` is the published one. */
  private readonly acks: AckWatermark;
  /** Temporary files adopted as segments when this log opened. */
  private readonly adoptedAtOpen: number;
  private closing = false;
  private closed = false;
  private closePromise: Promise<void> | null = null;

  private readonly listeners = new WalListeners();
  private readonly histogram = new CommitLatencyHistogram();
  private readonly counters = createWalCounters();
  // Control plane (null: none).
  private readonly control: EngineControl | null;

  private constructor(opened: OpenedLog) {
    const { dbPath, config, fs, plan, control } = opened;
    this.dbPath = dbPath;
    this.fs = fs;
    this.control = control;
    this.config = config;
    this.lock = opened.lock;
    this.adoptedAtOpen = plan.adopted;
    // The storage sink writes through the storage layer's own calls: no thread for it.
    this.executor = createDurableWriteExecutor(
      fs,
      config.ioThread && config.segmentSink !== 'storage',
      config.callerWriteBytesMax,
    );
    this.sink = createSegmentSink(config.segmentSink, dbPath, fs, config.fsync, this.executor, {
      poolSize: config.segmentPoolSize,
      startEpoch: plan.startEpoch,
    });
    this.acks = new AckWatermark(plan.durableEpoch);
    this.commitSeqCounter = createCommitSeqCounter(plan.nextCommitSeq);
    this.coordinator = new EpochCoordinator({
      startEpoch: plan.startEpoch,
      durableEpoch: plan.durableEpoch,
      formatVersion: config.formatVersion,
    });
    this.lanes = new LaneTable(config, this.coordinator, plan.startEpoch);
    this.flusher = new Flusher({
      config,
      coordinator: this.coordinator,
      sink: this.sink,
      acks: this.acks,
      control,
      counters: this.counters,
      inProcessLanes: this.lanes.inProcess,
      host: {
        failure: () => this.failure,
        isClosing: () => this.closing,
        isClosed: () => this.closed,
        enterFailed: (cause, epoch) => this.enterFailed(cause, epoch),
        acknowledged: (epoch, info) => this.listeners.acknowledged(epoch, info),
        published: (info) => this.listeners.published(info),
        afterCycle: () => {
          this.sweepReleasedLanes();
          this.signalProgress();
        },
      },
    });
    this.placer = new BatchPlacer({
      serialLane: this.lanes.serial,
      commitSeqCounter: this.commitSeqCounter,
      control,
      counters: this.counters,
      flusher: this.flusher,
      acks: this.acks,
      histogram: this.histogram,
      durability: config.fsync,
      ensureOpen: () => this.ensureOpen(),
    });
  }

  /**
   * Opens (or creates) the log of `dbPath`: takes the writer lock, removes
   * temporary files of interrupted writes, validates every existing segment
   * (fail closed unless `skipCorrupt`), and continues numbering after the
   * newest segment and the highest commit sequence found, or at
   * `firstEpoch` / `firstCommitSeq` when those are higher. It never
   * overwrites or deletes a segment it did not write.
   * @throws {WalArgumentError} for a bad configuration.
   * @throws {SegmentCorruptError} / {WalIoError} / `LockError` from the storage layer.
   */
  static async open(dbPath: string, config: ParallelWalConfig = {}): Promise<ParallelWal> {
    return new ParallelWal(await openLog(dbPath, config));
  }

  /** The published epoch. */
  get currentEpoch(): bigint {
    return this.coordinator.currentEpoch;
  }

  /** The epoch new appends are tagged with. */
  get appendEpoch(): bigint {
    return this.coordinator.appendEpoch;
  }

  /**
   * Highest durable epoch: published, i.e. its segment is under its segment
   * name and that name is durable (`null`: none yet, including none on disk
   * at open). What `onDurable` listeners, the store and replication rely on.
   */
  durableEpoch(): bigint | null {
    return this.coordinator.durableEpoch;
  }

  /**
   * Highest acknowledged epoch: its data is durable and recovery finds it
   * (with the `earlyAck` sink possibly still under a temporary name, which
   * recovery adopts). Commits resolve here. Never below {@link ParallelWal.durableEpoch}.
   */
  acknowledgedEpoch(): bigint | null {
    return this.acks.epoch;
  }

  /** True once the log failed (see {@link WalFailedError}). */
  get isFailed(): boolean {
    return this.failure !== null;
  }

  /** The lane of the calling thread: `threadId % slotCount`, stable per thread. */
  threadSlot(): number {
    return threadId % this.activeLanes();
  }

  /** Lanes writers are spread over: the control plane's lane budget, within 1 ..= slotCount. */
  private activeLanes(): number {
    const budget = this.control?.laneBudget?.();
    if (budget === undefined || !Number.isInteger(budget)) return this.config.slotCount;
    return Math.min(this.config.slotCount, Math.max(1, budget));
  }

  /**
   * Appends `batch` to the calling thread's lane (or, if it refuses, to the
   * serialized path) and returns the epoch it landed in. Not durable yet:
   * see {@link ParallelWal.waitForEpochDurable} or use {@link ParallelWal.commit}.
   * @throws {WalFailedError} / {WalClosedError}; {@link BatchTooLargeError} when
   * even the serialized path cannot take it right now.
   */
  submitBatch(batch: ParallelWalBatch): bigint {
    const placement = this.placer.place(batch, this.lanes.inProcess[this.threadSlot()]!);
    if (placement === null) {
      throw new BatchTooLargeError(
        batchRouteBytes(batch),
        this.lanes.serial.bufferCapacityBytes - this.lanes.serial.unflushedBytes(),
      );
    }
    return placement.epoch;
  }

  /**
   * Resolves when `epoch` is durable in the sense of {@link ParallelWal.durableEpoch}:
   * PUBLISHED, its segment (if any) under its segment name and that name
   * durable. With the `earlyAck` sink this comes after the acknowledgement
   * (commits resolve at {@link ParallelWal.acknowledgedEpoch}); wait here
   * before listing or reading segment files of acknowledged epochs.
   * @throws {DurableTimeoutError} after `timeoutMs`; {@link WalFailedError} if the log fails.
   */
  waitForEpochDurable(epoch: bigint, timeoutMs: number): Promise<void> {
    if (typeof epoch !== 'bigint')
      return Promise.reject(new WalArgumentError('epoch must be a bigint'));
    try {
      assertTimeoutMs(timeoutMs);
    } catch (error) {
      return Promise.reject(error);
    }
    // Publish acknowledged epochs now rather than after the sink's batching delay.
    this.sink.publishNow?.();
    return this.coordinator.waitForEpochDurable(epoch, timeoutMs);
  }

  /**
   * Commits `batch` through the calling thread's lane and resolves once the
   * epoch holding it is durable. A lane that refuses the batch is not an
   * error: it takes the serialized path (counted in `stats().fallbacks`).
   * @throws {WalFailedError} if the log failed; {@link WalClosedError} if closed;
   * `InvalidRecordError` / {@link WalArgumentError} for a malformed batch.
   */
  commit(batch: ParallelWalBatch): Promise<CommitResult> {
    return this.placer.commit(batch, this.lanes.inProcess[this.threadSlot()]!);
  }

  /**
   * Commits `batch` on the serialized path directly (for batches a worker's
   * shared lane could not place). Waits for room when the path is full.
   */
  commitSerialized(batch: ParallelWalBatch): Promise<CommitResult> {
    return this.placer.commit(batch, null);
  }

  // ------------------------------------------------- worker writers (worker.ts)

  /**
   * A lane for a writer in a `worker_thread`: post the value to the worker
   * with its port in the transfer list
   * (`worker.postMessage(h, [h.port])` or `new Worker(file, { workerData: h,
   * transferList: [h.port] })`); inside, `attachWriter(h)` from
   * the package root gives `commit(batch)` with the same semantics as
   * {@link ParallelWal.commit}. The lane is released (and later reused) when
   * the writer closes or its worker exits.
   * @throws {WalFailedError} / {@link WalClosedError} like `commit`.
   */
  workerHandle(): WorkerLaneHandle {
    this.ensureOpen();
    if (this.workerLanes === null) {
      const pool = new WorkerLanePool(this, {
        bufferCapacityBytes: this.config.bufferCapacityBytes,
        formatVersion: this.config.formatVersion,
        durability: this.config.fsync,
        // Workers' commits resolve at the acknowledgement, like in-process ones.
        durableEpoch: this.acks.epoch,
        commitSeqCounter: this.commitSeqCounter,
      });
      this.listeners.onAcknowledged((epoch) => pool.markDurable(epoch));
      this.onFailed((error) => pool.fail(error));
      this.workerLanes = pool;
    }
    return this.workerLanes.createHandle();
  }

  // ------------------------------------------------- end of worker writers

  /** Gives a writer context its own lane (the least used in-process lane). */
  openWriter(): WalWriter {
    this.ensureOpen();
    const { lane, release } = this.lanes.takeWriterLane(this.activeLanes());
    let open = true;
    const close = async (): Promise<void> => {
      if (!open) return;
      open = false;
      release();
    };
    return {
      laneId: lane.laneId,
      commit: (batch) =>
        open
          ? this.placer.commit(batch, lane)
          : Promise.reject(new WalClosedError('writer is closed')),
      close,
      [Symbol.asyncDispose]: close,
    };
  }

  /**
   * Registers an extra lane (e.g. a worker's shared-memory lane). `create`
   * receives the lane id to use and the epoch appends must be tagged with
   * until the engine calls `advance`. The lane is flushed like every other.
   * @returns the lane `create` built.
   * @throws {NoFreeLaneError} when every id up to `laneIdMax` is taken.
   */
  registerLane<L extends EngineLane>(create: (laneId: number, startEpoch: bigint) => L): L {
    this.ensureOpen();
    return this.lanes.register(create);
  }

  /**
   * Gives back a lane from {@link ParallelWal.registerLane}. Resolves once
   * everything it held is durable (or abandoned because the log failed or
   * closed) and its id is free for reuse.
   */
  releaseLane(laneId: number): Promise<void> {
    const pending = this.lanes.release(laneId);
    if (pending === null) return Promise.resolve();
    this.sweepReleasedLanes();
    if (this.lanes.isReleasing(laneId)) this.flusher.kick();
    return pending;
  }

  /** Tells the flusher that an external lane received records (from another thread). */
  notifyAppend(): void {
    this.flusher.kick(true);
  }

  /**
   * Calls `listener` after each epoch becomes durable, in epoch order (empty
   * epochs included): published, its segment readable under its segment name
   * (an epoch is acknowledged first, see {@link ParallelWal.onAcknowledged}).
   * @returns a function that removes the listener.
   */
  onDurable(listener: (info: DurableEpochInfo) => void): () => void {
    return this.listeners.onDurable(listener);
  }

  /**
   * Calls `listener` with each epoch once it is acknowledged (data durable),
   * in epoch order, with what its publication will announce (`info`, the same
   * object `onDurable` receives later; its segment may still be under a
   * temporary name until then).
   * @returns a function that removes the listener.
   */
  onAcknowledged(listener: (epoch: bigint, info: DurableEpochInfo) => void): () => void {
    return this.listeners.onAcknowledged(listener);
  }

  /**
   * Calls `listener` once if the log fails (immediately if it already has).
   * @returns a function that removes the listener.
   */
  onFailed(listener: (error: WalFailedError) => void): () => void {
    return this.listeners.onFailed(listener, this.failure);
  }

  /**
   * Starts the ticker: every `epochIntervalMs` it advances the epoch and
   * flushes whatever was appended (an idle tick seals nothing: epoch numbers
   * are never left without a segment). Aborting `signal` stops it like {@link ParallelWal.stop}.
   * @throws {AlreadyRunningError} (`coordinator already running`) if it runs.
   */
  start(signal?: AbortSignal): void {
    if (this.flusher.running) throw new AlreadyRunningError();
    this.ensureOpen();
    this.flusher.startTicker(signal);
  }

  /** Stops the ticker and waits until its loop has finished. Idempotent. */
  async stop(): Promise<void> {
    await this.flusher.stopTicker();
  }

  /** True while the ticker runs. */
  isRunning(): boolean {
    return this.flusher.running;
  }

  /**
   * Advances the epoch and writes everything sealed, now. Resolves with the
   * new epoch once the sealed epoch is durable. With nothing appended the
   * epoch does not move (it would be an epoch without a segment): it
   * resolves with the open epoch once everything before it is durable.
   * @throws {WalFailedError} (message `write_segment(E) failed: …`) when a
   * segment write fails; {@link DurableTimeoutError} after `timeoutMs`.
   */
  async advanceAndFlush(timeoutMs: number): Promise<bigint> {
    assertTimeoutMs(timeoutMs);
    this.ensureOpen();
    // Resolves once the sealed epoch is published (segment under its name).
    const cycle = this.flusher.enqueueCycle().then(async (outcome) => {
      // Nothing sealed ever (a fresh, idle log): nothing to wait for.
      if (outcome.ok && outcome.newEpoch > 0n) {
        this.sink.publishNow?.();
        await this.coordinator.whenDurable(outcome.newEpoch - 1n);
      }
      return outcome;
    });
    const outcome = await withTimeout(
      cycle,
      timeoutMs,
      () => new DurableTimeoutError(this.appendEpoch, timeoutMs),
    );
    if (!outcome.ok) throw outcome.error;
    return outcome.newEpoch;
  }

  /**
   * Gives folded segment files back to the log: with the `pool` sink they
   * are renamed into the pool (up to its bound) to be written over in
   * place, otherwise unlinked; one directory fsync makes it durable. Call
   * only for segments whose pages are durable elsewhere (a checkpoint), and
   * with `floor` = the first epoch not folded: every entry must be below it.
   * @returns the number of files taken or unlinked.
   * @throws {WalArgumentError} for an entry at or above `floor`; {@link WalIoError}.
   */
  recycleSegments(entries: readonly SegmentFileEntry[], floor: bigint): Promise<number> {
    return recycleFoldedSegments(this.sink, entries, floor, {
      dbPath: this.dbPath,
      fs: this.fs,
      open: !this.closing && this.failure === null,
    });
  }

  /**
   * A snapshot of the counters. `JSON.stringify(wal.stats())` works: its
   * `toJSON` writes bigints as decimal strings.
   */
  stats(): LoggableStats<ParallelWalStats> {
    return loggableStats(
      walStats({
        coordinator: this.coordinator,
        acks: this.acks,
        flusher: this.flusher,
        sink: this.sink,
        executor: this.executor,
        counters: this.counters,
        histogram: this.histogram,
        segmentPool: this.sink instanceof PoolSegmentSink ? this.sink.poolStats() : null,
        workerLanes: this.workerLanes,
        control: this.control,
        adoptedTemporaryFiles: this.adoptedAtOpen,
        listenerErrors: this.listeners.errors,
        lanesInUse: this.lanes.inUse(),
        failed: this.failure !== null,
        closed: this.closed,
      }),
    );
  }

  /** Clears the commit-latency histogram (benchmarks measure phases separately). */
  resetLatencyHistogram(): void {
    this.histogram.reset();
  }

  /**
   * Flushes everything appended, waits until it is durable, stops the
   * ticker and releases the lanes and the writer lock. Commits racing with
   * close are either acknowledged durable or rejected with
   * {@link WalClosedError}; none is left pending. Idempotent. Resolves (does
   * not throw) when the log had failed: its commits were already rejected.
   */
  close(): Promise<void> {
    this.closePromise ??= this.closeOnce();
    return this.closePromise;
  }

  /** Same as {@link ParallelWal.close}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // ---------------------------------------------------------------- writers

  private ensureOpen(): void {
    if (this.failure !== null) throw this.failure;
    if (this.closing) throw new WalClosedError();
  }

  private enterFailed(cause: unknown, epoch: bigint | null): WalFailedError {
    if (this.failure !== null) return this.failure;
    const why = cause instanceof Error ? cause.message : String(cause);
    const message =
      epoch === null ? `parallel WAL failed: ${why}` : `write_segment(${epoch}) failed: ${why}`;
    const failure = new WalFailedError(message, epoch, { cause });
    this.failure = failure;
    this.acks.fail(failure);
    this.coordinator.fail(failure);
    this.listeners.failedWith(failure);
    this.signalProgress();
    return failure;
  }

  private signalProgress(): void {
    this.placer.signalRoom();
  }

  /** Frees released external lanes that hold nothing unflushed. */
  private sweepReleasedLanes(): void {
    this.lanes.sweep(
      (laneId) => this.flusher.holdsLane(laneId),
      this.failure !== null || this.closed,
    );
  }

  private async closeOnce(): Promise<void> {
    this.closing = true;
    await this.stop();
    for (let i = 0; i < closeFlushCyclesMax && this.failure === null; i++) {
      await this.flusher.enqueueCycle();
      if (this.flusher.isIdle()) break;
    }
    // Every acknowledged epoch is published (or the log failed) before close resolves.
    await this.flusher.settle();
    // Anything still waiting (a writer that kept appending past the bound) is rejected, never left hanging.
    const closedError = new WalClosedError('parallel WAL closed before the epoch became durable');
    this.acks.rejectAll(closedError);
    this.coordinator.rejectWaiters(closedError);
    this.closed = true;
    this.workerLanes?.close();
    this.signalProgress();
    this.lanes.closeAll();
    await this.sink.dispose();
    await this.executor.close();
    if (this.lock !== null && !this.lock.released) await this.lock.release();
  }
}
