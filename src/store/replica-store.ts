/**
 * A read-only replica of a page store database, kept current by applying the
 * primary's verified epochs strictly in order (the follower in
 * `replication/follower.ts` drives it), and readable while it follows.
 *
 * Applying an epoch decodes its segment and adds its committed pages to an
 * in-memory {@link PageIndex}, in one synchronous step: a reader sees an
 * epoch whole or not at all, and {@link ReplicaStore.readPages} reads several
 * pages as of one epoch. {@link ReplicaStore.flush} folds what was applied
 * into the database file, crash-safely:
 *
 * 1. the fold is written as ONE segment file of the last applied epoch
 *    (durable: temp name, fdatasync, rename, directory fsync) — a journal;
 * 2. the pages are written into the database file and the file fsynced;
 * 3. the store header moves past the epoch (durable replace);
 * 4. the journal segment is deleted.
 *
 * A crash anywhere leaves either the old header (and, after step 1, the
 * journal, which opening folds in before serving a read: recovery is the
 * page store's own) or the new one. So the files are always a valid page
 * store database at an epoch boundary: stopping the follower and opening the
 * path with `PageStore.open` promotes the replica (its log continues above
 * the last applied epoch).
 *
 * Visible vs durable: {@link ReplicaStore.appliedEpoch} is what reads see;
 * {@link ReplicaStore.durableEpoch} is what the files hold (where a restarted
 * follower resumes). Epochs between the two are durable in the cluster, and
 * are applied again from the stream after a crash.
 *
 * Files: the page store's (`<db>`, `<db>-pwal-store`, `<db>.lock` — one
 * process holds the replica), plus a journal segment during a flush.
 */

import { WalArgumentError } from '../errors.js';
import { decodeSegment } from '../format/segment.js';
import { type LoggableStats, loggableStats } from '../stats-json.js';
import { fileSize } from '../storage/file-size.js';
import { nodeFileSystem, type WalFileSystem } from '../storage/fs.js';
import { acquireLock, type LockHandle } from '../storage/lockfile.js';
import {
  deleteSegment,
  isNotFound,
  listSegments,
  segmentPath,
  writeSegmentFile,
} from '../storage/segment-files.js';
import { checkPageNumber } from './commit-batch.js';
import { DatabaseFile } from './db-file.js';
import { describeError, StoreError, StoreErrorCode } from './errors.js';
import { readStoreHeader, type StoreHeader, validatePageSize, writeStoreHeader } from './header.js';
import { PageIndex } from './page-index.js';
import { applyReplay, foldFromIndex, forEachCommit, type LoggedCommit } from './replay.js';
import { encodeFoldSegment, firstPageImageBytes } from './replica-segments.js';
import {
  REPLICA_CONSISTENT_WAIT_MS,
  REPLICA_FALLBACK_PAGE_SIZE_BYTES,
  type ReplicaSnapshotImage,
  type ReplicaStoreOptions,
  type ReplicaStoreStats,
} from './replica-store-options.js';
import { finishReseed, imageWriter, writeReseedImage, writeReseedMarker } from './reseed-files.js';
import { openDatabaseFile } from './store-open.js';
import { recoverIntoFile } from './store-recovery.js';

export {
  REPLICA_CONSISTENT_WAIT_MS,
  REPLICA_FALLBACK_PAGE_SIZE_BYTES,
  type ReplicaSnapshotImage,
  type ReplicaStoreOptions,
  type ReplicaStoreStats,
} from './replica-store-options.js';

/** See the module comment. */
export class ReplicaStore implements AsyncDisposable {
  private index: PageIndex;
  private applied: bigint | null;
  private exclusiveChain: Promise<unknown> = Promise.resolve();
  private activeFileReads = 0;
  private readsDrained: Array<() => void> = [];
  private closed = false;
  private closePromise: Promise<void> | null = null;
  /** Reads wait until this epoch is applied (a snapshot's consistent epoch). */
  private readsHeldUntil: bigint | null = null;
  private consistentWaiters: Array<() => void> = [];
  private readonly counters = {
    epochsApplied: 0,
    epochsSkipped: 0,
    commitsApplied: 0,
    flushes: 0,
    pagesFlushed: 0,
    snapshotsInstalled: 0,
    reseeds: 0,
  };

