/**
 * The file-system layer under the log.
 *
 * Every open/write/fsync/rename/unlink/readdir the log does goes through a
 * {@link WalFileSystem}, so that tests can put a simulated disk (power cuts,
 * torn writes, lost directory entries) or a fault injector (EIO, ENOSPC,
 * fsyncgate) under the very same code that runs in production.
 *
 * Implementations throw errors shaped like Node's: an `Error` with a string
 * `code` (`ENOENT`, `EIO`, `ENOSPC`, …). The storage layer wraps them into typed
 * {@link WalError}s; this layer does not.
 */
import * as fsCallbacks from 'node:fs';
import { constants as fsConstants, writeSync, writevSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { promisify } from 'node:util';
import { tryLock as tryLockFd } from 'fs-native-extensions';
import { NotRegularFileError } from './errors.js';

/** How {@link WalFileSystem.open} opens a file. */
export type OpenMode =
  /** Read only; the file must exist. */
  | 'read'
  /** Read and write; the file must exist. */
  | 'readWrite'
  /** Create a new file for writing; fails with `EEXIST` if it exists. */
  | 'createExclusive'
  /** Create or truncate a file for writing. */
  | 'createOrTruncate';

/** An open file. Positions and lengths are byte offsets (< 2^53). */
export interface WalFileHandle {
  readonly path: string;
  /** Writes all of `data` at `position`. */
  write(data: Uint8Array, position: number): Promise<void>;
  /** Writes all chunks back to back starting at `position` (one `writev` where possible). */
  writev(chunks: readonly Uint8Array[], position: number): Promise<void>;
  /** Reads up to `length` bytes at `position` into `into` (from offset 0); returns bytes read. */
  read(into: Uint8Array, position: number, length?: number): Promise<number>;
  /** fdatasync: file data (and the size) reach stable storage. */
  datasync(): Promise<void>;
  /**
   * Optional: `writev(chunks, position)` then `datasync()` as ONE call, so an
   * implementation can run both on one thread hop (see `writeAndDatasync`).
   */
  writevDatasync?(chunks: readonly Uint8Array[], position: number): Promise<void>;
  /** fsync: data and all metadata reach stable storage. */
  sync(): Promise<void>;
  /** Sets the file's length to `length` bytes (cuts or zero-extends). */
  truncate(length: number): Promise<void>;
  /** The file's current length in bytes. */
  size(): Promise<number>;
  /** Closes the handle (no sync: call `datasync`/`sync` first where it matters). */
  close(): Promise<void>;
}

/** What {@link WalFileSystem.stat} reports. */
export interface WalStat {
  size: number;
  kind: 'file' | 'directory' | 'other';
}

/** A shared lock admits other shared holders; an exclusive lock admits nobody else. */
export type LockKind = 'shared' | 'exclusive';

/**
 * A kernel advisory lock on an open file (see {@link WalFileSystem.tryLock}).
 * The kernel drops it when the file is closed — by {@link WalFileLock.release}
 * or by the death of the process, whatever killed it.
 */
export interface WalFileLock {
  readonly path: string;
  readonly kind: LockKind;
  /** Replaces the file's contents with `data` (a description for people; exclusive holders only). */
  describe(data: Uint8Array): Promise<void>;
  /**
   * Releases the lock and closes the file. When no one else holds a lock on
   * it, the file is removed first, so that no lock file outlives its users.
   */
  release(): Promise<void>;
}

/**
 * Every file-system operation the log performs. `open` and `readFile` never
 * follow a symlink at the last path component and refuse anything that is
 * not a regular file (`NotRegularFileError`, `ERR_NOT_REGULAR_FILE`);
 * `readFile` reads no more than the size the file had when it was opened.
 */
export interface WalFileSystem {
  /** Opens `path` as {@link OpenMode} says (creating or truncating it for writes). */
  open(path: string, mode: OpenMode): Promise<WalFileHandle>;
  /** Reads a whole regular file. */
  readFile(path: string): Promise<Uint8Array>;
  /** Follows symlinks, like `fs.stat`. */
  stat(path: string): Promise<WalStat>;
  /** Entry names (not paths) of a directory. */
  readdir(dir: string): Promise<string[]>;
  /** Renames atomically (replacing `to`); durable only after the directory's fsync. */
  rename(from: string, to: string): Promise<void>;
  /** Removes a file; durable only after the directory's fsync. */
  unlink(path: string): Promise<void>;
  /** Creates a directory (and its parents with `recursive`). */
  mkdir(path: string, options?: { recursive?: boolean }): Promise<void>;
  /** fsync of a directory: makes creations, renames and unlinks in it durable. */
  syncDirectory(dir: string): Promise<void>;
  /**
   * Opens `path` (creating it if needed, never following a symlink) and tries
   * to take a kernel advisory lock of `kind` on it without waiting. `null`
   * when another open file holds a conflicting lock. Optional: the lock
   * module keeps an in-process lock table for file systems without it
   * (simulated disks, which exist only inside one process anyway). A custom
   * file system over a real disk should delegate this to
   * `nodeFileSystem.tryLock`: without it, the lock excludes only opens in
   * this process.
   */
  tryLock?(path: string, kind: LockKind): Promise<WalFileLock | null>;
}

const {
  O_RDONLY,
  O_WRONLY,
  O_RDWR,
  O_CREAT,
  O_EXCL,
  O_TRUNC,
  O_NOFOLLOW: NOFOLLOW,
  O_NONBLOCK: NONBLOCK,
} = fsConstants;

/**
 * Every open refuses a symlink as the last path component (`O_NOFOLLOW`: a
 * planted link must not redirect a write, nor make a read of `/dev/zero`),
 * and does not block on a FIFO (`O_NONBLOCK`; the regular-file check after the
 * open then refuses it). `O_NONBLOCK` changes nothing for regular files.
 */
const FLAGS: Record<OpenMode, number> = {
  read: O_RDONLY | NOFOLLOW | NONBLOCK,
  readWrite: O_RDWR | NOFOLLOW | NONBLOCK,
  // O_EXCL never follows a link and only ever makes a new regular file.
  createExclusive: O_WRONLY | O_CREAT | O_EXCL | O_TRUNC | NOFOLLOW,
  createOrTruncate: O_WRONLY | O_CREAT | O_TRUNC | NOFOLLOW | NONBLOCK,
};

/** What a non-regular file is, in words, for {@link NotRegularFileError}. */
function fileTypeOf(s: {
  isDirectory(): boolean;
  isFIFO(): boolean;
  isCharacterDevice(): boolean;
  isBlockDevice(): boolean;
  isSocket(): boolean;
  isSymbolicLink(): boolean;
}): string {
  if (s.isSymbolicLink()) return 'symbolic link';
  if (s.isDirectory()) return 'directory';
  if (s.isFIFO()) return 'FIFO';
  if (s.isCharacterDevice()) return 'character device';
  if (s.isBlockDevice()) return 'block device';
  if (s.isSocket()) return 'socket';
  return 'special file';
}

/**
 * Opens `path` only if it is a regular file (see {@link FLAGS}); throws
 * {@link NotRegularFileError} for a symlink, FIFO, device or socket, and
 * `EISDIR` for a directory.
 */
async function openRegular(path: string, mode: OpenMode): Promise<fsp.FileHandle> {
  let handle: fsp.FileHandle;
  try {
    handle = await fsp.open(path, FLAGS[mode], 0o644);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    // ELOOP: the last component is a symlink; ENXIO: a FIFO opened for
    // writing with no reader. Name what is there instead.
    if (code === 'ELOOP' || code === 'ENXIO') {
      const seen = await fsp.lstat(path).catch(() => null);
      if (seen !== null && !seen.isFile()) throw new NotRegularFileError(path, fileTypeOf(seen));
    }
    throw error;
  }
  if (mode === 'createExclusive') return handle; // made just now, by us: a regular file
  try {
    const seen = await handle.stat();
    if (seen.isDirectory()) {
      // As a read of it would: the plain EISDIR every caller already handles.
      throw Object.assign(new Error(`EISDIR: illegal operation on a directory, open '${path}'`), {
        code: 'EISDIR',
        syscall: 'open',
        path,
      });
    }
    if (!seen.isFile()) throw new NotRegularFileError(path, fileTypeOf(seen));
  } catch (error) {
    await handle.close().catch(() => undefined);
    throw error;
  }
  return handle;
}

/** Largest single read, in bytes (Node's Buffer limit is far above; this keeps each read small). */
const readChunkBytesMax = 64 * 1024 * 1024;

/**
 * Reads a regular file whole, never more than the size fstat reported when
 * it was opened (a file growing meanwhile is read up to that size).
 */
async function readRegularFile(path: string): Promise<Uint8Array> {
  const handle = await openRegular(path, 'read');
  try {
    const size = (await handle.stat()).size;
    const into = new Uint8Array(size);
    let done = 0;
    while (done < size) {
      const length = Math.min(size - done, readChunkBytesMax);
      const { bytesRead } = await handle.read(into, done, length, done);
      if (bytesRead <= 0) break; // shrank meanwhile: return what is there
      done += bytesRead;
    }
    return done === size ? into : into.subarray(0, done);
  } finally {
    await handle.close();
  }
}

class NodeFileHandle implements WalFileHandle {
  constructor(
    readonly path: string,
    private readonly handle: fsp.FileHandle,
  ) {}

  async write(data: Uint8Array, position: number): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.handle.write(
        data,
        done,
        data.length - done,
        position + done,
      );
      if (bytesWritten <= 0) throw Object.assign(new Error('short write'), { code: 'EIO' });
      done += bytesWritten;
    }
  }

  async writev(chunks: readonly Uint8Array[], position: number): Promise<void> {
    let pending = chunks.filter((c) => c.length > 0);
    let at = position;
    while (pending.length > 0) {
      const { bytesWritten } = await this.handle.writev(pending, at);
      if (bytesWritten <= 0) throw Object.assign(new Error('short write'), { code: 'EIO' });
      at += bytesWritten;
      pending = unwrittenRest(pending, bytesWritten);
    }
  }

  /** The OS file descriptor (the engine's I/O thread writes through it with synchronous calls). */
  get fd(): number {
    return this.handle.fd;
  }

  async read(into: Uint8Array, position: number, length = into.length): Promise<number> {
    const { bytesRead } = await this.handle.read(into, 0, length, position);
    return bytesRead;
  }

  datasync(): Promise<void> {
    return this.handle.datasync();
  }

  sync(): Promise<void> {
    return this.handle.sync();
  }

  truncate(length: number): Promise<void> {
    return this.handle.truncate(length);
  }

  async size(): Promise<number> {
    return (await this.handle.stat()).size;
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

/** Flags and mode of a new file made with {@link OpenMode} `createExclusive`. */
export const CREATE_EXCLUSIVE = { flags: FLAGS.createExclusive, mode: 0o644 } as const;

const fdWritev = promisify(fsCallbacks.writev);
const fdRead = promisify(fsCallbacks.read);
const fdFstat = promisify(fsCallbacks.fstat);
const fdDatasync = promisify(fsCallbacks.fdatasync);
const fdSync = promisify(fsCallbacks.fsync);
const fdTruncate = promisify(fsCallbacks.ftruncate);
const fdClose = promisify(fsCallbacks.close);
const fdOpen = promisify(fsCallbacks.open);

/**
 * A file of the real file system held by its bare OS descriptor rather than
 * a `FileHandle`, so that another thread (the engine's I/O thread) may close
 * it: {@link detach} hands the descriptor over and makes every later call on
 * this object fail (`EBADF`) instead of touching a descriptor number the OS
 * may have given to another file since.
 */
export class DescriptorFileHandle implements WalFileHandle {
  private descriptor: number;

  constructor(
    readonly path: string,
    fd: number,
  ) {
    this.descriptor = fd;
  }

  /** The OS file descriptor; -1 once closed or detached. */
  get fd(): number {
    return this.descriptor;
  }

  /** Gives up the descriptor (another thread closes it); this object is closed from now on. */
  detach(): number {
    const fd = this.open();
    this.descriptor = -1;
    return fd;
  }

  write(data: Uint8Array, position: number): Promise<void> {
    return this.writev([data], position);
  }

  async writev(chunks: readonly Uint8Array[], position: number): Promise<void> {
    let pending = chunks.filter((c) => c.length > 0);
    let at = position;
    while (pending.length > 0) {
      const { bytesWritten: written } = await fdWritev(this.open(), pending, at);
      if (written <= 0) throw Object.assign(new Error('short write'), { code: 'EIO' });
      at += written;
      pending = unwrittenRest(pending, written);
    }
  }

  async read(into: Uint8Array, position: number, length = into.length): Promise<number> {
    return (await fdRead(this.open(), into, 0, length, position)).bytesRead;
  }

  async datasync(): Promise<void> {
    await fdDatasync(this.open());
  }

  async sync(): Promise<void> {
    await fdSync(this.open());
  }

  async truncate(length: number): Promise<void> {
    await fdTruncate(this.open(), length);
  }

  async size(): Promise<number> {
    return (await fdFstat(this.open())).size;
  }

  async close(): Promise<void> {
    if (this.descriptor < 0) return;
    const fd = this.descriptor;
    this.descriptor = -1;
    await fdClose(fd);
  }

  private open(): number {
    if (this.descriptor < 0) {
      throw Object.assign(new Error(`EBADF: file closed: ${this.path}`), { code: 'EBADF' });
    }
    return this.descriptor;
  }
}

/** Opens a new file like `open(path, 'createExclusive')`, as a {@link DescriptorFileHandle}. */
export async function createDescriptorFile(path: string): Promise<DescriptorFileHandle> {
  const fd = await fdOpen(path, CREATE_EXCLUSIVE.flags, CREATE_EXCLUSIVE.mode);
  return new DescriptorFileHandle(path, fd);
}

/** Attempts at locking a lock file that its last holder keeps removing under us. */
const lockReopenAttemptsMax = 16;

class NodeFileLock implements WalFileLock {
  private released = false;

  constructor(
    readonly path: string,
    readonly kind: LockKind,
    private readonly handle: fsp.FileHandle,
    private readonly writable: boolean,
    private readonly identity: string,
  ) {}

  async describe(data: Uint8Array): Promise<void> {
    // No fsync: the contents only explain the lock to people, and no lock
    // survives a reboot anyway.
    await this.handle.truncate(0);
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.handle.write(data, done, data.length - done, done);
      if (bytesWritten <= 0) throw Object.assign(new Error('short write'), { code: 'EIO' });
      done += bytesWritten;
    }
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    try {
      // Converting to exclusive succeeds only if no one else holds a lock
      // here: then nobody relies on this file and it can go. Whoever opened it
      // meanwhile sees that the path no longer names their file and reopens.
      if (this.writable && tryLockFd(this.handle.fd, { shared: false })) {
        if ((await identityOf(this.path)) === this.identity) {
          await fsp.unlink(this.path).catch(() => undefined);
        }
      }
    } finally {
      await this.handle.close();
    }
  }
}

