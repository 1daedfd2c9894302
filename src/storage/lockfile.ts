/**
 * One writer process per database: the `<db>.lock` file.
 *
 * The lock is a small file created with `O_EXCL` (WalFileSystem
 * `createExclusive`), holding the holder's pid, the start time of that process
 * (from `/proc/<pid>/stat` where it exists, so that a recycled pid is not
 * mistaken for the holder), a wall-clock timestamp and a random nonce. It is
 * fsynced, and so is its directory, so that a power cut cannot leave a lock
 * whose name survived but whose content did not (and if it does — an empty or
 * torn file — it is treated as stale after a short grace period).
 *
 * A second opener reads the file and gets {@link LockError} (`ERR_LOCKED`)
 * naming the holder while the holder lives. A lock whose holder is dead
 * (`process.kill(pid, 0)` fails with `ESRCH`, or the pid now belongs to a
 * process that started later) is *stale* and is taken over:
 *
 * 1. create the takeover guard `<db>.lock.takeover` with `O_EXCL` — at most one
 *    taker at a time gets past this step;
 * 2. holding the guard, re-read the lock and check it is still the very file
 *    judged stale (same nonce) and still stale;
 * 3. unlink it, fsync the directory, then create the new lock with `O_EXCL`;
 * 4. unlink the guard.
 *
 * Every live lock is created with `O_EXCL`, and a lock file is only ever
 * removed by its holder (release) or by the one guard holder after verifying
 * its nonce, so two takers cannot both win. A guard left by a taker that died
 * is itself removed by renaming it to a unique name first and checking the
 * renamed file is the dead taker's (nonce), so a fresh guard is never deleted
 * by mistake (if it was moved, it is renamed back and the taker retries).
 *
 * Limits (named, with units): {@link LockOptions.unreadableGraceMs} — how long
 * an empty/unparsable lock is given to receive its content before it counts
 * as stale; {@link LockOptions.takeoverTimeoutMs} — how long a taker waits for
 * another taker's guard.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import * as path from 'node:path';
import { WalError } from '../errors.js';
import { nodeFileSystem, type WalFileSystem } from './fs.js';

/** Code of {@link LockError} when another live process holds the database. */
export const LOCKED_CODE = 'ERR_LOCKED';
/** Code of {@link LockError} when the lock could not be created or read (I/O). */
export const LOCK_IO_CODE = 'ERR_LOCK_IO';
/** Code of {@link LockError} when a lock being released is no longer ours. */
export const LOCK_LOST_CODE = 'ERR_LOCK_LOST';

/** Largest lock file read, in bytes; anything larger is not ours (treated as unreadable). */
export const LOCK_FILE_MAX_BYTES = 4096;
/** Default of {@link LockOptions.unreadableGraceMs}. */
export const LOCK_UNREADABLE_GRACE_MS = 1000;
/** Default of {@link LockOptions.takeoverTimeoutMs}. */
export const LOCK_TAKEOVER_TIMEOUT_MS = 5000;
/** Pause between attempts while waiting for a guard or for a lock's content, in ms. */
const LOCK_RETRY_PAUSE_MS = 20;
const LOCK_FORMAT = 'pwal-lock';
const LOCK_FORMAT_VERSION = 1;

/** A lock error; `holderPid` is set when a live (or unknown) holder was found. */
export class LockError extends WalError {
  /** Pid recorded in the lock file, when one could be read. */
  readonly holderPid: number | undefined;
  /** Host recorded in the lock file, when one could be read. */
  readonly holderHost: string | undefined;

  constructor(
    code: typeof LOCKED_CODE | typeof LOCK_IO_CODE | typeof LOCK_LOST_CODE,
    message: string,
    details?: { holderPid?: number; holderHost?: string; cause?: unknown },
  ) {
    super(code, message, details?.cause === undefined ? undefined : { cause: details.cause });
    this.holderPid = details?.holderPid;
    this.holderHost = details?.holderHost;
  }
}

/** What a lock file says about its holder. */
export interface LockInfo {
  pid: number;
  /** Start time of the holder process in clock ticks since boot (`/proc/<pid>/stat` field 22), if known. */
  processStart: string | null;
  /** Wall-clock time the lock was taken, ms since the Unix epoch. */
  startedAtMs: number;
  hostname: string;
  /** Random; identifies this very lock file (takeover checks it). */
  nonce: string;
}

