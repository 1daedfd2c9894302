/**
 * The flusher of a {@link ParallelWal}: seals epochs, writes each sealed
 * epoch's segment through the sink (one durable write at a time, in epoch
 * order), acknowledges it, and chains its publication behind the earlier
 * ones. It also runs the ticker.
 *
 * Group commit adapts to load:
 * - idle disk, commits waiting: the flusher seals after one event-loop turn
 *   (`setImmediate`), so every commit issued in the same turn shares the fsync;
 * - a write+sync in flight: new commits fill the next epoch (pipelining) and
 *   the flusher seals it the moment the disk is free again;
 * - an open epoch past `maxEpochBytes` while the disk is busy is sealed early,
 *   so one segment never grows without bound;
 * - the ticker additionally advances the epoch every `epochIntervalMs` while
 *   appends are waiting; an idle tick seals nothing, because every sealed
 *   epoch gets a segment (so a missing epoch number is a lost segment).
 *
 * The log itself (failure state, listeners, lanes) stays in `wal.ts`; the
 * flusher reaches it through {@link FlusherHost}.
 */

import { encodeSegmentHeader } from '../format/segment.js';
import type { AckWatermark } from './ack-watermark.js';
import type { EngineControl, PreparedEpochWrite } from './control-hooks.js';
import type { EpochCoordinator, EpochSegment } from './epochs.js';
import { EngineInvariantError, type WalFailedError } from './errors.js';
import type { InProcessLane, LaneRecordInput } from './lane.js';
import type { SegmentSink, SegmentWrite } from './segment-writer.js';
import { type ResolvedParallelWalConfig, SERIALIZED_LANE_ID } from './wal-config.js';
import { elapsedMicros as micros, type WalCounters } from './wal-stats.js';
import type { DurableEpochInfo } from './wal-types.js';

/** Most epochs sealed ahead of the one being written (early seals), per flusher. */
const sealedAheadMax = 1;

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

/** Seals, writes, acknowledges and publishes epochs; see the module comment. */
export class Flusher {
  private readonly config: ResolvedParallelWalConfig;
  private readonly coordinator: EpochCoordinator;
  private readonly sink: SegmentSink;
  private readonly acks: AckWatermark;
  private readonly control: EngineControl | null;
  private readonly counters: WalCounters;
  private readonly inProcessLanes: readonly InProcessLane[];
  private readonly host: FlusherHost;

  private cycleTail: Promise<unknown> = Promise.resolve();
  private cycleActive = false;
  private cycleScheduled = false;
  private readonly sealedQueue: { epoch: bigint; laneIds: number[] }[] = [];
  private inFlight: EpochSegment | null = null;
  private readonly tracked = new Set<Promise<unknown>>();
  /** Publications (rename + directory fsync, then onDurable) in epoch order. Never rejects. */
  private publishTail: Promise<void> = Promise.resolve();
  /** Acknowledged epochs whose publication is still pending. */
  private publishing = 0;
  private readonly epochDbSize = new Map<bigint, { seq: bigint; dbSize: number }>();
  private lastDbSize: number | null = null;

  private tickerRunning = false;
  private tickerController: AbortController | null = null;
  private readonly tickerLoops = new Set<Promise<void>>();

  // Open-epoch evidence for the control plane's seal decisions.
  private openCommits = 0;
  private openSinceMs = 0;
  private writeStartedMs: number | null = null;

  constructor(options: FlusherOptions) {
    this.config = options.config;
    this.coordinator = options.coordinator;
    this.sink = options.sink;
    this.acks = options.acks;
    this.control = options.control;
    this.counters = options.counters;
    this.inProcessLanes = options.inProcessLanes;
    this.host = options.host;
  }

  /** Epoch being written now, if any. */
  get inFlightEpoch(): bigint | null {
    return this.inFlight?.epoch ?? null;
  }

  /** Epochs sealed and waiting for their write (the one in flight excluded). */
  get sealedWaiting(): number {
    return this.sealedQueue.length - (this.inFlight === null ? 0 : 1);
  }

  /** Acknowledged epochs whose publication is pending. */
  get publishingEpochs(): number {
    return this.publishing;
  }

  /** The last acknowledged in-process commit's dbSizeIfCommit. */
  get lastDbSizePages(): number | null {
    return this.lastDbSize;
  }

  /** True while the ticker runs. */
  get running(): boolean {
    return this.tickerRunning;
  }

