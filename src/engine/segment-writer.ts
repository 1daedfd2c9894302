/**
 * How the flusher makes an epoch's segment durable.
 *
 * `storage` (default): the storage layer's `writeSegmentFile` — create a
 * temporary file, write, fdatasync, close, rename to the segment name, fsync
 * the directory.
 *
 * `precreate`: the very same steps and crash guarantee, except that the
 * temporary file of the *next* segment is created ahead of time, while the
 * current one is being made durable (between its rename and its directory
 * fsync, so the creation rides the same journal commit). The create — and
 * the journal work it drags into the next fdatasync — leaves the critical
 * path. Measured on this machine (bench/raw-floor.ts, interleaved): one
 * 4 KiB segment p50 0.98 ms with `storage`, 0.50 ms with pre-creation, raw
 * 4 KiB append+fdatasync 0.24 ms.
 *
 * Crash reasoning for `precreate`: the pre-created file carries the storage
 * layer's temporary-file infix (`<db>-wal-tmp-`), so listing never returns it
 * and opening the log removes it; the data is fdatasynced before any segment
 * name points at it; the rename is atomic; the directory fsync makes the
 * rename durable before the epoch is acknowledged. A crash at any step
 * leaves either no segment file or the complete one — exactly the storage
 * layer's guarantee.
 */
import { randomBytes } from 'node:crypto';
import * as nodePath from 'node:path';
import { toIoError } from '../storage/errors.js';
import type { WalFileHandle, WalFileSystem } from '../storage/fs.js';
import {
  databaseDirectory,
  databaseName,
  type FsyncPolicy,
  segmentPath,
  TEMP_NAME_INFIX,
  writeSegmentFile,
} from '../storage/segment-files.js';

/** Writes one epoch's encoded segment durably. */
export interface SegmentSink {
  /** Writes `chunks` (header + records) as the segment of `epoch`; returns bytes written. */
  write(epoch: bigint, chunks: readonly Uint8Array[]): Promise<number>;
  /** Releases anything held ahead of time (pre-created files). */
  dispose(): Promise<void>;
}

/** The storage layer's protocol, unchanged. */
export function storageSegmentSink(
  dbPath: string,
  fs: WalFileSystem,
  fsync: FsyncPolicy,
): SegmentSink {
  return {
    write: (epoch, chunks) => writeSegmentFile(dbPath, epoch, chunks, { fsync, fs }),
    dispose: async () => {},
  };
}

interface Prepared {
  path: string;
  handle: WalFileHandle;
}

/** The storage protocol with the next temporary file created ahead of time. */
export class PrecreatingSegmentSink implements SegmentSink {
  private prepared: Promise<Prepared | null> | null = null;
  private disposed = false;

  constructor(
    private readonly dbPath: string,
    private readonly fs: WalFileSystem,
    private readonly fsync: FsyncPolicy,
  ) {}

  async write(epoch: bigint, chunks: readonly Uint8Array[]): Promise<number> {
    const ahead = this.prepared === null ? null : await this.prepared;
    this.prepared = null;
    const { path: temp, handle } = ahead ?? (await this.create());
    let total = 0;
    for (const chunk of chunks) total += chunk.length;
    let step = 'write';
    try {
      await handle.writev(chunks, 0);
      if (this.fsync !== 'off') {
        step = 'datasync';
        await handle.datasync(); // data on stable storage before any name points at it
      }
      // close stays on the critical path: on some file systems (NFS) it is
      // where a deferred write error surfaces. Measured cost ~0.04 ms.
      step = 'close';
      await handle.close();
    } catch (error) {
      if (step !== 'close') await handle.close().catch(() => {});
      await this.fs.unlink(temp).catch(() => {});
      throw toIoError(error, 'cannot write segment file', step, temp);
    }
    const finalPath = segmentPath(this.dbPath, epoch);
    try {
      await this.fs.rename(temp, finalPath); // atomic: no name ever shows a partial segment
    } catch (error) {
      await this.fs.unlink(temp).catch(() => {});
      throw toIoError(error, `cannot rename ${temp} to segment`, 'rename', finalPath);
    }
    // Create the next temporary file now: its creation joins the journal
    // commit of the directory fsync below instead of the next epoch's fdatasync.
    this.prepareNext();
    if (this.fsync !== 'off') {
      const dir = databaseDirectory(this.dbPath);
      try {
        await this.fs.syncDirectory(dir); // the rename survives power loss
      } catch (error) {
        throw toIoError(error, 'cannot sync segment directory', 'fsync', dir);
      }
    }
    return total;
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    const ahead = this.prepared === null ? null : await this.prepared;
    this.prepared = null;
    if (ahead !== null) {
      await ahead.handle.close().catch(() => {});
      await this.fs.unlink(ahead.path).catch(() => {});
    }
  }

  private prepareNext(): void {
    if (this.disposed) return;
    // A failed pre-creation is not an error: the next write creates inline
    // and reports any failure there.
    this.prepared = this.create().catch(() => null);
  }

  private async create(): Promise<Prepared> {
    const name = `${databaseName(this.dbPath)}${TEMP_NAME_INFIX}next-${randomBytes(6).toString('hex')}`;
    const path = nodePath.join(databaseDirectory(this.dbPath), name);
    try {
      return { path, handle: await this.fs.open(path, 'createExclusive') };
    } catch (error) {
      throw toIoError(error, 'cannot create segment file', 'open', path);
    }
  }
}
