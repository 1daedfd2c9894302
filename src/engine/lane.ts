/**
 * The in-process lane: one writer context's buffers on the owner thread
 * (docs/design.md#lanes).
 *
 * Two buffers, *active* and *flush*, each `Writable | Sealed{E} | Flushing{E}`,
 * plus an overflow list. Records are stored already encoded in segment wire
 * form (`u32 len` + body), so the flusher only sorts and concatenates.
 * Beginning the flush of E swaps the buffers, so writers continue in the
 * other one. When the flush buffer is still Flushing{E-1} (the flusher queues
 * E's write behind E-1's), the active buffer becomes Flushing{E} where it is,
 * appends go to the overflow list, and the swap happens at E-1's
 * `completeFlush`.
 *
 * Epoch tagging happens here, inside the lane's critical section: `append`
 * reads the lane's own tag epoch (set by {@link InProcessLane.advance}) and
 * writes it into the record, never an epoch read earlier by the caller. That
 * is the fix for defect 1 of the original (a record tagged E landing in E+1's
 * buffer and wedging the lane).
 *
 * Overflow entries keep the epoch they were tagged with and are flushed with
 * that epoch (defect 2 of the original: drained overflow kept a stale tag
 * inside a later buffer). They are never re-tagged: re-tagging would move an
 * already ordered commit into a later epoch than commits with a higher commit
 * sequence, and recovery (which sorts by epoch first) would then replay them
 * in the wrong order; it would also release the committer waiting for the
 * original epoch before its records are durable. Entries of the open epoch
 * are moved into the active buffer when it is writable again and has room.
 *
 * Node runs this code on one thread, so the "lock" is the synchronous body of
 * each method. {@link InProcessLane.contentionEvents} counts appends that found
 * the active buffer held by the engine (sealed, or full) — the single-thread
 * analogue of finding the lane's lock taken.
 */

import { WalArgumentError } from '../errors.js';
import {
  encodedRecordBytes,
  RECORD_LENGTH_PREFIX_BYTES,
  validateRecord,
  writeRecordUnchecked,
} from '../format/record.js';
import type { FormatVersion, TxnToken, WalRecord } from '../format/types.js';
import { LaneStateError } from './errors.js';
import { invariant } from './invariant.js';
import type { EngineLane, LaneBufferState, SealedLaneData } from './lane-types.js';

/** Default capacity of one lane buffer: 4 MiB. */
export const bufferCapacityBytesDefault = 4 * 1024 * 1024;
/** Default overflow volume past which a lane latches fallback: 8 MiB. */
export const overflowFallbackBytesDefault = 8 * 1024 * 1024;
/** Smallest lane buffer capacity accepted: 4 KiB. */
export const bufferCapacityBytesMin = 4096;
/** Largest lane buffer capacity accepted: 1 GiB. */
export const bufferCapacityBytesMax = 1024 * 1024 * 1024;
/** First allocation of a buffer's arena; it doubles up to the capacity. */
const INITIAL_ARENA_BYTES = 64 * 1024;

/** What a lane does with an append that does not fit its active buffer. */
export type OverflowPolicy =
  /** Queue it on an overflow list; latch fallback past `overflowFallbackBytes`. */
  | 'allocateOverflow'
  /** Refuse it (`blocked`); the caller takes the serialized path. */
  | 'blockWriter';

/** A record as a writer hands it to a lane: the lane fills in `epoch`. */
export interface LaneRecordInput {
  txnToken: TxnToken;
  pageId: number;
  beginSeq: bigint;
  /** `null`: the transaction did not commit (dropped at flush). */
  endSeq: bigint | null;
  beforeImage: Uint8Array;
  afterImage: Uint8Array;
}

/** Why a lane refused an append. */
export type BlockedReason =
  /** `blockWriter` policy and the active buffer had no room (or was sealed). */
  | 'capacity'
  /** The fallback latch is set: the lane sends writers to the serialized path. */
  | 'fallbackLatched'
  /** The batch alone is larger than the buffer capacity (this also latches fallback). */
  | 'tooLarge';

/** The outcome of {@link InProcessLane.append}. */
export type AppendOutcome =
  | {
      kind: 'appended';
      /** The epoch every record of the batch was tagged with (under the lane's lock). */
      epoch: bigint;
      /** True when the batch went to the overflow list rather than the active buffer. */
      overflowed: boolean;
    }
  | { kind: 'blocked'; reason: BlockedReason };

