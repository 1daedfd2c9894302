/**
 * Worker lanes, owner side: lanes that live in `SharedArrayBuffer`s so a
 * writer in a `worker_thread` appends on its own core (docs/design.md#worker-lanes).
 *
 * A {@link SharedLane} is an {@link EngineLane}: the engine seals, swaps and
 * clears it exactly like an in-process lane. The worker side (`worker.ts`)
 * appends encoded records under the lane's lock. A {@link WorkerLanePool}
 * (one per log) owns the per-log shared block — durable epoch, failure flag,
 * the append doorbell and the commit-sequence counter — hands lanes out as
 * {@link WorkerLaneHandle}s, takes them back when a writer closes or its
 * worker exits, and reuses them.
 *
 * Epoch fence: when the engine advances any shared lane to epoch E+1, the pool
 * takes the locks of ALL its lanes (in lane-id order; only the owner ever
 * holds more than one lock, so there is no lock-order cycle), advances each,
 * then releases them. A writer reads its epoch tag and draws its commit
 * sequence number under its lane lock, so every record tagged E has a smaller
 * commit sequence than every record tagged E+1 — on every lane — and recovery
 * order (epoch, beginSeq) is commit order.
 */
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { WalClosedError, WalFailedError } from './errors.js';
import type { EngineLane, SealedLaneData } from './lane-types.js';
import {
  BufferState,
  createCommitSeqCounter,
  LANE_CONTROL_BYTES,
  LaneWord,
  LaneWord64,
  LOG_BLOCK_BYTES,
  LOG_MESSAGE_OFFSET,
  LogWord,
  LogWord64,
  lockLane,
  logMessageBytesMax,
  type OwnerToWorkerMessage,
  type PortBatch,
  takeCommitSeq,
  unlockLane,
  type WorkerLaneHandle,
  type WorkerToOwnerMessage,
  WriterState,
} from './worker-layout.js';

/** Default capacity of each of a worker lane's two buffers: 4 MiB. */
export const workerBufferCapacityBytesDefault = 4 * 1024 * 1024;
/** Longest the owner waits for a lane lock before it gives up, in ms. */
export const ownerLockWaitMsMaxDefault = 250;
/** Longest a worker waits for its lane lock before its commit fails, in ms. */
export const workerLockWaitMsMaxDefault = 5_000;
/** Most worker lanes one log hands out at once. */
export const workerLanesMaxDefault = 64;

/**
 * What the pool needs from the log that owns it (`ParallelWal` provides
 * these; the pool is created by `ParallelWal.workerHandle()`).
 */
export interface WorkerLaneOwner {
  /**
   * Registers an extra lane: `create` receives the lane id to use and the
   * epoch appends are tagged with until the engine advances the lane.
   */
  registerLane<L extends EngineLane>(create: (laneId: number, startEpoch: bigint) => L): L;
  /** Gives a lane back; resolves once it holds nothing unflushed and its id is free. */
  releaseLane(laneId: number): Promise<void>;
  /** A worker appended: the engine may want to seal now (adaptive group commit). */
  notifyAppend(): void;
  /**
   * Commits a batch a worker lane refused, through the owner's serialized
   * path; resolves once durable, like `commit`. A batch without a commit
   * sequence gets one from the shared counter.
   */
  commitSerialized(batch: PortBatch): Promise<{ epoch: bigint; commitSeq: bigint }>;
}

/** Options of a {@link WorkerLanePool}. */
export interface WorkerLanePoolOptions {
  /** Capacity of each lane buffer in bytes (default 4 MiB). */
  bufferCapacityBytes?: number;
  /** Segment format version workers encode with (default 2). */
  formatVersion?: 1 | 2;
  /** The log's fsync policy, reported in acknowledgements. */
  durability?: 'full' | 'normal' | 'off';
  /**
   * The log's shared commit-sequence counter (see `createCommitSeqCounter`).
   * The owner must draw its own sequence numbers from the same counter, or
   * numbers collide. Default: a new counter starting at 1.
   */
  commitSeqCounter?: BigInt64Array;
  /** Durable epoch at open, `null` for none. */
  durableEpoch?: bigint | null;
  /** See {@link ownerLockWaitMsMaxDefault}. */
  ownerLockWaitMaxMs?: number;
  /** See {@link workerLockWaitMsMaxDefault}. */
  workerLockWaitMaxMs?: number;
  /** See {@link workerLanesMaxDefault}. */
  lanesMax?: number;
}

