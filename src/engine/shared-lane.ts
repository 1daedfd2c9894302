/**
 * Worker lanes, owner side: the lane itself (docs/design.md#worker-lanes).
 * A {@link SharedLane} lives in `SharedArrayBuffer`s so a writer in a
 * `worker_thread` appends on its own core. It is an {@link EngineLane}: the
 * engine seals, swaps and clears it exactly like an in-process lane. The
 * worker side (`worker.ts`) appends encoded records under the lane's lock;
 * the pool that hands lanes out and fences their epochs is
 * `worker-lane-pool.ts`.
 */
import type { MessagePort } from 'node:worker_threads';
import { RECORD_LENGTH_PREFIX_BYTES } from '../format/record.js';
import { invariant } from './invariant.js';
import type { EngineLane, SealedLaneData } from './lane-types.js';
import type { WorkerLanePool } from './worker-lane-pool.js';
import {
  BufferState,
  LANE_CONTROL_BYTES,
  LaneWord,
  LaneWord64,
  lockLane,
  unlockLane,
  WriterState,
} from './worker-layout.js';

/**
 * One worker lane seen from the owner thread. Every method takes the lane
 * lock for a few word reads and writes; none waits for a worker longer than
 * the pool's `ownerLockWaitMaxMs`.
 */
export class SharedLane implements EngineLane {
  private id = -1;
  /** @internal */ readonly control: SharedArrayBuffer;
  /** @internal */ readonly buffers: readonly [SharedArrayBuffer, SharedArrayBuffer];
  private readonly words: Int32Array;
  private readonly words64: BigInt64Array;
  private readonly bytes: readonly [Uint8Array, Uint8Array];
  private readonly pool: WorkerLanePool;
  /** `next` of the last fenced advance and whether it sealed this lane. */
  private lastAdvance: { next: bigint; sealed: boolean } = { next: -1n, sealed: false };
  /** @internal The owner end of the writer's port while a writer holds the lane. */
  port: MessagePort | null = null;
  /** @internal The writer closed or its worker exited. */
  writerGone = false;

  /** @internal Created by {@link WorkerLanePool}. */
  constructor(pool: WorkerLanePool, capacityBytes: number) {
    this.pool = pool;
    this.control = new SharedArrayBuffer(LANE_CONTROL_BYTES);
    this.buffers = [new SharedArrayBuffer(capacityBytes), new SharedArrayBuffer(capacityBytes)];
    this.words = new Int32Array(this.control);
    this.words64 = new BigInt64Array(this.control);
    this.bytes = [new Uint8Array(this.buffers[0]), new Uint8Array(this.buffers[1])];
  }

  /** The lane id the engine gave this lane for its current writer. */
  get laneId(): number {
    return this.id;
  }

  /** @internal Resets the lane for a new writer whose appends start at `epoch`. */
  prepareForWriter(laneId: number, epoch: bigint): number {
    this.id = laneId;
    const w = this.words;
    const generation = Atomics.add(w, LaneWord.generation, 1) + 1;
    Atomics.store(w, LaneWord.lock, 0);
    Atomics.store(w, LaneWord.active, 0);
    for (const b of [0, 1]) {
      Atomics.store(w, LaneWord.state + b, BufferState.writable);
      Atomics.store(w, LaneWord.used + b, 0);
      Atomics.store(w, LaneWord.count + b, 0);
      Atomics.store(this.words64, LaneWord64.tag + b, epoch);
    }
    Atomics.store(this.words64, LaneWord64.laneEpoch, epoch);
    Atomics.store(w, LaneWord.writer, WriterState.handedOut);
    this.lastAdvance = { next: -1n, sealed: false };
    this.writerGone = false;
    return generation;
  }

  /**
   * Advances the lane (and, through the pool's fence, every other shared lane
   * of the log) to `nextEpoch`; true when this lane's active buffer was sealed.
   */
  advance(nextEpoch: bigint): boolean {
    this.pool.advanceAll(nextEpoch);
    return this.lastAdvance.next === nextEpoch && this.lastAdvance.sealed;
  }