  private constructor(
    /** Path of the database file. */
    readonly path: string,
    private header: StoreHeader | null,
    private file: DatabaseFile | null,
    private readonly lock: LockHandle,
    private readonly fs: WalFileSystem,
    private expectedPageSize: number | null,
  ) {
    this.applied = header === null || header.nextEpoch === 0n ? null : header.nextEpoch - 1n;
    this.index = new PageIndex(header?.dbSizePages ?? 0, this.applied ?? -1n);
  }

  /**
   * Opens (or prepares) the replica at `path`: takes the database lock, and
   * when the database exists folds any journal or restored segment into it
   * first (the page store's recovery), so reads start from a whole epoch.
   * A new replica's files are created once its page size is known.
   * @throws {LockError} `ERR_LOCKED` (a primary or another follower holds it);
   * {@link StoreError} `ERR_STORE_PAGE_SIZE_MISMATCH`, `ERR_STORE_HEADER_CORRUPT`,
   * `ERR_STORE_HEADER_MISSING`, `ERR_STORE_RECOVERY_FAILED`, `ERR_STORE_FILE_TRUNCATED`.
   */
  static async open(path: string, options: ReplicaStoreOptions = {}): Promise<ReplicaStore> {
    if (typeof path !== 'string' || path.length === 0) {
      throw new WalArgumentError('path must be a non-empty string');
    }
    if (options.pageSize !== undefined) validatePageSize(options.pageSize);
    const fs = options.fs ?? nodeFileSystem;
    const lock = await acquireLock(path, { fs, lockTimeoutMs: options.lockTimeoutMs });
    let file: DatabaseFile | null = null;
    try {
      await finishReseed(path, fs);
      const header = await readStoreHeader(path, fs);
      const segments = await listSegments(path, { fs });
      if (header === null && options.pageSize === undefined && segments.length === 0) {
        if (((await fileSize(path, fs)) ?? 0) > 0) {
          throw new StoreError(
            StoreErrorCode.headerMissing,
            `${path} exists but has no store header (${path}-pwal-store): not a page store database`,
          );
        }
        return new ReplicaStore(path, null, null, lock, fs, null);
      }
      const opened = await openDatabaseFile(path, options.pageSize, fs);
      file = opened.file;
      const recovered = await recoverIntoFile(path, opened.file, opened.header, fs, {
        skipCorrupt: false,
        // A flush journal is one segment named after the last epoch it folds:
        // the epochs below it are inside it, not missing.
        allowEpochGaps: true,
      });
      return new ReplicaStore(
        path,
        recovered.header,
        opened.file,
        lock,
        fs,
        recovered.header.pageSize,
      );
    } catch (error) {
      await file?.close().catch(() => undefined);
      await lock.release().catch(() => undefined);
      throw error;
    }
  }

  /** Page size in bytes (`null`: not known yet — nothing applied). */
  get pageSize(): number | null {
    return this.header?.pageSize ?? this.expectedPageSize;
  }

  /** Database size in pages as of the applied epoch. */
  get dbSizePages(): number {
    return this.index.dbSizePages;
  }

  /** The last epoch reads see (`null`: none). */
  appliedEpoch(): bigint | null {
    return this.applied;
  }

  /** The last epoch the database file holds durably (`null`: none). */
  durableEpoch(): bigint | null {
    const next = this.header?.nextEpoch ?? 0n;
    return next === 0n ? null : next - 1n;
  }

  /** True while nothing was ever applied or installed (a snapshot may be installed). */
  get isEmpty(): boolean {
    return this.applied === null && this.index.dbSizePages === 0;
  }

