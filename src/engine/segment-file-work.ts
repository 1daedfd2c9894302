/**
 * The bookkeeping around an acknowledged sink's segment files, as one unit
 * of work: close the files of published epochs, rename each to its segment
 * name in order (stopping at the first failure), create new empty files for
 * later epochs (only when nothing failed), then ONE directory fsync covering
 * every rename and creation.
 *
 * On the real file system the files are held by bare descriptors
 * ({@link DescriptorFileHandle}) and the whole unit is one job for the log's
 * file thread (a second thread beside the I/O thread, running the same
 * program): the owner thread runs none of it (creating a file costs 5–400+ µs
 * of CPU on this machine's ext4, and a batch creates dozens), and no durable
 * write waits behind it. Until that thread runs, or without it, the same
 * steps run through Node's thread pool on the same descriptors. A log whose
 * owner is a worker thread, and any other file system (simulated disks, fault
 * injectors), gets every step through the file system's own calls.
 */

import * as fsCallbacks from 'node:fs';
import { promisify } from 'node:util';
import { isMainThread } from 'node:worker_threads';
import {
  CREATE_EXCLUSIVE,
  createDescriptorFile,
  DescriptorFileHandle,
  nodeFileSystem,
  type WalFileHandle,
  type WalFileSystem,
} from '../storage/fs.js';
import { elapsedMicros } from './wal-stats.js';

/** A file to close and rename. */
export interface FileMove {
  handle: WalFileHandle;
  from: string;
  to: string;
}

/** One unit of file bookkeeping. */
export interface FileWork {
  moves: readonly FileMove[];
  /** Paths of new empty files to create (`createExclusive`). */
  create: readonly string[];
  /** The directory to fsync once at the end (if anything was renamed or created); null: none. */
  syncDir: string | null;
}

/** The step of a unit of file bookkeeping that failed. */
export type FileWorkStep = 'close' | 'rename' | 'open' | 'fsync';

/** A failed step, with the path it failed on and the OS error. */
export interface FileWorkFailure {
  step: FileWorkStep;
  path: string;
  error: unknown;
}

/** What a unit did. */
export interface FileWorkOutcome {
  /** Moves renamed, from the first (every later one was not). */
  renamed: number;
  /** Files created (all of `create` unless `failure`); open for writing. */
  created: WalFileHandle[];
  /** The first failed close, rename or creation. */
  failure: FileWorkFailure | null;
  /** The directory fsync failed (nothing renamed or created is known durable). */
  syncFailure: FileWorkFailure | null;
  /** The directory was fsynced. */
  synced: boolean;
}

/** A unit of file bookkeeping as the file thread takes it: bare descriptors and paths. */
export interface FileWorkJob {
  close: number[];
  renames: [string, string][];
  create: string[];
  createFlags: number;
  createMode: number;
  syncDir: string | null;
}

/** A failed step as the file thread reports it. */
interface ThreadFailure {
  step: FileWorkStep;
  index: number;
  code: string | undefined;
  errno: number | undefined;
  syscall: string | undefined;
  message: string;
}

/** The file thread's answer to a {@link FileWorkJob}. */
export interface FileWorkReply {
  renamed: number;
  fds: number[];
  failure: ThreadFailure | null;
  syncFailure: ThreadFailure | null;
  /** Time the thread spent on the job, microseconds. */
  micros: number;
}

/** Runs `job` on the log's file thread; null when the thread cannot take it now. */
export type FileWorkRunner = (job: FileWorkJob) => Promise<FileWorkReply> | null;

/**
 * Runs `work` on `fs`: on the file thread (`runner`) when the files are bare
 * descriptors of the real file system, else through `fs`. Never throws for
 * a failed step: the outcome says which failed.
 */
export async function runFileWork(
  work: FileWork,
  fs: WalFileSystem,
  runner: FileWorkRunner | null,
): Promise<FileWorkOutcome> {
  if (!descriptorFiles(fs) || !work.moves.every((m) => m.handle instanceof DescriptorFileHandle)) {
    return runThroughFileSystem(work, fs);
  }
  const job: FileWorkJob = {
    close: work.moves.map((m) => (m.handle as DescriptorFileHandle).detach()),
    renames: work.moves.map((m) => [m.from, m.to]),
    create: [...work.create],
    createFlags: CREATE_EXCLUSIVE.flags,
    createMode: CREATE_EXCLUSIVE.mode,
    syncDir: work.syncDir,
  };
  const reply = await (runner?.(job) ?? runDescriptorJob(job));
  const failureOf = (failure: ThreadFailure | null): FileWorkFailure | null => {
    if (failure === null) return null;
    const error = Object.assign(new Error(failure.message), {
      code: failure.code,
      errno: failure.errno,
      syscall: failure.syscall,
    });
    return { step: failure.step, path: pathOf(job, failure.step, failure.index), error };
  };
  const failure = failureOf(reply.failure);
  const syncFailure = failureOf(reply.syncFailure);
  return {
    renamed: reply.renamed,
    created: reply.fds.map((fd, i) => new DescriptorFileHandle(job.create[i]!, fd)),
    failure,
    syncFailure,
    synced: job.syncDir !== null && syncFailure === null && touched(reply),
  };
}