/** Options of {@link InProcessLane}. */
export interface InProcessLaneOptions {
  laneId: number;
  /** The epoch appends are tagged with until the first {@link InProcessLane.advance}. */
  startEpoch: bigint;
  formatVersion?: FormatVersion;
  /** Capacity of each of the two buffers, in encoded bytes (default 4 MiB). */
  bufferCapacityBytes?: number;
  overflowPolicy?: OverflowPolicy;
  /** Overflow volume past which fallback latches (default 8 MiB). */
  overflowFallbackBytes?: number;
  /**
   * The coordinator's published `currentEpoch`. Each append records it as the
   * lane's observed epoch (what an advance fence waits for).
   */
  currentEpoch?: () => bigint;
  /** Called after an append updated the observed epoch (wakes a waiting fence). */
  onObserve?: () => void;
}

/** Everything {@link InProcessLane.forceSerializedDrain} took out of a lane. */
export interface DrainedLaneData {
  laneId: number;
  /** active ++ flush ++ overflow, in that order; records in wire form. */
  chunks: Uint8Array[];
  recordCount: number;
  byteCount: number;
}

/** Counters of one lane. */
export interface LaneCounters {
  appends: number;
  overflowAppends: number;
  blockedAppends: number;
  fallbackLatches: number;
  contentionEvents: number;
  droppedAbortedRecords: number;
}

interface OverflowEntry {
  epoch: bigint;
  bytes: Uint8Array;
  records: number;
}

const WRITABLE: LaneBufferState = { kind: 'writable' };

class LaneBuffer {
  state: LaneBufferState = WRITABLE;
  arena: Uint8Array = new Uint8Array(0);
  bytes = 0;
  records = 0;
  /** Epoch of the records in this buffer while it is writable and non-empty. */
  epoch: bigint | null = null;

  /** Makes room for `extra` more bytes, doubling the arena (never past `limit` unless needed). */
  reserve(extra: number, limit: number): void {
    const needed = this.bytes + extra;
    if (needed <= this.arena.length) return;
    let size = Math.max(this.arena.length * 2, Math.min(INITIAL_ARENA_BYTES, limit));
    while (size < needed) size *= 2;
    size = Math.max(Math.min(size, limit), needed);
    // Shared memory: the engine's I/O thread writes sealed buffers in place (no copy).
    const grown = new Uint8Array(new SharedArrayBuffer(size));
    grown.set(this.arena.subarray(0, this.bytes));
    this.arena = grown;
  }

  clear(): void {
    this.state = WRITABLE;
    this.bytes = 0;
    this.records = 0;
    this.epoch = null;
  }
}

function assertPositiveInteger(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new WalArgumentError(`${name} must be an integer in ${min}..=${max}, got ${value}`);
  }
}

/**
 * The lane of one writer context on the owner thread. Implements the engine's
 * {@link EngineLane} contract plus `append` for the writer side.
 */
export class InProcessLane implements EngineLane {
  readonly laneId: number;
  readonly formatVersion: FormatVersion;
  readonly bufferCapacityBytes: number;
  readonly overflowPolicy: OverflowPolicy;
  readonly overflowFallbackBytes: number;

  private active = new LaneBuffer();
  private flush = new LaneBuffer();
  private overflow: OverflowEntry[] = [];
  private overflowBytesTotal = 0;
  private latched = false;
  /**
   * Bytes the active buffer may hold before appends go to the overflow list
   * (the control plane's lane byte budget; `bufferCapacityBytes` without one).
   */
  private byteBudget: number;
  private tagEpoch: bigint;
  private observed: bigint;
  private readonly currentEpoch: (() => bigint) | undefined;
  private readonly onObserve: (() => void) | undefined;
  private readonly counters: LaneCounters = {
    appends: 0,
    overflowAppends: 0,
    blockedAppends: 0,
    fallbackLatches: 0,
    contentionEvents: 0,
    droppedAbortedRecords: 0,
  };
  /** Reused record object: `append` fills it instead of allocating one per record. */
  private readonly scratch: WalRecord = {
    txnToken: { id: 1n, epoch: 0 },
    epoch: 0n,
    pageId: 1,
    beginSeq: 0n,
    endSeq: null,
    beforeImage: new Uint8Array(0),
    afterImage: new Uint8Array(0),
  };

