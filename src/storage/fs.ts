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
import * as fsp from 'node:fs/promises';

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

/** Every file-system operation the log performs. */
export interface WalFileSystem {
  /** Opens `path` as {@link OpenMode} says (creating or truncating it for writes). */
  open(path: string, mode: OpenMode): Promise<WalFileHandle>;
  /** Reads a whole file. */
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
}

const FLAGS: Record<OpenMode, string> = {
  read: 'r',
  readWrite: 'r+',
  createExclusive: 'wx',
  createOrTruncate: 'w',
};

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
      // A short writev is legal: drop what was written and go on with the rest.
      let skip = bytesWritten;
      const rest: Uint8Array[] = [];
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

/**
 * The OS file descriptor behind `handle` when it is a file opened by
 * {@link nodeFileSystem}; `null` for any other implementation (simulated or
 * fault-injecting file systems), whose operations must keep going through
 * the handle.
 */
export function nodeFileDescriptor(handle: WalFileHandle): number | null {
  return handle instanceof NodeFileHandle ? handle.fd : null;
}

/** The real file system, through `node:fs/promises`. */
export const nodeFileSystem: WalFileSystem = {
  async open(path, mode) {
    return new NodeFileHandle(path, await fsp.open(path, FLAGS[mode], 0o644));
  },
  async readFile(path) {
    return new Uint8Array(await fsp.readFile(path));
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
