/**
 * Typed errors of the engine layer (lanes, epochs, flusher, coordinator).
 *
 * Callers branch on `code`; the messages keep the seed's wording where the
 * seed had one (`coordinator already running`, `write_segment(0) failed: …`).
 */
import { WalError } from '../errors.js';

/** Stable codes of the engine's errors. */
export const EngineErrorCode = {
  /** The log hit a write/fsync/rename failure and refuses writes until reopened. */
  failed: 'ERR_WAL_FAILED',
  /** The log is closed (or closing) and accepts no new commits. */
  closed: 'ERR_WAL_CLOSED',
  /** `waitForEpochDurable` (or `advanceAndFlush`) ran out of time. */
  durableTimeout: 'ERR_EPOCH_DURABLE_TIMEOUT',
  /** An epoch advance fence timed out; the advance was rolled back. */
  fenceTimeout: 'ERR_EPOCH_FENCE_TIMEOUT',
  /** `start()` on a coordinator whose ticker already runs. */
  alreadyRunning: 'ERR_ALREADY_RUNNING',
  /** A batch larger than the serialized path can ever hold. */
  batchTooLarge: 'ERR_BATCH_TOO_LARGE',
  /** A lane was driven through an illegal state transition (an engine bug). */
  laneState: 'ERR_LANE_STATE',
  /**
   * An engine invariant broke (an engine bug, never bad input): lane bytes
   * the flusher cannot use, or one of the checks of `invariant.ts`. The log
   * fails with it as the cause; nothing is acknowledged after it.
   */
  invariant: 'ERR_ENGINE_INVARIANT',
  /** No lane id is free (the lane-id space is exhausted). */
  noFreeLane: 'ERR_NO_FREE_LANE',
} as const;

/** Any {@link EngineErrorCode} value. */
export type EngineErrorCodeValue = (typeof EngineErrorCode)[keyof typeof EngineErrorCode];

/** Base class of the engine's errors. */
export class EngineError extends WalError {
  declare readonly code: EngineErrorCodeValue;

  constructor(code: EngineErrorCodeValue, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/**
 * The log failed durably writing an epoch. The fate of that epoch's data is
 * unknown (after a failed fsync Linux may drop dirty pages and report success
 * on a retry), so no later commit is acknowledged; reopen to recover from disk.
 * `cause` is the underlying I/O error; `epoch` the epoch that failed.
 */
export class WalFailedError extends EngineError {
  readonly epoch: bigint | null;

  constructor(message: string, epoch: bigint | null, options?: { cause?: unknown }) {
    super(EngineErrorCode.failed, message, options);
    this.epoch = epoch;
  }
}

/** The log is closed or closing. */
export class WalClosedError extends EngineError {
  constructor(message = 'parallel WAL is closed') {
    super(EngineErrorCode.closed, message);
  }
}

/** A wait for an epoch to become durable timed out. */
export class DurableTimeoutError extends EngineError {
  readonly epoch: bigint;

  constructor(epoch: bigint, timeoutMs: number) {
    super(
      EngineErrorCode.durableTimeout,
      `timed out after ${timeoutMs} ms waiting for epoch ${epoch} to become durable`,
    );
    this.epoch = epoch;
  }
}

/** An epoch advance fence timed out; `currentEpoch` was rolled back. */
export class FenceTimeoutError extends EngineError {
  readonly epoch: bigint;
  readonly laneIds: readonly number[];

  constructor(epoch: bigint, laneIds: readonly number[], timeoutMs: number) {
    super(
      EngineErrorCode.fenceTimeout,
      `epoch advance to ${epoch} timed out after ${timeoutMs} ms waiting for lanes [${laneIds.join(', ')}] to observe it; rolled back`,
    );
    this.epoch = epoch;
    this.laneIds = laneIds;
  }
}

/** `start()` while the ticker runs. */
export class AlreadyRunningError extends EngineError {
  constructor() {
    super(EngineErrorCode.alreadyRunning, 'coordinator already running');
  }
}

/** A batch that no lane, not even the serialized path, can hold. */
export class BatchTooLargeError extends EngineError {
  constructor(bytes: number, limitBytes: number) {
    super(
      EngineErrorCode.batchTooLarge,
      `batch of ${bytes} encoded bytes exceeds the serialized path limit of ${limitBytes} bytes`,
    );
  }
}

/** A lane was asked for a transition its state machine does not allow. */
export class LaneStateError extends EngineError {
  constructor(message: string) {
    super(EngineErrorCode.laneState, message);
  }
}

/**
 * Bytes or bookkeeping that break an engine invariant (never expected):
 * thrown by `invariant()` (docs/design.md#invariants) and by the flusher's
 * checks of lane bytes.
 */
export class EngineInvariantError extends EngineError {
  constructor(message: string) {
    super(EngineErrorCode.invariant, message);
  }
}

/** Every lane id is taken. */
export class NoFreeLaneError extends EngineError {
  constructor(limit: number) {
    super(EngineErrorCode.noFreeLane, `no free lane id (limit ${limit})`);
  }
}
