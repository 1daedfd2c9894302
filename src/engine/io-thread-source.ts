/**
 * The I/O thread's program (see `io-executor.ts` for the protocol).
 *
 * It is kept as source text and started with `new Worker(source, { eval:
 * true })` rather than from a module file: a worker cannot load a `.ts`
 * module on Node 20, and a file beside the compiled module would have to be
 * found at run time (source runs, `dist/`, bundlers). The program only needs
 * `node:fs` and `node:worker_threads`, and the tests run it for real (every
 * test that writes through the real file system, plus `io-executor.test.ts`
 * for its failure paths).
 */

/** Indices of the control words (an `Int32Array` over a `SharedArrayBuffer`). */
export const IoControlWord = {
  /** Sequence number of the last job posted (owner writes, thread waits on it). */
  Requested: 0,
  /** Answers posted so far, a counter (thread writes, owner waits on it to read the replies). */
  Done: 1,
  /** Never written: a file thread sleeps on it to give its core away. */
  Pause: 2,
  /** Sequence number of the last job the thread took (thread writes). */
  Taken: 3,
  /** 1 while the thread is in (or just woken from) its idle wait, else 0 (thread writes). */
  Asleep: 4,
  /** Words in the control block. */
  Count: 8,
} as const;

/**
 * The timeout (ms) of the wait a file thread makes, after a rename or a
 * creation of a file job, when the I/O thread was woken for a write and has
 * not taken it yet. Creating a file can cost this file system hundreds of µs
 * of CPU, and a job creates several in a row: without the pause the kernel
 * left the I/O thread queued behind the file thread on the same core for
 * 1.5–2.7 ms (seen with \`perf sched\`). Any sleep hands the core over to the
 * thread queued on it; with Linux's default timer slack (50 µs) this one
 * lasts about 75 µs (docs/benchmarks.md, "The file thread gives way").
 */
export const FILE_STEP_PAUSE_MS = 0.005;

/** Code of the error of a write not started because an earlier durable write failed. */
export const EARLIER_WRITE_FAILED_CODE = 'ERR_EARLIER_WRITE_FAILED';

