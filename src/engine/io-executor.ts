/**
 * Where a segment's durable write runs: "write these bytes at this position
 * of this open file, then fdatasync it". Every sink (the early-ack sink, the
 * recycled-file pool) hands its critical-path write to a
 * {@link DurableWriteExecutor}:
 *
 * - {@link InlineWriteExecutor}: through the file handle's promise API, as
 *   before (each `writev` and `fdatasync` is a round trip through libuv's
 *   thread pool). Used for every file system that is not the real one, so
 *   simulated and fault-injecting file systems keep seeing every operation.
 * - {@link IoThreadExecutor}: a dedicated I/O thread (`worker_threads`) does
 *   the write and the fdatasync with synchronous calls. The event loop posts
 *   one job and wakes the thread (one futex), and is woken once when the job
 *   is done: one cross-thread hop per epoch, and nothing of the write runs on
 *   the event loop.
 *
 * Failure is reported exactly as the inline path reports it: the OS error
 * (with its string `code`) and the step that failed (`write` or `datasync`),
 * so the sink turns it into the same typed error and the log fails the same
 * way. A job whose fdatasync failed is never reported as done.
 */

import { fdatasyncSync } from 'node:fs';
import {
  MessageChannel,
  type MessagePort,
  receiveMessageOnPort,
  Worker,
} from 'node:worker_threads';
import {
  nodeFileDescriptor,
  nodeFileSystem,
  type WalFileHandle,
  type WalFileSystem,
  writeAllSync,
} from '../storage/fs.js';
import { countWrite, InlineWriteExecutor } from './inline-executor.js';
import {
  type DurableWriteExecutor,
  type DurableWriteExecutorStats,
  DurableWriteFailure,
  type DurableWriteStep,
  type DurableWriteTiming,
  earlierWriteFailed,
  monotonicMicros,
} from './io-executor-types.js';
import { EARLIER_WRITE_FAILED_CODE, IO_THREAD_SOURCE, IoControlWord } from './io-thread-source.js';
import type { FileWorkJob, FileWorkReply } from './segment-file-work.js';

export * from './io-executor-types.js';
export { EARLIER_WRITE_FAILED_CODE, InlineWriteExecutor };

/**
 * Heap limits of the I/O thread, in MiB: it runs no application code, only a
 * loop of write and fdatasync calls on buffers it does not copy, so a small
 * heap suffices and keeps its footprint (and GC pauses) small.
 */
const ioThreadOldGenerationMbMax = 32;
const ioThreadYoungGenerationMbMax = 8;

/** A job as the I/O thread receives it. */
interface IoJob {
  seq: number;
  fd: number;
  chunks: Uint8Array[];
  position: number;
  datasync: boolean;
}

/** The I/O thread's answer to one job. */
type IoReply =
  | { seq: number; ok: true; files: FileWorkReply }
  | {
      seq: number;
      ok: true;
      files?: undefined;
      writeMicros: number;
      syncMicros: number;
      /** {@link monotonicMicros} when the thread started the job, and when it finished it. */
      startedAt: number;
      finishedAt: number;
    }
  | {
      seq: number;
      ok: false;
      files?: undefined;
      step: DurableWriteStep;
      code: string | undefined;
      errno: number | undefined;
      syscall: string | undefined;
      message: string;
    };

interface Outstanding {
  resolve: (answer: DurableWriteTiming & FileWorkReply) => void;
  reject: (error: unknown) => void;
  /** {@link monotonicMicros} when the job was posted. */
  postedAt: number;
}

/** Code of the error a job gets when the I/O thread is gone (it exited or could not start). */
export const IO_THREAD_EXIT_CODE = 'ERR_IO_THREAD_EXIT';