  /** @internal Advance step of the fence; the caller holds the lane lock. */
  advanceLocked(next: bigint): void {
    const w = this.words;
    const laneEpoch = Atomics.load(this.words64, LaneWord64.laneEpoch);
    if (next <= laneEpoch) return;
    const a = Atomics.load(w, LaneWord.active);
    const writable = Atomics.load(w, LaneWord.state + a) === BufferState.writable;
    const sealed = writable && Atomics.load(w, LaneWord.used + a) > 0;
    if (sealed) {
      // Records in it carry the buffer's tag, which is the lane epoch the
      // fence set last time; the engine advances one epoch at a time.
      const tag = Atomics.load(this.words64, LaneWord64.tag + a);
      invariant(
        tag === next - 1n && laneEpoch === next - 1n,
        () =>
          `lane ${this.id}: sealing epoch ${next - 1n}, buffer tagged ${tag} (lane at ${laneEpoch})`,
      );
    }
    Atomics.store(this.words64, LaneWord64.laneEpoch, next);
    if (sealed) {
      Atomics.store(w, LaneWord.state + a, BufferState.sealed);
      // Double buffering from the seal on, not from beginFlush: the writer
      // keeps appending (tagged `next`) while the sealed buffer waits for its
      // flush. Measured: a worker's burst of commits landing in the window
      // between the seal and beginFlush was refused, and each refused commit
      // took the serialized path (a port round trip, an owner-side encode).
      this.activateFree(1 - a, next);
    } else if (writable) {
      // Re-tag an empty Writable buffer: the next append gets `next`.
      Atomics.store(this.words64, LaneWord64.tag + a, next);
    }
    this.lastAdvance = { next, sealed };
  }

  /** Swaps in the other buffer (when it is free) and hands the sealed one to the flusher. */
  beginFlush(epoch: bigint): SealedLaneData | null {
    return this.withLock(() => {
      const w = this.words;
      const b = this.findBuffer(BufferState.sealed, epoch);
      if (b === -1) return null;
      const laneEpoch = Atomics.load(this.words64, LaneWord64.laneEpoch);
      invariant(epoch < laneEpoch, () => `lane ${this.id}: epoch ${epoch} sealed but still open`);
      const other = 1 - b;
      if (
        Atomics.load(w, LaneWord.active) === b &&
        Atomics.load(w, LaneWord.state + other) === BufferState.writable &&
        Atomics.load(w, LaneWord.used + other) === 0
      ) {
        // Double buffering: writers continue in the other buffer at once.
        Atomics.store(
          this.words64,
          LaneWord64.tag + other,
          Atomics.load(this.words64, LaneWord64.laneEpoch),
        );
        Atomics.store(w, LaneWord.active, other);
      }
      Atomics.store(w, LaneWord.state + b, BufferState.flushing);
      const used = Atomics.load(w, LaneWord.used + b);
      return {
        laneId: this.laneId,
        epoch,
        chunks: used > 0 ? [this.bytes[b]!.subarray(0, used)] : [],
        recordCount: Atomics.load(w, LaneWord.count + b),
        byteCount: used,
      };
    });
  }

  /** Clears the buffer that flushed `epoch` and makes it Writable again (no-op if none). */
  completeFlush(epoch: bigint): void {
    this.withLock(() => {
      const w = this.words;
      const b = this.findBuffer(BufferState.flushing, epoch);
      if (b === -1) return;
      Atomics.store(w, LaneWord.used + b, 0);
      Atomics.store(w, LaneWord.count + b, 0);
      Atomics.store(
        this.words64,
        LaneWord64.tag + b,
        Atomics.load(this.words64, LaneWord64.laneEpoch),
      );
      Atomics.store(w, LaneWord.state + b, BufferState.writable);
      // The active buffer is sealed or flushing (an epoch sealed while this
      // one flushed): appends continue in the buffer just freed.
      const a = Atomics.load(w, LaneWord.active);
      if (a !== b && Atomics.load(w, LaneWord.state + a) !== BufferState.writable) {
        this.activateFree(b, Atomics.load(this.words64, LaneWord64.laneEpoch));
      }
    });
  }

