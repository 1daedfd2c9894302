/**
 * One writer process per database: a kernel advisory lock on `<db>.lock`.
 *
 * The writer holds an *exclusive* lock on the open file `<db>.lock`; readers
 * that need the files to stand still (`pwal verify`) hold a *shared* one. The
 * locks belong to the open file (Linux open-file-description locks, `flock`
 * on macOS — {@link WalFileSystem.tryLock}), so:
 *
 * - the kernel drops a lock when its holder dies, however it died: there is
 *   no stale lock to judge, no takeover, no grace period;
 * - they work between processes in different PID namespaces (containers
 *   sharing a volume) as long as both run on one kernel — a pid is never
 *   consulted;
 * - a second open in the same process conflicts too (another open file).
 *
 * The file's contents — the writer's pid, host and start time, one JSON line
 * — exist only to name the holder in an `ERR_LOCKED` message. Nothing is ever
 * decided from them: a file without contents, with a dead pid, with our own
 * pid or with garbage is locked exactly when the kernel says so.
 *
 * Waiting: like SQLite's `busy_timeout`, {@link LockOptions.lockTimeoutMs}
 * retries a refused lock with growing pauses (5 ms up to 100 ms) until the
 * time is up, then fails with `ERR_LOCKED` naming the holder. Polling keeps
 * the wait cancellable; a blocking kernel wait would pin a thread-pool thread
 * until the holder let go.
 *
 * The last holder removes the file on release (while still holding it); an
 * opener that locked the file just as it was removed notices that the path
 * no longer names its file and opens again. A lock file left behind (a
 * killed holder, a power cut) is harmless: it is simply locked again.
 *
 * Limits: see `docs/durability.md` — one kernel; network file systems.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import * as path from 'node:path';
import { WalArgumentError, WalError } from '../errors.js';
import { errnoOf } from './errors.js';
import { type LockKind, nodeFileSystem, type WalFileLock, type WalFileSystem } from './fs.js';

/** Code of {@link LockError} when another holder (process or open) has the database. */
export const LOCKED_CODE = 'ERR_LOCKED';
/** Code of {@link LockError} when the lock file could not be opened, locked or written (I/O). */
export const LOCK_IO_CODE = 'ERR_LOCK_IO';

/** Largest lock file description read, in bytes; anything longer is not ours. */
export const lockFileBytesMax = 4096;
/** Largest accepted {@link LockOptions.lockTimeoutMs}: one day. */
export const lockTimeoutMsMax = 86_400_000;
/** First pause between attempts while waiting for the lock, in ms. */
const lockRetryPauseMsMin = 5;
/** Longest pause between attempts while waiting for the lock, in ms. */
const lockRetryPauseMsMax = 100;
const LOCK_FORMAT = 'pwal-lock';
const LOCK_FORMAT_VERSION = 2;

/** A lock error; `holderPid` / `holderHost` when the lock file describes its holder. */
export class LockError extends WalError {
  /** Pid recorded by the holder (as its own PID namespace sees it), when one could be read. */
  readonly holderPid: number | undefined;
  /** Host recorded by the holder, when one could be read. */
  readonly holderHost: string | undefined;

  constructor(
    code: typeof LOCKED_CODE | typeof LOCK_IO_CODE,
    message: string,
    details?: { holderPid?: number; holderHost?: string; cause?: unknown },
  ) {
    super(code, message, details?.cause === undefined ? undefined : { cause: details.cause });
    this.holderPid = details?.holderPid;
    this.holderHost = details?.holderHost;
  }
}

/** What a writer writes into its lock file, for error messages only. */
export interface LockInfo {
  /** The holder's pid, as seen in its own PID namespace. */
  pid: number;
  /** Wall-clock time the lock was taken, ms since the Unix epoch. */
  startedAtMs: number;
  hostname: string;
  /** Random; tells this process's own locks from another process's with the same pid. */
  nonce: string;
}

/** Options of {@link acquireLock}. */
export interface LockOptions {
  fs?: WalFileSystem;
  /** `exclusive` (default): the writer. `shared`: a reader that needs the files to stand still. */
  kind?: LockKind;
  /**
   * How long to wait for a lock someone else holds before failing with
   * `ERR_LOCKED`, in ms (default 0: fail at once; at most
   * {@link lockTimeoutMsMax}). Like SQLite's `busy_timeout`.
   */
  lockTimeoutMs?: number;
}

/** A held lock. Release it exactly once (further calls do nothing). */
export interface LockHandle {
  /** Path of the lock file (`<db>.lock`). */
  readonly path: string;
  readonly kind: LockKind;
  /** What the lock file says about us (`null` for shared holders, which write nothing). */
  readonly info: LockInfo | null;
  /**
   * False only for a shared lock that could not be taken because the lock
   * file cannot exist there (missing or read-only directory): then no writer
   * can hold the database either.
   */
  readonly guarded: boolean;
  /** True after {@link LockHandle.release}. */
  readonly released: boolean;
  /** Drops the lock (and removes the lock file when no one else holds it). */
  release(): Promise<void>;
}

