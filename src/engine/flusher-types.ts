/**
 * The flusher's types and thresholds (`flusher.ts`): what it works with, what
 * its host (the log) offers it, and the state of a started write.
 */
import type { AckWatermark } from './ack-watermark.js';
import type { EngineControl, PreparedEpochWrite } from './control-hooks.js';
import type { EpochCoordinator, EpochSegment } from './epochs.js';
import type { WalFailedError } from './errors.js';
import type { InProcessLane } from './lane.js';
import type { SegmentSink, SegmentWrite } from './segment-writer.js';
import type { ResolvedParallelWalConfig } from './wal-config.js';
import type { WalCounters } from './wal-stats.js';
import type { DurableEpochInfo } from './wal-types.js';

/**
 * A wave (the epoch sealed last) is split (see {@link Flusher.kick}) once
 * it had this many commits or {@link waveSplitBytesMin} bytes: below both,
 * the committers' CPU time for half a wave is small against the fixed cost
 * of one more segment (a fresh file's allocating fdatasync and two thread
 * hops). Measured with `bench/waves.ts` (one-page commits, medians of 3,
 * split against not split): 64 committers 0.82×, 128 1.09×, 256 1.29×;
 * 16 pages × 64 committers 1.24×.
 */
export const waveSplitCommitsMin = 128;
/** See {@link waveSplitCommitsMin}. */
export const waveSplitBytesMin = 1024 * 1024;

/** A write that failed (its cause), not yet reported to the log. */
export interface WriteFailure {
  cause: unknown;
}

/** An epoch's durable write, started (synchronously) and not yet finished. */
export interface StartedWrite {
  segment: EpochSegment;
  prepared: PreparedEpochWrite | null;
  writeStartedMs: number;
  /** The sink's result, or why it failed (never rejects). */
  result: Promise<SegmentWrite | WriteFailure>;
}

/** What one flush cycle ended with. */
export type CycleOutcome = { ok: true; newEpoch: bigint } | { ok: false; error: Error };

/** The parts of the log the flusher reads and calls back into. */
export interface FlusherHost {
  /** The log's failure, or null. */
  failure(): WalFailedError | null;
  /** True once `close()` began. */
  isClosing(): boolean;
  /** True once `close()` finished. */
  isClosed(): boolean;
  /** Puts the log in the failed state (first failure wins) and returns it. */
  enterFailed(cause: unknown, epoch: bigint | null): WalFailedError;
  /** `epoch` is acknowledged (data durable): tell the acknowledgement listeners. */
  acknowledged(epoch: bigint, info: DurableEpochInfo): void;
  /** `info.epoch` is published: tell the durability listeners. */
  published(info: DurableEpochInfo): void;
  /** A cycle ended: free released lanes, wake writers waiting for room. */
  afterCycle(): void;
}

/** What a flusher works with. */
export interface FlusherOptions {
  config: ResolvedParallelWalConfig;
  coordinator: EpochCoordinator;
  sink: SegmentSink;
  acks: AckWatermark;
  control: EngineControl | null;
  counters: WalCounters;
  /** The in-process lanes (their contention is seal-point evidence for the control plane). */
  inProcessLanes: readonly InProcessLane[];
  host: FlusherHost;
}