  /**
   * Applies one epoch of the primary's log: its committed pages and size
   * changes become visible at once. Epochs must come in increasing order; an
   * epoch at or below the applied one is ignored (returns false) — after a
   * restart the follower offers the epochs since its durable position again.
   * @throws {StoreError} `ERR_STORE_REPLICA_STATE` when the segment is of
   * another epoch; `ERR_STORE_RECOVERY_FAILED` for an image of another page
   * size or a malformed size record; the format's `SegmentFormatError` for
   * bytes that are not a segment. Nothing is applied when it throws.
   */
  applyEpoch(epoch: bigint, segment: Uint8Array): Promise<boolean> {
    this.ensureOpen();
    return this.exclusive(async () => {
      if (this.applied !== null && epoch <= this.applied) {
        this.counters.epochsSkipped++;
        return false;
      }
      const decoded = decodeSegment(segment, { copyImages: false });
      if (decoded.header.epoch !== epoch) {
        throw new StoreError(
          StoreErrorCode.replicaState,
          `segment of epoch ${decoded.header.epoch} offered as epoch ${epoch}`,
        );
      }
      const learned = this.pageSize ?? firstPageImageBytes(decoded.records);
      if (learned !== null && this.pageSize === null) {
        try {
          validatePageSize(learned);
        } catch {
          throw new StoreError(
            StoreErrorCode.replicaState,
            `epoch ${epoch} holds page images of ${learned} bytes: not a page store's log (a page size is a power of two in 512..=65536); follow it as a log instead`,
          );
        }
      }
      const commits: LoggedCommit[] = [];
      // Validates the whole epoch before any of it becomes visible.
      forEachCommit(
        decoded.records,
        epoch,
        learned ?? 0,
        `${this.path} (replica, epoch ${epoch})`,
        (commit) => commits.push(commit),
      );
      if (learned !== null && this.file === null) await this.create(learned);
      for (const commit of commits) {
        this.index.apply(commit.stamp, commit.pages, {
          setPages: commit.setPages,
          maxPage: commit.maxPage,
        });
      }
      this.applied = epoch;
      this.counters.epochsApplied++;
      this.releaseHold(epoch);
      this.counters.commitsApplied += commits.length;
      return true;
    });
  }

  /**
   * Installs a snapshot (the primary's database file at `image.epoch`) into
   * an EMPTY replica: `fill` writes the image's bytes through the given
   * writer; then the file is sized, fsynced, and the header moved to the
   * snapshot's epoch. A crash before the header leaves an empty replica.
   * @throws {StoreError} `ERR_STORE_REPLICA_STATE` when the replica is not
   * empty or its page size differs; whatever `fill` throws.
   */
  installSnapshot(
    image: ReplicaSnapshotImage,
    fill: (write: (chunk: Uint8Array, offset: number) => Promise<void>) => Promise<void>,
  ): Promise<void> {
    this.ensureOpen();
    return this.exclusive(async () => {
      if (!this.isEmpty || this.durableEpoch() !== null) {
        throw new StoreError(
          StoreErrorCode.replicaState,
          `cannot install a snapshot into ${this.path}: the replica already holds epoch ${this.applied ?? 'none'} (${this.index.dbSizePages} pages)`,
        );
      }
      validatePageSize(image.pageSize);
      const pageSize = this.pageSize;
      if (pageSize !== null && pageSize !== image.pageSize) {
        throw new StoreError(
          StoreErrorCode.replicaState,
          `snapshot of epoch ${image.epoch} has page size ${image.pageSize}, the replica ${this.path} has ${pageSize}`,
        );
      }
      const file = await this.create(image.pageSize);
      const bytes = image.dbSizePages * image.pageSize;
      await file.setSizePages(0);
      await fill(imageWriter(bytes, (chunk, offset) => file.writeAt(chunk, offset)));
      await file.setSizePages(image.dbSizePages);
      await file.sync();
      const header: StoreHeader = {
        pageSize: image.pageSize,
        dbSizePages: image.dbSizePages,
        nextEpoch: image.epoch + 1n,
        checkpointCommitSeq: image.commitSeq,
      };
      await writeStoreHeader(this.path, header, this.fs);
      this.header = header;
      this.index = new PageIndex(image.dbSizePages, image.epoch);
      this.applied = image.epoch;
      this.counters.snapshotsInstalled++;
      const consistent = image.consistentEpoch ?? null;
      if (consistent !== null && consistent > image.epoch) this.holdReadsUntil(consistent);
    });
  }

