/**
 * Worker lanes, writer side: what runs inside a `worker_thread`.
 *
 * `attachWriter(handle)` turns a {@link WorkerLaneHandle} (from
 * `wal.workerHandle()`, posted to the worker) into a writer whose `commit`
 * has the owner's promise semantics: resolved with `{ epoch, commitSeq,
 * durability }` once the epoch holding the commit is durable, rejected with
 * `ERR_WAL_FAILED` (and the cause's message) if the log fails first, and
 * with `ERR_WAL_CLOSED` once the writer or the log is closed.
 *
 * A commit is encoded and checksummed on the worker's core, before the lane
 * lock, with the lane's current epoch as a guess and commit sequence 0 as a
 * placeholder. Under the lock the writer reads the real epoch tag of the
 * active buffer, draws the commit sequence number from the log's shared
 * counter, patches both into the encoded bytes (the CRC by linearity, see
 * `worker-crc.ts`, so the lock hold does not grow with page size), copies the
 * bytes into the lane buffer and publishes the new used-bytes word. A lane
 * that refuses (sealed, flushing or full) is not an error: the batch goes to
 * the owner's serialized path over the port, and the fallback is counted.
 */
import type { MessagePort } from 'node:worker_threads';
import { WalArgumentError, WalError } from '../errors.js';
import {
  encodedRecordBytes,
  RECORD_LENGTH_PREFIX_BYTES,
  validateRecord,
  writeRecordUnchecked,
} from '../format/record.js';
import type { TxnToken, WalRecord } from '../format/types.js';
import { type Deferred, createDeferred as deferred } from './deferred.js';
import { WalClosedError, WalFailedError } from './errors.js';
import { applyRecordPatch, prepareRecordPatch } from './worker-crc.js';
import {
  BufferState,
  claimCommitSeq,
  commitSeqNotIncreasing,
  LaneWord,
  LaneWord64,
  LOG_MESSAGE_OFFSET,
  LogWord,
  LogWord64,
  lockLane,
  type OwnerToWorkerMessage,
  type PortBatch,
  takeCommitSeq,
  unlockLane,
  type WorkerLaneHandle,
  type WorkerToOwnerMessage,
  WriterState,
} from './worker-layout.js';

export { type WorkerLaneHandle, workerHandleTransferList } from './worker-layout.js';

/** One page of a commit. */
export interface WorkerFrame {
  pageNumber: number;
  pageData: Uint8Array;
  dbSizeIfCommit: number;
}

/** A commit batch, as `ParallelWal.commit` takes it. */
export interface WorkerBatch {
  txnToken: TxnToken;
  /** Omit (or `null`) to let the log assign the next commit sequence number. */
  commitSeq?: bigint | null;
  frames: readonly WorkerFrame[];
}

/** What a commit resolves with once it is durable. */
export interface WorkerCommitAck {
  epoch: bigint;
  commitSeq: bigint;
  /** The log's fsync policy: what "durable" means for this acknowledgement. */
  durability: 'full' | 'normal' | 'off';
}

/** A writer attached to a worker lane. */
export interface WorkerWriter {
  /** The lane this writer appends to. */
  readonly laneId: number;
  /** Commits `batch`; resolves once its epoch is durable. */
  commit(batch: WorkerBatch): Promise<WorkerCommitAck>;
  /**
   * Stops accepting commits, waits for the ones in flight to settle, and gives
   * the lane back to the log. Idempotent.
   */
  close(): Promise<void>;
}

/**
 * Re-checks the shared durable word at least this often while commits wait,
 * in ms. Wake-ups come from `Atomics.notify`; the bound only caps a wait.
 */
export const DURABLE_WAIT_SLICE_MS = 1_000;

interface PendingDurable extends Deferred<WorkerCommitAck> {
  epoch: bigint;
  commitSeq: bigint;
}

/**
 * Attaches the calling worker to the lane described by `handle`. A handle
 * attaches once; a handle of a lane that was since released is refused.
 * @throws {WalArgumentError} for a foreign, stale or already attached handle.
 */
export function attachWriter(handle: WorkerLaneHandle): WorkerWriter {
  return new SharedLaneWriter(handle);
}

/**
 * First size of a writer's encoding scratch buffer, in bytes: a few 4 KiB
 * pages per commit without growing; a larger batch doubles it (up to the
 * lane buffer's capacity, past which a batch takes the serialized path).
 */
const workerScratchBytesInitial = 64 * 1024;