  /** True while `laneId` has records sealed and not yet written. */
  holdsLane(laneId: number): boolean {
    return (
      this.sealedQueue.some((s) => s.laneIds.includes(laneId)) ||
      (this.inFlight?.laneIds.includes(laneId) ?? false)
    );
  }

  /** True when nothing is appended and unsealed, or sealed and unwritten. */
  isIdle(): boolean {
    return this.openEpochBytes() === 0 && this.sealedQueue.length === 0;
  }

  /** Bytes appended to every lane and not yet sealed. */
  openEpochBytes(): number {
    let bytes = 0;
    for (const lane of this.coordinator.laneList()) bytes += lane.pendingBytes();
    return bytes;
  }

  /** Remembers a placed commit's database size (the epoch's highest sequence wins). */
  noteDbSize(epoch: bigint, commitSeq: bigint, dbSizePages: number): void {
    const known = this.epochDbSize.get(epoch);
    if (known === undefined || commitSeq >= known.seq) {
      this.epochDbSize.set(epoch, { seq: commitSeq, dbSize: dbSizePages });
    }
  }

  /**
   * Adaptive sealing. Idle disk: seal after one event-loop turn so commits of
   * the same turn share the epoch. Busy disk: let the open epoch fill; seal it
   * early only when it passes `maxEpochBytes`.
   *
   * `immediate`: the appends came from another thread (a worker lane's
   * doorbell), so there is no turn of this event loop to wait for: an idle
   * disk starts the cycle now instead of after a `setImmediate` hop.
   */
  kick(immediate = false): void {
    if (this.host.failure() !== null || this.host.isClosed()) return;
    if (this.cycleActive) {
      if (
        // sealedQueue[0] is the epoch being written; the rest are sealed ahead.
        this.sealedQueue.length - 1 < sealedAheadMax &&
        (this.control === null
          ? this.openEpochBytes() >= this.config.maxEpochBytes
          : this.controlSaysSeal())
      ) {
        this.sealEarly();
      }
      return;
    }
    if (!this.config.autoFlush && !this.host.isClosing()) return;
    if (immediate) {
      this.track(this.enqueueCycle());
      return;
    }
    if (this.cycleScheduled) return;
    this.cycleScheduled = true;
    setImmediate(() => {
      this.cycleScheduled = false;
      if (!this.cycleActive && this.host.failure() === null && !this.host.isClosed())
        this.track(this.enqueueCycle());
    });
  }

  /** Runs one flush cycle after the ones already queued. Never rejects. */
  enqueueCycle(): Promise<CycleOutcome> {
    const run = this.cycleTail.then(() => this.cycle());
    this.cycleTail = run;
    return run;
  }

  /**
   * Waits for every cycle started so far, then for every publication
   * (started now rather than after the sink's batching delay).
   */
  async settle(): Promise<void> {
    await Promise.all([...this.tracked]);
    await this.cycleTail;
    this.sink.publishNow?.();
    await this.publishTail;
  }

