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
 * steps run through Node's thread pool on the same descriptors
 * ({@link runThroughFileSystem} with the descriptor files). A log whose
 * owner is a worker thread, and any other file system (simulated disks, fault
 * injectors), gets every step through the file system's own calls.
 */

import { isMainThread } from 'node:worker_threads';
import {
  CREATE_EXCLUSIVE,
  createDescriptorFile,
  DescriptorFileHandle,
  nodeFileSystem,
  type WalFileHandle,
  type WalFileSystem,
} from '../storage/fs.js';
import { FILE_STEP_PAUSE_MS } from './io-thread-source.js';

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
  /**
   * Timeout (ms; 0: never) of the wait the file thread makes after a rename
   * or a creation while the I/O thread was woken for a write and has not
   * taken it yet; see FILE_STEP_PAUSE_MS.
   */
  pauseMs: number;
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
  /** Pauses the thread made between the job's steps. */
  pauses: number;
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
  const handles = work.moves.map((m) => m.handle as DescriptorFileHandle);
  const job: FileWorkJob = {
    close: handles.map((h) => h.fd),
    renames: work.moves.map((m) => [m.from, m.to]),
    create: [...work.create],
    createFlags: CREATE_EXCLUSIVE.flags,
    createMode: CREATE_EXCLUSIVE.mode,
    syncDir: work.syncDir,
    pauseMs: FILE_STEP_PAUSE_MS,
  };
  const posted = runner?.(job) ?? null;
  // No thread to take it: the same steps through Node's thread pool.
  if (posted === null) return runThroughFileSystem(work, fs);
  // The thread closes the descriptors now: no call of ours may touch them again.
  for (const handle of handles) handle.detach();
  const reply = await posted;
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
