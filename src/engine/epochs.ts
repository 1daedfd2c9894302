/**
 * The epoch coordinator (docs/design.md#epochs).
 *
 * Two counters: `currentEpoch`, published first when advancing, and
 * `appendEpoch`, the tag writers use, which moves only after every lane has
 * sealed the old epoch. Flushing an epoch gathers every lane's share, drops
 * records that never committed, and puts the rest in canonical order by
 * reading the sort keys straight out of the encoded bytes (no re-encode).
 * Durability is tracked as `durableEpoch = max(durableEpoch, E)`; waiters for
 * any epoch <= E are released then and only then.
 */
import { WalArgumentError } from '../errors.js';
import {
  RECORD_BEGIN_SEQ_OFFSET,
  RECORD_EPOCH_OFFSET,
  RECORD_HAS_END_SEQ_OFFSET,
  RECORD_LENGTH_PREFIX_BYTES,
  RECORD_PAGE_ID_OFFSET,
  RECORD_TXN_ID_OFFSET,
} from '../format/record.js';
import { type FormatVersion, recordMinBytes } from '../format/types.js';
import { createDeferred, type Deferred } from './deferred.js';
import {
  DurableTimeoutError,
  EngineInvariantError,
  FenceTimeoutError,
  LaneStateError,
} from './errors.js';
import { invariant } from './invariant.js';
import type { EngineLane, SealedLaneData } from './lane-types.js';

/** Largest timeout any engine wait accepts: 24 hours, in milliseconds. */
export const timeoutMsMax = 24 * 60 * 60 * 1000;

/** A lane whose writer reports which `currentEpoch` it has seen (for advance fences). */
export interface FenceableLane {
  readonly laneId: number;
  /** The newest `currentEpoch` the lane's writer has seen. */
  observedEpoch(): bigint;
}

/** Options of {@link EpochCoordinator.advance}. */
export interface AdvanceOptions {
  /** Lanes that must observe the new `currentEpoch` before the old one is sealed. */
  fenceLanes?: readonly FenceableLane[];
  /** How long the fence may wait (default 1000 ms). On timeout the advance rolls back. */
  timeoutMs?: number;
}

/** What an advance did. */
export interface AdvanceResult {
  /** The epoch that was closed (sealed where lanes held records). */
  sealedEpoch: bigint;
  /** The new `currentEpoch` / `appendEpoch`. */
  newEpoch: bigint;
  /** Lanes that sealed something for `sealedEpoch`, in lane order. */
  sealedLaneIds: number[];
}

/** One epoch's segment body, ready for a header and a durable write. */
export interface EpochSegment {
  epoch: bigint;
  /** Committed records in canonical order, wire form, back to back across chunks. */
  chunks: Uint8Array[];
  /** Records in `chunks` (aborted records are already dropped). */
  recordCount: number;
  /** Bytes in `chunks`. */
  byteCount: number;
  /** Lane ids that took part, ascending; parallel to {@link EpochSegment.recordsPerCore}. */
  laneIds: number[];
  /** Committed records contributed by each lane of {@link EpochSegment.laneIds}. */
  recordsPerCore: number[];
  /** Records dropped because they never committed (no `endSeq`). */
  droppedAborted: number;
  /** Smallest and largest `beginSeq` in the segment; `null` when empty. */
  commitSeqLo: bigint | null;
  commitSeqHi: bigint | null;
  /**
   * Each taking-part lane's own bytes as it sealed them (aborted records
   * included), in lane order; valid until the flush completes. Shadow compare
   * rebuilds the conservative result of worker lanes from these.
   */
  laneShares: ReadonlyArray<{ laneId: number; chunks: readonly Uint8Array[] }>;
}

/** Options of {@link EpochCoordinator}. */
export interface EpochCoordinatorOptions {
  /** First open epoch (default 0). */
  startEpoch?: bigint;
  /** Highest epoch already durable on disk, or `null` (default). */
  durableEpoch?: bigint | null;
  formatVersion?: FormatVersion;
}

interface RecordSlice {
  source: Uint8Array;
  start: number;
  end: number;
  seqHi: number;
  seqLo: number;
  txnHi: number;
  txnLo: number;
  pageId: number;
}

