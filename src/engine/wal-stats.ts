/**
 * The figures a {@link ParallelWal} reports (`stats()`): the counters its
 * commit path and flusher keep, and the commit-latency histogram.
 */

import * as hdr from 'hdr-histogram-js';
import type { AckWatermark } from './ack-watermark.js';
import type { EngineControl } from './control-hooks.js';
import type { EpochCoordinator } from './epochs.js';
import type { Flusher } from './flusher.js';
import type { DurableWriteExecutor, DurableWriteExecutorStats } from './io-executor.js';
import { InProcessLane } from './lane.js';
import type { EngineLane } from './lane-types.js';
import type { SegmentPoolStats } from './pool-sink.js';
import type { SegmentSink } from './segment-writer.js';
import type { WorkerLanePool, WorkerLaneStats } from './worker-lane-pool.js';

/** Microseconds in a millisecond (`performance.now()` counts milliseconds). */
export const microsPerMs = 1000;

/** Microseconds from `fromMs` to `toMs` (both `performance.now()` readings), rounded. */
export function elapsedMicros(fromMs: number, toMs: number): number {
  return Math.round((toMs - fromMs) * microsPerMs);
}

/** Largest commit latency the histogram tracks, in microseconds (1 hour). */
export const latencyHistogramMicrosMax = 3_600_000_000;

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
  /** The `pool` sink's reusable segment files (`null` with another sink). */
  segmentPool: SegmentPoolStats | null;
  /** Epoch being written now, if any. */
  inFlightEpoch: bigint | null;
  epochsSealed: number;
  /** Sealed epochs whose records were all aborted: written as header-only segments. */
  emptyEpochs: number;
  segmentsWritten: number;
  /** fdatasync + directory fsync calls issued by segment writes. */
  fsyncs: number;
  /**
   * The critical-path writes (write + fdatasync of each epoch's segment,
   * `earlyAck` and `precreate` sinks): where they ran (`ioThread` or
   * `inline`), how many, and the time spent in the system calls.
   */
  durableWrites: DurableWriteExecutorStats;
  /** Where the flusher's time goes (see {@link FlushPhases}). */
  flushPhases: FlushPhases;
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
  /**
   * Epochs sealed the moment the write before them returned (commits that
   * arrived during that write), their write started before that write's
   * commits were acknowledged.
   */
  pipelinedSeals: number;
  /** Closed-loop waves split in two with the disk idle (see `flusher.ts`). */
  waveSplits: number;
  /**
   * Epochs sealed while a write was in flight and their write queued behind
   * it, to start the moment it returns (see `flusher.ts`).
   */
  queuedWrites: number;
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

/** The counters the commit path and the flusher keep (plain numbers, one owner thread). */
export interface WalCounters {
  epochsSealed: number;
  emptyEpochs: number;
  segmentsWritten: number;
  bytesWritten: number;
  commits: number;
  commitsRejected: number;
  fallbacks: number;
  earlySeals: number;
  pipelinedSeals: number;
  waveSplits: number;
  queuedWrites: number;
  backpressureWaiters: number;
  droppedAbortedRecords: number;
  flushPhases: FlushPhases;
}

/**
 * Where the flusher's time goes, summed over every epoch that wrote a
 * segment (microseconds; divide by `epochs` for one flush).
 */
export interface FlushPhases {
  /** Epochs that wrote a segment (the ones the figures below cover, except `sealMicros`). */
  epochs: number;
  /** Sealing (advancing every lane to the next epoch) at the start of a flush cycle, summed. */
  sealMicros: number;
  /** Collecting the sealed buffers and encoding the header, up to the sink's write. */
  prepareMicros: number;
  /** The sink's write, as the event loop waits for it (write + fdatasync + the hops to reach them). */
  writeMicros: number;
  /** Marking the epoch flushed and acknowledged (commits resolved, listeners called). */
  acknowledgeMicros: number;
}

/** Fresh counters, all zero. */
export function createWalCounters(): WalCounters {
  return {
    epochsSealed: 0,
    emptyEpochs: 0,
    segmentsWritten: 0,
    bytesWritten: 0,
    commits: 0,
    commitsRejected: 0,
    fallbacks: 0,
    earlySeals: 0,
    pipelinedSeals: 0,
    queuedWrites: 0,
    waveSplits: 0,
    backpressureWaiters: 0,
    droppedAbortedRecords: 0,
    flushPhases: {
      epochs: 0,
      sealMicros: 0,
      prepareMicros: 0,
      writeMicros: 0,
      acknowledgeMicros: 0,
    },
  };
}

/**
 * Significant decimal digits the latency histogram keeps: values are exact to
 * 0.1% (1 µs in 1 ms), finer than the noise of a commit's fsync.
 */
const latencySignificantDigits = 3;

