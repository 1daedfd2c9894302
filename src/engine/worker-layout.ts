/**
 * Shared-memory layout of worker lanes and the per-log shared block, and the
 * lane lock. Both sides (the owner thread in `shared-lane.ts` and
 * `worker-lane-pool.ts`, the worker in `worker.ts`) read the words through
 * these names only.
 *
 * Memory ordering: every word that two threads touch is read and written
 * with `Atomics` (sequentially consistent). Record bytes in a lane buffer are
 * plain writes, published by the `Atomics.store` of the buffer's used-bytes
 * word and the lock release that follows; the owner reads them only after an
 * `Atomics` read of that word under the lock (or after sealing it under the
 * lock), which orders the plain bytes before it.
 */
import type { MessagePort } from 'node:worker_threads';
import { WalArgumentError, WalError } from '../errors.js';

// ---------------------------------------------------------------- lane block

/** Lane control block: `Int32` words first, then `BigInt64` words. */
export const LaneWord = {
  /** 0 free, 1 held, 2 held with waiters (a futex mutex). */
  lock: 0,
  /** Index (0/1) of the active buffer, the one writers append to. */
  active: 1,
  /** {@link BufferState} of buffer 0; buffer 1 at `state + 1`. */
  state: 2,
  /** Bytes used in buffer 0; buffer 1 at `used + 1`. Written last by an append (its commit point). */
  used: 4,
  /** Records in buffer 0; buffer 1 at `count + 1`. */
  count: 6,
  /** Appends that found the lock taken (worker side) — the lane's contention counter. */
  contention: 8,
  /** Commits that went to the serialized path because the lane refused them. */
  fallbacks: 9,
  /** Incarnation of the lane; bumped each time the lane is handed to a new writer. */
  generation: 10,
  /** 0 = handed out, not yet attached; 1 = attached by a writer; 2 = writer gone. */
  writer: 11,
  /** Commits appended through the lane. */
  commits: 12,
} as const;

/** `BigInt64` word indexes in the lane control block. */
export const LaneWord64 = {
  /** Epoch tag of buffer 0 (the epoch its records carry); buffer 1 at `tag + 1`. */
  tag: 8,
  /** The epoch new appends are tagged with once a Writable buffer is active. */
  laneEpoch: 10,
} as const;

/** Size of a lane control block in bytes: 16 Int32 words (bytes 0..64), then BigInt64 words 8..11. */
export const LANE_CONTROL_BYTES = 96;

/** States of a lane buffer, as stored in the `state` words. */
export const BufferState = {
  writable: 0,
  sealed: 1,
  flushing: 2,
} as const;

/** Values of the lane's `writer` word. */
export const WriterState = {
  handedOut: 0,
  attached: 1,
  gone: 2,
} as const;

// ----------------------------------------------------------------- log block

/** Per-log shared block: `Int32` words. */
export const LogWord = {
  /** Bumped (and notified) whenever durable epoch, failed or closed changes. */
  change: 0,
  /** 1 once the log failed; the cause text is in the message area. */
  failed: 1,
  /** Bumped (and notified) by a worker after each append: the owner's wake-up. */
  doorbell: 2,
  /** 1 once the log closed. */
  closed: 3,
  /** Length in bytes of the UTF-8 failure message. */
  messageBytes: 4,
} as const;

/** Per-log shared block: `BigInt64` words (bytes 32..40, after the Int32 words 0..8). */
export const LogWord64 = {
  /** Highest durable epoch, -1 while none. */
  durableEpoch: 4,
} as const;

/**
 * Draws the next commit sequence number from a shared counter (a
 * `BigInt64Array` over a `SharedArrayBuffer`, word 0 = the next number).
 * Every thread that assigns sequence numbers for one log draws from the same
 * counter, so numbers are unique and increasing across threads.
 */
export function takeCommitSeq(counter: BigInt64Array): bigint {
  return Atomics.add(counter, 0, 1n);
}

/**
 * Gives back `seq` (drawn with {@link takeCommitSeq} and not used) if no
 * thread drew a later number since; otherwise the number stays a gap.
 */
export function returnCommitSeq(counter: BigInt64Array, seq: bigint): void {
  Atomics.compareExchange(counter, 0, seq + 1n, seq);
}

/**
 * Claims a caller-given sequence `seq`, atomically with every other thread's
 * draws and claims: it succeeds only when `seq` is above every number drawn
 * or claimed so far (the counter's next number is `<= seq`), and the counter
 * then hands out numbers above it. Returns the counter's previous value (for
 * {@link releaseCommitSeqClaim}), or `null` when `seq` is not above them — a
 * sequence that would sort before a batch already placed, so recovery would
 * order the two differently from the order they were acknowledged in. The
 * largest u64 is never claimable (nothing could follow it).
 */