  constructor(options: InProcessLaneOptions) {
    assertPositiveInteger('laneId', options.laneId, 0, 0xffff_ffff);
    this.laneId = options.laneId;
    this.formatVersion = options.formatVersion ?? 2;
    if (this.formatVersion !== 1 && this.formatVersion !== 2) {
      throw new WalArgumentError(`formatVersion must be 1 or 2, got ${String(this.formatVersion)}`);
    }
    this.bufferCapacityBytes = options.bufferCapacityBytes ?? bufferCapacityBytesDefault;
    assertPositiveInteger(
      'bufferCapacityBytes',
      this.bufferCapacityBytes,
      bufferCapacityBytesMin,
      bufferCapacityBytesMax,
    );
    this.overflowPolicy = options.overflowPolicy ?? 'allocateOverflow';
    if (this.overflowPolicy !== 'allocateOverflow' && this.overflowPolicy !== 'blockWriter') {
      throw new WalArgumentError(`unknown overflowPolicy ${String(this.overflowPolicy)}`);
    }
    this.byteBudget = this.bufferCapacityBytes;
    this.overflowFallbackBytes = options.overflowFallbackBytes ?? overflowFallbackBytesDefault;
    assertPositiveInteger(
      'overflowFallbackBytes',
      this.overflowFallbackBytes,
      0,
      Number.MAX_SAFE_INTEGER,
    );
    if (typeof options.startEpoch !== 'bigint' || options.startEpoch < 0n) {
      throw new WalArgumentError('startEpoch must be a non-negative bigint');
    }
    this.tagEpoch = options.startEpoch;
    this.observed = options.startEpoch;
    this.currentEpoch = options.currentEpoch;
    this.onObserve = options.onObserve;
  }

  /** The epoch the next append will be tagged with. */
  get appendEpoch(): bigint {
    return this.tagEpoch;
  }

  /** The last `currentEpoch` an append on this lane observed (for advance fences). */
  observedEpoch(): bigint {
    return this.observed;
  }

  /** True while the fallback latch sends this lane's writers to the serialized path. */
  get fallbackLatched(): boolean {
    return this.latched;
  }

  /** Bytes the active buffer may hold before appends overflow (see {@link InProcessLane.setByteBudget}). */
  get laneByteBudget(): number {
    return this.byteBudget;
  }

  /**
   * Sets the bytes the active buffer may hold before appends go to the
   * overflow list, clamped to `bufferCapacityBytesMin ..= bufferCapacityBytes`.
   * A batch always fits an empty buffer (up to the capacity), so a budget
   * below one batch never refuses it. Arenas above a lowered budget are
   * released when their flush completes.
   */
  setByteBudget(bytes: number): void {
    const whole = Number.isFinite(bytes) ? Math.floor(bytes) : this.bufferCapacityBytes;
    this.byteBudget = Math.min(this.bufferCapacityBytes, Math.max(bufferCapacityBytesMin, whole));
  }

  /** Bytes of buffer memory the lane holds now (both arenas). */
  arenaBytes(): number {
    return this.active.arena.length + this.flush.arena.length;
  }

  /** Bytes on the overflow list. */
  get overflowBytes(): number {
    return this.overflowBytesTotal;
  }

  /** State of the active buffer (for tests and stats). */
  activeState(): LaneBufferState {
    return this.active.state;
  }

  /** State of the flush buffer (for tests and stats). */
  flushState(): LaneBufferState {
    return this.flush.state;
  }

  /** A copy of the lane's counters. */
  laneCounters(): LaneCounters {
    return { ...this.counters };
  }

  /**
   * Encoded size of `records` in wire form (length prefixes included), after
   * validating every record. @throws {InvalidRecordError} on a bad record.
   */
  measure(records: readonly LaneRecordInput[]): number {
    let total = 0;
    for (const input of records) {
      const record = this.fill(input);
      validateRecord(record);
      total += RECORD_LENGTH_PREFIX_BYTES + encodedRecordBytes(record, this.formatVersion);
    }
    return total;
  }