/**
 * Durable writes on a dedicated I/O thread, for files of the real file
 * system; a handle of any other file system goes through
 * {@link InlineWriteExecutor}. The thread starts when the executor is made;
 * until it runs, writes go inline (one at a time, so a write never overlaps
 * a write of the other path).
 *
 * Protocol (one `SharedArrayBuffer` of control words, two message ports):
 * the owner posts the job on the request port, THEN bumps `requested` and
 * wakes the thread (`Atomics.notify`); the thread, blocked in `Atomics.wait`
 * while idle, takes jobs with `receiveMessageOnPort` (synchronous), runs
 * `writev` + `fdatasync`, posts the reply on the reply port, THEN bumps
 * `done` and wakes the owner, who waits with `Atomics.waitAsync` and reads
 * the replies with `receiveMessageOnPort`. Because every message is posted
 * before its counter moves, a woken side always finds it. Neither port is
 * ever started, so nothing else runs on either event loop. The thread also
 * publishes the last job it took (`taken`) and whether it is in its idle
 * wait (`asleep`): the file thread (`givesWayTo`) reads them to give its
 * core away while this thread was woken for a write and has not run yet.
 * Only the thread writes them, and it never waits on them.
 *
 * A pending `Atomics.waitAsync` does not keep the process alive, so the
 * thread is `ref`ed while a job is outstanding and `unref`ed when idle (an
 * open, idle log does not keep the process alive, as before).
 */
export class IoThreadExecutor implements DurableWriteExecutor {
  /**
   * Starts the thread now, so that it is running by the first writes.
   * @param callerWriteBytesMax - a write of at most this many bytes, made
   *   while no job is outstanding, runs synchronously on the calling thread
   *   (`writev` + `fdatasync`, blocking it for that long) instead of going to
   *   the I/O thread: a small epoch then pays no cross-thread wake-up at all
   *   (two of them, ~45–55 µs each on this class of machine, per epoch). Large
   *   epochs, and any write while one is outstanding, go to the thread, so
   *   the event loop keeps filling the next epoch while the disk works. 0:
   *   every write goes to the thread.
   * @param withFileThread - file jobs go to a second thread of the same
   *   program (false in that second thread's own executor).
   * @param givesWayTo - a file thread's executor: the control words of the
   *   I/O thread it gives its core to between the steps of a file job, when
   *   that thread was woken for a write and has not run yet
   *   (`FILE_STEP_PAUSE_MS`).
   */
  constructor(
    private readonly callerWriteBytesMax = 0,
    private readonly withFileThread = true,
    private readonly givesWayTo: Int32Array | null = null,
  ) {
    this.start();
  }

  /**
   * A second thread, running the same program, that takes the file jobs
   * ({@link fileWork}), so that no durable write waits for one to finish
   * (and that thread gives way to this one between its steps). Started
   * by the sink that uses it ({@link prepareFileWork}) or by the first file
   * job, so other sinks never start it; never in that second thread's own
   * executor. Measured against running
   * them on this thread between the writes: a little fewer commits/s at 16
   * committers, and a lower p50 at one committer (docs/benchmarks.md).
   */
  private fileThread: IoThreadExecutor | null = null;

  /** See {@link DurableWriteExecutor.prepareFileWork}. */
  prepareFileWork(): void {
    this.files();
  }

  /** The file thread, started now if it is not yet (null in the file thread's own executor). */
  private files(): IoThreadExecutor | null {
    if (this.withFileThread && this.fileThread === null && !this.closed) {
      this.fileThread = new IoThreadExecutor(0, false, this.control);
    }
    return this.fileThread;
  }

  readonly kind = 'ioThread' as const;
  private readonly inline = new InlineWriteExecutor();
  private readonly control = new Int32Array(
    new SharedArrayBuffer(IoControlWord.Count * Int32Array.BYTES_PER_ELEMENT),
  );
  private worker: Worker | null = null;
  private requests: MessagePort | null = null;
  private replies: MessagePort | null = null;
  private seq = 0;
  private readonly outstanding = new Map<number, Outstanding>();
  private waiting = false;
  /** The thread runs JavaScript (its `online` event fired). */
  private online = false;
  /** The thread exited while idle: writes go inline from then on. */
  private gone = false;
  /** Writes that went inline while the thread was starting, not finished yet. */
  private inlineInFlight = 0;
  private failure: Error | null = null;
  private closed = false;
  private exited: Promise<void> | null = null;
  private started: Promise<void> | null = null;
  private readonly totals = {
    writes: 0,
    writeMicros: 0,
    syncMicros: 0,
    handoffMicros: 0,
    returnMicros: 0,
  };
  private readonly callerTotals = { writes: 0, writeMicros: 0, syncMicros: 0 };
  private readonly fileTotals = { jobs: 0, micros: 0 };
  /** Durable writes posted to the thread and not answered (file jobs are not counted). */
  private writesOutstanding = 0;
  /** A durable write failed: no later one starts (see {@link DurableWriteExecutor.writeAt}). */
  private earlierFailed = false;