/** How long an advance fence waits for its lanes by default, in ms. */
const fenceTimeoutMsDefault = 1000;
/**
 * A u64 field is read as two little-endian u32 halves (plain numbers compare
 * faster than bigints while sorting): the high half sits this many bytes
 * after the low one.
 */
const U64_HIGH_HALF_OFFSET = 4;
/** Bits in the low u32 half of a u64, and the mask that keeps them. */
const U32_BITS = 32n;
const U32_MASK = 0xffff_ffffn;

/** The little-endian u32 at `at`. */
function readU32(bytes: Uint8Array, at: number): number {
  return (
    (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0
  );
}

function compareSlices(a: RecordSlice, b: RecordSlice): number {
  return (
    a.seqHi - b.seqHi ||
    a.seqLo - b.seqLo ||
    a.txnHi - b.txnHi ||
    a.txnLo - b.txnLo ||
    a.pageId - b.pageId
  );
}

function toU64(hi: number, lo: number): bigint {
  return (BigInt(hi) << U32_BITS) | BigInt(lo);
}

/** Throws {@link WalArgumentError} unless `timeoutMs` is a usable timeout. */
export function assertTimeoutMs(timeoutMs: number): void {
  if (!Number.isFinite(timeoutMs) || timeoutMs < 0 || timeoutMs > timeoutMsMax) {
    throw new WalArgumentError(`timeoutMs must be in 0..=${timeoutMsMax}, got ${timeoutMs}`);
  }
}

/**
 * Settles like `promise`, or rejects with `onTimeout()` once `timeoutMs`
 * passed first; the timer is cleared either way.
 */
export async function withTimeout<T>(
  promise: Promise<T>,
  timeoutMs: number,
  onTimeout: () => Error,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Epoch counters, lane sealing, segment assembly and durable-epoch waits. */
export class EpochCoordinator {
  private current: bigint;
  private append: bigint;
  private durable: bigint | null;
  private readonly formatVersion: FormatVersion;
  private lanes: EngineLane[] = [];
  private failure: Error | null = null;
  private readonly waiters = new Map<bigint, Deferred<void>>();
  private advancing = false;
  private fenceWake: Deferred<void> | null = null;
  /** Lanes that sealed records at each advance, by sealed epoch, until that epoch is flushed. */
  private readonly sealedLanes = new Map<bigint, readonly number[]>();
  /** The last epoch flushed (`null`: none yet); flushes only move forward. */
  private lastFlushedEpoch: bigint | null = null;
  /** Highest commit sequence of the segments flushed so far (`null`: none yet). */
  private lastCommitSeqHi: bigint | null = null;

  constructor(options: EpochCoordinatorOptions = {}) {
    this.current = options.startEpoch ?? 0n;
    this.append = this.current;
    this.durable = options.durableEpoch ?? null;
    this.formatVersion = options.formatVersion ?? 2;
    if (this.current < 0n) throw new WalArgumentError('startEpoch must be >= 0');
  }

  /** The published epoch (moves first when advancing). */
  get currentEpoch(): bigint {
    return this.current;
  }

  /** The epoch new appends are tagged with (moves after sealing). */
  get appendEpoch(): bigint {
    return this.append;
  }

  /** Highest durable epoch, or `null` when none is. */
  get durableEpoch(): bigint | null {
    return this.durable;
  }

  /** The failure that stopped the log, if any. */
  get failed(): Error | null {
    return this.failure;
  }

  /** Registered lanes in lane-id order. */
  laneList(): readonly EngineLane[] {
    return this.lanes;
  }

  /** Adds a lane (flushed in lane-id order). @throws {LaneStateError} on a duplicate id. */
  addLane(lane: EngineLane): void {
    if (this.lanes.some((l) => l.laneId === lane.laneId)) {
      throw new LaneStateError(`lane ${lane.laneId} is already registered`);
    }
    this.lanes.push(lane);
    this.lanes.sort((a, b) => a.laneId - b.laneId);
  }

  /** Removes a lane; the caller makes sure it holds nothing unflushed. */
  removeLane(laneId: number): void {
    this.lanes = this.lanes.filter((l) => l.laneId !== laneId);
  }

  /** Wakes a fence that waits for lanes to observe the new epoch. */
  noteObserved(): void {
    const wake = this.fenceWake;
    this.fenceWake = null;
    wake?.resolve();
  }

  /**
   * Advances the epoch: publish `currentEpoch + 1`, optionally wait for the
   * fence lanes to observe it (rolling back on timeout), seal every lane's
   * records of the old epoch, then move `appendEpoch`. Appends made while the
   * fence waits are still tagged with the old epoch and sealed with it.
   * @throws {FenceTimeoutError} when the fence times out (nothing changed).
   * @throws {LaneStateError} when another advance is in progress.
   */
  async advance(options: AdvanceOptions = {}): Promise<AdvanceResult> {
    const fence = options.fenceLanes ?? [];
    const timeoutMs = options.timeoutMs ?? fenceTimeoutMsDefault;
    assertTimeoutMs(timeoutMs);
    if (fence.length === 0) return this.advanceNow();
    this.beginAdvance();
    const next = this.current + 1n;
    this.current = next;
    try {
      await this.waitForFence(fence, next, timeoutMs);
    } catch (error) {
      this.current = next - 1n;
      this.advancing = false;
      throw error;
    }
    return this.sealAndMove(next);
  }

  /** {@link EpochCoordinator.advance} without a fence, synchronously. */
  advanceNow(): AdvanceResult {
    this.beginAdvance();
    const next = this.current + 1n;
    this.current = next;
    return this.sealAndMove(next);
  }

  /**
   * Begins the flush of `epoch` on every lane holding records of it and builds
   * the segment body: lane shares in lane order, aborted records dropped, the
   * rest in canonical order (beginSeq, txnId, pageId; stable).
   * @throws {EngineInvariantError} when a lane's bytes are malformed or tagged
   * with another epoch (a lane bug: the flush must not proceed).
   */
  flushEpoch(epoch: bigint): EpochSegment {
    if (epoch >= this.append) {
      throw new LaneStateError(`cannot flush epoch ${epoch}: it is still open`);
    }
    const last = this.lastFlushedEpoch;
    invariant(last === null || epoch > last, () => `flush of epoch ${epoch} after epoch ${last}`);
    this.lastFlushedEpoch = epoch;
    const sealed = this.sealedLanes.get(epoch) ?? [];
    this.sealedLanes.delete(epoch);
    const shares: SealedLaneData[] = [];
    let s = 0;
    for (const lane of this.lanes) {
      const share = lane.beginFlush(epoch);
      if (share === null) continue;
      // A lane is sealed before it is flushed: both lists are in lane-id order.
      while (s < sealed.length && sealed[s]! < lane.laneId) s++;
      invariant(
        sealed[s] === lane.laneId,
        () => `lane ${lane.laneId} handed over epoch ${epoch} without sealing it`,
      );
      shares.push(share);
    }
    const segment = this.buildSegment(epoch, shares);
    this.checkCommitSeqsFollow(segment);
    return segment;
  }

  /** Tells every lane that the flush of `epoch` is over (durable or abandoned). */
  completeFlush(epoch: bigint, laneIds: readonly number[]): void {
    for (const lane of this.lanes) {
      if (laneIds.includes(lane.laneId)) lane.completeFlush(epoch);
    }
  }

  /** `durableEpoch = max(durableEpoch, epoch)`; releases every waiter at or below it. */
  markEpochDurable(epoch: bigint): void {
    if (this.durable !== null && epoch <= this.durable) return;
    this.durable = epoch;
    for (const [waiting, deferred] of this.waiters) {
      if (waiting <= epoch) {
        this.waiters.delete(waiting);
        deferred.resolve();
      }
    }
  }

  /** True when `epoch` is durable. */
  isDurable(epoch: bigint): boolean {
    return this.durable !== null && epoch <= this.durable;
  }

  /**
   * Resolves once `epoch` is durable; rejects with the failure if the log
   * fails first. One shared promise per epoch, however many callers wait.
   */
  whenDurable(epoch: bigint): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.isDurable(epoch)) return Promise.resolve();
    let deferred = this.waiters.get(epoch);
    if (deferred === undefined) {
      deferred = createDeferred<void>();
      this.waiters.set(epoch, deferred);
    }
    return deferred.promise;
  }

  /**
   * Waits until `epoch` is durable, at most `timeoutMs`.
   * @throws {DurableTimeoutError} on timeout; the log's failure if it fails.
   */
  async waitForEpochDurable(epoch: bigint, timeoutMs: number): Promise<void> {
    assertTimeoutMs(timeoutMs);
    const durable = this.whenDurable(epoch);
    if (this.isDurable(epoch)) return durable;
    await withTimeout(durable, timeoutMs, () => new DurableTimeoutError(epoch, timeoutMs));
  }

  /** Puts the coordinator in the failed state: every current and future wait rejects with `error`. */
  fail(error: Error): void {
    if (this.failure !== null) return;
    this.failure = error;
    for (const deferred of this.waiters.values()) deferred.reject(error);
    this.waiters.clear();
  }

  /** Rejects every current waiter with `error` (used when closing). */
  rejectWaiters(error: Error): void {
    for (const deferred of this.waiters.values()) deferred.reject(error);
    this.waiters.clear();
  }

  /** Epochs someone waits for (for stats). */
  waitingEpochs(): number {
    return this.waiters.size;
  }

  private beginAdvance(): void {
    if (this.advancing) throw new LaneStateError('another epoch advance is in progress');
    this.advancing = true;
  }

  private sealAndMove(next: bigint): AdvanceResult {
    const sealedEpoch = next - 1n;
    const sealedLaneIds: number[] = [];
    try {
      for (const lane of this.lanes) {
        if (lane.advance(next)) sealedLaneIds.push(lane.laneId);
      }
      this.append = next;
    } finally {
      this.advancing = false;
    }
    if (sealedLaneIds.length > 0) this.sealedLanes.set(sealedEpoch, sealedLaneIds);
    return { sealedEpoch, newEpoch: next, sealedLaneIds };
  }

  /**
   * Commit sequences grow with epochs: every committed record of a segment
   * has a larger sequence than every one of the segments flushed before it
   * (the placement draws the sequence and tags the epoch in one step, and
   * worker lanes are fenced). Inside a segment they are sorted, not
   * contiguous: a sequence drawn for a batch that was then refused, a
   * caller-chosen one, or a dead worker's unfinished append leaves a gap.
   */
  private checkCommitSeqsFollow(segment: EpochSegment): void {
    const lo = segment.commitSeqLo;
    if (lo === null) return;
    const before = this.lastCommitSeqHi;
    invariant(
      before === null || lo > before,
      () => `epoch ${segment.epoch} starts at commit sequence ${lo}, not above ${before}`,
    );
    this.lastCommitSeqHi = segment.commitSeqHi;
  }

  private async waitForFence(
    fence: readonly FenceableLane[],
    next: bigint,
    timeoutMs: number,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const lagging = fence.filter((lane) => lane.observedEpoch() < next);
      if (lagging.length === 0) return;
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new FenceTimeoutError(
          next,
          lagging.map((l) => l.laneId),
          timeoutMs,
        );
      }
      const wake = createDeferred<void>();
      this.fenceWake = wake;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        wake.promise,
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, remaining);
        }),
      ]);
      clearTimeout(timer);
    }
  }

  private buildSegment(epoch: bigint, shares: readonly SealedLaneData[]): EpochSegment {
    const slices: RecordSlice[] = [];
    const laneIds: number[] = [];
    const recordsPerCore: number[] = [];
    const minBody = recordMinBytes(this.formatVersion);
    let droppedAborted = 0;
    let sorted = true;
    for (const share of shares) {
      const scan = scanShare(share, epoch, minBody, slices);
      droppedAborted += scan.dropped;
      sorted &&= scan.sorted;
      laneIds.push(share.laneId);
      recordsPerCore.push(scan.kept);
    }
    // Array.prototype.sort is stable: equal keys keep lane order, then append order.
    if (!sorted) slices.sort(compareSlices);
    const first = slices[0];
    const last = slices[slices.length - 1];
    return {
      epoch,
      ...coalesce(slices),
      laneIds,
      recordsPerCore,
      laneShares: shares.map((share) => ({ laneId: share.laneId, chunks: share.chunks })),
      droppedAborted,
      commitSeqLo: first === undefined ? null : toU64(first.seqHi, first.seqLo),
      commitSeqHi: last === undefined ? null : toU64(last.seqHi, last.seqLo),
    };
  }
}

