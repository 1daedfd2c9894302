/**
 * The checkpointer: folds published epochs into the database file, makes it
 * durable, moves the store header past them, and only then deletes their
 * segments, so at every instant the database equals the file plus the
 * segments the header has not passed (docs/design.md#recovery). Runs are
 * serialized (one running, at most one queued, shared by every caller that
 * asks meanwhile) and never wait for a commit; a run starts on its own once
 * the log holds `checkpointThresholdBytes` of segments.
 */
import { strict as assert } from 'node:assert';
import type { FallbackState } from '../control/fallback.js';
import type { DurableEpochInfo } from '../engine/wal.js';
import { u64Max } from '../format/types.js';
import { listSegments, readSegment, type SegmentFileEntry } from '../storage/segment-files.js';
import { describeError, StoreError, StoreErrorCode } from './errors.js';
import { deletableThrough, deleteFolded } from './folded-segments.js';
import { type StoreHeader, writeStoreHeader } from './header.js';
import type { CheckpointCounters } from './page-store-types.js';
import {
  type CheckpointControl,
  type CheckpointResult,
  checkpointThresholdBytesDefault,
  type PageStoreOptions,
} from './page-store-types.js';
import type { PendingCommits } from './pending-commits.js';
import { type ReadBack, waitForAcknowledgedPublished } from './read-back.js';
import {
  applyReplay,
  foldFromIndex,
  foldRecords,
  type ReplayState,
  startReplay,
} from './replay.js';
import { checkpointEpochOf, type StoreCore } from './store-core.js';

/**
 * The checkpoint control of a store: `control` when given, else the log's
 * control plane when it offers the checkpoint calls (a `ControlPlane` does).
 */
function checkpointControlOf(options: PageStoreOptions): CheckpointControl | undefined {
  if (options.control !== undefined) return options.control;
  const plane = options.controlPlane as Partial<CheckpointControl> | undefined;
  if (
    typeof plane?.serializedPathRequired === 'function' &&
    typeof plane.reportFallback === 'function'
  ) {
    return plane as CheckpointControl;
  }
  return undefined;
}

/**
 * Connects checkpoints to the control plane's fallback latch: the serialized
 * path is required while the latch is active, and a conflict enters the
 * latch with reason `checkpointConflict` (counted, traced by its listener).
 */
export function checkpointControlFromFallback(state: FallbackState): CheckpointControl {
  return {
    serializedPathRequired: () => state.active,
    reportFallback: (reason) => {
      state.enter(reason);
    },
  };
}

/** Whether one run conflicted with the serialized path, reported once. */
class ConflictWatch {
  conflict = false;

  constructor(
    private readonly control: CheckpointControl | undefined,
    private readonly path: string,
    private readonly counted: () => void,
  ) {}

  /** A conflict when the serialized path is needed now (checked as a run starts and ends). */
  check(): void {
    if (this.conflict || !(this.control?.serializedPathRequired() ?? false)) return;
    this.report(`checkpoint of ${this.path} ran while the serialized path was required`);
  }

  report(detail: string): void {
    this.conflict = true;
    this.counted();
    this.control?.reportFallback('checkpointConflict', detail);
  }
}

/** The checkpoints of one open page store. */
export class Checkpointer {
  readonly counters: CheckpointCounters = {
    checkpoints: 0,
    autoCheckpoints: 0,
    checkpointConflicts: 0,
    checkpointPagesWritten: 0,
    checkpointBytesWritten: 0,
    segmentsDeleted: 0,
  };
  /** The last automatic checkpoint's failure (`null` once one succeeds). */
  lastError: Error | null = null;
  private running: Promise<CheckpointResult> | null = null;
  private queued: Promise<CheckpointResult> | null = null;
  /** A caller (not only automatic checkpoints) waits for {@link queued}. */
  private queuedForCaller = false;
  private auto: Promise<void> | null = null;
  /** True once a run reported that it could not trust the index (`checkpoint_conflict`). */
  private conflictReported = false;
  /** Bytes of each durable segment not yet checkpointed. */
  private readonly segmentBytes = new Map<bigint, number>();
  private logBytes = 0;
  /**
   * The newest epoch whose page images the database file may hold beyond
   * its header's epoch (memory checkpoints write each page's newest image);
   * `null` while the file is exactly the header's epoch (after recovery).
   */
  private fileNewest: bigint | null = null;
  private readonly control: CheckpointControl | undefined;