  /** Starts the ticker: every `epochIntervalMs` a cycle (also when idle). */
  startTicker(signal?: AbortSignal): void {
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
        { once: true },
      );
    }
    this.tickerController = controller;
    this.tickerRunning = true;
    const loop = this.tickerLoop(controller.signal);
    this.tickerLoops.add(loop);
    void loop.finally(() => this.tickerLoops.delete(loop));
  }

  /** Stops the ticker and waits until its loop has finished. Idempotent. */
  async stopTicker(): Promise<void> {
    this.tickerRunning = false;
    this.tickerController?.abort();
    this.tickerController = null;
    await Promise.all([...this.tickerLoops]);
  }

  /** After a placement: open-epoch evidence, and the batch staged for shadow compare. */
  notePlacement(
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

  /**
   * One cycle: advance (sealing the open epoch), then write every sealed
   * epoch in order, one durable write at a time.
   */
  private async cycle(): Promise<CycleOutcome> {
    const failed = this.host.failure();
    if (failed !== null) return { ok: false, error: failed };
    this.cycleActive = true;
    try {
      // Every sealed epoch gets a segment, so recovery can tell a lost
      // segment from an unused number: with nothing appended the open epoch
      // stays open (an idle ticker, close, or advanceAndFlush seal nothing).
      if (this.openEpochBytes() > 0) {
        // Also a decision point for the control plane's lane budget: commits
        // that wait for their epoch (closed loop) arrive only while the disk
        // is idle. The epoch is sealed here whatever the sealing action says.
        if (this.control !== null) this.sealPoint(true);
        const sealStartedMs = performance.now();
        const advanced = this.coordinator.advanceNow();
        this.counters.flushPhases.sealMicros += micros(sealStartedMs, performance.now());
        this.openCommits = 0;
        this.counters.epochsSealed++;
        this.sealedQueue.push({ epoch: advanced.sealedEpoch, laneIds: advanced.sealedLaneIds });
      }
      while (this.sealedQueue.length > 0) {
        const next = this.sealedQueue[0]!;
        const error = await this.flushOne(next.epoch);
        if (error !== null) return { ok: false, error };
        this.sealedQueue.shift();
      }
      return { ok: true, newEpoch: this.coordinator.appendEpoch };
    } catch (error) {
      // Only an engine invariant breach gets here (flushOne handles I/O).
      const failure = this.host.enterFailed(error, this.sealedQueue[0]?.epoch ?? null);
      return { ok: false, error: failure };
    } finally {
      this.cycleActive = false;
      this.host.afterCycle();
      if (this.host.failure() === null && this.openEpochBytes() > 0) this.kick();
    }
  }

  /**
   * Writes one sealed epoch durably and acknowledges it; its publication
   * (segment name durable, then `onDurable`) is chained behind the earlier
   * ones. Returns the failure, or null.
   */
  private async flushOne(epoch: bigint): Promise<Error | null> {
    const startedMs = performance.now();
    const segment = this.coordinator.flushEpoch(epoch);
    // Control plane: header, records and certificate trailer to write, after
    // shadow compare (a diverged epoch is replaced by the conservative result,
    // or must not be acknowledged at all).
    const prepared = this.prepareWithControl(segment);
    if (prepared !== null && !prepared.acknowledge) {
      return this.host.enterFailed(
        new EngineInvariantError(`epoch ${epoch} diverged from the conservative path`),
        epoch,
      );
    }
    const written = await this.writeSegment(segment, prepared?.chunks ?? null, startedMs);
    if (written instanceof Error) return written;
    // An earlier epoch's background publication failed meanwhile: the log
    // refuses; this epoch's data may be on disk but it is not acknowledged.
    const failed = this.host.failure();
    if (failed !== null) return failed;
    const writtenMs = performance.now();
    const info = this.noteWritten(segment, prepared, written.bytes, writtenMs);
    // Acknowledge: the epoch's data is durable and recovery finds it.
    this.acks.advance(epoch);
    this.host.acknowledged(epoch, info);
    this.counters.flushPhases.acknowledgeMicros += micros(writtenMs, performance.now());
    this.publishInOrder(info, written.published);
    return null;
  }

  /**
   * The durable write of `segment` (header and records, or the control
   * plane's `chunks`): on failure the log fails and this returns its error.
   */
  private async writeSegment(
    segment: EpochSegment,
    chunks: Uint8Array[] | null,
    startedMs: number,
  ): Promise<SegmentWrite | Error> {
    const { epoch } = segment;
    // An epoch whose records were all aborted still gets its (header-only)
    // segment: the log never leaves an epoch number without one.
    this.inFlight = segment;
    const header = encodeSegmentHeader({
      version: this.config.formatVersion,
      epoch,
      recordCount: segment.recordCount,
    });
    this.writeStartedMs = performance.now();
    this.counters.flushPhases.prepareMicros += micros(startedMs, this.writeStartedMs);
    try {
      const all = chunks ?? [header, ...segment.chunks];
      const written = await this.sink.write(epoch, all.length > 0 ? all : [header]);
      this.acks.noteSynced(epoch);
      return written;
    } catch (cause) {
      // Not durable; the epoch stays first (its lanes keep it Flushing) and
      // the log refuses everything from here on.
      this.control?.epochFailed(epoch, cause);
      return this.host.enterFailed(cause, epoch);
    } finally {
      this.inFlight = null;
    }
  }

  /** Counts a written epoch, frees its lanes' buffers, and describes it for the listeners. */
  private noteWritten(
    segment: EpochSegment,
    prepared: PreparedEpochWrite | null,
    bytes: number,
    writtenMs: number,
  ): DurableEpochInfo {
    const { epoch } = segment;
    const startedMs = this.writeStartedMs ?? writtenMs;
    const phases = this.counters.flushPhases;
    phases.epochs++;
    phases.writeMicros += micros(startedMs, writtenMs);
    this.counters.segmentsWritten++;
    this.counters.bytesWritten += bytes;
    if (segment.recordCount === 0) this.counters.emptyEpochs++;
    this.counters.droppedAbortedRecords += segment.droppedAborted;
    if (prepared !== null) this.control?.epochDurable(prepared, micros(startedMs, writtenMs));
    this.writeStartedMs = null;
    this.coordinator.completeFlush(epoch, segment.laneIds);
    const dbSize = this.epochDbSize.get(epoch);
    this.epochDbSize.delete(epoch);
    if (dbSize !== undefined) this.lastDbSize = dbSize.dbSize;
    return {
      epoch,
      segmentWritten: true,
      recordCount: segment.recordCount,
      bytes,
      laneIds: segment.laneIds,
      recordsPerCore: segment.recordsPerCore,
      commitSeqLo: segment.commitSeqLo,
      commitSeqHi: segment.commitSeqHi,
      dbSizePages: dbSize?.dbSize ?? null,
    };
  }

  /**
   * Publishes an acknowledged epoch once `published` settles, in epoch order
   * (empty epochs too, behind the ones before them).
   */
  private publishInOrder(info: DurableEpochInfo, published: Promise<void> | null): void {
    const publish = (): void => {
      this.coordinator.markEpochDurable(info.epoch);
      this.host.published(info);
    };
    if (published === null && this.publishing === 0) {
      // Already under its name and nothing before it pending: publish now
      // (the storage and precreate sinks always take this path).
      publish();
      return;
    }
    this.publishing++;
    this.publishTail = this.publishTail
      .then(() => published)
      .finally(() => {
        this.publishing--;
      })
      .then(publish, (cause: unknown) => {
        // Acknowledged epochs stay acknowledged (recovery adopts them);
        // nothing after them will be.
        this.host.enterFailed(cause, this.firstUnacknowledgedEpoch());
      });
  }

  /** The lowest epoch not acknowledged (what a failure in publication fails). */
  private firstUnacknowledgedEpoch(): bigint {
    const acked = this.acks.epoch;
    return acked === null ? 0n : acked + 1n;
  }

  /** A seal decision point while a write is in flight: does the controller seal now? */
  private controlSaysSeal(): boolean {
    const decision = this.sealPoint();
    if (decision === null) return this.openEpochBytes() >= this.config.maxEpochBytes;
    return decision.action === 'sealEpochNow' || decision.action === 'forceConservative';
  }

  /** The control plane's decision at a seal point (it applies lane-budget changes itself). */
  private sealPoint(sealing = false): { action: string } | null {
    const nowMs = performance.now();
    let contention = 0;
    for (const lane of this.inProcessLanes) contention += lane.laneCounters().contentionEvents;
    return this.control!.onSealPoint({
      nowMs,
      pendingCommits: this.openCommits,
      epochBytes: this.openEpochBytes(),
      oldestPendingAgeMs: this.openCommits === 0 ? 0 : nowMs - this.openSinceMs,
      syncInFlightSinceMs: this.writeStartedMs,
      backlogFrames: this.sealedQueue.length,
      contentionTotal: contention,
      openEpoch: this.coordinator.appendEpoch,
      laneCapacityBytes: this.config.bufferCapacityBytes,
      ...(sealing ? { sealing } : {}),
    });
  }

  /** The control plane's version of an epoch's bytes; `null` without a control plane. */
  private prepareWithControl(segment: EpochSegment): PreparedEpochWrite | null {
    if (this.control === null) return null;
    // Worker lanes encode on their own threads and are never staged: their
    // sealed bytes complete the conservative result, so the whole epoch is
    // compared and a divergence is repaired (fallback), never a failure.
    const externalChunks: Uint8Array[] = [];
    for (const share of segment.laneShares) {
      if (share.laneId >= this.config.slotCount && share.laneId !== SERIALIZED_LANE_ID) {
        externalChunks.push(...share.chunks);
      }
    }
    const dbSize = this.epochDbSize.get(segment.epoch);
    return this.control.prepareEpoch({
      epoch: segment.epoch,
      chunks: segment.chunks,
      recordCount: segment.recordCount,
      laneIds: segment.laneIds,
      recordsPerCore: segment.recordsPerCore,
      dbSizePages: dbSize?.dbSize ?? 0,
      externalChunks,
    });
  }

  private async tickerLoop(signal: AbortSignal): Promise<void> {
    const { setTimeout: sleep } = await import('node:timers/promises');
    while (!signal.aborted) {
      try {
        await sleep(this.config.epochIntervalMs, undefined, { signal });
      } catch {
        break; // aborted
      }
      if (signal.aborted || this.host.failure() !== null || this.host.isClosed()) break;
      if (!this.cycleActive) await this.enqueueCycle();
    }
  }
}
