/**
 * Configuration of a {@link ParallelWal}: the options, their bounds and
 * defaults, and the validation of options and commit batches. Pure: no I/O.
 */

import { availableParallelism } from 'node:os';
import { WalArgumentError } from '../errors.js';
import { type FormatVersion, formatVersionDefault, u32Max, u64Max } from '../format/types.js';
import type { WalFileSystem } from '../storage/fs.js';
import { checkLockTimeout } from '../storage/lockfile.js';
import type { FsyncPolicy } from '../storage/segment-files.js';
import type { EngineControl } from './control-hooks.js';
import {
  bufferCapacityBytesDefault,
  bufferCapacityBytesMax,
  bufferCapacityBytesMin,
  type OverflowPolicy,
  overflowFallbackBytesDefault,
} from './lane.js';
import { laneCountMax } from './limits.js';
import { checkSegmentPoolSize, segmentPoolSizeDefault } from './pool-sink.js';
import type { SegmentSinkKind } from './segment-writer.js';
import type { ParallelWal } from './wal.js';
import type { ParallelWalBatch } from './wal-types.js';

/** Default epoch interval of the ticker, in milliseconds. */
export const epochIntervalMsDefault = 10;
/** Largest ticker interval accepted, in milliseconds (1 minute). */
export const epochIntervalMsMax = 60_000;
/** Largest commit sequence the shared counter can hold (2^63 - 1). */
const i64Max = (1n << 63n) - 1n;
/** Most in-process lanes (`slotCount`): the shared {@link laneCountMax}. */
export const slotCountMax = laneCountMax;
/** Highest lane id (ids are u16; one id is kept for the serialized path). */
export const laneIdMax = 0xfffe;
/** Lane id of the engine's serialized path (flushed after every other lane). */
export const SERIALIZED_LANE_ID = 0xffff;
/** Default size past which an open epoch is sealed early while the disk is busy: 8 MiB. */
export const epochBytesMaxDefault = 8 * 1024 * 1024;
/**
 * Default {@link ParallelWalConfig.callerWriteBytesMax}: 0, every write on
 * the I/O thread (see the option for why it is off by default).
 */
