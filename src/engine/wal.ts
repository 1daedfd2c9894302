/**
 * `ParallelWal`: the coordinator of the parallel write-ahead log
 * (docs/design.md#write-path). Writers append page batches into lanes; the flusher seals
 * an epoch and writes it as one segment. With the `earlyAck` sink (the
 * default for format version 2) the segment goes into a pre-created temporary
 * file whose name is already durable; after its fdatasync the epoch is
 * ACKNOWLEDGED (commits resolve, `acknowledgedEpoch()`, `onAcknowledged`),
 * and the rename + directory fsync PUBLISH it in the background, in epoch
 * order (`durableEpoch()`, `onDurable`, `waitForEpochDurable`). With
 * `storage` (the default for version 1) or `precreate` both happen at once,
 * after the directory fsync.
 *
 * Group commit adapts to load:
 * - idle disk, commits waiting: the flusher seals after one event-loop turn
 *   (`setImmediate`), so every commit issued in the same turn shares the fsync;
 * - a write+sync in flight: new commits fill the next epoch (pipelining) and
 *   the flusher seals it the moment the disk is free again;
 * - an open epoch past `maxEpochBytes` while the disk is busy is sealed early,
 *   so one segment never grows without bound;
 * - the ticker (`start()`) additionally advances the epoch every
 *   `epochIntervalMs`, also when idle (empty epochs write nothing).
 *
 * Failure is final for this instance: any error while writing, syncing or
 * renaming a segment leaves its epoch not durable and first in line (a
 * failed background publication leaves acknowledged epochs acknowledged:
 * their data is durable and recovery adopts it), puts
 * the log in the failed state, and rejects every waiting and later commit
 * with `ERR_WAL_FAILED` (carrying the cause). Reopening recovers from disk.
 */

import { availableParallelism } from 'node:os';
import { threadId } from 'node:worker_threads';
import * as hdr from 'hdr-histogram-js';
import { WalArgumentError } from '../errors.js';
import { encodeSegmentHeader } from '../format/segment.js';
import {
  DEFAULT_FORMAT_VERSION,
  type FormatVersion,
  type TxnToken,
  U32_MAX,
  U64_MAX,
} from '../format/types.js';
import { nodeFileSystem, type WalFileSystem } from '../storage/fs.js';
import { acquireLock, type LockHandle } from '../storage/lockfile.js';
import { adoptOrRemoveTemporaryFiles, inspectTemporaryFiles } from '../storage/recovery.js';
import type { FsyncPolicy } from '../storage/segment-files.js';
import { AckWatermark } from './ack-watermark.js';
import type { EngineControl } from './control-hooks.js';
import { createDeferred, type Deferred } from './deferred.js';
import { assertTimeoutMs, EpochCoordinator, type EpochSegment } from './epochs.js';
import {
  AlreadyRunningError,
  BatchTooLargeError,
  DurableTimeoutError,
  EngineInvariantError,
  NoFreeLaneError,
  WalClosedError,
  WalFailedError,
} from './errors.js';
import {
  DEFAULT_BUFFER_CAPACITY_BYTES,
  DEFAULT_OVERFLOW_FALLBACK_BYTES,
  InProcessLane,
  type LaneRecordInput,
  MAX_BUFFER_CAPACITY_BYTES,
  MIN_BUFFER_CAPACITY_BYTES,
  type OverflowPolicy,
} from './lane.js';
import type { EngineLane } from './lane-types.js';
import { scanExistingLog } from './open-scan.js';
import {
  EarlyAckSegmentSink,
  PrecreatingSegmentSink,
  type SegmentSink,
  type SegmentSinkKind,
  storageSegmentSink,
} from './segment-writer.js';
import { WorkerLanePool, type WorkerLaneStats } from './shared-lane.js';
import {
  createCommitSeqCounter,
  raiseCommitSeq,
  returnCommitSeq,
  takeCommitSeq,
  type WorkerLaneHandle,
} from './worker-layout.js';

/** Default epoch interval of the ticker, in milliseconds. */
export const DEFAULT_EPOCH_INTERVAL_MS = 10;
/** Largest ticker interval accepted, in milliseconds (1 minute). */
export const MAX_EPOCH_INTERVAL_MS = 60_000;
/** Largest commit sequence the shared counter can hold (2^63 - 1). */
const I64_MAX = (1n << 63n) - 1n;
/** Most in-process lanes (`slotCount`). */
export const MAX_SLOT_COUNT = 1024;
/** Highest lane id (ids are u16; one id is kept for the serialized path). */
export const MAX_LANE_ID = 0xfffe;
/** Lane id of the engine's serialized path (flushed after every other lane). */
export const SERIALIZED_LANE_ID = 0xffff;
/** Default size past which an open epoch is sealed early while the disk is busy: 8 MiB. */
export const DEFAULT_MAX_EPOCH_BYTES = 8 * 1024 * 1024;
/** Default capacity of the serialized path (one buffer), in bytes: 64 MiB. */
export const DEFAULT_SERIALIZED_CAPACITY_BYTES = 64 * 1024 * 1024;
/** Most epochs sealed ahead of the one being written (early seals), per flusher. */
const MAX_SEALED_AHEAD = 1;
/** Most flush cycles `close()` runs to drain writers that keep appending. */
const CLOSE_FLUSH_CYCLES_MAX = 64;
/** Largest commit latency the histogram tracks, in microseconds (1 hour). */
const LATENCY_HISTOGRAM_MAX_MICROS = 3_600_000_000;
const EMPTY_IMAGE = new Uint8Array(0);

/** One page of a commit batch. */
export interface ParallelWalFrame {
  /** Page number, u32 >= 1. */
  pageNumber: number;
  /** The page's new content (<= 65536 bytes). */
  pageData: Uint8Array;
  /**
   * Database size in pages after the commit (as SQLite's WAL frame header
   * carries it on the commit frame; 0 on other frames). The segment format
   * has no field for it: the log keeps it in memory and reports it in the
   * commit result and in {@link DurableEpochInfo}; a store must persist the
   * database size itself (e.g. in its page 1 header).
   */
  dbSizeIfCommit: number;
}

/** One transaction's pages. */
export interface ParallelWalBatch {
  txnToken: TxnToken;
  /**
   * Commit sequence (u64). Omit it to let the log assign the next one;
   * caller-given sequences must increase in the order batches are submitted.
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
  /** The last frame's `dbSizeIfCommit`. */
  dbSizePages: number;
  /** True when the batch took the serialized path (its lane refused it). */
  serialized: boolean;
}

/** Announced to {@link ParallelWal.onDurable} listeners, in epoch order. */
export interface DurableEpochInfo {
  epoch: bigint;
  /** `false` for an epoch with no committed records (no file written). */
  segmentWritten: boolean;
  recordCount: number;
  /** Bytes written (header included); 0 when no segment was written. */
  bytes: number;
  laneIds: readonly number[];
  recordsPerCore: readonly number[];
  commitSeqLo: bigint | null;
  commitSeqHi: bigint | null;
  /** dbSizeIfCommit of the epoch's highest in-process commit, if known. */
  dbSizePages: number | null;
}