  writeAt(
    handle: WalFileHandle,
    chunks: readonly Uint8Array[],
    position: number,
    datasync: boolean,
  ): Promise<DurableWriteTiming> {
    const fd = nodeFileDescriptor(handle);
    if (fd === null) return this.inline.writeAt(handle, chunks, position, datasync);
    if (this.failure !== null) {
      return Promise.reject(new DurableWriteFailure('write', this.failure));
    }
    if (this.closed) {
      return Promise.reject(
        new DurableWriteFailure('write', ioThreadError('the I/O thread was stopped')),
      );
    }
    if (this.earlierFailed) return Promise.reject(earlierWriteFailed());
    if (this.gone) return this.inline.writeAt(handle, chunks, position, datasync);
    if (
      this.writesOutstanding === 0 &&
      this.inlineInFlight === 0 &&
      totalBytes(chunks) <= this.callerWriteBytesMax
    ) {
      // Nothing in flight on either path: this write cannot overlap another.
      return this.writeOnCaller(fd, chunks, position, datasync);
    }
    if (!this.online || this.inlineInFlight > 0) {
      // Until the thread runs (start-up takes tens of ms), writes go inline, so
      // the first commits never wait for it; the thread takes over between writes.
      this.inlineInFlight++;
      return this.inline.writeAt(handle, chunks, position, datasync).then(
        (timing) => {
          this.inlineInFlight--;
          return timing;
        },
        (error: unknown) => {
          // Noted in the same step that lets the next write go to the thread.
          this.inlineInFlight--;
          this.earlierFailed = true;
          throw error;
        },
      );
    }
    const { requests, transfer } = this.start();
    this.seq = (this.seq + 1) | 0;
    const job: IoJob = { seq: this.seq, fd, chunks: [], position, datasync };
    const transferList: ArrayBuffer[] = [];
    for (const chunk of chunks) {
      if (chunk.length === 0) continue;
      if (chunk.buffer instanceof SharedArrayBuffer) {
        // Lane buffers are shared memory: the thread reads them in place.
        job.chunks.push(chunk);
      } else {
        // Private memory: one exact copy, moved (not copied again) to the thread.
        const copy = new Uint8Array(chunk);
        job.chunks.push(copy);
        transferList.push(copy.buffer);
      }
    }
    const done = new Promise<DurableWriteTiming>((resolve, reject) => {
      this.outstanding.set(job.seq, { resolve, reject, postedAt: monotonicMicros() });
    });
    this.writesOutstanding++;
    // The thread runs writes in this order and starts none after a failed one.
    this.post(requests, transfer, job, transferList);
    return done;
  }

  /** Posts `job` (its `seq` just taken), then wakes the thread and watches for the answer. */
  private post(
    requests: MessagePort,
    transfer: Worker,
    job: { seq: number; kind?: string },
    transferList: ArrayBuffer[] = [],
  ): void {
    if (this.outstanding.size === 1) transfer.ref();
    requests.postMessage(job, transferList);
    Atomics.store(this.control, IoControlWord.Requested, job.seq);
    Atomics.notify(this.control, IoControlWord.Requested);
    this.watch();
  }

  /** See {@link DurableWriteExecutor.fileWork}: on the file thread; null until it runs. */
  fileWork(job: FileWorkJob): Promise<FileWorkReply> | null {
    if (this.withFileThread) return this.closed ? null : (this.files()?.fileWork(job) ?? null);
    if (!this.online || this.gone || this.closed || this.failure !== null) return null;
    const { requests, transfer } = this.start();
    this.seq = (this.seq + 1) | 0;
    const done = new Promise<FileWorkReply>((resolve, reject) => {
      this.outstanding.set(this.seq, { resolve, reject, postedAt: 0 });
    });
    this.post(requests, transfer, { kind: 'files', seq: this.seq, ...job });
    return done;
  }

