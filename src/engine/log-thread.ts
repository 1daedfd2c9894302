/**
 * A parallel WAL whose owner runs on a thread of its own.
 *
 * A {@link ParallelWal} seals, writes and acknowledges epochs on the event
 * loop of the thread that opened it, worker writers' epochs included: while
 * that thread runs the application's synchronous work, no worker commit is
 * sealed or acknowledged (two worker writers fell to 0.51× of their rate
 * with the owner busy 5 ms in every 10, `bench/workers.ts --owner-busy`).
 * {@link ThreadedWal} opens the log on a thread that runs nothing else
 * (`log-thread-host.ts`): every writer, the opening thread included, commits
 * through a worker lane in shared memory, so worker writers' commits are
 * sealed and acknowledged whatever the opening thread is doing.
 *
 * The engine is the same: the same lanes, epochs, segment files, recovery
 * and guarantees. The opening thread's own commits take the worker-lane
 * path (encoded on the calling thread, acknowledged through shared memory).
 *
 * If the log's thread dies (it should not: the engine reports its failures
 * as errors), the log is marked failed in shared memory, so every writer's
 * waiting and later commits are rejected with `ERR_WAL_FAILED` instead of
 * waiting for ever. The thread's end closes its files, its lock with them,
 * so the log can be reopened at once, in this process too, to recover what
 * is on disk.
 */

import { Worker } from 'node:worker_threads';
import { WalArgumentError } from '../errors.js';
import { type LoggableStats, loggableStats } from '../stats-json.js';
import { createDeferred, type Deferred } from './deferred.js';
import { WalClosedError, WalFailedError } from './errors.js';
import {
  HOST_START_TAG,
  type HostReply,
  type HostRequest,
  type HostStart,
  reviveError,
  type ThreadedWalConfig,
} from './log-thread-protocol.js';
import type { ParallelWalStats } from './wal-stats.js';
import {
  attachWriter,
  type WorkerBatch,
  type WorkerCommitAck,
  type WorkerWriter,
} from './worker.js';
import { markLogFailed, type WorkerLaneHandle } from './worker-layout.js';

export type { ThreadedWalConfig } from './log-thread-protocol.js';

/** Options that cannot cross to the log's thread, and why. */
const refusedOptions = {
  fs: 'a file system object cannot cross to another thread',
  controlPlane: 'a control plane cannot cross to another thread',
} as const;

/** A parallel WAL run by a thread of its own; see the module comment. */
export class ThreadedWal {
  /** Path of the database whose log this is. */
  readonly dbPath: string;
  private readonly host: Worker;
  private readonly writer: WorkerWriter;
  private readonly log: SharedArrayBuffer;
  private readonly pending = new Map<number, Deferred<unknown>>();
  private nextId = 1;
  private failure: Error | null = null;
  private closed = false;
  private closing: Promise<void> | null = null;
  /** The thread's exit is expected (close asked for it). */
  private exitExpected = false;
  private readonly exited: Promise<void>;

  private constructor(
    dbPath: string,
    host: Worker,
    handle: WorkerLaneHandle,
    exited: Promise<void>,
  ) {
    this.dbPath = dbPath;
    this.host = host;
    this.log = handle.log;
    this.writer = attachWriter(handle);
    this.exited = exited;
    host.on('message', (message: HostReply) => this.onReply(message));
    // An idle log does not keep the process alive (as a ParallelWal); requests ref it.
    host.unref();
  }