export function claimCommitSeq(counter: BigInt64Array, seq: bigint): bigint | null {
  if (seq >= commitSeqClaimMax) return null;
  // The counter holds u64 values in a signed array: compare them unsigned.
  let current = BigInt.asUintN(64, Atomics.load(counter, 0));
  while (current <= seq) {
    const seen = BigInt.asUintN(64, Atomics.compareExchange(counter, 0, current, seq + 1n));
    if (seen === current) return current;
    current = seen;
  }
  return null;
}

/** The largest u64: one above the largest claimable commit sequence. */
const commitSeqClaimMax = (1n << 64n) - 1n;

/**
 * Gives back a claim of `seq` that was not placed, if no thread drew or
 * claimed a number since; otherwise its number stays a gap.
 */
export function releaseCommitSeqClaim(counter: BigInt64Array, seq: bigint, previous: bigint): void {
  Atomics.compareExchange(counter, 0, seq + 1n, previous);
}

/** The counter's next number (every sequence drawn or claimed so far is below it). */
export function nextCommitSeq(counter: BigInt64Array): bigint {
  return BigInt.asUintN(64, Atomics.load(counter, 0));
}

/** `ERR_INVALID_ARGUMENT` for a caller-given commit sequence that does not increase. */
export function commitSeqNotIncreasing(given: bigint, counter: BigInt64Array): WalArgumentError {
  return new WalArgumentError(
    `batch.commitSeq ${given} is not above every commit sequence placed so far (next free: ${nextCommitSeq(counter)}): caller-given sequences must increase in the order batches are placed, which is the order recovery replays them in`,
  );
}

/** Creates a shared commit-sequence counter whose next number is `next`. */
export function createCommitSeqCounter(next: bigint): BigInt64Array {
  const counter = new BigInt64Array(new SharedArrayBuffer(BigInt64Array.BYTES_PER_ELEMENT));
  Atomics.store(counter, 0, next);
  return counter;
}

/** Byte offset of the failure message in the log block. */
export const LOG_MESSAGE_OFFSET = 64;
/** Longest failure message kept in shared memory, in bytes (longer ones are cut). */
export const logMessageBytesMax = 1024;
/** Size of the per-log shared block in bytes. */
export const LOG_BLOCK_BYTES = LOG_MESSAGE_OFFSET + logMessageBytesMax;

/**
 * Marks the log of the shared block `log` failed with `message` (cut to
 * {@link logMessageBytesMax} bytes) and wakes every writer waiting on it:
 * their waiting and later commits are rejected with `ERR_WAL_FAILED` and
 * this message. The first failure stays. One thread at a time may call it:
 * the log's owner, or, once the owner's thread is gone, the thread that
 * started it.
 */
export function markLogFailed(log: SharedArrayBuffer, message: string): void {
  const words = new Int32Array(log);
  if (Atomics.load(words, LogWord.failed) === 1) return;
  const encoded = new TextEncoder().encode(message);
  const length = Math.min(encoded.length, logMessageBytesMax);
  new Uint8Array(log, LOG_MESSAGE_OFFSET, length).set(encoded.subarray(0, length));
  Atomics.store(words, LogWord.messageBytes, length);
  Atomics.store(words, LogWord.failed, 1);
  Atomics.add(words, LogWord.change, 1);
  Atomics.notify(words, LogWord.change);
}

// ---------------------------------------------------------------- the lock

/** Spins on a taken lock before sleeping; short: holders keep it for microseconds. */
export const LANE_LOCK_SPINS = 64;
/** One `Atomics.wait` slice while the lock is taken, in milliseconds. */
export const LANE_LOCK_WAIT_SLICE_MS = 1;

/** Code of {@link LaneLockTimeoutError}. */
export const LANE_LOCK_TIMEOUT_CODE = 'ERR_LANE_LOCK_TIMEOUT';

/**
 * A lane lock stayed taken longer than the bound. Holders keep it for a
 * memcpy; this means the holding thread is stopped (debugger, terminated in
 * the middle of an append, or starved for that long).
 */
export class LaneLockTimeoutError extends WalError {
  readonly laneId: number;

  constructor(laneId: number, waitedMs: number) {
    super(LANE_LOCK_TIMEOUT_CODE, `lane ${laneId} lock still taken after ${waitedMs} ms`);
    this.laneId = laneId;
  }
}