/** Configuration of {@link ParallelWal.open}. */
export interface ParallelWalConfig {
  /** In-process lanes, 1 ..= 1024 (default: available parallelism). */
  slotCount?: number;
  /** Ticker interval, 1 ..= 60000 ms (default 10). */
  epochIntervalMs?: number;
  /** Capacity of each lane buffer in bytes (default 4 MiB). */
  bufferCapacityBytes?: number;
  /** What a lane does when its active buffer is full (default `allocateOverflow`). */
  overflowPolicy?: OverflowPolicy;
  /** Overflow volume past which a lane latches fallback (default 8 MiB). */
  overflowFallbackBytes?: number;
  /** An open epoch past this many bytes is sealed early while the disk is busy (default 8 MiB). */
  maxEpochBytes?: number;
  /** Capacity of the serialized path in bytes (default 64 MiB); a larger batch is refused. */
  serializedCapacityBytes?: number;
  /** Default `full`. */
  fsync?: FsyncPolicy;
  /** Segment format version written (default 2). */
  formatVersion?: FormatVersion;
  /** File system (default the real one). */
  fs?: WalFileSystem;
  /** Open a log with a corrupt segment anyway (default false: fail closed). */
  skipCorrupt?: boolean;
  /**
   * Seal and write as soon as commits arrive (default true). `false` leaves
   * flushing to the ticker and {@link ParallelWal.advanceAndFlush}.
   */
  autoFlush?: boolean;
  /** Take the database's writer lock (`<db>.lock`) while open (default true). */
  lock?: boolean;
  /**
   * Create the next segment's temporary file ahead of time (same durable
   * protocol and crash guarantee as the storage layer's `writeSegmentFile`:
   * acknowledge after rename + directory fsync, about half its latency for
   * small epochs; see `segment-writer.ts`). Same as
   * `segmentSink: 'precreate'`; an explicit `segmentSink` wins. Default
   * false: the default sink applies (`earlyAck` for format version 2,
   * `storage` for version 1).
   */
  precreateSegmentFiles?: boolean;
  /**
   * How an epoch's segment is made durable (see `segment-writer.ts`,
   * docs/durability.md):
   * - `earlyAck` (default for format version 2): write into a pre-created
   *   temporary file (`<db>-wal-tmp-ack-…`) whose name is already durable,
   *   fdatasync, acknowledge (`acknowledgedEpoch()`); rename + directory
   *   fsync PUBLISH it in the background, in epoch order (`durableEpoch()`,
   *   `onDurable`, `waitForEpochDurable`). A commit's segment file may thus
   *   not yet exist under its name when the commit resolves; after a crash
   *   recovery adopts a complete temporary file (every CRC, exact length).
   *   Not allowed with version 1 (no record CRCs to tell torn from complete).
   * - `precreate`: acknowledge after rename + directory fsync, next temporary
   *   file created ahead of time.
   * - `storage` (default for format version 1): the storage layer's
   *   `writeSegmentFile`; acknowledge after rename + directory fsync.
   */
  segmentSink?: SegmentSinkKind;
  /**
   * The control plane (modes, fallback, shadow compare, commit certificates,
   * sealing controller, traces): any {@link EngineControl}, such as
   * `control/plane.ts`'s `ControlPlane`. Default none: the engine alone.
   */
  controlPlane?: EngineControl;
  /**
   * Lowest epoch the log may use (u64, default 0). The log starts at
   * `max(firstEpoch, newest segment on disk + 1)`, so epochs keep increasing
   * over a database's whole life even after every segment was folded and
   * deleted: a store passes the first epoch its header has not folded, a
   * replicated log the epoch after the replicated one. Every epoch below the
   * start counts as durable (`durableEpoch()` is at least `firstEpoch - 1`).
   */
  firstEpoch?: bigint;
  /**
   * Lowest commit sequence the log may assign (0 ..= 2^63-1, default 1). The first one
   * assigned is `max(firstCommitSeq, highest commit sequence on disk + 1)`.
   */
  firstCommitSeq?: bigint;
}

/** Resolved configuration. */
export interface ResolvedParallelWalConfig {
  slotCount: number;
  epochIntervalMs: number;
  bufferCapacityBytes: number;
  overflowPolicy: OverflowPolicy;
  overflowFallbackBytes: number;
  maxEpochBytes: number;
  serializedCapacityBytes: number;
  fsync: FsyncPolicy;
  formatVersion: FormatVersion;
  skipCorrupt: boolean;
  autoFlush: boolean;
  lock: boolean;
  precreateSegmentFiles: boolean;
  /** See {@link ParallelWalConfig.segmentSink}. */
  segmentSink: SegmentSinkKind;
  /** See {@link ParallelWalConfig.firstEpoch} (default 0n). */
  firstEpoch: bigint;
  /** See {@link ParallelWalConfig.firstCommitSeq} (default 1n). */
  firstCommitSeq: bigint;
}

/** Commit latency percentiles, in microseconds. */
export interface LatencySummary {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** A snapshot of the log's counters. */
export interface ParallelWalStats {
  currentEpoch: bigint;
  appendEpoch: bigint;
  /** Published: segment under its name, name durable (what `onDurable` announced). */
  durableEpoch: bigint | null;
  /** Acknowledged: data durable (commits resolved); >= `durableEpoch`. */
  acknowledgedEpoch: bigint | null;
  /** Acknowledged epochs whose publication (rename + directory fsync) is pending. */
  publishingEpochs: number;
  /** Temporary files adopted as segments when the log opened (acknowledged epochs whose rename was lost). */
  adoptedTemporaryFiles: number;
  /** Epoch being written now, if any. */
  inFlightEpoch: bigint | null;
  epochsSealed: number;
  emptyEpochs: number;
  segmentsWritten: number;
  /** fdatasync + directory fsync calls issued by segment writes. */
  fsyncs: number;
  bytesWritten: number;
  /** Commits acknowledged durable. */
  commits: number;
  /** Commits rejected (failure, close). */
  commitsRejected: number;
  /**
   * Batches that took the serialized path because their lane refused them
   * (in-process lanes and worker lanes).
   */
  fallbacks: number;
  /** Sum of the lanes' contention events (in-process lanes and worker lanes, also released ones). */
  contention: number;
  /** Batches queued on a lane's overflow list. */
  overflowAppends: number;
  /** Early seals because an open epoch passed `maxEpochBytes`. */
  earlySeals: number;
  /** Records dropped at flush because they never committed (no `endSeq`). */
  droppedAbortedRecords: number;
  /** Exceptions thrown by onDurable/onFailed listeners (swallowed). */
  listenerErrors: number;
  /** Lanes held by writers plus registered external lanes (worker lanes included). */
  lanesInUse: number;
  /** The worker lanes' own figures (`null`: no worker handle was ever made). */
  workerLanes: WorkerLaneStats | null;
  /**
   * The control plane's figures (`ControlPlane.stats()`: mode, active fallback
   * reason, counts per reason, shadow verdicts, certificates, decisions);
   * `null` without a control plane.
   */
  control: unknown;
  queueDepths: {
    /** Epochs sealed and waiting for their write. */
    sealedEpochs: number;
    /** Distinct epochs someone waits on. */
    waitingEpochs: number;
    /** Commits waiting for room on the serialized path. */
    backpressureWaiters: number;
    /** Bytes appended and not yet sealed. */
    pendingBytes: number;
  };
  /** The last committed transaction's dbSizeIfCommit (in-process commits). */
  lastDbSizePages: number | null;
  commitLatencyMicros: LatencySummary;
  failed: boolean;
  running: boolean;
  closed: boolean;
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

interface Placement {
  epoch: bigint;
  commitSeq: bigint;
  dbSizePages: number;
  serialized: boolean;
}

type CycleOutcome = { ok: true; newEpoch: bigint } | { ok: false; error: Error };

function checkInteger(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new WalArgumentError(
      `${name} must be an integer in ${min}..=${max}, got ${String(value)}`,
    );
  }
  return value;
}

function checkBigint(name: string, value: unknown, max: bigint): bigint {
  if (typeof value !== 'bigint' || value < 0n || value > max) {
    throw new WalArgumentError(`${name} must be a bigint in 0..=${max}, got ${String(value)}`);
  }
  return value;
}

function checkBoolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new WalArgumentError(`${name} must be a boolean`);
  return value;
}