  /**
   * Appends one transaction's records atomically: all of them land in the
   * same buffer tagged with the same epoch, or none does (`blocked`).
   * @throws {InvalidRecordError} if a record breaks a format limit (nothing is appended).
   */
  append(records: readonly LaneRecordInput[]): AppendOutcome {
    const size = this.measure(records);
    if (this.currentEpoch !== undefined) {
      const seen = this.currentEpoch();
      if (seen > this.observed) {
        this.observed = seen;
        this.onObserve?.();
      }
    }
    if (this.latched) return this.block('fallbackLatched');
    if (size > this.bufferCapacityBytes) {
      this.latchFallback();
      return this.block('tooLarge');
    }
    const active = this.active;
    const writable = active.state.kind === 'writable';
    if (writable && (active.bytes === 0 || active.bytes + size <= this.byteBudget)) {
      active.reserve(size, this.byteBudget);
      active.bytes = this.encode(records, active.arena, active.bytes);
      active.records += records.length;
      active.epoch = this.tagEpoch;
      this.counters.appends++;
      return { kind: 'appended', epoch: this.tagEpoch, overflowed: false };
    }
    this.counters.contentionEvents++;
    if (this.overflowPolicy === 'blockWriter') return this.block('capacity');
    const bytes = new Uint8Array(size);
    this.encode(records, bytes, 0);
    this.overflow.push({ epoch: this.tagEpoch, bytes, records: records.length });
    this.overflowBytesTotal += size;
    this.counters.appends++;
    this.counters.overflowAppends++;
    // The batch that crosses the threshold is kept; later ones are refused.
    if (this.overflowBytesTotal > this.overflowFallbackBytes) this.latchFallback();
    return { kind: 'appended', epoch: this.tagEpoch, overflowed: true };
  }

  /** {@inheritDoc EngineLane.advance} */
  advance(nextEpoch: bigint): boolean {
    if (nextEpoch <= this.tagEpoch) {
      throw new LaneStateError(
        `lane ${this.laneId}: advance to ${nextEpoch} does not move past ${this.tagEpoch}`,
      );
    }
    const closing = this.tagEpoch;
    let sealed = false;
    const active = this.active;
    if (active.state.kind === 'writable' && (active.records > 0 || this.hasOverflowAt(closing))) {
      active.state = { kind: 'sealed', epoch: closing };
      sealed = true;
    } else if (this.hasOverflowAt(closing)) {
      // The active buffer is still sealed for an older epoch: the overflow
      // entries of `closing` stay on the list and flush with their own epoch.
      sealed = true;
    }
    this.tagEpoch = nextEpoch;
    return sealed;
  }

  /** {@inheritDoc EngineLane.beginFlush} */
  beginFlush(epoch: bigint): SealedLaneData | null {
    // Sealed before flushed: appends are tagged past `epoch` already.
    invariant(
      epoch < this.tagEpoch,
      () => `lane ${this.laneId}: flush of epoch ${epoch} before it was sealed`,
    );
    const chunks: Uint8Array[] = [];
    let recordCount = 0;
    let byteCount = 0;
    const active = this.active;
    let swapped = false;
    if (active.state.kind === 'sealed' && active.state.epoch === epoch) {
      swapped = true;
      const flush = this.flush.state;
      if (flush.kind === 'flushing' && flush.epoch === epoch - 1n) {
        // Flushed ahead, behind the epoch still being written: the buffer is
        // written where it is; the swap waits for that epoch's completeFlush.
        active.state = { kind: 'flushing', epoch };
      } else if (flush.kind !== 'writable' || this.flush.bytes !== 0) {
        throw new LaneStateError(
          `lane ${this.laneId}: begin flush of epoch ${epoch} while the flush buffer is ${describe(flush)}`,
        );
      } else {
        // Double buffering: writers continue in the other buffer while the disk works.
        this.active = this.flush;
        this.flush = active;
        active.state = { kind: 'flushing', epoch };
      }
      if (active.bytes > 0) chunks.push(active.arena.subarray(0, active.bytes));
      recordCount += active.records;
      byteCount += active.bytes;
    }
    const kept: OverflowEntry[] = [];
    for (const entry of this.overflow) {
      if (entry.epoch === epoch) {
        chunks.push(entry.bytes);
        recordCount += entry.records;
        byteCount += entry.bytes.length;
        this.overflowBytesTotal -= entry.bytes.length;
      } else {
        kept.push(entry);
      }
    }
    this.overflow = kept;
    this.drainOverflow();
    if (!swapped && chunks.length === 0) return null;
    return { laneId: this.laneId, epoch, chunks, recordCount, byteCount };
  }

  /** {@inheritDoc EngineLane.completeFlush} */
  completeFlush(epoch: bigint): void {
    const flush = this.flush;
    if (flush.state.kind === 'flushing' && flush.state.epoch === epoch) {
      flush.clear();
      // The budget was lowered: give the larger arena back (it regrows on demand).
      if (flush.arena.length > this.byteBudget) flush.arena = new Uint8Array(0);
      if (this.active.state.kind === 'flushing') {
        // The epoch flushed ahead takes the flush buffer's place; writers get this one.
        this.flush = this.active;
        this.active = flush;
      }
    } else if (flush.state.kind !== 'writable') {
      throw new LaneStateError(
        `lane ${this.laneId}: complete flush of epoch ${epoch} while the flush buffer is ${describe(flush.state)}`,
      );
    }
    this.drainOverflow();
  }