/** Options of {@link acquireLock}. */
export interface LockOptions {
  fs?: WalFileSystem;
  /**
   * How long an empty or unparsable lock file is given to receive its content
   * (its creator may be between `open` and `write`) before it counts as stale.
   */
  unreadableGraceMs?: number;
  /** How long to wait for another process's takeover guard before giving up with `ERR_LOCKED`. */
  takeoverTimeoutMs?: number;
  /** @internal Tests: the pid to record (default `process.pid`). */
  pid?: number;
  /** @internal Tests: liveness check (default `process.kill(pid, 0)` + `/proc` start time). */
  isAlive?: (info: LockInfo) => boolean;
}

/** A held lock. Release it exactly once (further calls do nothing). */
export interface LockHandle {
  /** Path of the lock file (`<db>.lock`). */
  readonly path: string;
  /** What was written into the lock file. */
  readonly info: LockInfo;
  /** True after {@link LockHandle.release}. */
  readonly released: boolean;
  /**
   * Removes the lock file and fsyncs its directory. Throws `ERR_LOCK_LOST` if
   * the file is no longer ours (someone removed or replaced it); the handle is
   * released either way.
   */
  release(): Promise<void>;
}

/** `<db>.lock` */
export function lockPath(dbPath: string): string {
  return `${dbPath}.lock`;
}

/** Paths locked by this process, so that a second open in the same process fails too. */
const heldInProcess = new Set<string>();

/**
 * Takes the writer lock of `dbPath`, taking over a stale lock of a dead
 * process. Throws {@link LockError} `ERR_LOCKED` (with `holderPid`) when a live
 * process — this one included — holds it.
 */
export async function acquireLock(dbPath: string, options: LockOptions = {}): Promise<LockHandle> {
  const fs = options.fs ?? nodeFileSystem;
  const file = lockPath(dbPath);
  const key = path.resolve(file);
  const pid = options.pid ?? process.pid;
  const isAlive = options.isAlive ?? defaultIsAlive;
  const graceMs = options.unreadableGraceMs ?? LOCK_UNREADABLE_GRACE_MS;
  const takeoverTimeoutMs = options.takeoverTimeoutMs ?? LOCK_TAKEOVER_TIMEOUT_MS;
  // Tests that simulate other processes pass their own pid; the in-process
  // registry only speaks for this process's real pid.
  const registered = options.pid === undefined;
  if (registered && heldInProcess.has(key)) {
    throw new LockError(
      LOCKED_CODE,
      `database ${dbPath} is already open in this process (${process.pid})`,
      {
        holderPid: process.pid,
      },
    );
  }
  // Claimed before the first await: a concurrent open in this process must
  // fail here rather than judge our half-made lock (our own pid) stale.
  if (registered) heldInProcess.add(key);
  try {
    const info: LockInfo = {
      pid,
      processStart: pid === process.pid ? processStartTime(pid) : null,
      startedAtMs: Date.now(),
      hostname: hostname(),
      nonce: randomBytes(12).toString('hex'),
    };
    const deadline = Date.now() + takeoverTimeoutMs + graceMs;
    for (;;) {
      if (await tryCreate(fs, file, info)) break;
      const holder = await readHolder(fs, file, graceMs);
      if (holder === 'missing') continue; // released between our create and read: try again
      if (holder !== 'unreadable' && holder.pid !== pid && isAlive(holder)) {
        throw lockedError(dbPath, holder);
      }
      // Stale: its holder is dead, or it carries our own pid (a previous
      // process that had the same pid, e.g. pid 1 in a container: we do not
      // hold it, the registry says so), or it never received content.
      const outcome = await takeOver(fs, file, holder, info, isAlive);
      if (outcome === 'taken') break;
      if (Date.now() > deadline) {
        throw new LockError(
          LOCKED_CODE,
          `database ${dbPath} is locked: another process is taking over the stale lock ${file}`,
        );
      }
      if (outcome === 'busy') await sleep(LOCK_RETRY_PAUSE_MS);
    }
    return new HeldLock(fs, file, registered ? key : null, info);
  } catch (error) {
    if (registered) heldInProcess.delete(key);
    throw error;
  }
}

/**
 * Reads the lock of `dbPath` without taking it: its holder, and whether that
 * holder is alive. `null` when there is no lock file. For `pwal inspect`.
 */
export async function readLock(
  dbPath: string,
  options: { fs?: WalFileSystem } = {},
): Promise<{ info: LockInfo | null; alive: boolean } | null> {
  const fs = options.fs ?? nodeFileSystem;
  const holder = await readHolder(fs, lockPath(dbPath), 0);
  if (holder === 'missing') return null;
  if (holder === 'unreadable') return { info: null, alive: false };
  return { info: holder, alive: defaultIsAlive(holder) };
}

