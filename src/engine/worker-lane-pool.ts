/**
 * Worker lanes, the pool (docs/design.md#worker-lanes). A
 * {@link WorkerLanePool} (one per log) owns the per-log shared block —
 * durable epoch, failure flag, the append doorbell and the commit-sequence
 * counter — hands {@link SharedLane}s out as {@link WorkerLaneHandle}s,
 * takes them back when a writer closes or its worker exits, and reuses them.
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
import type { EngineLane } from './lane-types.js';
import { SharedLane } from './shared-lane.js';
import {
  createCommitSeqCounter,
  LOG_BLOCK_BYTES,
  LOG_MESSAGE_OFFSET,
  LogWord,
  LogWord64,
  markLogFailed,
  type OwnerToWorkerMessage,
  type PortBatch,
  takeCommitSeq,
  type WorkerLaneHandle,
  type WorkerToOwnerMessage,
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
 * Smallest worker lane buffer accepted, in bytes: room for one record with
 * empty images (its length prefix and a version-2 body, 49 bytes) and a
 * little more. Below it a lane could never take a commit and every batch
 * would go to the serialized path.
 */
export const workerBufferCapacityBytesMin = 64;

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
    if (
      !Number.isInteger(this.capacityBytes) ||
      this.capacityBytes < workerBufferCapacityBytesMin
    ) {
      throw new RangeError(
        `bufferCapacityBytes ${this.capacityBytes} must be an integer >= ${workerBufferCapacityBytesMin}`,
      );
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
    markLogFailed(this.log, describeFailure(error));
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