  /**
   * Replaces the replica's whole content with a snapshot newer than what it
   * holds — for a replica left behind a stream that was trimmed below its
   * position. Crash-safe: the image is written to `<db>-pwal-reseed-image`
   * and fsynced; then a marker (`<db>-pwal-reseed`, the new store header) is
   * made durable, the image renamed over the database file, the header
   * replaced and the marker removed. Opening a replica (not a page store:
   * `PageStore.open` refuses while the marker exists) finishes an
   * interrupted switch, or drops an interrupted download. Reads wait until
   * the snapshot's consistent epoch is applied; they never see a mix.
   * @throws {StoreError} `ERR_STORE_REPLICA_STATE` when the snapshot is not
   * newer than the applied epoch or its page size differs; `ERR_STORE_IO`;
   * whatever `fill` throws (the replica keeps its old content).
   */
  reseed(
    image: ReplicaSnapshotImage,
    fill: (write: (chunk: Uint8Array, offset: number) => Promise<void>) => Promise<void>,
  ): Promise<void> {
    this.ensureOpen();
    return this.exclusive(async () => {
      if (this.applied !== null && image.epoch <= this.applied) {
        throw new StoreError(
          StoreErrorCode.replicaState,
          `cannot re-seed ${this.path} from the snapshot of epoch ${image.epoch}: the replica already holds epoch ${this.applied}`,
        );
      }
      validatePageSize(image.pageSize);
      if (this.pageSize !== null && this.pageSize !== image.pageSize) {
        throw new StoreError(
          StoreErrorCode.replicaState,
          `snapshot of epoch ${image.epoch} has page size ${image.pageSize}, the replica ${this.path} has ${this.pageSize}`,
        );
      }
      this.holdReadsUntil(image.epoch);
      if (image.consistentEpoch != null) this.holdReadsUntil(image.consistentEpoch);
      await this.drainReads();
      const bytes = image.dbSizePages * image.pageSize;
      await writeReseedImage(this.path, this.fs, bytes, fill, () => this.releaseHold(this.applied));
      const header: StoreHeader = {
        pageSize: image.pageSize,
        dbSizePages: image.dbSizePages,
        nextEpoch: image.epoch + 1n,
        checkpointCommitSeq: image.commitSeq,
      };
      await writeReseedMarker(this.path, this.fs, header);
      await this.file?.close().catch(() => undefined);
      this.file = null;
      await finishReseed(this.path, this.fs);
      this.file = await DatabaseFile.open(this.path, image.pageSize, this.fs, false);
      this.header = header;
      this.expectedPageSize = image.pageSize;
      this.index = new PageIndex(image.dbSizePages, image.epoch);
      this.applied = image.epoch;
      this.counters.reseeds++;
      this.releaseHold(image.epoch);
    });
  }

  /** Releases a read hold that `epoch` satisfies. */
  private releaseHold(epoch: bigint | null): void {
    const until = this.readsHeldUntil;
    if (until === null || epoch === null || epoch < until) return;
    this.readsHeldUntil = null;
    for (const resolve of this.consistentWaiters.splice(0)) resolve();
  }

  /**
   * Holds reads until `epoch` is applied: the files hold a snapshot whose
   * pages may be newer than its epoch (see {@link ReplicaSnapshotImage}).
   * The follower calls this after a restart that finds such a snapshot not
   * yet caught up. No-op when `epoch` is already applied.
   */
  holdReadsUntil(epoch: bigint): void {
    if (this.applied !== null && this.applied >= epoch) return;
    if (this.readsHeldUntil === null || epoch > this.readsHeldUntil) this.readsHeldUntil = epoch;
  }