export const callerWriteBytesMaxDefault = 0;
/** Largest {@link ParallelWalConfig.callerWriteBytesMax} accepted: 16 MiB. */
export const callerWriteBytesMaxLimit = 16 * 1024 * 1024;
/** Default capacity of the serialized path (one buffer), in bytes: 64 MiB. */
export const serializedCapacityBytesDefault = 64 * 1024 * 1024;

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
  /**
   * Open a log with a corrupt or missing segment anyway (default false: fail
   * closed). The unusable epoch and every later one are given up: recorded
   * durably in `<db>-wal-skipped` before anything is written, never replayed
   * and never numbered again (new epochs and commit sequences start above
   * everything on disk, the given-up segments included).
   */
  skipCorrupt?: boolean;
  /**
   * The log was written by a writer that leaves epoch numbers unused (an
   * older version of this library wrote no segment for empty epochs), so a
   * missing epoch is not evidence of a lost segment. Default false: a
   * missing epoch between the first segment and a later one fails opening
   * with `ERR_RECOVERY_GAP` (`RecoveryGapError`), because this log never
   * leaves a number unused; epochs below `firstEpoch` are durable elsewhere,
   * so a hole made only of them is not a loss. Turn it on only for such logs.
   */
  allowEpochGaps?: boolean;
  /**
   * Seal and write as soon as commits arrive (default true). `false` leaves
   * flushing to the ticker and {@link ParallelWal.advanceAndFlush}.
   */
  autoFlush?: boolean;
  /** Take the database's writer lock (`<db>.lock`) while open (default true). */
  lock?: boolean;
  /**
   * How long open waits for another holder of the writer lock, in ms
   * (default 0: fail at once with `ERR_LOCKED` naming the holder). Like
   * SQLite's `busy_timeout`.
   */
  lockTimeoutMs?: number;
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
   * - `pool`: write into a pool file (`<db>-wal-tmp-pool-…`, name durable):
   *   a new, empty one, or IN PLACE into a recycled segment file (one
   *   fdatasync that allocates nothing when the file is long enough),
   *   acknowledge; publication (cut to the segment's
   *   length, rename, directory fsync) runs in the background, in epoch
   *   order, as with `earlyAck`. Folded segments go back into the pool
   *   ({@link ParallelWal.recycleSegments}). See `pool-sink.ts`. Not allowed
   *   with version 1.
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
   * Run each epoch's write + fdatasync on a dedicated I/O thread with
   * synchronous calls (default true; see `io-executor.ts`). Applies only to
   * the real file system (a custom `fs` always goes through its own
   * handles) and to the `earlyAck`, `pool` and `precreate` sinks. `false`: the
   * promise API on the event loop, as before.
   */
  ioThread?: boolean;
  /**
   * Pipelined flushing (default true; see `flusher.ts`): the moment an
   * epoch's write returns, the epoch that filled meanwhile is sealed and its
   * write started, before the written epoch's commits are acknowledged; and
   * a big wave of closed-loop committers is split in two, so that one half
   * commits while the other is written. `false`: the next epoch is sealed
   * one event-loop turn after the acknowledgement, as in 0.1 releases before
   * this option — kept for comparison (`bench/waves.ts`) and as a fallback.
   */
  pipelineFlush?: boolean;
  /**
   * With the I/O thread: a segment of at most this many bytes, written while
   * the thread is idle, is written and fdatasynced synchronously on the
   * owner thread instead (0 ..= 16 MiB, default 0: off). This saves the two
   * cross-thread wake-ups a job of the thread costs (about 0.1 ms of a
   * 0.5 ms commit at one committer on a small VM), but blocks the event
   * loop for the write + fdatasync, a few hundred microseconds per epoch:
   * every other asynchronous operation of the process (a page store's
   * checkpoint, network I/O) then advances by one step per epoch, and a
   * checkpoint racing continuous commits was measured to fall behind for
   * good. Turn it on (256 KiB covers an epoch of a few dozen 4 KiB pages)
   * when the log's commits are the process's only latency-critical work.
   * Larger segments, and any segment while the thread is busy, always go to
   * the thread.
   */
  callerWriteBytesMax?: number;
  /**
   * Most files the `pool` sink keeps (1 ..= 256, default 64): new, empty
   * ones and recycled segment files, counting those that hold an
   * acknowledged epoch not yet published. Disk space held by the pool is at
   * most this many recycled segments (new files are empty). A larger pool
   * takes more of what a checkpoint gives back: in a bench/pool.ts-style run
   * with a consumer recycling every 20 ms, 64 committers made 63.9k, 70.3k
   * and 78.8k commits/s with 8, 64 and 256 files.
   */
  segmentPoolSize?: number;
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
  /** See {@link ParallelWalConfig.allowEpochGaps}. */
  allowEpochGaps: boolean;
  autoFlush: boolean;
  lock: boolean;
  lockTimeoutMs: number;
  precreateSegmentFiles: boolean;
  /** See {@link ParallelWalConfig.segmentSink}. */
  segmentSink: SegmentSinkKind;
  /** See {@link ParallelWalConfig.ioThread}. */
  ioThread: boolean;
  /** See {@link ParallelWalConfig.pipelineFlush}. */
  pipelineFlush: boolean;
  /** See {@link ParallelWalConfig.callerWriteBytesMax}. */
  callerWriteBytesMax: number;
  /** See {@link ParallelWalConfig.segmentPoolSize}. */
  segmentPoolSize: number;
  /** See {@link ParallelWalConfig.firstEpoch} (default 0n). */
  firstEpoch: bigint;
  /** See {@link ParallelWalConfig.firstCommitSeq} (default 1n). */
  firstCommitSeq: bigint;
}

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

/** `value` if it is one of `allowed`. @throws {WalArgumentError} naming the choices. */
function checkChoice<T extends string | number>(
  name: string,
  value: unknown,
  allowed: readonly T[],
): T {
  if (allowed.includes(value as T)) return value as T;
  const choices = `${allowed.slice(0, -1).join(', ')} or ${String(allowed[allowed.length - 1])}`;
  throw new WalArgumentError(`${name} must be ${choices}, got ${String(value)}`);
}

/** The lane and epoch sizes of a configuration, validated, defaults filled in. */
function resolveLaneSizes(config: ParallelWalConfig) {
  return {
    slotCount: checkInteger(
      'slotCount',
      config.slotCount ?? Math.min(slotCountMax, Math.max(1, availableParallelism())),
      1,
      slotCountMax,
    ),
    epochIntervalMs: checkInteger(
      'epochIntervalMs',
      config.epochIntervalMs ?? epochIntervalMsDefault,
      1,
      epochIntervalMsMax,
    ),
    bufferCapacityBytes: checkBufferBytes(
      'bufferCapacityBytes',
      config.bufferCapacityBytes ?? bufferCapacityBytesDefault,
    ),
    overflowPolicy: checkChoice('overflowPolicy', config.overflowPolicy ?? 'allocateOverflow', [
      'allocateOverflow',
      'blockWriter',
    ] as const),
    overflowFallbackBytes: checkInteger(
      'overflowFallbackBytes',
      config.overflowFallbackBytes ?? overflowFallbackBytesDefault,
      0,
      bufferCapacityBytesMax,
    ),
    maxEpochBytes: checkBufferBytes('maxEpochBytes', config.maxEpochBytes ?? epochBytesMaxDefault),
    serializedCapacityBytes: checkBufferBytes(
      'serializedCapacityBytes',
      config.serializedCapacityBytes ?? serializedCapacityBytesDefault,
    ),
  };
}