  /**
   * Makes buffer `b` the active one, tagged `epoch`, when it is Writable and
   * empty; otherwise leaves the lane as it is (appends are refused until a
   * buffer is free). The caller holds the lane lock.
   */
  private activateFree(b: number, epoch: bigint): void {
    const w = this.words;
    if (
      Atomics.load(w, LaneWord.state + b) !== BufferState.writable ||
      Atomics.load(w, LaneWord.used + b) !== 0
    ) {
      return;
    }
    Atomics.store(this.words64, LaneWord64.tag + b, epoch);
    Atomics.store(w, LaneWord.active, b);
  }

  /** Bytes in the active buffer while it is Writable (appended, not yet sealed). */
  pendingBytes(): number {
    const w = this.words;
    const a = Atomics.load(w, LaneWord.active);
    return Atomics.load(w, LaneWord.state + a) === BufferState.writable
      ? Atomics.load(w, LaneWord.used + a)
      : 0;
  }

  /** Appends that found the lane lock taken. */
  contentionEvents(): number {
    return Atomics.load(this.words, LaneWord.contention);
  }

  /** Commits the lane refused (sent to the serialized path instead). */
  fallbacks(): number {
    return Atomics.load(this.words, LaneWord.fallbacks);
  }

  /** Commits appended through the lane. */
  commits(): number {
    return Atomics.load(this.words, LaneWord.commits);
  }

  /** The state of buffer `index` (0 or 1), for tests and diagnostics. */
  bufferState(index: 0 | 1): {
    kind: 'writable' | 'sealed' | 'flushing';
    epoch: bigint;
    usedBytes: number;
    recordCount: number;
    active: boolean;
  } {
    const w = this.words;
    const state = Atomics.load(w, LaneWord.state + index);
    return {
      kind:
        state === BufferState.writable
          ? 'writable'
          : state === BufferState.sealed
            ? 'sealed'
            : 'flushing',
      epoch: Atomics.load(this.words64, LaneWord64.tag + index),
      usedBytes: Atomics.load(w, LaneWord.used + index),
      recordCount: Atomics.load(w, LaneWord.count + index),
      active: Atomics.load(w, LaneWord.active) === index,
    };
  }

  /** @internal True when both buffers are Writable and empty. */
  isEmpty(): boolean {
    const w = this.words;
    for (const b of [0, 1]) {
      if (Atomics.load(w, LaneWord.state + b) !== BufferState.writable) return false;
      if (Atomics.load(w, LaneWord.used + b) !== 0) return false;
    }
    return true;
  }

  /** @internal */ lock(): void {
    lockLane(this.words, this.laneId, this.pool.ownerLockWaitMaxMs);
  }

  /** @internal */ unlock(): void {
    unlockLane(this.words);
  }

  /**
   * @internal The writer is gone. If its worker died inside an append the
   * lock is still taken: nobody else can hold it (the owner thread is here),
   * so break it and drop the half-written append — the used-bytes word is
   * the commit point, written last, so only the record count needs repair.
   */
  markWriterGone(): void {
    const w = this.words;
    Atomics.store(w, LaneWord.writer, WriterState.gone);
    this.writerGone = true;
    if (Atomics.load(w, LaneWord.lock) !== 0) {
      for (const b of [0, 1]) {
        Atomics.store(w, LaneWord.count + b, this.countRecords(b));
      }
      Atomics.store(w, LaneWord.lock, 0);
      Atomics.notify(w, LaneWord.lock);
    }
  }

  private countRecords(b: number): number {
    const used = Atomics.load(this.words, LaneWord.used + b);
    const bytes = this.bytes[b]!;
    let at = 0;
    let n = 0;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    while (at + RECORD_LENGTH_PREFIX_BYTES <= used) {
      const len = view.getUint32(at, true);
      at += RECORD_LENGTH_PREFIX_BYTES + len;
      n++;
    }
    return n;
  }

  private findBuffer(state: number, epoch: bigint): number {
    for (const b of [0, 1]) {
      if (
        Atomics.load(this.words, LaneWord.state + b) === state &&
        Atomics.load(this.words64, LaneWord64.tag + b) === epoch
      ) {
        return b;
      }
    }
    return -1;
  }

  private withLock<T>(fn: () => T): T {
    this.lock();
    try {
      return fn();
    } finally {
      this.unlock();
    }
  }
}