/** `dev:ino` of the file `path` names (not following a symlink), or null if none. */
async function identityOf(path: string): Promise<string | null> {
  try {
    const s = await fsp.lstat(path, { bigint: true });
    return `${s.dev}:${s.ino}`;
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT') return null;
    throw error;
  }
}

async function openLockFile(
  path: string,
  kind: LockKind,
): Promise<{ handle: fsp.FileHandle; writable: boolean }> {
  // O_NONBLOCK: a FIFO planted under the lock's name must not block the open
  // (the regular-file check then refuses it); it changes nothing for files.
  const { O_RDWR, O_RDONLY, O_CREAT, O_NOFOLLOW, O_NONBLOCK } = fsConstants;
  const flags = O_NOFOLLOW | O_NONBLOCK;
  try {
    return { handle: await fsp.open(path, O_RDWR | O_CREAT | flags, 0o644), writable: true };
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    // A reader on a read-only directory or file still takes its shared lock
    // on an existing lock file (a shared lock needs only read access).
    if (kind === 'shared' && (code === 'EACCES' || code === 'EROFS')) {
      return { handle: await fsp.open(path, O_RDONLY | flags), writable: false };
    }
    throw error;
  }
}

/**
 * Kernel advisory locks on `path`: open-file-description locks (Linux
 * `F_OFD_SETLK`) or `flock` (macOS), through `fs-native-extensions`. They
 * belong to the open file, not to a pid, so they work across PID namespaces
 * on one kernel and die with the file descriptor.
 */