/** What {@link scanShare} found in one lane's share. */
interface ShareScan {
  /** Committed records, appended to the slices. */
  kept: number;
  /** Records dropped because they never committed. */
  dropped: number;
  /** False when a kept record sorts before the one kept just before it. */
  sorted: boolean;
}

/**
 * Walks one lane's share: checks that every record is whole and tagged
 * `epoch`, and appends the committed ones to `slices` with their sort keys
 * read straight from the encoded bytes. Checks run per record, so they throw
 * directly rather than through `invariant` (no message closure per record).
 * @throws {EngineInvariantError} for a torn or malformed record, a record of
 * another epoch, or a record count the share does not hold.
 */
function scanShare(
  share: SealedLaneData,
  epoch: bigint,
  minBody: number,
  slices: RecordSlice[],
): ShareScan {
  const epochLo = Number(epoch & U32_MASK);
  const epochHi = Number(epoch >> U32_BITS);
  const scan: ShareScan = { kept: 0, dropped: 0, sorted: true };
  let seen = 0;
  for (const chunk of share.chunks) {
    let at = 0;
    while (at < chunk.length) {
      if (at + RECORD_LENGTH_PREFIX_BYTES > chunk.length) {
        throw new EngineInvariantError(`lane ${share.laneId}: torn length prefix at ${at}`);
      }
      const body = at + RECORD_LENGTH_PREFIX_BYTES;
      const end = body + readU32(chunk, at);
      if (end > chunk.length || end - body < minBody) {
        throw new EngineInvariantError(`lane ${share.laneId}: malformed record at ${at}`);
      }
      const tagLo = readU32(chunk, body + RECORD_EPOCH_OFFSET);
      const tagHi = readU32(chunk, body + RECORD_EPOCH_OFFSET + U64_HIGH_HALF_OFFSET);
      if (tagLo !== epochLo || tagHi !== epochHi) {
        throw new EngineInvariantError(
          `lane ${share.laneId}: record tagged epoch ${toU64(tagHi, tagLo)} in the flush of epoch ${epoch}`,
        );
      }
      seen++;
      if (chunk[body + RECORD_HAS_END_SEQ_OFFSET] === 0) {
        scan.dropped++;
      } else {
        const slice = sliceAt(chunk, at, end);
        const previous = slices[slices.length - 1];
        if (previous !== undefined && compareSlices(previous, slice) > 0) scan.sorted = false;
        slices.push(slice);
        scan.kept++;
      }
      at = end;
    }
  }
  if (seen !== share.recordCount) {
    throw new EngineInvariantError(
      `lane ${share.laneId}: share claims ${share.recordCount} records, holds ${seen}`,
    );
  }
  return scan;
}