  constructor(
    private readonly core: StoreCore,
    private readonly readBack: ReadBack,
    private readonly pending: PendingCommits,
  ) {
    this.control = checkpointControlOf(core.options);
  }

  /** Bytes of durable segments written since the last checkpoint. */
  get logBytesSinceCheckpoint(): number {
    return this.logBytes;
  }

  /** See {@link Checkpointer.fileNewest}. */
  get fileNewestEpoch(): bigint | null {
    return this.fileNewest;
  }

  /**
   * Runs a checkpoint (or joins the one queued). See `PageStore.checkpoint`.
   * @param forCaller the run must fold everything acknowledged before it
   *   starts, waiting for its publication (a caller's checkpoint). An
   *   automatic run folds what is published when it starts and never waits:
   *   under load publication trails acknowledgement, and a run that waited
   *   for it fell further behind with every run. A caller joining a queued
   *   automatic run makes it wait.
   */
  schedule(forCaller = true): Promise<CheckpointResult> {
    // A run already started may have chosen its epoch before our caller's
    // commits became durable: queue one more run behind it (shared by all
    // callers that arrive meanwhile).
    if (this.queued !== null) {
      if (forCaller) this.queuedForCaller = true;
      return this.queued;
    }
    this.queuedForCaller = forCaller;
    const before = this.running;
    let run!: Promise<CheckpointResult>;
    run = (async () => {
      // Yield first: `run` is assigned before this body touches it.
      await (before ?? Promise.resolve()).catch(() => undefined);
      const waitForAcknowledged = this.queuedForCaller;
      this.queued = null;
      this.queuedForCaller = false;
      this.running = run;
      try {
        return await this.run(waitForAcknowledged);
      } finally {
        if (this.running === run) this.running = null;
      }
    })();
    this.queued = run;
    return run;
  }

  /** A published segment of `info.bytes` now waits for a checkpoint. */
  countSegment(info: DurableEpochInfo): void {
    this.segmentBytes.set(info.epoch, info.bytes);
    this.logBytes += info.bytes;
  }

  /** Starts an automatic checkpoint once the log holds the threshold's bytes (none while closing). */
  startIfDue(closing: boolean): void {
    const { options } = this.core;
    const threshold = options.checkpointThresholdBytes ?? checkpointThresholdBytesDefault;
    if (!(options.autoCheckpoint ?? true) || closing || this.auto !== null) return;
    if (this.logBytes < threshold) return;
    this.counters.autoCheckpoints++;
    this.auto = this.schedule(false).then(
      () => {
        this.lastError = null;
        this.auto = null;
      },
      (error: unknown) => {
        this.lastError = error instanceof Error ? error : new Error(String(error));
        this.auto = null;
      },
    );
  }

  /** Settles once the automatic and the running checkpoint settled (for close). */
  async settled(): Promise<void> {
    if (this.auto !== null) await this.auto;
    if (this.running !== null) await this.running.catch(() => undefined);
  }

  /**
   * Runs `body` while no checkpoint can write the database file: waits for a
   * running or queued one first; checkpoints asked for meanwhile are queued
   * behind `body` and run once it settles.
   */
  async hold<T>(body: () => Promise<T>): Promise<T> {
    // A checkpoint started before this call may still be writing the file,
    // and a queued one would start without waiting for the hold below.
    for (;;) {
      const busy = this.queued ?? this.running;
      if (busy === null) break;
      await busy.catch(() => undefined);
    }
    // The hold stands in for a running checkpoint: every checkpoint scheduled
    // while it is installed awaits it before starting, and close awaits it
    // before closing the file. It never rejects; its value reaches no caller
    // of checkpoint() (they get the queued run's own result).
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const hold = released.then(() => this.emptyResult('memory', false));
    this.running = hold;
    try {
      return await body();
    } finally {
      if (this.running === hold) this.running = null;
      release();
    }
  }

  private async run(waitForAcknowledged: boolean): Promise<CheckpointResult> {
    const started = performance.now();
    try {
      const result = await this.runOnce(started, waitForAcknowledged);
      this.control?.checkpointed?.({ ...result, error: null });
      return result;
    } catch (error) {
      this.control?.checkpointed?.({
        checkpointEpoch: checkpointEpochOf(this.core.header),
        conflict: false,
        pagesWritten: 0,
        bytesWritten: 0,
        durationMs: performance.now() - started,
        error: error instanceof Error ? error : new Error(String(error)),
      });
      throw error;
    }
  }