/** `<db>.lock` */
export function lockPath(dbPath: string): string {
  return `${dbPath}.lock`;
}

/**
 * Errors that mean no lock file can exist beside the database (its directory
 * is missing, not a directory, read-only or closed to us): then no writer can
 * hold it either, and a reader goes on without a lock.
 */
const UNLOCKABLE_DIRECTORY = new Set(['ENOENT', 'ENOTDIR', 'EROFS', 'EACCES']);

/** Nonces of the locks this process holds, to say "already open in this process". */
const ownNonces = new Set<string>();

/**
 * Takes the lock of `dbPath` (exclusive unless `kind: 'shared'`), waiting up
 * to `lockTimeoutMs`. Throws {@link LockError} `ERR_LOCKED` naming the holder
 * when it is still held — by another process, or by another open in this one.
 * @throws {WalArgumentError} for a bad `lockTimeoutMs`.
 * @throws {LockError} `ERR_LOCK_IO` when the lock file cannot be opened or written.
 */
export async function acquireLock(dbPath: string, options: LockOptions = {}): Promise<LockHandle> {
  const fs = options.fs ?? nodeFileSystem;
  const kind = options.kind ?? 'exclusive';
  const timeoutMs = checkLockTimeout(options.lockTimeoutMs);
  const file = lockPath(dbPath);
  const deadline = Date.now() + timeoutMs;
  let pauseMs = lockRetryPauseMsMin;
  for (;;) {
    let held: WalFileLock | null;
    try {
      held = await tryLockFile(fs, file, kind);
    } catch (error) {
      const errno = errnoOf(error);
      if (kind === 'shared' && errno !== undefined && UNLOCKABLE_DIRECTORY.has(errno)) {
        // No lock file can exist here, so no writer can hold the database.
        return new HeldLock(file, kind, null, null);
      }
      throw new LockError(LOCK_IO_CODE, `cannot lock ${file}: ${describe(error)}`, {
        cause: error,
      });
    }
    if (held !== null) return kind === 'exclusive' ? await describeHolder(held) : guard(held);
    const leftMs = deadline - Date.now();
    if (leftMs <= 0) throw await lockedError(fs, dbPath, kind);
    await sleep(Math.min(pauseMs, leftMs));
    pauseMs = Math.min(pauseMs * 2, lockRetryPauseMsMax);
  }
}