/** The thread's program: CommonJS, run by `new Worker(IO_THREAD_SOURCE, { eval: true })`. */
export const IO_THREAD_SOURCE = `
'use strict';
const { workerData, receiveMessageOnPort } = require('node:worker_threads');
const fs = require('node:fs');
const control = new Int32Array(workerData.control);
const requests = workerData.requests;
const replies = workerData.replies;
const REQUESTED = ${IoControlWord.Requested};
const DONE = ${IoControlWord.Done};
const PAUSE = ${IoControlWord.Pause};
const TAKEN = ${IoControlWord.Taken};
const ASLEEP = ${IoControlWord.Asleep};
// A file thread: the control words of the I/O thread it gives way to.
const writes = workerData.givesWayTo ? new Int32Array(workerData.givesWayTo) : null;

// Between two steps of a file job: while the I/O thread has been woken for a
// write and has not run yet, give the core away for a moment (see
// FILE_STEP_PAUSE_MS), so that the I/O thread, maybe queued on this core,
// runs now and not after the whole job. A write queued behind one the I/O
// thread is running needs no pause. Returns the number of pauses (0 or 1).
function pause(job) {
  if (writes === null || !(job.pauseMs > 0)) return 0;
  if (Atomics.load(writes, ASLEEP) === 0) return 0;
  if (Atomics.load(writes, REQUESTED) === Atomics.load(writes, TAKEN)) return 0;
  Atomics.wait(control, PAUSE, 0, job.pauseMs);
  return 1;
}

// The process's monotonic clock in microseconds: the same clock on every
// thread, so the owner can tell how long a job took to reach this thread and
// its answer to come back.
function monotonicMicros() {
  const [seconds, nanos] = process.hrtime();
  return seconds * 1e6 + nanos / 1e3;
}

// Writes every chunk back to back at position (a short write is legal: go on with the rest).
function writeAll(fd, chunks, position) {
  let pending = chunks;
  let at = position;
  while (pending.length > 0) {
    const written =
      pending.length === 1
        ? fs.writeSync(fd, pending[0], 0, pending[0].length, at)
        : fs.writevSync(fd, pending, at);
    if (written <= 0) {
      const error = new Error('short write');
      error.code = 'EIO';
      throw error;
    }
    at += written;
    let skip = written;
    const rest = [];
    for (const chunk of pending) {
      if (skip >= chunk.length) {
        skip -= chunk.length;
      } else {
        rest.push(skip > 0 ? chunk.subarray(skip) : chunk);
        skip = 0;
      }
    }
    pending = rest;
  }
}

// After a failed job no later one starts: the owner may have queued the next
// epoch's write behind it, and that write must never reach the disk unless
// every earlier one did.
let poisoned = false;

function run(job) {
  if (poisoned) {
    return {
      seq: job.seq,
      ok: false,
      step: 'write',
      code: '${EARLIER_WRITE_FAILED_CODE}',
      errno: undefined,
      syscall: undefined,
      message: 'not started: an earlier durable write failed',
    };
  }
  const startedAt = monotonicMicros();
  const started = performance.now();
  let step = 'write';
  try {
    writeAll(job.fd, job.chunks, job.position);
    const written = performance.now();
    if (job.datasync) {
      step = 'datasync';
      fs.fdatasyncSync(job.fd);
    }
    const synced = performance.now();
    return {
      seq: job.seq,
      ok: true,
      writeMicros: Math.round((written - started) * 1000),
      syncMicros: Math.round((synced - written) * 1000),
      startedAt,
      finishedAt: monotonicMicros(),
    };
  } catch (error) {
    poisoned = true;
    return {
      seq: job.seq,
      ok: false,
      step,
      code: typeof error.code === 'string' ? error.code : undefined,
      errno: typeof error.errno === 'number' ? error.errno : undefined,
      syscall: typeof error.syscall === 'string' ? error.syscall : undefined,
      message: String(error.message),
    };
  }
}

// The failure of a step of a file job: close the published files, rename
// them in order (stopping at the first failure), create new empty files
// (only when nothing failed before), then one directory fsync covering all of
// it. A file job runs even after a failed durable write: epochs acknowledged
// before it must still get their names.
function failureOf(step, index, error) {
  return {
    step,
    index,
    code: typeof error.code === 'string' ? error.code : undefined,
    errno: typeof error.errno === 'number' ? error.errno : undefined,
    syscall: typeof error.syscall === 'string' ? error.syscall : undefined,
    message: String(error.message),
  };
}

// A file job (close and rename published files, create new ones, one
// directory fsync), run whole. The log gives file jobs to a thread of their
// own, so no durable write waits for one to finish (the file thread gives
// way to the I/O thread between the steps, see pause()).
function runFiles(job) {
  const started = performance.now();
  let renamed = 0;
  let failure = null;
  let pauses = 0;
  for (let i = 0; i < job.renames.length; i++) {
    let step = 'close';
    try {
      fs.closeSync(job.close[i]);
      step = 'rename';
      fs.renameSync(job.renames[i][0], job.renames[i][1]);
      renamed++;
    } catch (error) {
      failure = failureOf(step, i, error);
      break;
    }
    pauses += pause(job);
  }
  // After a failure the rest are closed all the same; none is renamed.
  for (let k = renamed + 1; k < job.close.length; k++) {
    try {
      fs.closeSync(job.close[k]);
    } catch {}
  }
  const fds = [];
  for (let i = 0; failure === null && i < job.create.length; i++) {
    try {
      fds.push(fs.openSync(job.create[i], job.createFlags, job.createMode));
    } catch (error) {
      failure = failureOf('open', i, error);
      break;
    }
    pauses += pause(job);
  }
  let syncFailure = null;
  if (job.syncDir !== null && (renamed > 0 || fds.length > 0)) {
    let dirFd = -1;
    try {
      dirFd = fs.openSync(job.syncDir, 'r');
      fs.fsyncSync(dirFd);
    } catch (error) {
      syncFailure = failureOf('fsync', 0, error);
    } finally {
      if (dirFd >= 0) {
        try {
          fs.closeSync(dirFd);
        } catch {}
      }
    }
  }
  const micros = Math.round((performance.now() - started) * 1000);
  return { seq: job.seq, ok: true, files: { renamed, fds, failure, syncFailure, micros, pauses } };
}

// DONE counts answers; it only tells the owner to read the replies.
let answered = 0;
function answer(reply) {
  replies.postMessage(reply);
  answered = (answered + 1) | 0;
  Atomics.store(control, DONE, answered);
  Atomics.notify(control, DONE);
}

// The sequence number of the last job taken from the port.
let received = 0;
for (;;) {
  const got = receiveMessageOnPort(requests);
  if (got !== undefined) {
    const job = got.message;
    received = job.seq;
    Atomics.store(control, TAKEN, received);
    // The last job: every job posted before it has been run and answered.
    if (job.kind === 'stop') break;
    answer(job.kind === 'files' ? runFiles(job) : run(job));
    continue;
  }
  // Posted before the counter moved: it is in the port already.
  if (Atomics.load(control, REQUESTED) !== received) continue;
  Atomics.store(control, ASLEEP, 1);
  Atomics.wait(control, REQUESTED, received);
  Atomics.store(control, ASLEEP, 0);
}
requests.close();
replies.close();
`;