  /**
   * `writev` + `fdatasync` on the calling thread, synchronously: resolved
   * only after the fdatasync returned; a failure rejects with the step that
   * failed, exactly as a job of the thread does.
   */
  private writeOnCaller(
    fd: number,
    chunks: readonly Uint8Array[],
    position: number,
    datasync: boolean,
  ): Promise<DurableWriteTiming> {
    // No await: the whole write runs before this returns, and a failure is
    // noted before it returns, so a write called next (from a continuation
    // of this very turn) never starts.
    const started = performance.now();
    let step: DurableWriteStep = 'write';
    try {
      writeAllSync(fd, chunks, position);
      const written = performance.now();
      if (datasync) {
        step = 'datasync';
        fdatasyncSync(fd);
      }
      return Promise.resolve(countWrite(this.callerTotals, started, written));
    } catch (cause) {
      this.earlierFailed = true;
      return Promise.reject(new DurableWriteFailure(step, cause));
    }
  }

  /** Resolves once the thread runs (or is gone): from then on writes go to it. */
  async running(): Promise<void> {
    // An unref'd thread would not keep the process alive while we wait for it.
    this.worker?.ref();
    try {
      await this.started;
      await this.files()?.running();
    } finally {
      if (this.outstanding.size === 0 && !this.closed) this.worker?.unref();
    }
  }