  /**
   * One run: for a caller, wait until everything acknowledged is published;
   * choose where page images come from and how far (the published epoch) to
   * fold, fold, and count the result.
   */
  private async runOnce(started: number, waitForAcknowledged: boolean): Promise<CheckpointResult> {
    const { core } = this;
    // Conflict when the serialized path is needed as the run starts, or
    // became needed while it ran (checked again at the end).
    const watch = new ConflictWatch(this.control, core.path, () => {
      this.counters.checkpointConflicts++;
    });
    watch.check();
    if (waitForAcknowledged) await this.waitForPublished();
    // Read the durable (published) epoch first: every epoch up to it has had
    // its read-back (if any) scheduled already, so draining the chain covers it.
    const durable = core.wal.durableEpoch();
    await this.readBack.settled();
    const fromMemory = this.chooseSource(watch);
    // Commits still on their way into the index constrain a memory fold: each
    // lands in an epoch >= the append epoch read before it was submitted.
    const through = fromMemory && durable !== null ? this.pending.foldCeiling(durable) : durable;
    const result = this.emptyResult(fromMemory ? 'memory' : 'log', watch.conflict);
    if (through !== null && through >= core.header.nextEpoch) {
      await this.foldOrFail(through, fromMemory, result);
      this.counters.checkpoints++;
      this.counters.checkpointPagesWritten += result.pagesWritten;
      this.counters.checkpointBytesWritten += result.bytesWritten;
      this.counters.segmentsDeleted += result.segmentsDeleted;
    }
    watch.check();
    result.conflict = watch.conflict;
    result.durationMs = performance.now() - started;
    return result;
  }

  /**
   * Everything acknowledged before a caller's run must be folded: wait until
   * it is published (under its segment name). Never fold an unpublished epoch.
   * @throws {StoreError} `ERR_STORE_CHECKPOINT_FAILED` caused by `ERR_STORE_NOT_PUBLISHED`.
   */
  private async waitForPublished(): Promise<void> {
    try {
      await waitForAcknowledgedPublished(this.core.wal, this.core.path, 'checkpoint');
    } catch (error) {
      throw checkpointFailed(this.core.path, error);
    }
  }

  /**
   * True to fold from the page index. When memory is wanted but the parallel
   * path did something the index cannot vouch for (a worker's segment not
   * read back, a commit placed in an epoch older than announced), the run
   * folds from the log and asks the control plane, once, for the serialized
   * path, where every commit passes through commit().
   */
  private chooseSource(watch: ConflictWatch): boolean {
    const memoryWanted = (this.core.options.checkpointSource ?? 'memory') === 'memory';
    const readBackError = this.readBack.error;
    const fromMemory = memoryWanted && this.pending.memorySourceOk && readBackError === null;
    if (memoryWanted && !fromMemory && !this.conflictReported) {
      this.conflictReported = true;
      watch.report(
        `checkpoint of ${this.core.path} cannot fold from its page index (${describeError(readBackError ?? 'a commit landed in an epoch older than announced')}): folding from the log`,
      );
    }
    return fromMemory;
  }

  private emptyResult(source: 'memory' | 'log', conflict: boolean): CheckpointResult {
    return {
      checkpointEpoch: checkpointEpochOf(this.core.header),
      source,
      segmentsApplied: 0,
      segmentsDeleted: 0,
      pagesWritten: 0,
      bytesWritten: 0,
      dbSizePages: this.core.header.dbSizePages,
      conflict,
      durationMs: 0,
      phasesMs: { fold: 0, write: 0, header: 0, delete: 0 },
    };
  }

  /** {@link Checkpointer.fold}, every failure as `ERR_STORE_CHECKPOINT_FAILED`. */
  private async foldOrFail(
    through: bigint,
    fromMemory: boolean,
    result: CheckpointResult,
  ): Promise<void> {
    try {
      await this.fold(through, fromMemory, result);
    } catch (error) {
      if (error instanceof StoreError && error.code === StoreErrorCode.checkpointFailed)
        throw error;
      throw checkpointFailed(this.core.path, error);
    }
  }