class SharedLaneWriter implements WorkerWriter {
  readonly laneId: number;
  private readonly handle: WorkerLaneHandle;
  private readonly words: Int32Array;
  private readonly words64: BigInt64Array;
  private readonly buffers: readonly [Uint8Array, Uint8Array];
  private readonly logWords: Int32Array;
  private readonly logWords64: BigInt64Array;
  private readonly seqCounter: BigInt64Array;
  private readonly port: MessagePort;
  private scratch: Uint8Array = new Uint8Array(workerScratchBytesInitial);
  /** The epoch guess the scratch records were encoded with. */
  private scratchEpoch = 0n;
  private readonly durableWaits: PendingDurable[] = [];
  private readonly serialWaits = new Map<number, Deferred<WorkerCommitAck>>();
  private readonly inFlight = new Set<Promise<WorkerCommitAck>>();
  private nextMessageId = 1;
  private waitLoopRunning = false;
  /** A doorbell ring is scheduled for the end of this turn. */
  private doorbellPending = false;
  /** The lane's port closed with the log neither closed nor failed: its owner's thread is gone. */
  private ownerGone: WalFailedError | null = null;
  private closing: Promise<void> | null = null;
  private portClosed = false;

  constructor(handle: WorkerLaneHandle) {
    if (handle?.layout !== 1 || !(handle.control instanceof SharedArrayBuffer)) {
      throw new WalArgumentError('not a worker lane handle (layout 1)');
    }
    this.handle = handle;
    this.laneId = handle.laneId;
    this.words = new Int32Array(handle.control);
    this.words64 = new BigInt64Array(handle.control);
    this.buffers = [new Uint8Array(handle.buffers[0]), new Uint8Array(handle.buffers[1])];
    this.logWords = new Int32Array(handle.log);
    this.logWords64 = new BigInt64Array(handle.log);
    this.seqCounter = new BigInt64Array(handle.commitSeq);
    if (Atomics.load(this.words, LaneWord.generation) !== handle.generation) {
      throw new WalArgumentError(`worker lane handle for lane ${handle.laneId} is stale`);
    }
    if (
      Atomics.compareExchange(
        this.words,
        LaneWord.writer,
        WriterState.handedOut,
        WriterState.attached,
      ) !== WriterState.handedOut
    ) {
      throw new WalArgumentError(`worker lane ${handle.laneId} already has a writer`);
    }
    this.port = handle.port;
    this.port.on('message', (message: OwnerToWorkerMessage) => this.onMessage(message));
    this.port.on('close', () => this.onPortClosed());
    this.updateKeepAlive();
  }