  stats(): DurableWriteExecutorStats {
    const inline = this.inline.stats();
    const caller = this.callerTotals;
    return {
      kind: this.kind,
      fileJobs: this.fileTotals.jobs + (this.fileThread?.fileTotals.jobs ?? 0),
      fileJobMicros: this.fileTotals.micros + (this.fileThread?.fileTotals.micros ?? 0),
      writes: this.totals.writes + inline.writes + caller.writes,
      threadWrites: this.totals.writes,
      callerWrites: caller.writes,
      writeMicros: this.totals.writeMicros + inline.writeMicros + caller.writeMicros,
      syncMicros: this.totals.syncMicros + inline.syncMicros + caller.syncMicros,
      handoffMicros: Math.round(this.totals.handoffMicros),
      returnMicros: Math.round(this.totals.returnMicros),
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.fileThread?.close();
    if (this.worker === null) return;
    // Held alive until the thread is gone (an unref'd worker would not keep the wait going).
    this.worker.ref();
    if (this.requests !== null) {
      // A job like any other, so the wake-up cannot be lost: it moves the word
      // the thread waits on. (A flag set beside a bare notify could land
      // between the thread's last look at it and its wait, and then nothing
      // would ever wake it.) Jobs posted before it run first.
      this.seq = (this.seq + 1) | 0;
      this.requests.postMessage({ kind: 'stop', seq: this.seq });
      Atomics.store(this.control, IoControlWord.Requested, this.seq);
      Atomics.notify(this.control, IoControlWord.Requested);
    }
    await this.exited;
  }

  /** The running thread (started on first use). */
  private start(): { requests: MessagePort; transfer: Worker } {
    if (this.worker !== null && this.requests !== null) {
      return { requests: this.requests, transfer: this.worker };
    }
    const toThread = new MessageChannel();
    const fromThread = new MessageChannel();
    const worker = new Worker(IO_THREAD_SOURCE, {
      eval: true,
      workerData: {
        control: this.control.buffer,
        requests: toThread.port2,
        replies: fromThread.port2,
        givesWayTo: this.givesWayTo?.buffer ?? null,
      },
      transferList: [toThread.port2, fromThread.port2],
      // Node's builtins are all the program needs: no loader (tsx, test runners) and no
      // `--input-type=module` of the parent, which would make the CommonJS program fail.
      execArgv: [],
      // The thread runs no JavaScript of the application: keep it small.
      resourceLimits: {
        maxOldGenerationSizeMb: ioThreadOldGenerationMbMax,
        maxYoungGenerationSizeMb: ioThreadYoungGenerationMbMax,
      },
      stdout: false,
      stderr: false,
      // Descriptors the thread opens (new segment files) belong to the log,
      // not to the thread: they must outlive it, and the thread closes ones
      // the owner opened. Tracked, they would be closed when the thread exits.
      trackUnmanagedFds: false,
    });
    worker.unref();
    this.started = new Promise<void>((resolve) => {
      worker.once('online', () => {
        this.online = true;
        resolve();
      });
      worker.once('exit', () => resolve());
    });
    this.exited = new Promise<void>((resolve) => {
      worker.once('exit', (code) => {
        this.online = false;
        if (this.outstanding.size === 0 && !this.closed) {
          // Gone while idle (it could not start, or was terminated): nothing it
          // held is in doubt, so later writes go inline instead.
          this.gone = true;
        } else {
          const role = this.givesWayTo === null ? 'I/O thread' : 'file thread';
          this.failAll(ioThreadError(`the ${role} exited (code ${code})`));
        }
        toThread.port1.close();
        fromThread.port1.close();
        resolve();
      });
    });
    worker.on('error', (error) => this.failAll(error));
    this.worker = worker;
    this.requests = toThread.port1;
    this.replies = fromThread.port1;
    return { requests: toThread.port1, transfer: worker };
  }

  /** Settles every job the thread has answered; waits (asynchronously) for the rest. */
  private watch(): void {
    if (this.waiting) return;
    for (;;) {
      const seen = Atomics.load(this.control, IoControlWord.Done);
      this.drain();
      if (this.outstanding.size === 0) {
        // Once closing, held until the thread is gone: close() waits for its exit.
        if (!this.closed) this.worker?.unref();
        return;
      }
      const wait = Atomics.waitAsync(this.control, IoControlWord.Done, seen);
      if (wait.async) {
        this.waiting = true;
        void wait.value.then(() => {
          this.waiting = false;
          this.watch();
        });
        return;
      }
    }
  }

  private drain(): void {
    const port = this.replies;
    if (port === null) return;
    for (;;) {
      const received = receiveMessageOnPort(port);
      if (received === undefined) return;
      const reply = received.message as IoReply;
      const job = this.outstanding.get(reply.seq);
      if (job === undefined) continue;
      this.outstanding.delete(reply.seq);
      if (reply.files === undefined) this.writesOutstanding--;
      if (reply.ok && reply.files !== undefined) {
        this.fileTotals.jobs++;
        this.fileTotals.micros += reply.files.micros;
        job.resolve(reply.files as DurableWriteTiming & FileWorkReply);
      } else if (reply.ok) {
        this.totals.writes++;
        this.totals.writeMicros += reply.writeMicros;
        this.totals.syncMicros += reply.syncMicros;
        this.totals.handoffMicros += Math.max(0, reply.startedAt - job.postedAt);
        this.totals.returnMicros += Math.max(0, monotonicMicros() - reply.finishedAt);
        job.resolve({ writeMicros: reply.writeMicros, syncMicros: reply.syncMicros } as never);
      } else {
        this.earlierFailed = true;
        const cause = Object.assign(new Error(reply.message), {
          code: reply.code,
          errno: reply.errno,
          syscall: reply.syscall,
        });
        job.reject(new DurableWriteFailure(reply.step, cause));
      }
    }
  }

  /**
   * The thread failed or is gone with jobs outstanding: every outstanding and
   * later job fails (none is reported durable; whether its bytes reached the
   * disk is unknown). Gone while idle: nothing is in doubt (see the exit handler).
   */
  private failAll(error: Error): void {
    // Answers posted before the thread died still count.
    this.drain();
    if (this.outstanding.size === 0) return;
    this.failure ??= error;
    for (const job of this.outstanding.values()) {
      job.reject(new DurableWriteFailure('write', this.failure));
    }
    this.outstanding.clear();
    this.writesOutstanding = 0;
  }
}

/** Total bytes of `chunks`. */
function totalBytes(chunks: readonly Uint8Array[]): number {
  let total = 0;
  for (const chunk of chunks) total += chunk.length;
  return total;
}

function ioThreadError(message: string): Error {
  return Object.assign(new Error(message), { code: IO_THREAD_EXIT_CODE });
}

/**
 * The executor for a log on `fs`: the I/O thread for the real file system
 * (unless `ioThread` is false), inline for any other.
 */
export function createDurableWriteExecutor(
  fs: WalFileSystem,
  ioThread: boolean,
  callerWriteBytesMax = 0,
): DurableWriteExecutor {
  return ioThread && fs === nodeFileSystem
    ? new IoThreadExecutor(callerWriteBytesMax)
    : new InlineWriteExecutor();
}
