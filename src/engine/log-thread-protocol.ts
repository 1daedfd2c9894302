/**
 * The messages between a {@link ThreadedWal} and its log's own thread
 * (`log-thread.ts`, `log-thread-host.ts`), and how errors cross between them.
 */

import { WalArgumentError, WalError } from '../errors.js';
import { LOCK_IO_CODE, LOCKED_CODE, LockError } from '../storage/lockfile.js';
import { WalClosedError, WalFailedError } from './errors.js';
import type { ParallelWalConfig } from './wal-config.js';
import type { WorkerLaneHandle } from './worker-layout.js';

/** Marks the `workerData` of a log thread, so its module does nothing when loaded otherwise. */
export const HOST_START_TAG = 'parallel-wal/log-thread@1';

/** The options of {@link ParallelWalConfig} that can cross to another thread. */
export type ThreadedWalConfig = Omit<ParallelWalConfig, 'fs' | 'controlPlane'>;

/** What the log thread is started with (its `workerData`). */
export interface HostStart {
  tag: typeof HOST_START_TAG;
  dbPath: string;
  config: ThreadedWalConfig;
}

/** True when `data` is a {@link HostStart}. */
export function isHostStart(data: unknown): data is HostStart {
  return (
    typeof data === 'object' && data !== null && (data as { tag?: unknown }).tag === HOST_START_TAG
  );
}

/** A request of the starting thread. */
export interface HostRequest {
  id: number;
  kind: 'handle' | 'stats' | 'close';
}

/** An error as it crosses between the threads. */
export interface SerializedError {
  name: string;
  code: string | null;
  message: string;
  /** A {@link LockError}'s holder, when it named one. */
  holderPid?: number;
  holderHost?: string;
}

/** What the log thread posts. */
export type HostReply =
  | { kind: 'opened'; handle: WorkerLaneHandle }
  | { kind: 'openFailed'; error: SerializedError }
  | { kind: 'reply'; id: number; ok: true; value: unknown }
  | { kind: 'reply'; id: number; ok: false; error: SerializedError };

/** `error`, reduced to what crosses threads: its class name, code and message (with its cause's). */
export function serializeError(error: unknown): SerializedError {
  if (!(error instanceof Error)) return { name: 'Error', code: null, message: String(error) };
  const code = (error as { code?: unknown }).code;
  const cause = error.cause;
  const message =
    cause instanceof Error && !error.message.includes(cause.message)
      ? `${error.message}: ${cause.message}`
      : error.message;
  const serialized: SerializedError = {
    name: error.name,
    code: typeof code === 'string' ? code : null,
    message,
  };
  if (error instanceof LockError) {
    if (error.holderPid !== undefined) serialized.holderPid = error.holderPid;
    if (error.holderHost !== undefined) serialized.holderHost = error.holderHost;
  }
  return serialized;
}

/**
 * The error to throw on the starting thread for `serialized`: the same class
 * for the engine's own common ones (bad argument, closed, failed, lock) and
 * for `RangeError` and `TypeError`; otherwise a {@link WalError} with the
 * same code, message and `name` (callers branch on `code`, which is kept).
 */
export function reviveError(serialized: SerializedError): Error {
  const { name, code, message } = serialized;
  let error: Error;
  if (code === 'ERR_INVALID_ARGUMENT') error = new WalArgumentError(message);
  else if (code === 'ERR_WAL_CLOSED') error = new WalClosedError(message);
  else if (code === 'ERR_WAL_FAILED') error = new WalFailedError(message, null);
  else if (code === LOCKED_CODE || code === LOCK_IO_CODE) {
    const details: { holderPid?: number; holderHost?: string } = {};
    if (serialized.holderPid !== undefined) details.holderPid = serialized.holderPid;
    if (serialized.holderHost !== undefined) details.holderHost = serialized.holderHost;
    error = new LockError(code, message, details);
  } else if (code !== null) error = new WalError(code, message);
  else if (name === 'RangeError') error = new RangeError(message);
  else if (name === 'TypeError') error = new TypeError(message);
  else error = new Error(message);
  Object.defineProperty(error, 'name', { value: name, configurable: true, writable: true });
  return error;
}