/** Validates a configuration and fills in defaults. @throws {WalArgumentError} */
export function resolveParallelWalConfig(
  config: ParallelWalConfig = {},
): ResolvedParallelWalConfig {
  if (typeof config !== 'object' || config === null) {
    throw new WalArgumentError('config must be an object');
  }
  const slotCount = checkInteger(
    'slotCount',
    config.slotCount ?? Math.min(MAX_SLOT_COUNT, Math.max(1, availableParallelism())),
    1,
    MAX_SLOT_COUNT,
  );
  const bufferCapacityBytes = checkInteger(
    'bufferCapacityBytes',
    config.bufferCapacityBytes ?? DEFAULT_BUFFER_CAPACITY_BYTES,
    MIN_BUFFER_CAPACITY_BYTES,
    MAX_BUFFER_CAPACITY_BYTES,
  );
  const overflowPolicy = config.overflowPolicy ?? 'allocateOverflow';
  if (overflowPolicy !== 'allocateOverflow' && overflowPolicy !== 'blockWriter') {
    throw new WalArgumentError(
      `overflowPolicy must be allocateOverflow or blockWriter, got ${String(overflowPolicy)}`,
    );
  }
  const fsync = config.fsync ?? 'full';
  if (fsync !== 'full' && fsync !== 'normal' && fsync !== 'off') {
    throw new WalArgumentError(`fsync must be full, normal or off, got ${String(fsync)}`);
  }
  const formatVersion = config.formatVersion ?? DEFAULT_FORMAT_VERSION;
  if (formatVersion !== 1 && formatVersion !== 2) {
    throw new WalArgumentError(`formatVersion must be 1 or 2, got ${String(formatVersion)}`);
  }
  const serializedCapacityBytes = checkInteger(
    'serializedCapacityBytes',
    config.serializedCapacityBytes ?? DEFAULT_SERIALIZED_CAPACITY_BYTES,
    MIN_BUFFER_CAPACITY_BYTES,
    MAX_BUFFER_CAPACITY_BYTES,
  );
  return {
    slotCount,
    epochIntervalMs: checkInteger(
      'epochIntervalMs',
      config.epochIntervalMs ?? DEFAULT_EPOCH_INTERVAL_MS,
      1,
      MAX_EPOCH_INTERVAL_MS,
    ),
    bufferCapacityBytes,
    overflowPolicy,
    overflowFallbackBytes: checkInteger(
      'overflowFallbackBytes',
      config.overflowFallbackBytes ?? DEFAULT_OVERFLOW_FALLBACK_BYTES,
      0,
      MAX_BUFFER_CAPACITY_BYTES,
    ),
    maxEpochBytes: checkInteger(
      'maxEpochBytes',
      config.maxEpochBytes ?? DEFAULT_MAX_EPOCH_BYTES,
      MIN_BUFFER_CAPACITY_BYTES,
      MAX_BUFFER_CAPACITY_BYTES,
    ),
    serializedCapacityBytes,
    fsync,
    formatVersion,
    skipCorrupt: checkBoolean('skipCorrupt', config.skipCorrupt ?? false),
    autoFlush: checkBoolean('autoFlush', config.autoFlush ?? true),
    lock: checkBoolean('lock', config.lock ?? true),
    precreateSegmentFiles: checkBoolean(
      'precreateSegmentFiles',
      config.precreateSegmentFiles ?? false,
    ),
    segmentSink: resolveSegmentSink(config, formatVersion),
    firstEpoch: checkBigint('firstEpoch', config.firstEpoch ?? 0n, U64_MAX),
    // The shared commit-sequence counter is a signed 64-bit word (BigInt64Array).
    firstCommitSeq: checkBigint('firstCommitSeq', config.firstCommitSeq ?? 1n, I64_MAX),
  };
}

function resolveSegmentSink(
  config: ParallelWalConfig,
  formatVersion: FormatVersion,
): SegmentSinkKind {
  const given = config.segmentSink;
  if (given === undefined) {
    if (checkBoolean('precreateSegmentFiles', config.precreateSegmentFiles ?? false)) {
      return 'precreate';
    }
    // Acknowledge at data durability, publish (rename + directory fsync) in
    // the background: measured 1.4x the commits/s of `storage` at 1 committer
    // and 1.6-2.6x at 64 (bench/engine.ts). v1 has no record CRCs, so a torn
    // temporary file could not be told from a complete one: it keeps the
    // rename-before-ack protocol.
    return formatVersion === 1 ? 'storage' : 'earlyAck';
  }
  if (given !== 'earlyAck' && given !== 'precreate' && given !== 'storage') {
    throw new WalArgumentError(
      `segmentSink must be earlyAck, precreate or storage, got ${String(given)}`,
    );
  }
  if (given === 'earlyAck' && formatVersion === 1) {
    // v1 records carry no CRC: a torn temporary file could not be told from a
    // complete one, so recovery could not adopt it safely.
    throw new WalArgumentError('segmentSink earlyAck needs formatVersion 2');
  }
  return given;
}

function checkBatch(batch: ParallelWalBatch): void {
  if (typeof batch !== 'object' || batch === null) {
    throw new WalArgumentError('batch must be an object');
  }
  if (typeof batch.txnToken !== 'object' || batch.txnToken === null) {
    throw new WalArgumentError('batch.txnToken must be { id: bigint, epoch: number }');
  }
  if (batch.commitSeq !== undefined) {
    if (typeof batch.commitSeq !== 'bigint' || batch.commitSeq < 0n || batch.commitSeq > U64_MAX) {
      throw new WalArgumentError(`batch.commitSeq ${String(batch.commitSeq)} is not a u64 bigint`);
    }
  }
  if (!Array.isArray(batch.frames) || batch.frames.length === 0) {
    throw new WalArgumentError('batch.frames must be a non-empty array');
  }
  for (const frame of batch.frames) {
    if (typeof frame !== 'object' || frame === null || !(frame.pageData instanceof Uint8Array)) {
      throw new WalArgumentError(
        'each frame needs pageNumber, pageData (Uint8Array), dbSizeIfCommit',
      );
    }
    checkInteger('frame.dbSizeIfCommit', frame.dbSizeIfCommit, 0, U32_MAX);
  }
}