/** Counters of a pool, summed over its lanes (for `stats()`). */
export interface WorkerLaneStats {
  lanesInUse: number;
  lanesFree: number;
  commits: number;
  fallbacks: number;
  contentionEvents: number;
}

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
    Atomics.store(this.words64, LaneWord64.laneEpoch, next);
    const a = Atomics.load(w, LaneWord.active);
    let sealed = false;
    if (Atomics.load(w, LaneWord.state + a) === BufferState.writable) {
      if (Atomics.load(w, LaneWord.used + a) > 0) {
        // Records in it carry the buffer's tag, which is the lane epoch the
        // fence set last time; the engine advances one epoch at a time.
        Atomics.store(w, LaneWord.state + a, BufferState.sealed);
        sealed = true;
      } else {
        // Re-tag an empty Writable buffer: the next append gets `next`.
        Atomics.store(this.words64, LaneWord64.tag + a, next);
      }
    }
    this.lastAdvance = { next, sealed };
  }

  /** Swaps in the other buffer (when it is free) and hands the sealed one to the flusher. */
  beginFlush(epoch: bigint): SealedLaneData | null {
    return this.withLock(() => {
      const w = this.words;
      const b = this.findBuffer(BufferState.sealed, epoch);
      if (b === -1) return null;
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
    });
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
    while (at + 4 <= used) {
      const len =
        (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>>
        0;
      at += 4 + len;
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

/**
 * The worker lanes of one log, and the shared block their writers read the
 * durable epoch, the failure and the commit-sequence counter from.
 */
export class WorkerLanePool {
  /** @internal */ readonly ownerLockWaitMaxMs: number;
  private readonly owner: WorkerLaneOwner;
  private readonly capacityBytes: number;
  private readonly formatVersion: 1 | 2;
  private readonly durability: 'full' | 'normal' | 'off';
  private readonly workerLockWaitMaxMs: number;
  private readonly lanesMax: number;
  private readonly log: SharedArrayBuffer;
  private readonly logWords: Int32Array;
  private readonly logWords64: BigInt64Array;
  private readonly commitSeqCounter: BigInt64Array;
  private readonly inUse = new Map<number, SharedLane>();
  private readonly free: SharedLane[] = [];
  private fencedEpoch = -1n;
  private closed = false;
  private doorbellRunning = false;

  constructor(owner: WorkerLaneOwner, options: WorkerLanePoolOptions = {}) {
    this.owner = owner;
    this.capacityBytes = options.bufferCapacityBytes ?? workerBufferCapacityBytesDefault;
    if (!Number.isInteger(this.capacityBytes) || this.capacityBytes < 64) {
      throw new RangeError(`bufferCapacityBytes ${this.capacityBytes} must be an integer >= 64`);
    }
    this.formatVersion = options.formatVersion ?? 2;
    this.durability = options.durability ?? 'full';
    this.ownerLockWaitMaxMs = options.ownerLockWaitMaxMs ?? ownerLockWaitMsMaxDefault;
    this.workerLockWaitMaxMs = options.workerLockWaitMaxMs ?? workerLockWaitMsMaxDefault;
    this.lanesMax = options.lanesMax ?? workerLanesMaxDefault;
    this.log = new SharedArrayBuffer(LOG_BLOCK_BYTES);
    this.logWords = new Int32Array(this.log);
    this.logWords64 = new BigInt64Array(this.log);
    Atomics.store(this.logWords64, LogWord64.durableEpoch, options.durableEpoch ?? -1n);
    this.commitSeqCounter = options.commitSeqCounter ?? createCommitSeqCounter(1n);
    if (!(this.commitSeqCounter.buffer instanceof SharedArrayBuffer)) {
      throw new RangeError('commitSeqCounter must live in a SharedArrayBuffer');
    }
  }

  /**
   * Hands a lane to a new writer: a free lane if one was released, else a new
   * one (up to `lanesMax`). Post the result to the worker with its port in the
   * transfer list (`workerHandleTransferList`).
   */
  createHandle(): WorkerLaneHandle {
    if (this.closed) throw new WalClosedError();
    if (Atomics.load(this.logWords, LogWord.failed) === 1) {
      throw new WalFailedError(this.failureMessage(), null);
    }
    if (this.inUse.size >= this.lanesMax) {
      throw new RangeError(`all ${this.lanesMax} worker lanes are in use`);
    }
    const reused = this.free.pop();
    let generation = 0;
    const lane = this.owner.registerLane((laneId, startEpoch) => {
      const created = reused ?? new SharedLane(this, this.capacityBytes);
      generation = created.prepareForWriter(laneId, startEpoch);
      // The new lane joins at the owner's epoch; the fence never goes back.
      if (startEpoch > this.fencedEpoch) this.fencedEpoch = startEpoch;
      return created;
    });
    const channel = new MessageChannel();
    lane.port = channel.port1;
    this.listen(lane, channel.port1);
    this.inUse.set(lane.laneId, lane);
    this.startDoorbell();
    return {
      layout: 1,
      laneId: lane.laneId,
      generation,
      formatVersion: this.formatVersion,
      durability: this.durability,
      bufferCapacityBytes: this.capacityBytes,
      lockWaitMaxMs: this.workerLockWaitMaxMs,
      control: lane.control,
      buffers: lane.buffers,
      log: this.log,
      commitSeq: this.commitSeqCounter.buffer as SharedArrayBuffer,
      port: channel.port2,
    };
  }

  /**
   * The fence: advances every lane in use to `next` while holding all their
   * locks, so no writer draws a commit sequence number while some lanes are
   * at the old epoch and others at the new one. Idempotent per epoch.
   */
  advanceAll(next: bigint): void {
    if (next <= this.fencedEpoch) return;
    const lanes = [...this.inUse.values()].sort((x, y) => x.laneId - y.laneId);
    const locked: SharedLane[] = [];
    try {
      for (const lane of lanes) {
        lane.lock();
        locked.push(lane);
      }
      for (const lane of lanes) lane.advanceLocked(next);
      this.fencedEpoch = next;
    } finally {
      for (const lane of locked) lane.unlock();
    }
  }

  /** Draws the next commit sequence number (shared with every worker). */
  nextCommitSeq(): bigint {
    return takeCommitSeq(this.commitSeqCounter);
  }

  /** Publishes `epoch` as durable to every worker (keeps the maximum). */
  markDurable(epoch: bigint): void {
    if (epoch <= Atomics.load(this.logWords64, LogWord64.durableEpoch)) return;
    Atomics.store(this.logWords64, LogWord64.durableEpoch, epoch);
    this.bumpChange();
  }

  /** The highest epoch published durable, `null` for none. */
  durableEpoch(): bigint | null {
    const e = Atomics.load(this.logWords64, LogWord64.durableEpoch);
    return e < 0n ? null : e;
  }

  /**
   * The log failed: every waiting and later worker commit is rejected with
   * `ERR_WAL_FAILED` and this error's message (and its cause's).
   */
  fail(error: unknown): void {
    if (Atomics.load(this.logWords, LogWord.failed) === 1) return;
    const encoded = new TextEncoder().encode(describeFailure(error));
    const length = Math.min(encoded.length, logMessageBytesMax);
    new Uint8Array(this.log, LOG_MESSAGE_OFFSET, length).set(encoded.subarray(0, length));
    Atomics.store(this.logWords, LogWord.messageBytes, length);
    Atomics.store(this.logWords, LogWord.failed, 1);
    this.bumpChange();
  }

  /** Counters summed over the lanes in use. */
  stats(): WorkerLaneStats {
    const s: WorkerLaneStats = {
      lanesInUse: this.inUse.size,
      lanesFree: this.free.length,
      commits: 0,
      fallbacks: 0,
      contentionEvents: 0,
    };
    for (const lane of [...this.inUse.values(), ...this.free]) {
      s.commits += lane.commits();
      s.fallbacks += lane.fallbacks();
      s.contentionEvents += lane.contentionEvents();
    }
    return s;
  }

  /** The lanes currently handed out (for the engine's diagnostics and tests). */
  lanes(): SharedLane[] {
    return [...this.inUse.values()];
  }

  /**
   * Closes the pool after the log's last durable epoch was published: workers
   * reject later commits with `ERR_WAL_CLOSED`; ports are closed; the
   * doorbell loop ends.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.logWords, LogWord.closed, 1);
    this.bumpChange();
    Atomics.add(this.logWords, LogWord.doorbell, 1);
    Atomics.notify(this.logWords, LogWord.doorbell);
    for (const lane of this.inUse.values()) {
      lane.port?.close();
      lane.port = null;
    }
  }

  private listen(lane: SharedLane, port: MessagePort): void {
    port.on('message', (message: WorkerToOwnerMessage) => {
      if (message.kind === 'commit') this.serialize(port, message.id, message.batch);
      else if (message.kind === 'release') this.writerGone(lane, port);
    });
    // Fires when the writer closes its end or its worker exits.
    port.on('close', () => this.writerGone(lane, port));
    // The owner's end must not keep the process alive on its own.
    port.unref();
  }

  private serialize(port: MessagePort, id: number, batch: PortBatch): void {
    this.owner.commitSerialized(batch).then(
      (ack) => post(port, { kind: 'ack', id, epoch: ack.epoch, commitSeq: ack.commitSeq }),
      (error: unknown) =>
        post(port, {
          kind: 'error',
          id,
          code: errorCode(error),
          message: error instanceof Error ? error.message : String(error),
        }),
    );
  }

  private writerGone(lane: SharedLane, port: MessagePort): void {
    if (lane.port !== port) return;
    lane.port = null;
    port.close();
    lane.markWriterGone();
    // The engine keeps flushing the lane until it holds nothing, then frees
    // its id; only then may the buffers go to another writer.
    const laneId = lane.laneId;
    this.owner.releaseLane(laneId).then(
      () => this.recycle(lane, laneId),
      () => this.recycle(lane, laneId),
    );
  }

  private recycle(lane: SharedLane, laneId: number): void {
    if (this.inUse.get(laneId) !== lane) return;
    this.inUse.delete(laneId);
    this.free.push(lane);
  }

  private bumpChange(): void {
    Atomics.add(this.logWords, LogWord.change, 1);
    Atomics.notify(this.logWords, LogWord.change);
  }

  private failureMessage(): string {
    const length = Atomics.load(this.logWords, LogWord.messageBytes);
    return new TextDecoder().decode(new Uint8Array(this.log, LOG_MESSAGE_OFFSET, length).slice());
  }

  /** Wakes the engine when workers append (the doorbell word). */
  private startDoorbell(): void {
    if (this.doorbellRunning) return;
    this.doorbellRunning = true;
    void this.doorbellLoop();
  }

  private async doorbellLoop(): Promise<void> {
    let seen = Atomics.load(this.logWords, LogWord.doorbell);
    while (!this.closed) {
      // A pending waitAsync does not keep the process alive: nothing to unref.
      const wait = Atomics.waitAsync(this.logWords, LogWord.doorbell, seen);
      if (wait.async) await wait.value;
      if (this.closed) break;
      seen = Atomics.load(this.logWords, LogWord.doorbell);
      try {
        this.owner.notifyAppend();
      } catch {
        // The engine reports its own failures through onFailed; the doorbell
        // must keep ringing for the next append.
      }
    }
    this.doorbellRunning = false;
  }
}

function post(port: MessagePort, message: OwnerToWorkerMessage): void {
  try {
    port.postMessage(message);
  } catch {
    // The writer is gone; nobody is waiting for the answer.
  }
}

function errorCode(error: unknown): string {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const code = (error as { code: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return 'ERR_WAL_FAILED';
}

function describeFailure(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause;
  if (cause instanceof Error && !error.message.includes(cause.message)) {
    return `${error.message}: ${cause.message}`;
  }
  return error.message;
}
