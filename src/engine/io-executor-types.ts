/**
 * The types of the durable-write executors (`io-executor.ts`): what a
 * durable write reports, how it fails, and the executor interface.
 */

import type { WalFileHandle } from '../storage/fs.js';
import { EARLIER_WRITE_FAILED_CODE } from './io-thread-source.js';
import type { FileWorkJob, FileWorkReply } from './segment-file-work.js';

/** The step of a durable write that failed. */
export type DurableWriteStep = 'write' | 'datasync';

/** A failed durable write: the OS error (`cause`) and the step it failed in. */
export class DurableWriteFailure extends Error {
  constructor(
    readonly step: DurableWriteStep,
    override readonly cause: unknown,
  ) {
    super(`${step} failed: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'DurableWriteFailure';
  }
}

/**
 * The OS error and step of a failed durable write (an executor reports them
 * in a {@link DurableWriteFailure}); anything else is returned as it is, with
 * `step` as the step.
 */
export function unwrapWriteFailure(
  raw: unknown,
  step: string,
): { error: unknown; failedStep: string } {
  return raw instanceof DurableWriteFailure
    ? { error: raw.cause, failedStep: raw.step }
    : { error: raw, failedStep: step };
}

/** Time spent in one durable write's system calls, in microseconds. */
export interface DurableWriteTiming {
  writeMicros: number;
  syncMicros: number;
}

/** Cumulative figures of an executor. */
export interface DurableWriteExecutorStats {
  kind: DurableWriteExecutorKind;
  /** Durable writes completed. */
  writes: number;
  /** Of those, the ones the I/O thread ran. */
  threadWrites: number;
  /**
   * Of those, the small ones run synchronously on the calling thread while
   * the I/O thread was idle (the `callerWriteBytesMax` option of the log).
   */
  callerWrites: number;
  /** Time in `write`/`writev` system calls, microseconds. */
  writeMicros: number;
  /** Time in `fdatasync`, microseconds. */
  syncMicros: number;
  /**
   * Units of segment-file bookkeeping (closes, renames, creations and their
   * directory fsync) the executor's file thread ran.
   */
  fileJobs: number;
  /** Time the I/O thread spent on them, microseconds. */
  fileJobMicros: number;
  /**
   * Of the thread's writes ({@link threadWrites}): time from the owner
   * posting each job to the I/O thread starting it, microseconds — the
   * thread's wake-up, the message's passage, and any write queued ahead.
   */
  handoffMicros: number;
  /**
   * Of the thread's writes: time from the thread finishing each job (its
   * fdatasync returned) to the owner reading the answer, microseconds — the
   * owner's wake-up (`Atomics.waitAsync`) and its event loop's turn.
   */
  returnMicros: number;
}

/** Which executor runs durable writes. */
export type DurableWriteExecutorKind = 'ioThread' | 'inline';

/** Runs durable writes; see the module comment. */
export interface DurableWriteExecutor {
  readonly kind: DurableWriteExecutorKind;
  /**
   * Writes all of `chunks` back to back at `position` of `handle`, then, if
   * `datasync`, fdatasyncs the file. Resolves once that returned. Writes run
   * one at a time, in the order of the calls, even when a call comes before
   * the previous one resolved (the flusher queues an epoch's write behind the
   * one in flight); a write is never started once an earlier one failed.
   * @throws {DurableWriteFailure} with the OS error and the failed step
   *   (`write`, with code {@link EARLIER_WRITE_FAILED_CODE}, for a write not
   *   started because an earlier one failed).
   */
  writeAt(
    handle: WalFileHandle,
    chunks: readonly Uint8Array[],
    position: number,
    datasync: boolean,
  ): Promise<DurableWriteTiming>;
  /**
   * Runs a unit of segment-file bookkeeping (see `segment-file-work.ts`)
   * on a thread of the executor; absent, or null when no thread can take it
   * now (the caller then runs it itself).
   */
  fileWork?(job: FileWorkJob): Promise<FileWorkReply> | null;
  /** Starts what {@link fileWork} runs on now, so that it is ready by the first job. */
  prepareFileWork?(): void;
  /** Cumulative figures. */
  stats(): DurableWriteExecutorStats;
  /** Stops the I/O thread (after the writes in flight). Idempotent. */
  close(): Promise<void>;
}

/** The failure of a write that was not started because an earlier one failed. */
export function earlierWriteFailed(): DurableWriteFailure {
  const cause = Object.assign(new Error('not started: an earlier durable write failed'), {
    code: EARLIER_WRITE_FAILED_CODE,
  });
  return new DurableWriteFailure('write', cause);
}

/** The process's monotonic clock in microseconds (the same clock on every thread). */
export function monotonicMicros(): number {
  const [seconds, nanos] = process.hrtime();
  return seconds * 1e6 + nanos / 1e3;
}