  /** {@inheritDoc EngineLane.pendingBytes} */
  pendingBytes(): number {
    const active = this.active;
    return (active.state.kind === 'writable' ? active.bytes : 0) + this.openOverflowBytes();
  }

  /** Bytes sealed or pending in this lane that the flusher has not yet begun. */
  unflushedBytes(): number {
    const active = this.active;
    return active.bytes + this.overflowBytesTotal;
  }

  /** {@inheritDoc EngineLane.contentionEvents} */
  contentionEvents(): number {
    return this.counters.contentionEvents;
  }

  /**
   * Takes every record out of the lane — active ++ flush ++ overflow — and
   * resets it to two empty writable buffers with the latch cleared. Used to
   * switch to the serialized path; the caller owns writing what it returns.
   */
  forceSerializedDrain(): DrainedLaneData {
    const chunks: Uint8Array[] = [];
    let recordCount = 0;
    let byteCount = 0;
    for (const buffer of [this.active, this.flush]) {
      if (buffer.bytes > 0) chunks.push(buffer.arena.slice(0, buffer.bytes));
      recordCount += buffer.records;
      byteCount += buffer.bytes;
      buffer.clear();
    }
    for (const entry of this.overflow) {
      chunks.push(entry.bytes);
      recordCount += entry.records;
      byteCount += entry.bytes.length;
    }
    this.overflow = [];
    this.overflowBytesTotal = 0;
    this.latched = false;
    return { laneId: this.laneId, chunks, recordCount, byteCount };
  }

  /** Notes that the flusher dropped `count` aborted records of this lane. */
  noteDroppedAborted(count: number): void {
    this.counters.droppedAbortedRecords += count;
  }

  private fill(input: LaneRecordInput): WalRecord {
    const record = this.scratch;
    record.txnToken = input.txnToken;
    record.epoch = this.tagEpoch;
    record.pageId = input.pageId;
    record.beginSeq = input.beginSeq;
    record.endSeq = input.endSeq;
    record.beforeImage = input.beforeImage;
    record.afterImage = input.afterImage;
    return record;
  }

  private encode(records: readonly LaneRecordInput[], target: Uint8Array, offset: number): number {
    let at = offset;
    for (const input of records) {
      const record = this.fill(input);
      at = writeRecordUnchecked(
        record,
        this.formatVersion,
        target,
        at,
        encodedRecordBytes(record, this.formatVersion),
      );
    }
    return at;
  }

  private block(reason: BlockedReason): AppendOutcome {
    this.counters.blockedAppends++;
    return { kind: 'blocked', reason };
  }

  private latchFallback(): void {
    if (!this.latched) this.counters.fallbackLatches++;
    this.latched = true;
  }

  private hasOverflowAt(epoch: bigint): boolean {
    for (const entry of this.overflow) if (entry.epoch === epoch) return true;
    return false;
  }

  private openOverflowBytes(): number {
    let bytes = 0;
    for (const entry of this.overflow)
      if (entry.epoch === this.tagEpoch) bytes += entry.bytes.length;
    return bytes;
  }

  /**
   * Moves overflow entries of the open epoch into the active buffer while it
   * is writable and they fit, in arrival order; clears the latch once the
   * overflow list is empty.
   */
  private drainOverflow(): void {
    const active = this.active;
    if (active.state.kind === 'writable' && this.overflow.length > 0) {
      const kept: OverflowEntry[] = [];
      let blocked = false;
      for (const entry of this.overflow) {
        const fits = active.bytes === 0 || active.bytes + entry.bytes.length <= this.byteBudget;
        if (!blocked && entry.epoch === this.tagEpoch && fits) {
          active.reserve(entry.bytes.length, this.byteBudget);
          active.arena.set(entry.bytes, active.bytes);
          active.bytes += entry.bytes.length;
          active.records += entry.records;
          active.epoch = entry.epoch;
          this.overflowBytesTotal -= entry.bytes.length;
        } else {
          // Keep arrival order: once one entry stays, later ones stay too.
          if (entry.epoch === this.tagEpoch) blocked = true;
          kept.push(entry);
        }
      }
      this.overflow = kept;
    }
    if (this.overflow.length === 0) {
      this.overflowBytesTotal = 0;
      this.latched = false;
    }
  }
}

function describe(state: LaneBufferState): string {
  return state.kind === 'writable' ? 'writable' : `${state.kind}{${state.epoch}}`;
}