/**
 * Whether the log's files on `fs` are held by bare descriptors: only on the
 * real file system, and only when the log runs on the main thread. A worker
 * thread (by default) tracks the raw descriptors it opens and closes them
 * when it exits; a descriptor it opened and the file thread closed stays on
 * its list, and its exit would close whatever file has that number by then.
 * On a worker the files stay Node `FileHandle`s, their work on that thread.
 */
export function descriptorFiles(fs: WalFileSystem): boolean {
  return fs === nodeFileSystem && isMainThread;
}

/** Anything renamed or created: the directory needs its fsync. */
function touched(reply: { renamed: number; fds: readonly unknown[] }): boolean {
  return reply.renamed > 0 || reply.fds.length > 0;
}

/** The path a failed step of `job` was about. */
function pathOf(job: FileWorkJob, step: FileWorkStep, index: number): string {
  if (step === 'open') return job.create[index] ?? '';
  if (step === 'fsync') return job.syncDir ?? '';
  return job.renames[index]?.[0] ?? '';
}

/** A thrown OS error as the file thread reports it. */
function threadFailure(step: FileWorkStep, index: number, error: unknown): ThreadFailure {
  const e = error as { code?: unknown; errno?: unknown; syscall?: unknown; message?: unknown };
  return {
    step,
    index,
    code: typeof e.code === 'string' ? e.code : undefined,
    errno: typeof e.errno === 'number' ? e.errno : undefined,
    syscall: typeof e.syscall === 'string' ? e.syscall : undefined,
    message: String(e.message ?? error),
  };
}

const fdClose = promisify(fsCallbacks.close);
const fdFsync = promisify(fsCallbacks.fsync);
const fdOpen = promisify(fsCallbacks.open);
const renameFile = promisify(fsCallbacks.rename);

/** The file thread's job, run through Node's thread pool instead (the thread is not running). */
async function runDescriptorJob(job: FileWorkJob): Promise<FileWorkReply> {
  const started = performance.now();
  const closed = await Promise.all(
    job.close.map((fd) =>
      fdClose(fd).then(
        () => null,
        (e) => e,
      ),
    ),
  );
  let renamed = 0;
  let failure: ThreadFailure | null = null;
  for (const [i, [from, to]] of job.renames.entries()) {
    if (closed[i] !== null) {
      failure = threadFailure('close', i, closed[i]);
      break;
    }
    try {
      await renameFile(from, to);
    } catch (error) {
      failure = threadFailure('rename', i, error);
      break;
    }
    renamed++;
  }
  const fds: number[] = [];
  if (failure === null) {
    const opened = await Promise.allSettled(
      job.create.map((path) => fdOpen(path, job.createFlags, job.createMode)),
    );
    for (const [i, outcome] of opened.entries()) {
      if (outcome.status === 'fulfilled') fds.push(outcome.value);
      else failure ??= threadFailure('open', i, outcome.reason);
    }
    // On a failure none is kept: an empty file left behind is removed at the next open.
    if (failure !== null) for (const fd of fds.splice(0)) await fdClose(fd).catch(() => {});
  }
  let syncFailure: ThreadFailure | null = null;
  if (job.syncDir !== null && (renamed > 0 || fds.length > 0)) {
    try {
      const dirFd = await fdOpen(job.syncDir, 'r');
      try {
        await fdFsync(dirFd);
      } finally {
        await fdClose(dirFd).catch(() => {});
      }
    } catch (error) {
      syncFailure = threadFailure('fsync', 0, error);
    }
  }
  return { renamed, fds, failure, syncFailure, micros: elapsedMicros(started, performance.now()) };
}

/** `work` through `fs`'s own calls (closes and creations side by side, renames in order). */
async function runThroughFileSystem(work: FileWork, fs: WalFileSystem): Promise<FileWorkOutcome> {
  const closed = await Promise.all(
    work.moves.map((m) =>
      m.handle.close().then(
        () => null,
        (error: unknown) => error,
      ),
    ),
  );
  let renamed = 0;
  let failure: FileWorkFailure | null = null;
  for (const [i, move] of work.moves.entries()) {
    if (closed[i] !== null) {
      failure = { step: 'close', path: move.from, error: closed[i] };
      break;
    }
    try {
      await fs.rename(move.from, move.to); // atomic: the temp name or the segment name
    } catch (error) {
      failure = { step: 'rename', path: move.from, error };
      break;
    }
    renamed++;
  }
  const created: WalFileHandle[] = [];
  if (failure === null) {
    const opened = await Promise.allSettled(
      work.create.map((path) =>
        descriptorFiles(fs) ? createDescriptorFile(path) : fs.open(path, 'createExclusive'),
      ),
    );
    for (const [i, outcome] of opened.entries()) {
      if (outcome.status === 'fulfilled') created.push(outcome.value);
      else failure ??= { step: 'open', path: work.create[i]!, error: outcome.reason };
    }
  }
  let syncFailure: FileWorkFailure | null = null;
  const needed = work.syncDir !== null && touched({ renamed, fds: created });
  if (needed) {
    try {
      await fs.syncDirectory(work.syncDir!);
    } catch (error) {
      syncFailure = { step: 'fsync', path: work.syncDir!, error };
    }
  }
  return { renamed, created, failure, syncFailure, synced: needed && syncFailure === null };
}