  /** The epoch reads wait for, if any (see {@link ReplicaStore.holdReadsUntil}). */
  get readsWaitFor(): bigint | null {
    return this.readsHeldUntil;
  }

  private async waitConsistent(): Promise<void> {
    const until = this.readsHeldUntil;
    if (until === null) return;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        new Promise<void>((resolve) => this.consistentWaiters.push(resolve)),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new StoreError(
                  StoreErrorCode.replicaState,
                  `replica ${this.path} has not reached epoch ${until} (the snapshot's consistent epoch) within ${REPLICA_CONSISTENT_WAIT_MS} ms; it is at ${this.applied ?? 'none'}`,
                ),
              ),
            REPLICA_CONSISTENT_WAIT_MS,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The latest image of a page as of the applied epoch; zeros for a page
   * inside the database that was never written.
   * @throws {StoreError} `ERR_STORE_PAGE_OUT_OF_RANGE` above the size;
   * `ERR_INVALID_ARGUMENT` for a bad page number; `ERR_STORE_CLOSED`.
   */
  async read(pageNumber: number): Promise<Uint8Array> {
    return (await this.readPages([pageNumber])).pages[0]!;
  }

  /**
   * Reads several pages as of ONE applied epoch (returned with them), even
   * while epochs keep being applied and flushed.
   */
  async readPages(
    pageNumbers: readonly number[],
  ): Promise<{ epoch: bigint | null; pages: Uint8Array[] }> {
    this.ensureOpen();
    for (const pageNumber of pageNumbers) checkPageNumber(pageNumber);
    if (this.readsHeldUntil !== null) await this.waitConsistent();
    this.ensureOpen();
    // Everything below up to the first await runs in one turn: one epoch.
    const epoch = this.applied;
    const size = this.index.dbSizePages;
    const pageSize = this.pageSize ?? REPLICA_FALLBACK_PAGE_SIZE_BYTES;
    const out: Array<Uint8Array | null> = [];
    const fromFile: number[] = [];
    for (const pageNumber of pageNumbers) {
      if (pageNumber > size) {
        throw new StoreError(
          StoreErrorCode.pageOutOfRange,
          `page ${pageNumber} is past the end of replica ${this.path} (${size} pages at epoch ${epoch ?? 'none'})`,
        );
      }
      const found = this.index.lookup(pageNumber);
      if (found.kind === 'page') out.push(found.data.slice());
      else if (found.kind === 'zeros' || this.file === null) out.push(new Uint8Array(pageSize));
      else {
        out.push(null);
        fromFile.push(out.length - 1);
      }
    }
    if (fromFile.length > 0) {
      // A flush waits for these reads before it writes the file, so a page
      // looked up as "in the file" is read as of this epoch.
      const file = this.file!;
      this.activeFileReads++;
      try {
        const read = await Promise.all(fromFile.map((at) => file.readPage(pageNumbers[at]!))).catch(
          (error: unknown) => {
            throw new StoreError(
              StoreErrorCode.io,
              `cannot read replica ${this.path}: ${describeError(error)}`,
              { cause: error },
            );
          },
        );
        fromFile.forEach((at, i) => {
          out[at] = read[i]!;
        });
      } finally {
        this.activeFileReads--;
        if (this.activeFileReads === 0) {
          for (const resolve of this.readsDrained.splice(0)) resolve();
        }
      }
    }
    return { epoch, pages: out as Uint8Array[] };
  }

  /**
   * Folds every applied epoch into the database file durably (journal
   * segment, file, fsync, header; see the module comment).
   * @returns the durable epoch afterwards.
   * @throws {StoreError} `ERR_STORE_IO` when a write or sync fails (the replica
   * stays readable; the epochs are applied again after a restart).
   */
  flush(): Promise<bigint | null> {
    if (this.closed) return Promise.reject(closedError(this.path));
    return this.exclusive(() => this.flushNow());
  }