async function tryLockNode(path: string, kind: LockKind): Promise<WalFileLock | null> {
  for (let attempt = 0; attempt < lockReopenAttemptsMax; attempt++) {
    const { handle, writable } = await openLockFile(path, kind);
    let keep = false;
    try {
      const stat = await handle.stat({ bigint: true });
      if (!stat.isFile()) throw new NotRegularFileError(path, fileTypeOf(stat));
      if (!tryLockFd(handle.fd, { shared: kind === 'shared' })) return null;
      // Between our open and our lock, the last holder may have removed the
      // file: a lock on that orphan would exclude no one. Only a lock on the
      // file the path names now counts.
      const identity = `${stat.dev}:${stat.ino}`;
      if ((await identityOf(path)) === identity) {
        keep = true;
        return new NodeFileLock(path, kind, handle, writable, identity);
      }
    } finally {
      if (!keep) await handle.close();
    }
  }
  throw Object.assign(new Error(`lock file ${path} keeps being replaced`), { code: 'EAGAIN' });
}

/**
 * The OS file descriptor behind `handle` when it is a file opened by
 * {@link nodeFileSystem}; `null` for any other implementation (simulated or
 * fault-injecting file systems), whose operations must keep going through
 * the handle.
 */
export function nodeFileDescriptor(handle: WalFileHandle): number | null {
  if (handle instanceof DescriptorFileHandle) return handle.fd < 0 ? null : handle.fd;
  return handle instanceof NodeFileHandle ? handle.fd : null;
}

