/**
 * The flusher of a {@link ParallelWal}: seals epochs, writes each sealed
 * epoch's segment through the sink (one durable write at a time, in epoch
 * order), acknowledges it, and chains its publication behind the earlier
 * ones. It also runs the ticker.
 *
 * Group commit adapts to load:
 * - idle disk, commits waiting: the flusher seals after one event-loop turn
 *   (`setImmediate`), so every commit issued in the same turn shares the fsync;
 * - a write+sync in flight: new commits fill the next epoch (pipelining);
 *   the moment the write returns, the flusher seals that epoch and starts
 *   its write, and only then acknowledges the epoch just written — so the
 *   disk is busy while the acknowledged commits continue;
 * - closed-loop committers move as one wave (they all continue at one
 *   acknowledgement, in one run of microtasks): with the disk idle, a big
 *   wave is split once, its first half sealed and written from the commit
 *   that filled it; pipelining then keeps the two halves apart, one
 *   committing while the other is written (`splitWave`); and once the half
 *   that was acknowledged has committed again, its epoch is sealed and its
 *   write queued behind the one in flight (`queueNext`), so the I/O thread
 *   goes from one write to the next without waiting for this event loop;
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
import { prepareEpochWithControl } from './epoch-control.js';
import { EpochPublisher } from './epoch-publisher.js';
import { EpochTicker } from './epoch-ticker.js';
import type { EpochCoordinator, EpochSegment } from './epochs.js';
import { EngineInvariantError } from './errors.js';
import {
  type CycleOutcome,
  type FlusherHost,
  type FlusherOptions,
  type StartedWrite,
  type WriteFailure,
  waveSplitBytesMin,
  waveSplitCommitsMin,
} from './flusher-types.js';
import { InProcessLane, type LaneRecordInput } from './lane.js';
import type { SegmentSink, SegmentWrite } from './segment-writer.js';
import { type ResolvedParallelWalConfig, SERIALIZED_LANE_ID } from './wal-config.js';
import { elapsedMicros as micros, type WalCounters } from './wal-stats.js';
import type { DurableEpochInfo } from './wal-types.js';

export type { CycleOutcome, FlusherHost, FlusherOptions } from './flusher-types.js';
export { waveSplitBytesMin, waveSplitCommitsMin } from './flusher-types.js';

/** Most epochs sealed ahead of the one being written (early seals), per flusher. */
const sealedAheadMax = 1;

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
  /**
   * The write of `sealedQueue[0]`, once started (its segment is `inFlight`),
   * or why it could not start. A failure is reported to the log only when
   * the epoch's turn comes ({@link flushOne}), so that it never overtakes
   * the acknowledgement of the epoch written before it.
   */
  private started: { epoch: bigint; write: StartedWrite | WriteFailure } | null = null;
  /**
   * The write of `sealedQueue[1]`, queued behind {@link started} at the
   * sink's executor ({@link queueNext}); it becomes `started` at that
   * epoch's turn.
   */
  private queued: { epoch: bigint; write: StartedWrite | WriteFailure } | null = null;
  /** Commits placed in the epoch sealed last (the size of the last wave). */
  private lastSealedCommits = 0;
  /** Bytes of the epoch sealed last. */
  private lastSealedBytes = 0;
  private readonly tracked = new Set<Promise<unknown>>();
  /** Publications (rename + directory fsync, then onDurable) in epoch order. */
  private readonly publisher: EpochPublisher;
  private readonly epochDbSize = new Map<bigint, { seq: bigint; dbSize: number }>();
  private lastDbSize: number | null = null;

  private readonly ticker: EpochTicker;

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
    this.publisher = new EpochPublisher(this.coordinator, this.acks, this.host);
    this.ticker = new EpochTicker(this.config.epochIntervalMs, async () => {
      if (this.host.failure() !== null || this.host.isClosed()) return false;
      if (!this.cycleActive) await this.enqueueCycle();
      return true;
    });
  }

  /** Epoch being written now, if any. */
  get inFlightEpoch(): bigint | null {
    return this.inFlight?.epoch ?? null;
  }

  /** Epochs sealed and waiting for their write (the one in flight excluded). */
  get sealedWaiting(): number {
    return this.sealedQueue.length - (this.inFlight === null ? 0 : 1) - (this.queued ? 1 : 0);
  }

  /** Acknowledged epochs whose publication is pending. */
  get publishingEpochs(): number {
    return this.publisher.waiting;
  }

  /** The last acknowledged in-process commit's dbSizeIfCommit. */
  get lastDbSizePages(): number | null {
    return this.lastDbSize;
  }

  /** True while the ticker runs. */
  get running(): boolean {
    return this.ticker.running;
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
    // Called once per placed commit: the open epoch's commit count.
    if (this.openCommits++ === 0) this.openSinceMs = performance.now();
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
      // Between two writes of a cycle (its last epoch's commits continuing):
      // the disk is idle, so a wave big enough is split now.
      if (this.inFlight === null && this.splitWave()) return;
      if (this.queueNext()) return;
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
    if (immediate || this.splitWave()) {
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

  /**
   * Wave splitting (module comment), with the disk idle: once the open epoch
   * holds half as many commits as the epoch sealed last (a big one: see
   * {@link waveSplitCommitsMin}), seal it and start its write now, from the
   * commit that filled it. {@link startAhead} keeps the halves apart. Not
   * with a control plane (its sealing controller decides).
   */
  private splitWave(): boolean {
    if (!this.config.pipelineFlush || this.control !== null) return false;
    if (this.started !== null || this.sealedQueue.length > 0) return false;
    if (!this.config.autoFlush && !this.host.isClosing()) return false;
    const wave = this.lastSealedCommits;
    if (wave < 2 || this.openCommits * 2 < wave) return false;
    if (wave < waveSplitCommitsMin && this.lastSealedBytes < waveSplitBytesMin) return false;
    this.seal();
    this.counters.waveSplits++;
    this.startNext();
    return true;
  }

  /**
   * Queues the next write behind the one in flight (module comment), once
   * the open epoch holds as many commits as the epoch sealed last (the wave
   * its acknowledgement released is back) and that wave was at least half
   * of one {@link splitWave} splits. The sink's executor starts it the moment
   * the write in flight returns, instead of after a hop to this event loop
   * and back. Only when every pending record is an in-process lane's (worker
   * writers' bursts keep their own seal point), without a control plane, and
   * when the sink can queue writes.
   */
  private queueNext(): boolean {
    if (!this.config.pipelineFlush || this.control !== null || this.queued !== null) return false;
    const head = this.started;
    if (head === null || !('result' in head.write) || this.sealedQueue.length !== 1) return false;
    if (!this.config.autoFlush && !this.host.isClosing()) return false;
    const wave = this.lastSealedCommits;
    if (wave < 2 || this.openCommits < wave) return false;
    if (wave * 2 < waveSplitCommitsMin && this.lastSealedBytes * 2 < waveSplitBytesMin)
      return false;
    if (this.sink.canQueueWrite?.() !== true) return false;
    for (const lane of this.coordinator.laneList()) {
      // While the queued epoch's buffer is written in place, its lane puts
      // appends on its overflow list; a lane that refuses them instead
      // (`blockWriter`, the serialized lane) would make submitBatch throw.
      const overflows = lane instanceof InProcessLane && lane.overflowPolicy === 'allocateOverflow';
      if (!overflows && lane.pendingBytes() > 0) return false;
    }
    this.seal();
    this.counters.queuedWrites++;
    const next = this.sealedQueue[1]!;
    this.queued = { epoch: next.epoch, write: this.tryStartWrite(next.epoch) };
    return true;
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
    // A write started for a cycle that never ran (the log failed first):
    // wait for it, so nothing is in flight once the sink is disposed.
    const { started, queued } = this;
    if (started !== null && 'result' in started.write) await started.write.result;
    if (queued !== null && 'result' in queued.write) await queued.write.result;
    if (this.host.failure() !== null && this.started === started) {
      this.started = null;
      this.inFlight = null;
    }
    if (this.host.failure() !== null && this.queued === queued) this.queued = null;
    this.sink.publishNow?.();
    await this.publisher.settled;
  }

  /** Starts the ticker: every `epochIntervalMs` a cycle (also when idle). */
  startTicker(signal?: AbortSignal): void {
    this.ticker.start(signal);
  }

  /** Stops the ticker and waits until its loop has finished. Idempotent. */
  async stopTicker(): Promise<void> {
    await this.ticker.stop();
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
    if (this.control?.stagingBatches !== true) return;
    const laneId = serialized || lane === null ? SERIALIZED_LANE_ID : lane.laneId;
    this.control.stageBatch({ laneId, epoch, commitSeq, dbSizePages, records });
  }

  private sealEarly(): void {
    this.counters.earlySeals++;
    this.seal();
  }

  /** Seals the open epoch: it joins the sealed queue, behind the ones there. */
  private seal(): void {
    const sealStartedMs = performance.now();
    this.lastSealedBytes = this.openEpochBytes();
    const advanced = this.coordinator.advanceNow();
    this.counters.flushPhases.sealMicros += micros(sealStartedMs, performance.now());
    this.lastSealedCommits = this.openCommits;
    this.openCommits = 0;
    this.counters.epochsSealed++;
    this.sealedQueue.push({ epoch: advanced.sealedEpoch, laneIds: advanced.sealedLaneIds });
  }

  /**
   * Starts the write of `sealedQueue[0]` if none is started (synchronously:
   * the job is posted on return), or takes the one queued for it.
   */
  private startNext(): void {
    const next = this.sealedQueue[0];
    if (next === undefined || this.started !== null) return;
    const queued = this.queued;
    this.queued = null;
    if (queued !== null && queued.epoch !== next.epoch) {
      throw new EngineInvariantError(
        `queued write of epoch ${queued.epoch}, next is ${next.epoch}`,
      );
    }
    const write = queued?.write ?? this.tryStartWrite(next.epoch);
    this.started = { epoch: next.epoch, write };
    this.inFlight = 'segment' in write ? write.segment : null;
  }

  /** {@link startWrite}, an engine invariant breach returned as the write's failure (reported at its turn). */
  private tryStartWrite(epoch: bigint): StartedWrite | WriteFailure {
    try {
      return this.startWrite(epoch);
    } catch (cause) {
      return { cause };
    }
  }

  /**
   * Pipelining, once a write returned and before its commits are
   * acknowledged (module comment): start the next sealed epoch's write, or
   * seal the open one and start it. Without auto-flush the open epoch is
   * left to the caller; with a control plane, to the next cycle's seal point.
   */
  private startAhead(): void {
    if (!this.config.pipelineFlush || this.host.failure() !== null || this.host.isClosed()) return;
    if (
      this.sealedQueue.length === 0 &&
      this.control === null &&
      (this.config.autoFlush || this.host.isClosing()) &&
      // In-process commits only: worker writers' commits arrive from their
      // own threads in bursts; sealed here, an epoch caught part of a burst
      // (2 workers × 32: 31 against 44 pages per epoch, and fewer
      // commits/s), so their epochs keep being sealed one turn later.
      this.openCommits > 0 &&
      this.openEpochBytes() > 0
    ) {
      this.seal();
      this.counters.pipelinedSeals++;
    }
    this.startNext();
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
        this.seal();
      }
      // The epochs sealed now. Epochs sealed while they are written
      // (pipelined, split or early) go to the next cycle: under steady load
      // the pipeline never empties, and a cycle queued behind this one
      // (advanceAndFlush, close) must not wait for the load to stop.
      const last = this.sealedQueue.at(-1)?.epoch ?? -1n;
      while (this.sealedQueue.length > 0 && this.sealedQueue[0]!.epoch <= last) {
        // flushOne takes the epoch off the queue once it is written.
        const error = await this.flushOne(this.sealedQueue[0]!.epoch);
        if (error !== null) return { ok: false, error };
      }
      return { ok: true, newEpoch: this.coordinator.appendEpoch };
    } catch (error) {
      // Only an engine invariant breach gets here (flushOne handles I/O).
      const failure = this.host.enterFailed(error, this.sealedQueue[0]?.epoch ?? null);
      return { ok: false, error: failure };
    } finally {
      this.cycleActive = false;
      this.host.afterCycle();
      if (this.host.failure() === null) {
        // Sealed epochs left (a write may be in flight already): at once.
        if (this.sealedQueue.length > 0) this.track(this.enqueueCycle());
        else if (this.openEpochBytes() > 0) this.kick();
      }
    }
  }

  /**
   * Writes one sealed epoch (the first of the queue) durably and
   * acknowledges it; its publication (segment name durable, then
   * `onDurable`) is chained behind the earlier ones. Returns the failure, or
   * null.
   */
  private async flushOne(epoch: bigint): Promise<Error | null> {
    this.startNext();
    const started = this.started;
    if (started === null || started.epoch !== epoch) {
      throw new EngineInvariantError(`epoch ${epoch} is not the next to write`);
    }
    if (!('result' in started.write)) {
      this.started = null;
      return this.host.enterFailed(started.write.cause, epoch);
    }
    const { segment, prepared, writeStartedMs, result } = started.write;
    const written = await result;
    this.started = null;
    this.inFlight = null;
    if (!('bytes' in written)) {
      // Not durable; the epoch stays first (its lanes keep it Flushing) and
      // the log refuses everything from here on.
      this.control?.epochFailed(epoch, written.cause);
      return this.host.enterFailed(written.cause, epoch);
    }
    // An earlier epoch's background publication failed meanwhile: the log
    // refuses; this epoch's data may be on disk but it is not acknowledged.
    const failed = this.host.failure();
    if (failed !== null) return failed;
    const writtenMs = performance.now();
    const info = this.noteWritten(segment, prepared, written.bytes, writeStartedMs, writtenMs);
    this.sealedQueue.shift();
    // The epoch is durable: the next write may start, before its commits continue.
    this.startAhead();
    // Acknowledge: the epoch's data is durable and recovery finds it.
    this.acks.advance(epoch);
    this.host.acknowledged(epoch, info);
    this.counters.flushPhases.acknowledgeMicros += micros(writtenMs, performance.now());
    this.publisher.publishInOrder(info, written.published);
    return null;
  }

  /**
   * Starts the durable write of sealed `epoch` (header and records, or the
   * control plane's version of them): synchronously up to the sink's job
   * being posted. A diverged epoch returns its failure; a failed write
   * resolves `result` with its failure. Neither fails the log here: that is
   * {@link flushOne}'s, at the epoch's turn.
   */
  private startWrite(epoch: bigint): StartedWrite | WriteFailure {
    const startedMs = performance.now();
    const segment = this.coordinator.flushEpoch(epoch);
    // Control plane: header, records and certificate trailer to write, after
    // shadow compare (a diverged epoch is replaced by the conservative result,
    // or must not be acknowledged at all).
    const prepared = this.prepareWithControl(segment);
    if (prepared !== null && !prepared.acknowledge) {
      return {
        cause: new EngineInvariantError(`epoch ${epoch} diverged from the conservative path`),
      };
    }
    // An epoch whose records were all aborted still gets its (header-only)
    // segment: the log never leaves an epoch number without one.
    const header = encodeSegmentHeader({
      version: this.config.formatVersion,
      epoch,
      recordCount: segment.recordCount,
    });
    const writeStartedMs = performance.now();
    this.writeStartedMs = writeStartedMs;
    this.counters.flushPhases.prepareMicros += micros(startedMs, writeStartedMs);
    const all = prepared?.chunks ?? [header, ...segment.chunks];
    const result = this.sink.write(epoch, all.length > 0 ? all : [header]).then(
      (written): SegmentWrite => {
        this.acks.noteSynced(epoch);
        return written;
      },
      (cause: unknown): WriteFailure => ({ cause }),
    );
    return { segment, prepared, writeStartedMs, result };
  }

  /** Counts a written epoch, frees its lanes' buffers, and describes it for the listeners. */
  private noteWritten(
    segment: EpochSegment,
    prepared: PreparedEpochWrite | null,
    bytes: number,
    startedMs: number,
    writtenMs: number,
  ): DurableEpochInfo {
    const { epoch } = segment;
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
    const dbSize = this.epochDbSize.get(segment.epoch)?.dbSize ?? 0;
    return prepareEpochWithControl(this.control, segment, this.config.slotCount, dbSize);
  }
}