  /**
   * Starts the log's thread and opens the log of `dbPath` there with
   * `config` (the options of {@link ParallelWal.open}, except `fs` and
   * `controlPlane`, which cannot cross threads).
   * @throws {WalArgumentError} for a bad path or configuration; the errors of
   *   {@link ParallelWal.open} (corrupt segment, lock taken, I/O), with their
   *   codes, as {@link WalError}s.
   */
  static async open(dbPath: string, config: ThreadedWalConfig = {}): Promise<ThreadedWal> {
    if (typeof dbPath !== 'string' || dbPath.length === 0) {
      throw new WalArgumentError('dbPath must be a non-empty string');
    }
    if (typeof config !== 'object' || config === null) {
      throw new WalArgumentError('config must be an object');
    }
    for (const [option, why] of Object.entries(refusedOptions)) {
      if ((config as Record<string, unknown>)[option] !== undefined) {
        throw new WalArgumentError(`${option} is not accepted by ThreadedWal: ${why}`);
      }
    }
    if (config.autoFlush === false) {
      throw new WalArgumentError('autoFlush: false is not accepted by ThreadedWal');
    }
    const start: HostStart = { tag: HOST_START_TAG, dbPath, config };
    let host: Worker;
    try {
      host = startHost(start);
    } catch (error) {
      // A configuration that cannot be cloned (a function, a class instance with state).
      throw new WalArgumentError(
        `config cannot cross to the log's thread: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    const exited = new Promise<void>((resolve) => host.once('exit', () => resolve()));
    // Listening from the start: a host that posts `opened` and dies at once
    // has its message, its error and its exit delivered in one task, before
    // the code after the await below runs.
    let wal: ThreadedWal | null = null;
    let goneEarly: string | null = null;
    const gone = (why: string): void => {
      if (wal === null) goneEarly ??= why;
      else wal.hostGone(why);
    };
    host.on('error', (error) => gone(`the log thread failed: ${error.message}`));
    host.on('exit', (code) => gone(`the log thread exited (code ${code})`));
    const opened = await new Promise<HostReply>((resolve) => {
      host.once('message', resolve);
      host.once('error', (error) =>
        resolve({
          kind: 'openFailed',
          error: { name: 'WalFailedError', code: 'ERR_WAL_FAILED', message: error.message },
        }),
      );
      host.once('exit', (code) =>
        resolve({
          kind: 'openFailed',
          error: {
            name: 'WalFailedError',
            code: 'ERR_WAL_FAILED',
            message: `the log thread exited (code ${code}) before the log opened`,
          },
        }),
      );
    });
    if (opened.kind !== 'opened') {
      await host.terminate();
      throw reviveError(opened.kind === 'openFailed' ? opened.error : unexpected(opened));
    }
    const log = new ThreadedWal(dbPath, host, opened.handle, exited);
    wal = log;
    if (goneEarly !== null) log.hostGone(goneEarly);
    return log;
  }

  /**
   * Commits `batch` from the calling thread; resolves once its epoch is
   * durable (what `durability` in the acknowledgement says).
   * @throws {WalClosedError} after {@link close}; {@link WalFailedError}
   *   once the log failed; the errors of {@link WorkerWriter.commit}.
   */
  commit(batch: WorkerBatch): Promise<WorkerCommitAck> {
    if (this.closed) return Promise.reject(new WalClosedError());
    if (this.failure !== null) return Promise.reject(this.failure);
    return this.writer.commit(batch);
  }

  /**
   * A lane for a writer on a worker thread: post it to the worker with
   * `workerHandleTransferList(handle)` and `attachWriter(handle)` there.
   * @throws {WalClosedError} / {@link WalFailedError}; `RangeError` when
   *   every worker lane is in use.
   */
  async workerHandle(): Promise<WorkerLaneHandle> {
    return (await this.request('handle')) as WorkerLaneHandle;
  }

  /** A snapshot of the log's counters (as {@link ParallelWal.stats}). */
  async stats(): Promise<LoggableStats<ParallelWalStats>> {
    return loggableStats((await this.request('stats')) as ParallelWalStats);
  }

  /**
   * Waits for this thread's commits in flight, closes the log on its thread
   * (every acknowledged epoch published) and ends the thread. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.closeOnce();
    return this.closing;
  }

  /** {@link close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  private async closeOnce(): Promise<void> {
    this.closed = true;
    await this.writer.close();
    if (this.failure === null) {
      this.exitExpected = true;
      try {
        await this.request('close', true);
      } finally {
        this.host.ref();
        await this.exited;
      }
    }
  }

  private request(kind: HostRequest['kind'], closing = false): Promise<unknown> {
    if (this.closed && !closing) return Promise.reject(new WalClosedError());
    if (this.failure !== null) return Promise.reject(this.failure);
    const id = this.nextId++;
    const deferred = createDeferred<unknown>();
    this.pending.set(id, deferred);
    this.host.ref();
    this.host.postMessage({ id, kind } satisfies HostRequest);
    return deferred.promise;
  }

  private onReply(message: HostReply): void {
    if (message.kind !== 'reply') return;
    const deferred = this.pending.get(message.id);
    if (deferred === undefined) return;
    this.pending.delete(message.id);
    if (this.pending.size === 0 && !this.exitExpected) this.host.unref();
    if (message.ok) deferred.resolve(message.value);
    else deferred.reject(reviveError(message.error));
  }

  /** The thread is gone: unless asked to, the log fails, and no writer waits for ever. */
  private hostGone(why: string): void {
    if (this.exitExpected && this.pending.size === 0) return;
    if (this.failure !== null) return;
    const failure = new WalFailedError(`parallel WAL failed: ${why}`, null);
    this.failure = failure;
    markLogFailed(this.log, failure.message);
    for (const deferred of this.pending.values()) deferred.reject(failure);
    this.pending.clear();
  }
}

/** Starts the log's thread on the module beside this one (built), or through tsx (source). */
function startHost(start: HostStart): Worker {
  const here = import.meta.url;
  if (here.endsWith('.ts')) {
    // Running from source (tsx, the tests): a worker cannot load .ts on Node 20 by itself.
    const entry = new URL('./log-thread-host.ts', here).href;
    const code = `import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(entry)}); })`;
    return new Worker(code, { eval: true, workerData: start });
  }
  const extension = here.endsWith('.cjs') ? '.cjs' : '.js';
  return new Worker(new URL(`./log-thread-host${extension}`, here), { workerData: start });
}

function unexpected(message: HostReply): never {
  throw new WalFailedError(`unexpected first message from the log thread: ${message.kind}`, null);
}