/** Runs `fn` holding the lock of `dbPath` ({@link acquireLock}), and releases it after. */
export async function withLock<T>(
  dbPath: string,
  options: LockOptions,
  fn: () => Promise<T>,
): Promise<T> {
  const lock = await acquireLock(dbPath, options);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

function guard(held: WalFileLock): HeldLock {
  return new HeldLock(held.path, held.kind, held, null);
}

/** Writes our description into the lock we now hold exclusively. */
async function describeHolder(held: WalFileLock): Promise<HeldLock> {
  const info: LockInfo = {
    pid: process.pid,
    startedAtMs: Date.now(),
    hostname: hostname(),
    nonce: randomBytes(12).toString('hex'),
  };
  try {
    await held.describe(encodeLockInfo(info));
  } catch (error) {
    await held.release().catch(() => undefined);
    throw new LockError(LOCK_IO_CODE, `cannot write lock ${held.path}: ${describe(error)}`, {
      cause: error,
    });
  }
  ownNonces.add(info.nonce);
  return new HeldLock(held.path, 'exclusive', held, info);
}

/** Validates {@link LockOptions.lockTimeoutMs}; returns it in ms (default 0). */
export function checkLockTimeout(value: unknown): number {
  if (value === undefined) return 0;
  if (
    typeof value !== 'number' ||
    !Number.isSafeInteger(value) ||
    value < 0 ||
    value > lockTimeoutMsMax
  ) {
    throw new WalArgumentError(
      `lockTimeoutMs must be an integer from 0 to ${lockTimeoutMsMax}, got ${String(value)}`,
    );
  }
  return value;
}

/**
 * Reads the lock of `dbPath` without waiting for it: what the lock file says,
 * and whether a writer holds it now (the kernel's answer, from a shared lock
 * probed and dropped at once). `null` when there is no lock file. For
 * `pwal inspect`.
 */
export async function readLock(
  dbPath: string,
  options: { fs?: WalFileSystem } = {},
): Promise<{ info: LockInfo | null; alive: boolean } | null> {
  const fs = options.fs ?? nodeFileSystem;
  const file = lockPath(dbPath);
  const bytes = await readDescription(fs, file);
  if (bytes === null) return null;
  const probe = await tryLockFile(fs, file, 'shared').catch(() => null);
  await probe?.release();
  return { info: decodeLockInfo(bytes), alive: probe === null };
}

class HeldLock implements LockHandle {
  released = false;

  constructor(
    readonly path: string,
    readonly kind: LockKind,
    private readonly held: WalFileLock | null,
    readonly info: LockInfo | null,
  ) {}

  get guarded(): boolean {
    return this.held !== null;
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    if (this.info !== null) ownNonces.delete(this.info.nonce);
    try {
      await this.held?.release();
    } catch (error) {
      // Closing the file dropped the lock even if removing it failed.
      throw new LockError(LOCK_IO_CODE, `cannot release lock ${this.path}: ${describe(error)}`, {
        cause: error,
      });
    }
  }
}

/** `ERR_LOCKED`, naming the holder as well as the lock file lets us. */
async function lockedError(fs: WalFileSystem, dbPath: string, kind: LockKind): Promise<LockError> {
  const file = lockPath(dbPath);
  const bytes = await readDescription(fs, file).catch(() => null);
  const holder = bytes === null ? null : decodeLockInfo(bytes);
  if (kind === 'exclusive') {
    // Refused by readers only? Then a shared lock is granted: say so rather
    // than name a writer who may have died long ago.
    const probe = await tryLockFile(fs, file, 'shared').catch(() => null);
    if (probe !== null) {
      await probe.release().catch(() => undefined);
      return new LockError(
        LOCKED_CODE,
        `database ${dbPath} is locked for reading by another process (a shared lock on ${file}, e.g. pwal verify)`,
      );
    }
  }
  if (holder === null) {
    return new LockError(
      LOCKED_CODE,
      `database ${dbPath} is locked by another process (${file} names no holder yet)`,
    );
  }
  const since = new Date(holder.startedAtMs).toISOString();
  const who = ownNonces.has(holder.nonce)
    ? `this process (${holder.pid}): it is already open here`
    : `process ${holder.pid} on ${holder.hostname} (since ${since})`;
  return new LockError(LOCKED_CODE, `database ${dbPath} is locked by ${who}`, {
    holderPid: holder.pid,
    holderHost: holder.hostname,
  });
}

/** Reads at most {@link lockFileBytesMax} + 1 bytes of the lock file; null when it is missing. */
async function readDescription(fs: WalFileSystem, file: string): Promise<Uint8Array | null> {
  let handle: Awaited<ReturnType<WalFileSystem['open']>>;
  try {
    handle = await fs.open(file, 'read');
  } catch (error) {
    if (errnoOf(error) === 'ENOENT') return null;
    throw error;
  }
  try {
    const into = new Uint8Array(lockFileBytesMax + 1);
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

/** The file system's kernel lock, or the in-process table for one without. */
function tryLockFile(fs: WalFileSystem, file: string, kind: LockKind): Promise<WalFileLock | null> {
  if (fs.tryLock !== undefined) return fs.tryLock(file, kind);
  return Promise.resolve(tryLockInProcess(fs, file, kind));
}

/**
 * Locks of file systems without kernel locks (simulated disks): such a disk
 * exists only inside this process, so a table here sees every holder. A new
 * disk (a simulated reboot) starts with no locks, as a real reboot does.
 */
const inProcessTables = new WeakMap<
  WalFileSystem,
  Map<string, { kind: LockKind; count: number }>
>();

function tryLockInProcess(fs: WalFileSystem, file: string, kind: LockKind): WalFileLock | null {
  let table = inProcessTables.get(fs);
  if (table === undefined) {
    table = new Map();
    inProcessTables.set(fs, table);
  }
  const key = path.resolve(file);
  const entry = table.get(key);
  if (entry !== undefined && (entry.kind === 'exclusive' || kind === 'exclusive')) return null;
  if (entry === undefined) table.set(key, { kind, count: 1 });
  else entry.count += 1;
  let described = false;
  let released = false;
  return {
    path: file,
    kind,
    async describe(data) {
      const handle = await fs.open(file, 'createOrTruncate');
      described = true; // the file exists now: release removes it, even after a failed write
      try {
        await handle.write(data, 0);
      } finally {
        await handle.close();
      }
    },
    async release() {
      if (released) return;
      released = true;
      const now = table.get(key);
      if (now !== undefined && --now.count === 0) table.delete(key);
      if (described) {
        await fs.unlink(file).catch((error: unknown) => {
          if (errnoOf(error) !== 'ENOENT') throw error;
        });
      }
    },
  };
}

/** Encodes a lock description: one line of JSON, readable with `cat`. */
export function encodeLockInfo(info: LockInfo): Uint8Array {
  const body = JSON.stringify({ format: LOCK_FORMAT, version: LOCK_FORMAT_VERSION, ...info });
  return new TextEncoder().encode(`${body}\n`);
}

/** Decodes a lock description; `null` for anything that is not a complete one of ours. Never throws. */
export function decodeLockInfo(bytes: Uint8Array): LockInfo | null {
  if (bytes.length === 0 || bytes.length > lockFileBytesMax) return null;
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const v = value as Record<string, unknown>;
  if (v.format !== LOCK_FORMAT || v.version !== LOCK_FORMAT_VERSION) return null;
  const { pid, startedAtMs, hostname: host, nonce } = v;
  if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid <= 0) return null;
  if (typeof startedAtMs !== 'number' || !Number.isFinite(startedAtMs)) return null;
  if (typeof host !== 'string' || typeof nonce !== 'string' || nonce.length === 0) return null;
  return { pid, startedAtMs, hostname: host, nonce };
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