  private async flushNow(): Promise<bigint | null> {
    const through = this.applied;
    const durable = this.durableEpoch();
    if (through === null || (durable !== null && through <= durable)) return durable;
    try {
      const file = this.file ?? (await this.create(REPLICA_FALLBACK_PAGE_SIZE_BYTES));
      const header = this.header!;
      await this.drainReads();
      const fold = foldFromIndex(this.index, through);
      const { pages, sizePages, minSizePages, lastStamp } = fold;
      const changes =
        pages.size > 0 || minSizePages < header.dbSizePages || sizePages !== header.dbSizePages;
      if (changes) {
        const journal = encodeFoldSegment(through, {
          pages,
          sizePages,
          minSizePages,
          fromSizePages: header.dbSizePages,
          seq: lastStamp?.commitSeq ?? header.checkpointCommitSeq,
        });
        await writeSegmentFile(this.path, through, [journal], { fsync: 'full', fs: this.fs });
        await applyReplay(file, fold);
      }
      const next: StoreHeader = {
        pageSize: header.pageSize,
        dbSizePages: sizePages,
        nextEpoch: through + 1n,
        checkpointCommitSeq: lastStamp?.commitSeq ?? header.checkpointCommitSeq,
      };
      await writeStoreHeader(this.path, next, this.fs);
      this.header = next;
      this.index.pruneThrough(through, sizePages);
      this.counters.flushes++;
      this.counters.pagesFlushed += pages.size;
      if (changes) {
        // Below the header now: if the unlink is lost in a crash, opening
        // deletes it again without folding it.
        await deleteSegment(segmentPath(this.path, through), { fs: this.fs }).catch(
          (error: unknown) => {
            if (!isNotFound(error)) throw error;
          },
        );
      }
      return through;
    } catch (error) {
      if (error instanceof StoreError) throw error;
      throw new StoreError(
        StoreErrorCode.io,
        `cannot flush replica ${this.path}: ${describeError(error)}`,
        { cause: error },
      );
    }
  }

  /** A snapshot of the counters. */
  stats(): LoggableStats<ReplicaStoreStats> {
    return loggableStats({
      pageSize: this.pageSize,
      dbSizePages: this.index.dbSizePages,
      appliedEpoch: this.applied,
      durableEpoch: this.durableEpoch(),
      ...this.counters,
      pendingPages: this.index.pageCount,
      pendingBytes: this.index.byteCount,
    });
  }

  /**
   * Flushes (unless `flush: false`), closes the files and releases the lock.
   * Idempotent.
   */
  close(options: { flush?: boolean } = {}): Promise<void> {
    this.closePromise ??= (async () => {
      try {
        if (options.flush !== false) await this.flush();
      } finally {
        this.closed = true;
        await this.exclusiveChain.catch(() => undefined);
        await this.file?.close().catch(() => undefined);
        await this.lock.release();
      }
    })();
    return this.closePromise;
  }

  /** Same as `close()`, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private ensureOpen(): void {
    if (this.closed || this.closePromise !== null) throw closedError(this.path);
  }

  /** Runs `fn` after every earlier apply, install and flush (one at a time). */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.exclusiveChain.then(fn, fn);
    this.exclusiveChain = run.catch(() => undefined);
    return run;
  }

  private drainReads(): Promise<void> {
    if (this.activeFileReads === 0) return Promise.resolve();
    return new Promise((resolve) => this.readsDrained.push(resolve));
  }

  /** Creates the database file and header once the page size is known. */
  private async create(pageSize: number): Promise<DatabaseFile> {
    if (this.file !== null) return this.file;
    const opened = await openDatabaseFile(this.path, pageSize, this.fs);
    this.file = opened.file;
    this.header = opened.header;
    this.expectedPageSize = pageSize;
    return opened.file;
  }
}

function closedError(path: string): StoreError {
  return new StoreError(StoreErrorCode.closed, `replica ${path} is closed`);
}