/** A coordinator of the parallel WAL of one database. Create with {@link ParallelWal.open}. */
export class ParallelWal implements AsyncDisposable {
  /** The database path the segments sit beside. */
  readonly dbPath: string;
  /** The validated configuration. */
  readonly config: ResolvedParallelWalConfig;

  private readonly lock: LockHandle | null;
  private readonly sink: SegmentSink;
  private readonly coordinator: EpochCoordinator;
  private readonly lanes: InProcessLane[];
  private readonly laneWriters: number[];
  private readonly serialLane: InProcessLane;
  private readonly externalLanes = new Map<number, EngineLane>();
  private readonly releasing = new Map<number, Deferred<void>>();
  /**
   * Next commit sequence number, in shared memory: worker writers draw from
   * the same counter (under their lane lock), so numbers are unique and
   * increasing across threads and agree with epoch order.
   */
  private readonly commitSeqCounter: BigInt64Array;
  /** Worker lanes, created by the first {@link ParallelWal.workerHandle}. */
  private workerLanes: WorkerLanePool | null = null;

  private cycleTail: Promise<unknown> = Promise.resolve();
  private cycleActive = false;
  private cycleScheduled = false;
  private readonly sealedQueue: { epoch: bigint; laneIds: number[] }[] = [];
  private inFlight: EpochSegment | null = null;
  private progress: Deferred<void> = createDeferred<void>();
  private readonly tracked = new Set<Promise<unknown>>();

  private tickerRunning = false;
  private tickerController: AbortController | null = null;
  private readonly tickerLoops = new Set<Promise<void>>();

  private failure: WalFailedError | null = null;
  /** Acknowledged epochs (data durable); `coordinator.durableEpoch` is the published one. */
  private readonly acks: AckWatermark;
  /** Publications (rename + directory fsync, then onDurable) in epoch order. Never rejects. */
  private publishTail: Promise<void> = Promise.resolve();
  /** Acknowledged epochs whose publication is still pending. */
  private publishing = 0;
  private readonly ackListeners = new Set<(epoch: bigint, info: DurableEpochInfo) => void>();
  /** Temporary files adopted as segments when this log opened. */
  private adoptedAtOpen = 0;
  private closing = false;
  private closed = false;
  private closePromise: Promise<void> | null = null;