class HeldLock implements LockHandle {
  released = false;

  constructor(
    private readonly fs: WalFileSystem,
    readonly path: string,
    private readonly key: string | null,
    readonly info: LockInfo,
  ) {}

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    if (this.key !== null) heldInProcess.delete(this.key);
    const current = await readHolder(this.fs, this.path, 0);
    if (current === 'missing' || current === 'unreadable' || current.nonce !== this.info.nonce) {
      throw new LockError(LOCK_LOST_CODE, `lock ${this.path} is no longer held by this process`);
    }
    try {
      await this.fs.unlink(this.path);
      // Make the removal durable, so a power cut does not bring back a lock
      // that would then have to be judged stale on the next open.
      await this.fs.syncDirectory(path.dirname(this.path));
    } catch (error) {
      throw new LockError(LOCK_IO_CODE, `cannot remove lock ${this.path}: ${describe(error)}`, {
        cause: error,
      });
    }
  }
}

function lockedError(dbPath: string, holder: LockInfo): LockError {
  const since = new Date(holder.startedAtMs).toISOString();
  return new LockError(
    LOCKED_CODE,
    `database ${dbPath} is locked by process ${holder.pid} on ${holder.hostname} (since ${since})`,
    { holderPid: holder.pid, holderHost: holder.hostname },
  );
}

/** Creates `file` exclusively with `info`, durably. False when it exists. */
async function tryCreate(fs: WalFileSystem, file: string, info: LockInfo): Promise<boolean> {
  let handle: Awaited<ReturnType<WalFileSystem['open']>>;
  try {
    handle = await fs.open(file, 'createExclusive');
  } catch (error) {
    if (errnoCode(error) === 'EEXIST') return false;
    throw new LockError(LOCK_IO_CODE, `cannot create lock ${file}: ${describe(error)}`, {
      cause: error,
    });
  }
  let closed = false;
  try {
    await handle.write(encodeLockInfo(info), 0);
    await handle.sync();
    closed = true;
    await handle.close();
  } catch (error) {
    if (!closed) await handle.close().catch(() => undefined);
    // Leave no half-written lock of ours behind, and report a typed error even
    // when only the close failed (the data's fate is then unknown).
    await fs.unlink(file).catch(() => undefined);
    throw new LockError(LOCK_IO_CODE, `cannot write lock ${file}: ${describe(error)}`, {
      cause: error,
    });
  }
  try {
    // The directory entry must be durable too: otherwise after a power cut a
    // second process could open the database while we believed we held it.
    await fs.syncDirectory(path.dirname(file));
  } catch (error) {
    await fs.unlink(file).catch(() => undefined);
    throw new LockError(LOCK_IO_CODE, `cannot sync directory of lock ${file}: ${describe(error)}`, {
      cause: error,
    });
  }
  return true;
}

/**
 * Reads and parses a lock file. An empty/unparsable file is re-read until
 * `graceMs` has passed (its creator may be between create and write).
 */
async function readHolder(
  fs: WalFileSystem,
  file: string,
  graceMs: number,
): Promise<LockInfo | 'missing' | 'unreadable'> {
  const until = Date.now() + graceMs;
  for (;;) {
    let bytes: Uint8Array;
    try {
      bytes = await readSmallFile(fs, file);
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return 'missing';
      throw new LockError(LOCK_IO_CODE, `cannot read lock ${file}: ${describe(error)}`, {
        cause: error,
      });
    }
    const info = decodeLockInfo(bytes);
    if (info !== null) return info;
    if (Date.now() >= until) return 'unreadable';
    await sleep(LOCK_RETRY_PAUSE_MS);
  }
}

/** Reads at most {@link LOCK_FILE_MAX_BYTES} + 1 bytes (never the whole of a hostile file). */
async function readSmallFile(fs: WalFileSystem, file: string): Promise<Uint8Array> {
  const handle = await fs.open(file, 'read');
  try {
    const into = new Uint8Array(LOCK_FILE_MAX_BYTES + 1);
    let total = 0;
    while (total < into.length) {
      const n = await handle.read(into.subarray(total), total, into.length - total);
      if (n <= 0) break;
      total += n;
    }
    return into.subarray(0, total);
  } finally {
    await handle.close();
  }
}

type TakeoverOutcome = 'taken' | 'retry' | 'busy';