/** The lane lock word's states (Drepper's three-state futex mutex). */
const LockState = {
  /** Nobody holds the lock. */
  free: 0,
  /** Held, nobody waits: release needs no wake-up. */
  held: 1,
  /** Held, someone may sleep on the word: release must notify. */
  contended: 2,
} as const;

/**
 * Takes the lane lock at `words[LaneWord.lock]` (Drepper's three-state futex
 * mutex): a compare-exchange, a short spin, then `Atomics.wait` slices until
 * `waitMaxMs`. Returns true when the lock was found taken (a contention event).
 * @throws {LaneLockTimeoutError} when it cannot get the lock in time.
 */
export function lockLane(words: Int32Array, laneId: number, waitMaxMs: number): boolean {
  const { free, held, contended } = LockState;
  let c = Atomics.compareExchange(words, LaneWord.lock, free, held);
  if (c === free) return false;
  for (let i = 0; i < LANE_LOCK_SPINS; i++) {
    if (
      Atomics.load(words, LaneWord.lock) === free &&
      Atomics.compareExchange(words, LaneWord.lock, free, held) === free
    ) {
      return true;
    }
  }
  const started = performance.now();
  if (c !== contended) c = Atomics.exchange(words, LaneWord.lock, contended);
  while (c !== free) {
    const waited = performance.now() - started;
    if (waited > waitMaxMs) throw new LaneLockTimeoutError(laneId, Math.round(waited));
    Atomics.wait(words, LaneWord.lock, contended, LANE_LOCK_WAIT_SLICE_MS);
    c = Atomics.exchange(words, LaneWord.lock, contended);
  }
  return true;
}

/** Releases the lane lock and wakes one sleeper if there are any. */
export function unlockLane(words: Int32Array): void {
  // held -> free needs no wake-up; contended -> (after the decrement) held
  // does: store free, and wake one sleeper.
  if (Atomics.sub(words, LaneWord.lock, 1) !== LockState.held) {
    Atomics.store(words, LaneWord.lock, LockState.free);
    Atomics.notify(words, LaneWord.lock, 1);
  }
}

// ------------------------------------------------------------- the handle

/**
 * What `wal.workerHandle()` returns and a worker passes to `attachWriter`.
 * Structured-cloneable: post it with `transferList: [handle.port]` (the
 * SharedArrayBuffers are shared, not copied; the port must be transferred).
 */
export interface WorkerLaneHandle {
  /** Layout version of the shared blocks. */
  readonly layout: 1;
  readonly laneId: number;
  /** Lane incarnation; a handle whose generation is stale cannot attach. */
  readonly generation: number;
  /** Segment format version records are encoded in. */
  readonly formatVersion: 1 | 2;
  /** What an acknowledgement guarantees (the log's fsync policy). */
  readonly durability: 'full' | 'normal' | 'off';
  /** Capacity of each of the two lane buffers, in bytes. */
  readonly bufferCapacityBytes: number;
  /** Longest wait for the lane lock on the worker side, in milliseconds. */
  readonly lockWaitMaxMs: number;
  readonly control: SharedArrayBuffer;
  readonly buffers: readonly [SharedArrayBuffer, SharedArrayBuffer];
  readonly log: SharedArrayBuffer;
  /** The log's commit-sequence counter (one `BigInt64` word, see `takeCommitSeq`). */
  readonly commitSeq: SharedArrayBuffer;
  /** The lane's channel to the owner: serialized-path commits and release. Transfer it. */
  readonly port: MessagePort;
}

/** The transfer list to post a {@link WorkerLaneHandle} with (its port). */
export function workerHandleTransferList(handle: WorkerLaneHandle): MessagePort[] {
  return [handle.port];
}

// ---------------------------------------------------------- port messages

/** A batch as it crosses the port for the serialized path. */
export interface PortBatch {
  txnToken: { id: bigint; epoch: number };
  commitSeq?: bigint;
  frames: { pageNumber: number; pageData: Uint8Array; dbSizeIfCommit: number }[];
}

/** Worker → owner. */
export type WorkerToOwnerMessage =
  | { kind: 'commit'; id: number; batch: PortBatch }
  | { kind: 'release' };

/** Owner → worker. */
export type OwnerToWorkerMessage =
  | { kind: 'ack'; id: number; epoch: bigint; commitSeq: bigint }
  | { kind: 'error'; id: number; code: string; message: string }
  | { kind: 'released' };