  private readonly durableListeners = new Set<(info: DurableEpochInfo) => void>();
  private readonly failedListeners = new Set<(error: WalFailedError) => void>();
  private readonly epochDbSize = new Map<bigint, { seq: bigint; dbSize: number }>();
  private readonly histogram = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: LATENCY_HISTOGRAM_MAX_MICROS,
    numberOfSignificantValueDigits: 3,
  });
  private readonly counters = {
    epochsSealed: 0,
    emptyEpochs: 0,
    segmentsWritten: 0,
    bytesWritten: 0,
    commits: 0,
    commitsRejected: 0,
    fallbacks: 0,
    earlySeals: 0,
    backpressureWaiters: 0,
    listenerErrors: 0,
    droppedAbortedRecords: 0,
  };
  private lastDbSizePages: number | null = null;
  // Control plane (null: none). Open-epoch evidence for its seal decisions.
  private readonly control: EngineControl | null;
  private openCommits = 0;
  private openSinceMs = 0;
  private writeStartedMs: number | null = null;

  private constructor(
    dbPath: string,
    config: ResolvedParallelWalConfig,
    fs: WalFileSystem,
    lock: LockHandle | null,
    startEpoch: bigint,
    durableEpoch: bigint | null,
    nextCommitSeq: bigint,
    control: EngineControl | null,
  ) {
    this.dbPath = dbPath;
    this.control = control;
    this.config = config;
    this.lock = lock;
    this.sink =
      config.segmentSink === 'earlyAck'
        ? new EarlyAckSegmentSink(dbPath, fs, config.fsync)
        : config.segmentSink === 'precreate'
          ? new PrecreatingSegmentSink(dbPath, fs, config.fsync)
          : storageSegmentSink(dbPath, fs, config.fsync);
    this.acks = new AckWatermark(durableEpoch);
    this.commitSeqCounter = createCommitSeqCounter(nextCommitSeq);
    this.coordinator = new EpochCoordinator({
      startEpoch,
      durableEpoch,
      formatVersion: config.formatVersion,
    });
    const laneOptions = {
      startEpoch,
      formatVersion: config.formatVersion,
      currentEpoch: () => this.coordinator.currentEpoch,
      onObserve: () => this.coordinator.noteObserved(),
    };
    this.lanes = [];
    this.laneWriters = [];
    for (let laneId = 0; laneId < config.slotCount; laneId++) {
      const lane = new InProcessLane({
        ...laneOptions,
        laneId,
        bufferCapacityBytes: config.bufferCapacityBytes,
        overflowPolicy: config.overflowPolicy,
        overflowFallbackBytes: config.overflowFallbackBytes,
      });
      this.lanes.push(lane);
      this.laneWriters.push(0);
      this.coordinator.addLane(lane);
    }
    this.serialLane = new InProcessLane({
      ...laneOptions,
      laneId: SERIALIZED_LANE_ID,
      bufferCapacityBytes: config.serializedCapacityBytes,
      overflowPolicy: 'blockWriter',
    });
    this.coordinator.addLane(this.serialLane);
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
    if (typeof dbPath !== 'string' || dbPath.length === 0) {
      throw new WalArgumentError('dbPath must be a non-empty string');
    }
    const resolved = resolveParallelWalConfig(config);
    const fs = config.fs ?? nodeFileSystem;
    const lock = resolved.lock ? await acquireLock(dbPath, { fs }) : null;
    try {
      // Only the lock holder may remove temporary files: another writer's
      // in-progress segment looks exactly like an interrupted one.
      // Adoption renames complete temporary segments (acknowledged epochs
      // whose rename had not happened) before the scan below validates them.
      const adopted =
        lock !== null ? (await adoptOrRemoveTemporaryFiles(dbPath, { fs })).adopted.length : 0;
      const existing = await scanExistingLog(dbPath, { fs, skipCorrupt: resolved.skipCorrupt });
      const lastSeq = existing.lastCommitSeq;
      // Number after every file present, corrupt or not: never reuse a name.
      let newest = existing.newestEpoch;
      if (lock === null) {
        // Not ours to adopt, but never reuse the epoch of an adoptable file.
        for (const v of await inspectTemporaryFiles(dbPath, { fs })) {
          if (v.verdict === 'adoptable' && (newest === null || v.epoch! > newest)) newest = v.epoch;
        }
      }
      const afterNewest = newest === null ? 0n : newest + 1n;
      // A floor keeps numbering above epochs (and sequences) that were used
      // but whose segments are gone (folded by a checkpoint, replicated).
      const startEpoch = afterNewest > resolved.firstEpoch ? afterNewest : resolved.firstEpoch;
      const durableEpoch = startEpoch === 0n ? null : startEpoch - 1n;
      const afterLastSeq = lastSeq === null ? 1n : lastSeq + 1n;
      const wal = new ParallelWal(
        dbPath,
        resolved,
        fs,
        lock,
        startEpoch,
        durableEpoch,
        afterLastSeq > resolved.firstCommitSeq ? afterLastSeq : resolved.firstCommitSeq,
        config.controlPlane ?? null,
      );
      wal.adoptedAtOpen = adopted;
      return wal;
    } catch (error) {
      await lock?.release().catch(() => {});
      throw error;
    }
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
    return threadId % this.config.slotCount;
  }

  /**
   * Appends `batch` to the calling thread's lane (or, if it refuses, to the
   * serialized path) and returns the epoch it landed in. Not durable yet:
   * see {@link ParallelWal.waitForEpochDurable} or use {@link ParallelWal.commit}.
   * @throws {WalFailedError} / {WalClosedError}; {@link BatchTooLargeError} when
   * even the serialized path cannot take it right now.
   */
  submitBatch(batch: ParallelWalBatch): bigint {
    const placement = this.place(batch, this.lanes[this.threadSlot()]!);
    if (placement === null) {
      throw new BatchTooLargeError(
        this.batchBytes(batch),
        this.serialLane.bufferCapacityBytes - this.serialLane.unflushedBytes(),
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
    return this.commitVia(batch, this.lanes[this.threadSlot()]!);
  }

  /**
   * Commits `batch` on the serialized path directly (for batches a worker's
   * shared lane could not place). Waits for room when the path is full.
   */
  commitSerialized(batch: ParallelWalBatch): Promise<CommitResult> {
    return this.commitVia(batch, null);
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
      this.ackListeners.add((epoch) => pool.markDurable(epoch));
      this.onFailed((error) => pool.fail(error));
      this.workerLanes = pool;
    }
    return this.workerLanes.createHandle();
  }

  // ------------------------------------------------- end of worker writers

  /** Gives a writer context its own lane (the least used in-process lane). */
  openWriter(): WalWriter {
    this.ensureOpen();
    let laneId = 0;
    for (let i = 1; i < this.laneWriters.length; i++) {
      if (this.laneWriters[i]! < this.laneWriters[laneId]!) laneId = i;
    }
    this.laneWriters[laneId]! += 1;
    const lane = this.lanes[laneId]!;
    let open = true;
    const close = async (): Promise<void> => {
      if (!open) return;
      open = false;
      this.laneWriters[laneId]! -= 1;
    };
    return {
      laneId,
      commit: (batch) =>
        open ? this.commitVia(batch, lane) : Promise.reject(new WalClosedError('writer is closed')),
      close,
      [Symbol.asyncDispose]: close,
    };
  }

  /**
   * Registers an extra lane (e.g. a worker's shared-memory lane). `create`
   * receives the lane id to use and the epoch appends must be tagged with
   * until the engine calls `advance`. The lane is flushed like every other.
   * @returns the lane `create` built.
   * @throws {NoFreeLaneError} when every id up to {@link MAX_LANE_ID} is taken.
   */
  registerLane<L extends EngineLane>(create: (laneId: number, startEpoch: bigint) => L): L {
    this.ensureOpen();
    let laneId = this.config.slotCount;
    while (this.externalLanes.has(laneId)) laneId++;
    if (laneId > MAX_LANE_ID) throw new NoFreeLaneError(MAX_LANE_ID + 1);
    const lane = create(laneId, this.coordinator.appendEpoch);
    if (lane.laneId !== laneId) {
      throw new WalArgumentError(`registered lane has id ${lane.laneId}, expected ${laneId}`);
    }
    this.externalLanes.set(laneId, lane);
    this.coordinator.addLane(lane);
    return lane;
  }

  /**
   * Gives back a lane from {@link ParallelWal.registerLane}. Resolves once
   * everything it held is durable (or abandoned because the log failed or
   * closed) and its id is free for reuse.
   */
  releaseLane(laneId: number): Promise<void> {
    const lane = this.externalLanes.get(laneId);
    if (lane === undefined) return Promise.resolve();
    let pending = this.releasing.get(laneId);
    if (pending === undefined) {
      pending = createDeferred<void>();
      this.releasing.set(laneId, pending);
    }
    this.sweepReleasedLanes();
    if (this.releasing.has(laneId)) this.kick();
    return pending.promise;
  }

  /** Tells the flusher that an external lane received records. */
  notifyAppend(): void {
    this.kick();
  }

  /**
   * Calls `listener` after each epoch becomes durable, in epoch order (empty
   * epochs included): published, its segment readable under its segment name
   * (an epoch is acknowledged first, see {@link ParallelWal.onAcknowledged}).
   * @returns a function that removes the listener.
   */
  onDurable(listener: (info: DurableEpochInfo) => void): () => void {
    this.durableListeners.add(listener);
    return () => this.durableListeners.delete(listener);
  }

  /**
   * Calls `listener` with each epoch once it is acknowledged (data durable),
   * in epoch order, with what its publication will announce (`info`, the same
   * object `onDurable` receives later; its segment may still be under a
   * temporary name until then).
   * @returns a function that removes the listener.
   */
  onAcknowledged(listener: (epoch: bigint, info: DurableEpochInfo) => void): () => void {
    this.ackListeners.add(listener);
    return () => this.ackListeners.delete(listener);
  }

  /**
   * Calls `listener` once if the log fails (immediately if it already has).
   * @returns a function that removes the listener.
   */
  onFailed(listener: (error: WalFailedError) => void): () => void {
    if (this.failure !== null) {
      this.callListener(() => listener(this.failure!));
      return () => {};
    }
    this.failedListeners.add(listener);
    return () => this.failedListeners.delete(listener);
  }

  /**
   * Starts the ticker: every `epochIntervalMs` it advances the epoch and
   * flushes (also when idle). Aborting `signal` stops it like {@link ParallelWal.stop}.
   * @throws {AlreadyRunningError} (`coordinator already running`) if it runs.
   */
  start(signal?: AbortSignal): void {
    if (this.tickerRunning) throw new AlreadyRunningError();
    this.ensureOpen();
    const controller = new AbortController();
    if (signal !== undefined) {
      if (signal.aborted) return;
      const onAbort = (): void => {
        if (this.tickerController === controller) this.tickerRunning = false;
        controller.abort();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      controller.signal.addEventListener(
        'abort',
        () => signal.removeEventListener('abort', onAbort),
        {
          once: true,
        },
      );
    }
    this.tickerController = controller;
    this.tickerRunning = true;
    const loop = this.tickerLoop(controller.signal);
    this.tickerLoops.add(loop);
    void loop.finally(() => this.tickerLoops.delete(loop));
  }

  /** Stops the ticker and waits until its loop has finished. Idempotent. */
  async stop(): Promise<void> {
    this.tickerRunning = false;
    this.tickerController?.abort();
    this.tickerController = null;
    await Promise.all([...this.tickerLoops]);
  }

  /** True while the ticker runs. */
  isRunning(): boolean {
    return this.tickerRunning;
  }

  /**
   * Advances the epoch and writes everything sealed, now. Resolves with the
   * new epoch once the sealed epoch is durable.
   * @throws {WalFailedError} (message `write_segment(E) failed: …`) when a
   * segment write fails; {@link DurableTimeoutError} after `timeoutMs`.
   */
  async advanceAndFlush(timeoutMs: number): Promise<bigint> {
    assertTimeoutMs(timeoutMs);
    this.ensureOpen();
    // Resolves once the sealed epoch is published (segment under its name).
    const cycle = this.enqueueCycle().then(async (outcome) => {
      if (outcome.ok) {
        this.sink.publishNow?.();
        await this.coordinator.whenDurable(outcome.newEpoch - 1n);
      }
      return outcome;
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new DurableTimeoutError(this.appendEpoch, timeoutMs)),
        timeoutMs,
      );
    });
    try {
      const outcome = await Promise.race([cycle, timeout]);
      if (!outcome.ok) throw outcome.error;
      return outcome.newEpoch;
    } finally {
      clearTimeout(timer);
    }
  }

  /** A snapshot of the counters. */
  stats(): ParallelWalStats {
    // Worker lanes count in the pool's figures (which keep released lanes' counts too).
    const workers = this.workerLanes?.stats() ?? null;
    const workerLanes = new Set<EngineLane>(this.workerLanes?.lanes() ?? []);
    let contention = workers?.contentionEvents ?? 0;
    let overflowAppends = 0;
    let pendingBytes = 0;
    for (const lane of this.coordinator.laneList()) {
      if (!workerLanes.has(lane)) contention += lane.contentionEvents();
      pendingBytes += lane.pendingBytes();
      if (lane instanceof InProcessLane) overflowAppends += lane.laneCounters().overflowAppends;
    }
    const h = this.histogram;
    return {
      currentEpoch: this.coordinator.currentEpoch,
      appendEpoch: this.coordinator.appendEpoch,
      durableEpoch: this.coordinator.durableEpoch,
      acknowledgedEpoch: this.acks.epoch,
      publishingEpochs: this.publishing,
      adoptedTemporaryFiles: this.adoptedAtOpen,
      inFlightEpoch: this.inFlight?.epoch ?? null,
      epochsSealed: this.counters.epochsSealed,
      emptyEpochs: this.counters.emptyEpochs,
      segmentsWritten: this.counters.segmentsWritten,
      fsyncs: this.sink.syncCalls(),
      bytesWritten: this.counters.bytesWritten,
      commits: this.counters.commits,
      commitsRejected: this.counters.commitsRejected,
      fallbacks: this.counters.fallbacks + (workers?.fallbacks ?? 0),
      contention,
      overflowAppends,
      earlySeals: this.counters.earlySeals,
      droppedAbortedRecords: this.counters.droppedAbortedRecords,
      listenerErrors: this.counters.listenerErrors,
      lanesInUse: this.laneWriters.filter((n) => n > 0).length + this.externalLanes.size,
      workerLanes: workers,
      control: this.control?.stats?.() ?? null,
      queueDepths: {
        sealedEpochs: this.sealedQueue.length - (this.inFlight === null ? 0 : 1),
        waitingEpochs: this.coordinator.waitingEpochs(),
        backpressureWaiters: this.counters.backpressureWaiters,
        pendingBytes,
      },
      lastDbSizePages: this.lastDbSizePages,
      commitLatencyMicros: {
        count: h.totalCount,
        p50: h.totalCount === 0 ? 0 : h.getValueAtPercentile(50),
        p90: h.totalCount === 0 ? 0 : h.getValueAtPercentile(90),
        p99: h.totalCount === 0 ? 0 : h.getValueAtPercentile(99),
        max: h.totalCount === 0 ? 0 : h.maxValue,
      },
      failed: this.failure !== null,
      running: this.tickerRunning,
      closed: this.closed,
    };
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

  private async commitVia(
    batch: ParallelWalBatch,
    lane: InProcessLane | null,
  ): Promise<CommitResult> {
    const started = performance.now();
    let placement: Placement | null;
    try {
      placement = this.place(batch, lane);
      while (placement === null) {
        // The serialized path is full: wait for a flush to make room.
        this.counters.backpressureWaiters++;
        try {
          await this.progress.promise;
        } finally {
          this.counters.backpressureWaiters--;
        }
        placement = this.place(batch, null);
      }
      // Acknowledged once the data is durable (publication may still follow).
      await this.acks.when(placement.epoch);
    } catch (error) {
      this.counters.commitsRejected++;
      throw error;
    }
    this.counters.commits++;
    const micros = Math.round((performance.now() - started) * 1000);
    this.histogram.recordValue(Math.min(LATENCY_HISTOGRAM_MAX_MICROS, Math.max(1, micros)));
    return {
      epoch: placement.epoch,
      commitSeq: placement.commitSeq,
      durability: this.config.fsync,
      dbSizePages: placement.dbSizePages,
      serialized: placement.serialized,
    };
  }

  /**
   * Places a batch synchronously: encodes it into `lane` (tagged there with
   * the lane's epoch) or, if the lane refuses, into the serialized path.
   * The commit sequence is taken at the moment of placement, so sequence
   * order always agrees with epoch order. `null`: the serialized path is full.
   */
  private place(batch: ParallelWalBatch, lane: InProcessLane | null): Placement | null {
    this.ensureOpen();
    checkBatch(batch);
    // The number is drawn from the counter shared with worker lanes. A batch
    // that is not placed (invalid, or the serialized path is full) gives it
    // back unless another thread drew a later one meanwhile (then: a gap).
    const assigned = batch.commitSeq === undefined;
    const commitSeq = batch.commitSeq ?? takeCommitSeq(this.commitSeqCounter);
    let placed = false;
    try {
      const records: LaneRecordInput[] = batch.frames.map((frame) => ({
        txnToken: batch.txnToken,
        pageId: frame.pageNumber,
        beginSeq: commitSeq,
        endSeq: commitSeq,
        beforeImage: EMPTY_IMAGE,
        afterImage: frame.pageData,
      }));
      // Control plane: while its fallback is latched (or for a batch over
      // maxParallelCommitBytes) the batch takes the serialized path.
      const target =
        lane !== null && this.control?.route(this.batchBytes(batch), lane.laneId) === 'serialized'
          ? null
          : lane;
      let serialized = target === null;
      let outcome = target?.append(records);
      if (outcome === undefined || outcome.kind === 'blocked') {
        if (outcome !== undefined) {
          this.counters.fallbacks++;
          serialized = true;
          this.control?.noteLaneRefused(target!.laneId);
        }
        const size = this.serialLane.measure(records);
        if (size > this.serialLane.bufferCapacityBytes) {
          throw new BatchTooLargeError(size, this.serialLane.bufferCapacityBytes);
        }
        outcome = this.serialLane.append(records);
        if (outcome.kind === 'blocked') {
          this.kick();
          return null;
        }
      }
      raiseCommitSeq(this.commitSeqCounter, commitSeq);
      const dbSizePages = batch.frames[batch.frames.length - 1]!.dbSizeIfCommit;
      if (this.control !== null) {
        this.noteControlPlacement(
          target,
          serialized,
          outcome.epoch,
          commitSeq,
          dbSizePages,
          records,
        );
      }
      const known = this.epochDbSize.get(outcome.epoch);
      if (known === undefined || commitSeq >= known.seq) {
        this.epochDbSize.set(outcome.epoch, { seq: commitSeq, dbSize: dbSizePages });
      }
      this.kick();
      placed = true;
      return { epoch: outcome.epoch, commitSeq, dbSizePages, serialized };
    } finally {
      if (!placed && assigned) returnCommitSeq(this.commitSeqCounter, commitSeq);
    }
  }

  private batchBytes(batch: ParallelWalBatch): number {
    let total = 0;
    for (const frame of batch.frames) total += frame.pageData.length + 64;
    return total;
  }

  private ensureOpen(): void {
    if (this.failure !== null) throw this.failure;
    if (this.closing) throw new WalClosedError();
  }

  // ---------------------------------------------------------------- flusher

  /**
   * Adaptive sealing. Idle disk: seal after one event-loop turn so commits of
   * the same turn share the epoch. Busy disk: let the open epoch fill; seal it
   * early only when it passes `maxEpochBytes`.
   */
  private kick(): void {
    if (this.failure !== null || this.closed) return;
    if (this.cycleActive) {
      if (
        // sealedQueue[0] is the epoch being written; the rest are sealed ahead.
        this.sealedQueue.length - 1 < MAX_SEALED_AHEAD &&
        (this.control === null
          ? this.openEpochBytes() >= this.config.maxEpochBytes
          : this.controlSaysSeal())
      ) {
        this.sealEarly();
      }
      return;
    }
    if (!this.config.autoFlush && !this.closing) return;
    if (this.cycleScheduled) return;
    this.cycleScheduled = true;
    setImmediate(() => {
      this.cycleScheduled = false;
      if (!this.cycleActive && this.failure === null && !this.closed)
        this.track(this.enqueueCycle());
    });
  }

  private openEpochBytes(): number {
    let bytes = 0;
    for (const lane of this.coordinator.laneList()) bytes += lane.pendingBytes();
    return bytes;
  }

  private sealEarly(): void {
    const advanced = this.coordinator.advanceNow();
    this.openCommits = 0;
    this.counters.earlySeals++;
    this.counters.epochsSealed++;
    this.sealedQueue.push({ epoch: advanced.sealedEpoch, laneIds: advanced.sealedLaneIds });
  }

  private track(promise: Promise<unknown>): void {
    this.tracked.add(promise);
    void promise.finally(() => this.tracked.delete(promise));
  }

  /** Runs one flush cycle after the ones already queued. Never rejects. */
  private enqueueCycle(): Promise<CycleOutcome> {
    const run = this.cycleTail.then(() => this.cycle());
    this.cycleTail = run;
    return run;
  }

  /**
   * One cycle: advance (sealing the open epoch), then write every sealed
   * epoch in order, one durable write at a time.
   */
  private async cycle(): Promise<CycleOutcome> {
    if (this.failure !== null) return { ok: false, error: this.failure };
    this.cycleActive = true;
    try {
      const advanced = this.coordinator.advanceNow();
      this.openCommits = 0;
      this.counters.epochsSealed++;
      this.sealedQueue.push({ epoch: advanced.sealedEpoch, laneIds: advanced.sealedLaneIds });
      while (this.sealedQueue.length > 0) {
        const next = this.sealedQueue[0]!;
        const error = await this.flushOne(next.epoch);
        if (error !== null) return { ok: false, error };
        this.sealedQueue.shift();
      }
      return { ok: true, newEpoch: advanced.newEpoch };
    } catch (error) {
      // Only an engine invariant breach gets here (flushOne handles I/O).
      const failure = this.enterFailed(error, this.sealedQueue[0]?.epoch ?? null);
      return { ok: false, error: failure };
    } finally {
      this.cycleActive = false;
      this.sweepReleasedLanes();
      this.signalProgress();
      if (this.failure === null && this.openEpochBytes() > 0) this.kick();
    }
  }

  /**
   * Writes one sealed epoch durably and acknowledges it; its publication
   * (segment name durable, then `onDurable`) is chained behind the earlier
   * ones. Returns the failure, or null.
   */
  private async flushOne(epoch: bigint): Promise<Error | null> {
    const segment = this.coordinator.flushEpoch(epoch);
    // Control plane: header, records and certificate trailer to write, after
    // shadow compare (a diverged epoch is replaced by the conservative result,
    // or must not be acknowledged at all).
    const prepared = this.prepareWithControl(segment);
    if (prepared !== null && !prepared.acknowledge) {
      return this.enterFailed(
        new EngineInvariantError(`epoch ${epoch} diverged from the conservative path`),
        epoch,
      );
    }
    let bytes = 0;
    let published: Promise<void> | null = null;
    if (segment.recordCount > 0) {
      this.inFlight = segment;
      const header = encodeSegmentHeader({
        version: this.config.formatVersion,
        epoch,
        recordCount: segment.recordCount,
      });
      this.writeStartedMs = performance.now();
      try {
        const written = await this.sink.write(
          epoch,
          prepared?.chunks ?? [header, ...segment.chunks],
        );
        bytes = written.bytes;
        published = written.published;
      } catch (cause) {
        // Not durable; the epoch stays first (its lanes keep it Flushing) and
        // the log refuses everything from here on.
        this.control?.epochFailed(epoch, cause);
        return this.enterFailed(cause, epoch);
      } finally {
        this.inFlight = null;
      }
      // An earlier epoch's background publication failed meanwhile: the log
      // refuses; this epoch's data may be on disk but it is not acknowledged.
      if (this.failure !== null) return this.failure;
      this.counters.segmentsWritten++;
      this.counters.bytesWritten += bytes;
    } else {
      this.counters.emptyEpochs++;
    }
    this.counters.droppedAbortedRecords += segment.droppedAborted;
    if (prepared !== null) {
      const startedMs = this.writeStartedMs ?? performance.now();
      this.control?.epochDurable(prepared, Math.round((performance.now() - startedMs) * 1000));
    }
    this.writeStartedMs = null;
    this.coordinator.completeFlush(epoch, segment.laneIds);
    const dbSize = this.epochDbSize.get(epoch);
    this.epochDbSize.delete(epoch);
    if (dbSize !== undefined) this.lastDbSizePages = dbSize.dbSize;
    const info: DurableEpochInfo = {
      epoch,
      segmentWritten: segment.recordCount > 0,
      recordCount: segment.recordCount,
      bytes,
      laneIds: segment.laneIds,
      recordsPerCore: segment.recordsPerCore,
      commitSeqLo: segment.commitSeqLo,
      commitSeqHi: segment.commitSeqHi,
      dbSizePages: dbSize?.dbSize ?? null,
    };
    // Acknowledge: the epoch's data is durable and recovery finds it.
    this.acks.advance(epoch);
    for (const listener of this.ackListeners) this.callListener(() => listener(epoch, info));
    const publish = (): void => {
      this.coordinator.markEpochDurable(epoch);
      this.announceDurable(info);
    };
    if (published === null && this.publishing === 0) {
      // Already under its name and nothing before it pending: publish now
      // (the storage and precreate sinks always take this path).
      publish();
      return null;
    }
    // Publish in epoch order (empty epochs too, behind the ones before them).
    this.publishing++;
    this.publishTail = this.publishTail
      .then(() => published)
      .finally(() => {
        this.publishing--;
      })
      .then(publish, (cause: unknown) => {
        // Acknowledged epochs stay acknowledged (recovery adopts them);
        // nothing after them will be.
        this.enterFailed(cause, this.firstUnacknowledgedEpoch());
      });
    return null;
  }

  /** The lowest epoch not acknowledged (what a failure in publication fails). */
  private firstUnacknowledgedEpoch(): bigint {
    const acked = this.acks.epoch;
    return acked === null ? 0n : acked + 1n;
  }

  // ---------------------------------------------------------- control plane

  /** After a placement: open-epoch evidence, and the batch staged for shadow compare. */
  private noteControlPlacement(
    lane: InProcessLane | null,
    serialized: boolean,
    epoch: bigint,
    commitSeq: bigint,
    dbSizePages: number,
    records: readonly LaneRecordInput[],
  ): void {
    if (this.openCommits++ === 0) this.openSinceMs = performance.now();
    if (this.control?.stagingBatches !== true) return;
    const laneId = serialized || lane === null ? SERIALIZED_LANE_ID : lane.laneId;
    this.control.stageBatch({ laneId, epoch, commitSeq, dbSizePages, records });
  }

  /** A seal decision point while a write is in flight: does the controller seal now? */
  private controlSaysSeal(): boolean {
    const nowMs = performance.now();
    let contention = 0;
    for (const lane of this.lanes) contention += lane.laneCounters().contentionEvents;
    const decision = this.control!.onSealPoint({
      nowMs,
      pendingCommits: this.openCommits,
      epochBytes: this.openEpochBytes(),
      oldestPendingAgeMs: this.openCommits === 0 ? 0 : nowMs - this.openSinceMs,
      syncInFlightSinceMs: this.writeStartedMs,
      backlogFrames: this.sealedQueue.length,
      contentionTotal: contention,
    });
    if (decision === null) return this.openEpochBytes() >= this.config.maxEpochBytes;
    return decision.action === 'sealEpochNow' || decision.action === 'forceConservative';
  }

  /** The control plane's version of an epoch's bytes; `null` without a control plane. */
  private prepareWithControl(
    segment: EpochSegment,
  ): { chunks: Uint8Array[]; acknowledge: boolean } | null {
    if (this.control === null) return null;
    // Worker lanes encode on their own threads: the control plane has no copy of
    // their batches, so it compares only the staged ones when they took part.
    const onlyInProcess = segment.laneIds.every(
      (id) => id < this.config.slotCount || id === SERIALIZED_LANE_ID,
    );
    const dbSize = this.epochDbSize.get(segment.epoch);
    return this.control.prepareEpoch({
      epoch: segment.epoch,
      chunks: segment.chunks,
      recordCount: segment.recordCount,
      laneIds: segment.laneIds,
      recordsPerCore: segment.recordsPerCore,
      dbSizePages: dbSize?.dbSize ?? 0,
      ...(onlyInProcess ? { externalChunks: [] } : {}),
    });
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
    for (const listener of this.failedListeners) this.callListener(() => listener(failure));
    this.failedListeners.clear();
    this.signalProgress();
    return failure;
  }

  private announceDurable(info: DurableEpochInfo): void {
    for (const listener of this.durableListeners) this.callListener(() => listener(info));
  }

  private callListener(call: () => void): void {
    try {
      call();
    } catch {
      // A listener's bug must not break the flusher; it is counted.
      this.counters.listenerErrors++;
    }
  }

  private signalProgress(): void {
    const progress = this.progress;
    this.progress = createDeferred<void>();
    progress.resolve();
  }

  /** Frees released external lanes that hold nothing unflushed. */
  private sweepReleasedLanes(): void {
    for (const [laneId, deferred] of this.releasing) {
      const lane = this.externalLanes.get(laneId);
      const busy =
        lane !== undefined &&
        this.failure === null &&
        !this.closed &&
        (lane.pendingBytes() > 0 ||
          this.sealedQueue.some((s) => s.laneIds.includes(laneId)) ||
          (this.inFlight?.laneIds.includes(laneId) ?? false));
      if (busy) continue;
      this.externalLanes.delete(laneId);
      this.coordinator.removeLane(laneId);
      this.releasing.delete(laneId);
      deferred.resolve();
    }
  }

  private async tickerLoop(signal: AbortSignal): Promise<void> {
    const { setTimeout: sleep } = await import('node:timers/promises');
    while (!signal.aborted) {
      try {
        await sleep(this.config.epochIntervalMs, undefined, { signal });
      } catch {
        break; // aborted
      }
      if (signal.aborted || this.failure !== null || this.closed) break;
      if (!this.cycleActive) await this.enqueueCycle();
    }
  }

  private async closeOnce(): Promise<void> {
    this.closing = true;
    await this.stop();
    for (let i = 0; i < CLOSE_FLUSH_CYCLES_MAX && this.failure === null; i++) {
      await this.enqueueCycle();
      if (this.openEpochBytes() === 0 && this.sealedQueue.length === 0) break;
    }
    await Promise.all([...this.tracked]);
    await this.cycleTail;
    // Every acknowledged epoch is published (or the log failed) before close resolves.
    this.sink.publishNow?.();
    await this.publishTail;
    // Anything still waiting (a writer that kept appending past the bound) is rejected, never left hanging.
    const closedError = new WalClosedError('parallel WAL closed before the epoch became durable');
    this.acks.rejectAll(closedError);
    this.coordinator.rejectWaiters(closedError);
    this.closed = true;
    this.workerLanes?.close();
    this.signalProgress();
    for (const [laneId, deferred] of this.releasing) {
      this.externalLanes.delete(laneId);
      this.coordinator.removeLane(laneId);
      deferred.resolve();
    }
    this.releasing.clear();
    for (let i = 0; i < this.laneWriters.length; i++) this.laneWriters[i] = 0;
    await this.sink.dispose();
    if (this.lock !== null && !this.lock.released) await this.lock.release();
  }
}