/** A byte size within what one lane buffer may hold. */
function checkBufferBytes(name: string, value: number): number {
  return checkInteger(name, value, bufferCapacityBytesMin, bufferCapacityBytesMax);
}

/** Validates a configuration and fills in defaults. @throws {WalArgumentError} */
export function resolveParallelWalConfig(
  config: ParallelWalConfig = {},
): ResolvedParallelWalConfig {
  if (typeof config !== 'object' || config === null) {
    throw new WalArgumentError('config must be an object');
  }
  const formatVersion = checkChoice('formatVersion', config.formatVersion ?? formatVersionDefault, [
    1, 2,
  ] as const);
  return {
    ...resolveLaneSizes(config),
    fsync: checkChoice('fsync', config.fsync ?? 'full', ['full', 'normal', 'off'] as const),
    formatVersion,
    skipCorrupt: checkBoolean('skipCorrupt', config.skipCorrupt ?? false),
    allowEpochGaps: checkBoolean('allowEpochGaps', config.allowEpochGaps ?? false),
    autoFlush: checkBoolean('autoFlush', config.autoFlush ?? true),
    lock: checkBoolean('lock', config.lock ?? true),
    lockTimeoutMs: checkLockTimeout(config.lockTimeoutMs),
    precreateSegmentFiles: checkBoolean(
      'precreateSegmentFiles',
      config.precreateSegmentFiles ?? false,
    ),
    segmentSink: resolveSegmentSink(config, formatVersion),
    ioThread: checkBoolean('ioThread', config.ioThread ?? true),
    pipelineFlush: checkBoolean('pipelineFlush', config.pipelineFlush ?? true),
    callerWriteBytesMax: checkInteger(
      'callerWriteBytesMax',
      config.callerWriteBytesMax ?? callerWriteBytesMaxDefault,
      0,
      callerWriteBytesMaxLimit,
    ),
    segmentPoolSize: checkSegmentPoolSize(config.segmentPoolSize ?? segmentPoolSizeDefault),
    firstEpoch: checkBigint('firstEpoch', config.firstEpoch ?? 0n, u64Max),
    // The shared commit-sequence counter is a signed 64-bit word (BigInt64Array).
    firstCommitSeq: checkBigint('firstCommitSeq', config.firstCommitSeq ?? 1n, i64Max),
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
    // and 1.6-2.6x at 64 (bench/engine.ts). The `pool` sink measured slower
    // for a log whose segments are never recycled (docs/benchmarks.md,
    // "Reused segment files"), so it stays an option. v1 has no record
    // CRCs, so a torn temporary file could not be told from a complete one:
    // it keeps the rename-before-ack protocol.
    return formatVersion === 1 ? 'storage' : 'earlyAck';
  }
  if (given !== 'pool' && given !== 'earlyAck' && given !== 'precreate' && given !== 'storage') {
    throw new WalArgumentError(
      `segmentSink must be pool, earlyAck, precreate or storage, got ${String(given)}`,
    );
  }
  if ((given === 'earlyAck' || given === 'pool') && formatVersion === 1) {
    // v1 records carry no CRC: a torn temporary file could not be told from a
    // complete one, so recovery could not adopt it safely.
    throw new WalArgumentError(`segmentSink ${given} needs formatVersion 2`);
  }
  return given;
}

/** Validates a commit batch's shape (records are validated when encoded). @throws {WalArgumentError} */
export function checkBatch(batch: ParallelWalBatch): void {
  if (typeof batch !== 'object' || batch === null) {
    throw new WalArgumentError('batch must be an object');
  }
  if (typeof batch.txnToken !== 'object' || batch.txnToken === null) {
    throw new WalArgumentError('batch.txnToken must be { id: bigint, epoch: number }');
  }
  if (batch.commitSeq !== undefined) {
    if (typeof batch.commitSeq !== 'bigint' || batch.commitSeq < 0n || batch.commitSeq > u64Max) {
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
    checkInteger('frame.dbSizeIfCommit', frame.dbSizeIfCommit, 0, u32Max);
  }
}