/** A commit-latency histogram (microseconds, 3 significant digits, up to 1 hour). */
export class CommitLatencyHistogram {
  private readonly histogram = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: latencyHistogramMicrosMax,
    numberOfSignificantValueDigits: latencySignificantDigits,
  });

  /** Records one commit that took `elapsedMs` milliseconds. */
  record(elapsedMs: number): void {
    const micros = Math.round(elapsedMs * microsPerMs);
    this.histogram.recordValue(Math.min(latencyHistogramMicrosMax, Math.max(1, micros)));
  }

  /** Forgets every recorded value. */
  reset(): void {
    this.histogram.reset();
  }

  /**
   * Percentiles of the values recorded so far (all 0 when none). A percentile
   * is the top of its histogram bucket (up to 0.1% above the values in it),
   * while `max` is the largest value recorded, exactly: percentiles are
   * clamped to `max`, so that p50 <= p90 <= p99 <= max always holds.
   */
  summary(): LatencySummary {
    const h = this.histogram;
    if (h.totalCount === 0) return { count: 0, p50: 0, p90: 0, p99: 0, max: 0 };
    const max = h.maxValue;
    return {
      count: h.totalCount,
      p50: Math.min(h.getValueAtPercentile(50), max),
      p90: Math.min(h.getValueAtPercentile(90), max),
      p99: Math.min(h.getValueAtPercentile(99), max),
      max,
    };
  }
}

/** What the lanes add up to for `stats()`. */
export interface LaneFigures {
  contention: number;
  overflowAppends: number;
  pendingBytes: number;
}

/**
 * Sums the lanes' figures. Worker lanes' contention is left out: it counts
 * in the worker pool's figures (which keep released lanes' counts too).
 */
export function laneFigures(
  lanes: Iterable<EngineLane>,
  workerLanes: ReadonlySet<EngineLane>,
): LaneFigures {
  const figures: LaneFigures = { contention: 0, overflowAppends: 0, pendingBytes: 0 };
  for (const lane of lanes) {
    if (!workerLanes.has(lane)) figures.contention += lane.contentionEvents();
    figures.pendingBytes += lane.pendingBytes();
    if (lane instanceof InProcessLane) {
      figures.overflowAppends += lane.laneCounters().overflowAppends;
    }
  }
  return figures;
}

/** The parts of a log that {@link walStats} reads its figures from. */
export interface WalStatsSources {
  coordinator: EpochCoordinator;
  acks: AckWatermark;
  flusher: Flusher;
  sink: SegmentSink;
  executor: DurableWriteExecutor;
  counters: WalCounters;
  histogram: CommitLatencyHistogram;
  /** The `pool` sink's figures (`null` with another sink). */
  segmentPool: SegmentPoolStats | null;
  /** Worker lanes (`null`: no worker handle was ever made). */
  workerLanes: WorkerLanePool | null;
  control: EngineControl | null;
  adoptedTemporaryFiles: number;
  listenerErrors: number;
  lanesInUse: number;
  failed: boolean;
  closed: boolean;
}

/** A snapshot of a log's figures (`ParallelWal.stats()`). */
export function walStats(from: WalStatsSources): ParallelWalStats {
  const { coordinator, flusher, counters } = from;
  // Worker lanes count in the pool's figures (which keep released lanes' counts too).
  const workers = from.workerLanes?.stats() ?? null;
  const workerLanes = new Set<EngineLane>(from.workerLanes?.lanes() ?? []);
  const lanes = laneFigures(coordinator.laneList(), workerLanes);
  return {
    currentEpoch: coordinator.currentEpoch,
    appendEpoch: coordinator.appendEpoch,
    durableEpoch: coordinator.durableEpoch,
    acknowledgedEpoch: from.acks.epoch,
    publishingEpochs: flusher.publishingEpochs,
    adoptedTemporaryFiles: from.adoptedTemporaryFiles,
    segmentPool: from.segmentPool,
    inFlightEpoch: flusher.inFlightEpoch,
    epochsSealed: counters.epochsSealed,
    emptyEpochs: counters.emptyEpochs,
    segmentsWritten: counters.segmentsWritten,
    fsyncs: from.sink.syncCalls(),
    durableWrites: from.executor.stats(),
    flushPhases: { ...counters.flushPhases },
    bytesWritten: counters.bytesWritten,
    commits: counters.commits,
    commitsRejected: counters.commitsRejected,
    fallbacks: counters.fallbacks + (workers?.fallbacks ?? 0),
    contention: lanes.contention + (workers?.contentionEvents ?? 0),
    overflowAppends: lanes.overflowAppends,
    earlySeals: counters.earlySeals,
    pipelinedSeals: counters.pipelinedSeals,
    queuedWrites: counters.queuedWrites,
    waveSplits: counters.waveSplits,
    droppedAbortedRecords: counters.droppedAbortedRecords,
    listenerErrors: from.listenerErrors,
    lanesInUse: from.lanesInUse,
    workerLanes: workers,
    control: from.control?.stats?.() ?? null,
    queueDepths: {
      sealedEpochs: flusher.sealedWaiting,
      waitingEpochs: coordinator.waitingEpochs(),
      backpressureWaiters: counters.backpressureWaiters,
      pendingBytes: lanes.pendingBytes,
    },
    lastDbSizePages: flusher.lastDbSizePages,
    commitLatencyMicros: from.histogram.summary(),
    failed: from.failed,
    running: flusher.running,
    closed: from.closed,
  };
}