/** Replaces the stale lock `judged` by ours, under the takeover guard. */
async function takeOver(
  fs: WalFileSystem,
  file: string,
  judged: LockInfo | 'unreadable',
  info: LockInfo,
  isAlive: (info: LockInfo) => boolean,
): Promise<TakeoverOutcome> {
  const guard = `${file}.takeover`;
  if (!(await tryCreate(fs, guard, info))) {
    const guardHolder = await readHolder(fs, guard, 0);
    if (guardHolder === 'missing') return 'retry';
    if (guardHolder !== 'unreadable' && isAlive(guardHolder)) return 'busy';
    await removeStaleGuard(fs, guard, guardHolder);
    return 'retry';
  }
  try {
    // We alone hold the guard. The lock may have changed since we judged it:
    // only remove it if it is still the very file we judged stale.
    const now = await readHolder(fs, file, 0);
    if (now === 'missing') return 'retry';
    const same = now === 'unreadable' ? judged === 'unreadable' : sameLock(now, judged);
    if (!same) return 'retry';
    await fs.unlink(file);
    await fs.syncDirectory(path.dirname(file));
    return (await tryCreate(fs, file, info)) ? 'taken' : 'retry';
  } finally {
    await fs.unlink(guard).catch(() => undefined);
  }
}

function sameLock(a: LockInfo, b: LockInfo | 'unreadable'): boolean {
  return b !== 'unreadable' && a.nonce === b.nonce && a.pid === b.pid;
}

/**
 * Removes a guard whose taker died. Renaming first makes the removal atomic:
 * if the renamed file turns out to be a fresh guard (its taker replaced the
 * stale one in between), it is renamed back rather than deleted.
 */
async function removeStaleGuard(
  fs: WalFileSystem,
  guard: string,
  judged: LockInfo | 'unreadable',
): Promise<void> {
  const aside = `${guard}.stale-${process.pid}-${randomBytes(6).toString('hex')}`;
  try {
    await fs.rename(guard, aside);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return;
    throw new LockError(LOCK_IO_CODE, `cannot remove stale guard ${guard}: ${describe(error)}`, {
      cause: error,
    });
  }
  const moved = await readHolder(fs, aside, 0);
  const isJudged =
    moved === 'missing' ||
    (moved === 'unreadable' ? judged === 'unreadable' : sameLock(moved, judged));
  if (isJudged) {
    await fs.unlink(aside).catch(() => undefined);
  } else {
    await fs.rename(aside, guard).catch(() => undefined);
  }
}

/** Encodes a lock file: one line of JSON, human-readable with `cat`. */
export function encodeLockInfo(info: LockInfo): Uint8Array {
  const body = JSON.stringify({ format: LOCK_FORMAT, version: LOCK_FORMAT_VERSION, ...info });
  return new TextEncoder().encode(`${body}\n`);
}

/** Decodes a lock file; `null` for anything that is not a complete lock of ours. Never throws. */
export function decodeLockInfo(bytes: Uint8Array): LockInfo | null {
  if (bytes.length === 0 || bytes.length > LOCK_FILE_MAX_BYTES) return null;
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const v = value as Record<string, unknown>;
  if (v.format !== LOCK_FORMAT || v.version !== LOCK_FORMAT_VERSION) return null;
  const { pid, processStart, startedAtMs, hostname: host, nonce } = v;
  if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid <= 0) return null;
  if (processStart !== null && typeof processStart !== 'string') return null;
  if (typeof startedAtMs !== 'number' || !Number.isFinite(startedAtMs)) return null;
  if (typeof host !== 'string' || typeof nonce !== 'string' || nonce.length === 0) return null;
  return { pid, processStart, startedAtMs, hostname: host, nonce };
}

/**
 * Is the holder alive? Another host's holder cannot be checked and counts as
 * alive. `EPERM` (another user's process) counts as alive. A pid whose
 * current process started at another time than the recorded one is a
 * recycled pid: the holder is dead.
 */
function defaultIsAlive(info: LockInfo): boolean {
  if (info.hostname !== hostname()) return true;
  try {
    process.kill(info.pid, 0);
  } catch (error) {
    return errnoCode(error) !== 'ESRCH';
  }
  if (info.processStart !== null) {
    const start = processStartTime(info.pid);
    if (start !== null && start !== info.processStart) return false;
  }
  return true;
}

/**
 * Start time of process `pid` in clock ticks since boot (Linux `/proc/<pid>/stat`
 * field 22), or null where `/proc` is not available. Read with `node:fs`
 * directly: this is process introspection, not database I/O.
 */
function processStartTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may contain spaces.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const start = rest[19]; // field 22 overall = index 19 after pid and comm
    return start !== undefined && /^\d+$/.test(start) ? start : null;
  } catch {
    return null;
  }
}

function errnoCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
