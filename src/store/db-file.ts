/**
 * The database file: fixed-size pages, page 1 at offset 0.
 *
 * Only the checkpoint and recovery write it (the log holds everything newer),
 * so its writes need no ordering with commits. Bytes past the end of the file
 * read as zeros: a page inside the database size that was never written is a
 * page of zeros, as it would be after `ftruncate` grew the file.
 */
import type { WalFileHandle, WalFileSystem } from '../storage/fs.js';
import { describeError, StoreError, StoreErrorCode } from './errors.js';

/** Most pages written by one `writev` call during a checkpoint (bounds the iovec count). */
export const writeRunPagesMax = 256;

/** One page to write. */
export interface PageWrite {
  pageNumber: number;
  data: Uint8Array;
}

/** An open database file. */
export class DatabaseFile {
  private constructor(
    readonly path: string,
    readonly pageSize: number,
    private readonly handle: WalFileHandle,
  ) {}

  /**
   * Opens (creating when `create`) the database file. A new file is made
   * durable in its directory by the caller (see `PageStore.open`), together
   * with the store header.
   */
  static async open(
    path: string,
    pageSize: number,
    fs: WalFileSystem,
    create: boolean,
  ): Promise<DatabaseFile> {
    let handle: WalFileHandle;
    try {
      handle = await fs.open(path, 'readWrite');
    } catch (error) {
      if (!create || (error as { code?: unknown }).code !== 'ENOENT') {
        throw new StoreError(StoreErrorCode.io, `cannot open ${path}: ${describeError(error)}`, {
          cause: error,
        });
      }
      try {
        handle = await fs.open(path, 'createExclusive');
        await handle.close();
        handle = await fs.open(path, 'readWrite');
      } catch (inner) {
        throw new StoreError(StoreErrorCode.io, `cannot create ${path}: ${describeError(inner)}`, {
          cause: inner,
        });
      }
    }
    return new DatabaseFile(path, pageSize, handle);
  }

  /** Byte offset of a page. */
  offsetOf(pageNumber: number): number {
    return (pageNumber - 1) * this.pageSize;
  }

  /** Reads page `pageNumber` (zeros past the end of the file). */
  async readPage(pageNumber: number): Promise<Uint8Array> {
    const into = new Uint8Array(this.pageSize);
    const at = this.offsetOf(pageNumber);
    let done = 0;
    while (done < into.length) {
      const n = await this.handle.read(into.subarray(done), at + done, into.length - done);
      if (n <= 0) break; // end of file: the rest stays zero
      done += n;
    }
    return into;
  }

  /**
   * Writes pages (any order; each page once), coalescing runs of consecutive
   * page numbers into one `writev` of at most {@link writeRunPagesMax}.
   * Not durable until {@link DatabaseFile.sync}.
   */
  async writePages(pages: readonly PageWrite[]): Promise<void> {
    const sorted = [...pages].sort((a, b) => a.pageNumber - b.pageNumber);
    let i = 0;
    while (i < sorted.length) {
      const first = sorted[i]!;
      const run = [first.data];
      let next = first.pageNumber + 1;
      i++;
      while (i < sorted.length && sorted[i]!.pageNumber === next && run.length < writeRunPagesMax) {
        run.push(sorted[i]!.data);
        next++;
        i++;
      }
      await this.handle.writev(run, this.offsetOf(first.pageNumber));
    }
  }

  /**
   * Writes raw bytes at a byte offset (a snapshot being installed arrives in
   * chunks that need not be page-aligned). Not durable until {@link DatabaseFile.sync}.
   */
  writeAt(data: Uint8Array, offset: number): Promise<void> {
    return this.handle.write(data, offset);
  }

  /** Size of the file in bytes. */
  size(): Promise<number> {
    return this.handle.size();
  }

  /** Sets the file length to exactly `pages` pages (grows with zeros, or truncates). */
  async setSizePages(pages: number): Promise<void> {
    const bytes = pages * this.pageSize;
    if ((await this.handle.size()) !== bytes) await this.handle.truncate(bytes);
  }

  /** fsync: data, and the length, reach stable storage. */
  sync(): Promise<void> {
    return this.handle.sync();
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}