/** The record at `start .. end` of `chunk` (length prefix included) with its sort keys. */
function sliceAt(chunk: Uint8Array, start: number, end: number): RecordSlice {
  const body = start + RECORD_LENGTH_PREFIX_BYTES;
  return {
    source: chunk,
    start,
    end,
    seqLo: readU32(chunk, body + RECORD_BEGIN_SEQ_OFFSET),
    seqHi: readU32(chunk, body + RECORD_BEGIN_SEQ_OFFSET + U64_HIGH_HALF_OFFSET),
    txnLo: readU32(chunk, body + RECORD_TXN_ID_OFFSET),
    txnHi: readU32(chunk, body + RECORD_TXN_ID_OFFSET + U64_HIGH_HALF_OFFSET),
    pageId: readU32(chunk, body + RECORD_PAGE_ID_OFFSET),
  };
}

/** Joins slices that are adjacent in the same source buffer into one chunk. */
function coalesce(slices: readonly RecordSlice[]): {
  chunks: Uint8Array[];
  recordCount: number;
  byteCount: number;
} {
  const chunks: Uint8Array[] = [];
  let byteCount = 0;
  let run: { source: Uint8Array; start: number; end: number } | null = null;
  for (const slice of slices) {
    byteCount += slice.end - slice.start;
    if (run !== null && run.source === slice.source && run.end === slice.start) {
      run.end = slice.end;
      continue;
    }
    if (run !== null) chunks.push(run.source.subarray(run.start, run.end));
    run = { source: slice.source, start: slice.start, end: slice.end };
  }
  if (run !== null) chunks.push(run.source.subarray(run.start, run.end));
  return { chunks, recordCount: slices.length, byteCount };
}