  commit(batch: WorkerBatch): Promise<WorkerCommitAck> {
    try {
      this.checkOpen();
      const encoded = this.encode(batch);
      if (encoded === null) return this.track(this.fallback(batch));
      const appended = this.append(encoded.bytes, encoded.records, batch.commitSeq ?? null);
      if (appended === null) return this.track(this.fallback(batch));
      const wait = deferred<WorkerCommitAck>();
      this.durableWaits.push({ ...wait, epoch: appended.epoch, commitSeq: appended.commitSeq });
      this.ringDoorbell();
      this.startWaitLoop();
      return this.track(wait.promise);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  private async closeOnce(): Promise<void> {
    await Promise.allSettled([...this.inFlight]);
    if (!this.portClosed) {
      post(this.port, { kind: 'release' });
      this.port.close();
    }
  }

  /** Tracks `promise` until it settles, so `close()` can wait for it. */
  private track(promise: Promise<WorkerCommitAck>): Promise<WorkerCommitAck> {
    this.inFlight.add(promise);
    const forget = (): void => {
      this.inFlight.delete(promise);
    };
    promise.then(forget, forget);
    return promise;
  }

  private checkOpen(): void {
    if (this.closing !== null) throw new WalClosedError('worker writer is closed');
    if (Atomics.load(this.logWords, LogWord.failed) === 1) throw this.failure();
    if (this.ownerGone !== null) throw this.ownerGone;
    if (Atomics.load(this.logWords, LogWord.closed) === 1 || this.portClosed) {
      throw new WalClosedError();
    }
  }

  /**
   * Encodes the batch into the scratch buffer with the lane's current epoch as
   * a guess; `null` when it can never fit a lane buffer (serialized path).
   */
  private encode(batch: WorkerBatch): { bytes: number; records: number } | null {
    const frames = batch.frames;
    if (frames.length === 0) return null;
    const version = this.handle.formatVersion;
    const epochGuess = Atomics.load(this.words64, LaneWord64.laneEpoch);
    const seq = batch.commitSeq ?? 0n;
    const records: WalRecord[] = [];
    let total = 0;
    for (const frame of frames) {
      const record: WalRecord = {
        txnToken: batch.txnToken,
        epoch: epochGuess,
        pageId: frame.pageNumber,
        beginSeq: seq,
        endSeq: seq,
        beforeImage: EMPTY,
        afterImage: frame.pageData,
      };
      validateRecord(record);
      records.push(record);
      total += RECORD_LENGTH_PREFIX_BYTES + encodedRecordBytes(record, version);
    }
    if (total > this.handle.bufferCapacityBytes) return null;
    if (this.scratch.length < total) {
      this.scratch = new Uint8Array(Math.max(total, this.scratch.length * 2));
    }
    let at = 0;
    for (const record of records) {
      const body = encodedRecordBytes(record, version);
      at = writeRecordUnchecked(record, version, this.scratch, at, body);
    }
    this.scratchEpoch = epochGuess;
    return { bytes: total, records: records.length };
  }

  /**
   * The critical section: under the lane lock, checks the active buffer,
   * fixes the epoch tag and commit sequence, copies, publishes. `null` when
   * the lane refuses the batch.
   */
  private append(
    bytes: number,
    records: number,
    givenSeq: bigint | null,
  ): { epoch: bigint; commitSeq: bigint } | null {
    const w = this.words;
    if (lockLane(w, this.laneId, this.handle.lockWaitMaxMs)) {
      Atomics.add(w, LaneWord.contention, 1);
    }
    try {
      const a = Atomics.load(w, LaneWord.active);
      const used = Atomics.load(w, LaneWord.used + a);
      if (
        Atomics.load(w, LaneWord.state + a) !== BufferState.writable ||
        used + bytes > this.handle.bufferCapacityBytes
      ) {
        return null;
      }
      const epoch = Atomics.load(this.words64, LaneWord64.tag + a);
      let commitSeq: bigint;
      if (givenSeq === null) {
        commitSeq = takeCommitSeq(this.seqCounter);
      } else {
        // Claimed under the lane lock, atomically with every other lane's
        // draws and claims: a number not above them all is refused.
        if (claimCommitSeq(this.seqCounter, givenSeq) === null) {
          throw commitSeqNotIncreasing(givenSeq, this.seqCounter);
        }
        commitSeq = givenSeq;
      }
      if (epoch !== this.scratchEpoch || givenSeq === null) {
        const patch = prepareRecordPatch(
          this.scratchEpoch,
          epoch,
          0n,
          givenSeq === null ? commitSeq : null,
        );
        const checksum = this.handle.formatVersion === 2;
        let at = 0;
        for (let i = 0; i < records; i++) at = applyRecordPatch(this.scratch, at, patch, checksum);
      }
      this.buffers[a]!.set(this.scratch.subarray(0, bytes), used);
      Atomics.add(w, LaneWord.count + a, records);
      // The commit point: the owner only reads bytes below the used word.
      Atomics.store(w, LaneWord.used + a, used + bytes);
      Atomics.add(w, LaneWord.commits, 1);
      return { epoch, commitSeq };
    } finally {
      unlockLane(w);
    }
  }

  private fallback(batch: WorkerBatch): Promise<WorkerCommitAck> {
    Atomics.add(this.words, LaneWord.fallbacks, 1);
    const id = this.nextMessageId++;
    const wait = deferred<WorkerCommitAck>();
    this.serialWaits.set(id, wait);
    const portBatch: PortBatch = {
      txnToken: { id: batch.txnToken.id, epoch: batch.txnToken.epoch },
      frames: batch.frames.map((f) => ({
        pageNumber: f.pageNumber,
        pageData: f.pageData,
        dbSizeIfCommit: f.dbSizeIfCommit,
      })),
    };
    if (batch.commitSeq !== undefined && batch.commitSeq !== null) {
      portBatch.commitSeq = batch.commitSeq;
    }
    post(this.port, { kind: 'commit', id, batch: portBatch });
    this.updateKeepAlive();
    return wait.promise;
  }

  private onMessage(message: OwnerToWorkerMessage): void {
    if (message.kind === 'released') return;
    const wait = this.serialWaits.get(message.id);
    if (wait === undefined) return;
    this.serialWaits.delete(message.id);
    if (message.kind === 'ack') {
      wait.resolve({
        epoch: message.epoch,
        commitSeq: message.commitSeq,
        durability: this.handle.durability,
      });
    } else if (message.code === 'ERR_WAL_FAILED') {
      wait.reject(new WalFailedError(message.message, null));
    } else if (message.code === 'ERR_WAL_CLOSED') {
      wait.reject(new WalClosedError(message.message));
    } else {
      wait.reject(new WalError(message.code, message.message));
    }
    this.updateKeepAlive();
  }

  private onPortClosed(): void {
    this.portClosed = true;
    // The owner closes the lane's port after marking the log closed (or
    // failed). A port that closes otherwise means the owner's thread is
    // gone: nothing will answer or acknowledge the commits still waiting,
    // and nothing keeps this thread alive for them (a pending
    // Atomics.waitAsync does not), so they fail now rather than never
    // settle, and so does every later commit.
    const closed = Atomics.load(this.logWords, LogWord.closed) === 1;
    if (!closed && Atomics.load(this.logWords, LogWord.failed) !== 1) {
      this.ownerGone = new WalFailedError(
        "the log's owner thread is gone: the outcome of commits that were waiting is unknown until the log is reopened",
        null,
      );
    }
    const error =
      this.ownerGone ??
      (Atomics.load(this.logWords, LogWord.failed) === 1
        ? this.failure()
        : new WalClosedError('the log closed the worker lane'));
    // Commits on the serialized path may have been written already: closed
    // only if the log says it closed.
    for (const wait of this.serialWaits.values()) wait.reject(error);
    this.serialWaits.clear();
    this.settleDurable();
    if (this.durableWaits.length > 0) {
      for (const w of this.durableWaits.splice(0)) w.reject(error);
    }
    this.updateKeepAlive();
  }

  /**
   * Rings the owner's doorbell once per turn of this worker's event loop,
   * after every commit of the turn is in the lane, instead of once per
   * commit. A doorbell makes an idle owner seal at once: rung on the first
   * commit of a burst it sealed an epoch of that one commit while the rest
   * of the burst waited a whole write + fdatasync for the next epoch, and
   * every ring is a cross-thread wake-up of the owner's event loop.
   */
  private ringDoorbell(): void {
    if (this.doorbellPending) return;
    this.doorbellPending = true;
    setImmediate(this.ringDoorbellNow);
  }

  private readonly ringDoorbellNow = (): void => {
    this.doorbellPending = false;
    Atomics.add(this.logWords, LogWord.doorbell, 1);
    Atomics.notify(this.logWords, LogWord.doorbell);
  };

  private startWaitLoop(): void {
    if (this.waitLoopRunning) return;
    this.waitLoopRunning = true;
    this.updateKeepAlive();
    void this.waitLoop();
  }

  /** One loop per writer: waits on the change word, settles what became durable. */
  private async waitLoop(): Promise<void> {
    try {
      while (this.durableWaits.length > 0) {
        const seen = Atomics.load(this.logWords, LogWord.change);
        this.settleDurable();
        if (this.durableWaits.length === 0) break;
        const wait = Atomics.waitAsync(this.logWords, LogWord.change, seen, DURABLE_WAIT_SLICE_MS);
        if (wait.async) await wait.value;
      }
    } finally {
      this.waitLoopRunning = false;
      this.updateKeepAlive();
    }
  }

  private settleDurable(): void {
    const waits = this.durableWaits;
    // Read before the durable word: the owner raises that word (for an
    // acknowledged epoch) before it can mark the log failed, so whatever
    // the word covers was acknowledged and resolves even on a failed log.
    const failed = Atomics.load(this.logWords, LogWord.failed) === 1;
    const durable = Atomics.load(this.logWords64, LogWord64.durableEpoch);
    // Epoch tags of one lane never decrease, so the waits are in epoch order.
    let n = 0;
    while (n < waits.length && waits[n]!.epoch <= durable) n++;
    for (const w of waits.splice(0, n)) {
      w.resolve({ epoch: w.epoch, commitSeq: w.commitSeq, durability: this.handle.durability });
    }
    if (failed) {
      const error = this.failure();
      for (const w of waits.splice(0)) w.reject(error);
      return;
    }
    if (waits.length > 0 && Atomics.load(this.logWords, LogWord.closed) === 1) {
      const error = new WalClosedError('the log closed before the commit became durable');
      for (const w of waits.splice(0)) w.reject(error);
    }
  }

  private failure(): WalFailedError {
    const length = Atomics.load(this.logWords, LogWord.messageBytes);
    const bytes = new Uint8Array(this.handle.log, LOG_MESSAGE_OFFSET, length).slice();
    return new WalFailedError(new TextDecoder().decode(bytes), null);
  }

  /** A pending `Atomics.waitAsync` does not keep a worker alive; a ref'd port does. */
  private updateKeepAlive(): void {
    if (this.portClosed) return;
    if (this.waitLoopRunning || this.serialWaits.size > 0) this.port.ref();
    else this.port.unref();
  }
}

const EMPTY = new Uint8Array(0);

function post(port: MessagePort, message: WorkerToOwnerMessage): void {
  port.postMessage(message);
}