/** The real file system, through `node:fs/promises`. */
export const nodeFileSystem: WalFileSystem = {
  async open(path, mode) {
    return new NodeFileHandle(path, await openRegular(path, mode));
  },
  readFile(path) {
    return readRegularFile(path);
  },
  async stat(path) {
    const s = await fsp.stat(path);
    return { size: s.size, kind: s.isFile() ? 'file' : s.isDirectory() ? 'directory' : 'other' };
  },
  readdir(dir) {
    return fsp.readdir(dir);
  },
  rename(from, to) {
    return fsp.rename(from, to);
  },
  unlink(path) {
    return fsp.unlink(path);
  },
  async mkdir(path, options) {
    await fsp.mkdir(path, { recursive: options?.recursive ?? false });
  },
  async syncDirectory(dir) {
    // Linux allows fsync on a directory opened read-only; that is what makes
    // a creation, rename or unlink in it survive power loss.
    const handle = await fsp.open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  },
  tryLock: tryLockNode,
};

/**
 * Writes `chunks` at `position` and, when `sync`, fdatasyncs: the one call
 * over the seam on a segment's critical path. Uses the handle's
 * `writevDatasync` when it has one, else `writev` then `datasync`.
 */
export async function writeAndDatasync(
  handle: WalFileHandle,
  chunks: readonly Uint8Array[],
  position: number,
  sync: boolean,
): Promise<void> {
  if (sync && handle.writevDatasync !== undefined) {
    await handle.writevDatasync(chunks, position);
    return;
  }
  await handle.writev(chunks, position);
  if (sync) await handle.datasync();
}

/**
 * What is left of `chunks` after a write that took their first `written`
 * bytes: a short `writev` is legal, and the caller goes on with the rest.
 */
export function unwrittenRest(chunks: readonly Uint8Array[], written: number): Uint8Array[] {
  let skip = written;
  const rest: Uint8Array[] = [];
  for (const chunk of chunks) {
    if (skip >= chunk.length) {
      skip -= chunk.length;
    } else {
      rest.push(skip > 0 ? chunk.subarray(skip) : chunk);
      skip = 0;
    }
  }
  return rest;
}

/**
 * Writes every chunk back to back at `position` with synchronous calls; a
 * short write is legal, so it goes on with the rest (the I/O thread's
 * program does the same in its own source).
 */
export function writeAllSync(fd: number, chunks: readonly Uint8Array[], position: number): void {
  let pending = chunks.filter((chunk) => chunk.length > 0);
  let at = position;
  while (pending.length > 0) {
    const written =
      pending.length === 1
        ? writeSync(fd, pending[0]!, 0, pending[0]!.length, at)
        : writevSync(fd, pending, at);
    if (written <= 0) throw Object.assign(new Error('short write'), { code: 'EIO' });
    at += written;
    pending = unwrittenRest(pending, written);
  }
}