  /**
   * Folds the epochs from the header's next one through `last`: newest image
   * of every page into the file (fsynced), the header moved past them
   * (durably), and only then their segments deleted (or recycled). A crash
   * in between replays them, idempotently.
   */
  private async fold(last: bigint, fromMemory: boolean, result: CheckpointResult): Promise<void> {
    const { core } = this;
    const lap = lapTimer();
    const entries = (await listSegments(core.path, { fs: core.fs })).filter(
      (e) => e.epoch >= core.header.nextEpoch && e.epoch <= last,
    );
    const state = fromMemory ? foldFromIndex(core.index, last) : await this.foldFromLog(entries);
    // A memory fold writes each page's newest image, possibly of a commit
    // after `last`: from now on (even if this run fails after writing) the
    // file may hold images up to the newest indexed epoch.
    if (fromMemory) this.raiseFileNewest(core.index.sizeThrough(u64Max).lastStamp?.epoch);
    result.phasesMs.fold = lap();
    result.pagesWritten = await applyReplay(core.file, state);
    result.bytesWritten = result.pagesWritten * core.pageSize;
    result.segmentsApplied = entries.length;
    result.phasesMs.write = lap();
    const header = await this.moveHeader(last, state);
    result.phasesMs.header = lap();
    // Folded segments go back into the log's pool of reusable files, or are
    // unlinked side by side: the header now starts the log above them, so
    // unlike a bare log's recovery (which needs what is left to be a run of
    // epochs, so its recycleSegments unlinks in epoch order) nothing here
    // depends on their order. One at a time, each unlink waited a turn of a
    // busy event loop: under load a checkpoint fell behind the segments it
    // had to delete, and the directory grew without bound.
    const recycle =
      core.options.segmentSink === 'pool'
        ? (doomed: SegmentFileEntry[]) => core.wal.recycleSegments(doomed, header.nextEpoch)
        : undefined;
    result.segmentsDeleted = await deleteFolded(
      core.path,
      core.fs,
      deletableThrough(last, core.options.retainSegmentsAbove),
      recycle,
    );
    result.phasesMs.delete = lap();
    this.forgetSegmentsThrough(last);
    result.checkpointEpoch = last;
    result.dbSizePages = state.sizePages;
  }

  /** The fold of the given segments, read back from disk. */
  private async foldFromLog(entries: readonly SegmentFileEntry[]): Promise<ReplayState> {
    const { core } = this;
    const state = startReplay(core.header.dbSizePages);
    for (const entry of entries) {
      const { header, records } = await readSegment(entry.path, { fs: core.fs });
      if (header.epoch !== entry.epoch) {
        throw new StoreError(
          StoreErrorCode.checkpointFailed,
          `segment ${entry.path} has mismatched epoch: header=${header.epoch}, filename=${entry.epoch}`,
        );
      }
      foldRecords(state, records, core.header.nextEpoch, core.pageSize, entry.path);
    }
    return state;
  }

  /**
   * Makes the header past `last` durable (the file is durable already), then
   * drops the folded commits from the index. @returns the new header.
   */
  private async moveHeader(last: bigint, state: ReplayState): Promise<StoreHeader> {
    const { core } = this;
    const header: StoreHeader = {
      pageSize: core.pageSize,
      dbSizePages: state.sizePages,
      nextEpoch: last + 1n,
      checkpointCommitSeq: state.lastStamp?.commitSeq ?? core.header.checkpointCommitSeq,
    };
    assert.ok(
      header.nextEpoch > core.header.nextEpoch,
      `a checkpoint of ${core.path} would move the folded floor back from epoch ${core.header.nextEpoch} to ${header.nextEpoch}`,
    );
    await writeStoreHeader(core.path, header, core.fs);
    core.header = header;
    core.index.pruneThrough(last, state.sizePages);
    return header;
  }

  /** Stops counting the segments of epochs `<= last` towards the next automatic checkpoint. */
  private forgetSegmentsThrough(last: bigint): void {
    for (const [epoch, bytes] of [...this.segmentBytes]) {
      if (epoch > last) continue;
      this.logBytes -= bytes;
      this.segmentBytes.delete(epoch);
    }
    assert.ok(this.logBytes >= 0, `segment bytes since the last checkpoint went negative`);
  }

  private raiseFileNewest(epoch: bigint | null | undefined): void {
    if (epoch === null || epoch === undefined) return;
    if (this.fileNewest === null || epoch > this.fileNewest) this.fileNewest = epoch;
  }
}

function checkpointFailed(path: string, error: unknown): StoreError {
  return new StoreError(
    StoreErrorCode.checkpointFailed,
    `checkpoint of ${path} failed: ${describeError(error)}`,
    { cause: error },
  );
}

/** A stopwatch: each call returns the ms since the previous call (or since it was made). */
function lapTimer(): () => number {
  let mark = performance.now();
  return () => {
    const now = performance.now();
    const ms = now - mark;
    mark = now;
    return ms;
  };
}
