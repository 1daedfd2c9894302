/**
 * The `pool` segment sink: segment files a checkpoint no longer needs are
 * taken back ({@link PoolSegmentSink.recycle}) and later epochs are written
 * IN PLACE into them, so the fdatasync that acknowledges such an epoch
 * changes no allocation and no size: it writes the data alone (no journal
 * commit on a journalled ext4, no inode write on one without a journal) on
 * the critical path. The idea of SQLite's WAL reset and RocksDB's recycled log files
 * (`recycle_log_file_num`), for one-file-per-epoch segments. Until files come
 * back (and whenever too few do), new empty files are used, exactly as the
 * early-ack sink uses its pre-created files.
 *
 * ## The pool
 *
 * At most {@link PoolSegmentSink.poolSize} files
 * `<db>-wal-tmp-pool-<16 hex floor>-<12 hex>` whose names are durable and
 * whose bytes are durable: none (new, empty files, created in the
 * background) or an older segment (a file recycled after a checkpoint, see
 * {@link PoolSegmentSink.recycle}). The floor in the name is an epoch below
 * which nothing will ever be written into the file again: any segment below
 * it that recovery finds there is stale (docs/durability.md).
 *
 * ## One epoch
 *
 * 1. take a ready file (preferably one at least as long as the segment);
 * 2. write header + records at offset 0 and fdatasync — one call over the
 *    file-system seam (`writeAndDatasync`, or the I/O thread's executor). The epoch is now
 *    ACKNOWLEDGED: its bytes are durable under a durable name, and recovery
 *    adopts the segment at the start of the file (every record CRC-checked
 *    and of the header's epoch; the stale bytes after it ignored);
 * 3. in the background, batched and strictly in epoch order, PUBLISH it:
 *    cut the file to the segment's exact length and fdatasync (so a segment
 *    name never points at stale bytes), close, rename to
 *    `<db>-wal-seg-<epoch>`; create replacement pool files; ONE
 *    directory fsync covers the renames and the creations. Batches start
 *    as in the early-acknowledgement sink (both use one
 *    {@link PublicationQueue}): after `EARLY_ACK_PUBLISH_IDLE_TURNS` idle
 *    event-loop turns, at `earlyAckPublishBatchMax` queued epochs, when
 *    the pool runs low, or on `publishNow`/`dispose`.
 *
 * Why cut at publication instead of keeping the stale tail (measured, see
 * docs/benchmarks.md "Reused segment files"): published segments stay
 * exactly the format of docs/format.md for every reader, replication and
 * `pwal` tool; the cut's fdatasync is off the critical path.
 *
 * Crash reasoning: before the fdatasync of step 2 returns, nothing is
 * acknowledged, and the file holds at worst a torn mix of the new segment and
 * its older content; the new header cannot front a whole segment unless
 * every record carries its epoch and passes its CRC, and the older content
 * is below the file's floor, so recovery never adopts a mix. Epoch E+1's
 * write starts only after E's fdatasync returned (E durable; the flusher
 * may start it before E's commits are told). Version-3 (certified) segments are
 * acknowledged only once published (recovery never adopts them); version 1
 * never uses this sink (no record CRCs).
 *
 * Failure: a failed write or fdatasync unlinks the file and fails the log
 * (nothing acknowledged). A failed publication step rejects `published`
 * for that epoch and every later one; acknowledged epochs stay in their pool
 * files for recovery to adopt.
 */
import { randomBytes } from 'node:crypto';
import * as nodePath from 'node:path';
import { WalArgumentError } from '../errors.js';
import { toIoError } from '../storage/errors.js';
import type { WalFileHandle, WalFileSystem } from '../storage/fs.js';
import {
  databaseDirectory,
  type FsyncPolicy,
  type SegmentFileEntry,
  segmentPath,
  tempNameNonceBytes,
} from '../storage/segment-files.js';
import { poolFileName } from '../storage/temp-names.js';
import { type DurableWriteExecutor, InlineWriteExecutor } from './io-executor.js';
import { type StagedEpoch, StagedSegmentSink } from './staged-sink.js';

/** Default number of pool files. */
export const segmentPoolSizeDefault = 64;
/** Largest pool accepted (files kept open and durable ahead of time). */
export const segmentPoolSizeMax = 256;
/**
 * Ready (and coming) pool files at or below this share of the pool start a
 * refill, early enough that writes rarely find the pool empty.
 */
const poolLowWaterFraction = 0.5;
/**
 * Files a write creates inline when it finds none ready and none coming: one
 * for itself and one for the next write, under one directory fsync, so the
 * write that pays for it stays short.
 */
const poolFilesInlineMax = 2;

/** Validates the pool size option. @throws {WalArgumentError} */
export function checkSegmentPoolSize(value: unknown): number {
  if (
    typeof value !== 'number' ||
    !Number.isInteger(value) ||
    value < 1 ||
    value > segmentPoolSizeMax
  ) {
    throw new WalArgumentError(
      `segmentPoolSize must be an integer in 1..=${segmentPoolSizeMax}, got ${String(value)}`,
    );
  }
  return value;
}

/** A pool file: durable name, durable content, open for writing. */
interface PoolFile {
  path: string;
  handle: WalFileHandle;
  /** Its length (durable). */
  length: number;
}

/** An acknowledged epoch waiting for its publication. */
type Acknowledged = StagedEpoch<PoolFile>;

/** Figures of the pool, for `stats()`. */
export interface SegmentPoolStats {
  /** The configured bound. */
  size: number;
  /** Files ready now. */
  ready: number;
  /** Epochs written into a ready pool file. */
  reused: number;
  /** Epochs that found no ready file and created one inline. */
  createdInline: number;
  /** Segment files taken back after a checkpoint. */
  recycled: number;
  /** New, empty pool files created. */
  created: number;
}

/** Construction options of {@link PoolSegmentSink}. */
export interface PoolSinkOptions {
  /** Most pool files (1 ..= {@link segmentPoolSizeMax}). */
  poolSize: number;
  /** The first epoch the log will write (floor of the first pool files' names). */
  startEpoch: bigint;
  /**
   * Create the whole pool at once (default true). `false`: the pool starts
   * empty and is filled by {@link PoolSegmentSink.recycle} or, when it runs
   * low, by publication.
   */
  prefill?: boolean;
  /**
   * Where the critical-path write + fdatasync run (default: through the
   * file handle, inline). The log passes its executor: the I/O thread for the
   * real file system.
   */
  executor?: DurableWriteExecutor;
}

/** See the file comment. */
export class PoolSegmentSink extends StagedSegmentSink<PoolFile> {
  protected readonly writeStep = 'writev+fdatasync';
  /** Nothing below this epoch is ever written again (floor of new pool file names). */
  private floor: bigint;
  /** A checkpoint has offered folded segments back (see publishBatch's refill). */
  private recycling = false;
  private readonly counters = { reused: 0, createdInline: 0, recycled: 0, created: 0 };

  /** The bound on pool files. */
  readonly poolSize: number;
  /** At or below this many ready (or coming) files, publication refills the pool. */
  private readonly lowWater: number;

  constructor(
    private readonly dbPath: string,
    fs: WalFileSystem,
    fsync: FsyncPolicy,
    options: PoolSinkOptions,
  ) {
    super(fs, fsync, options.executor ?? new InlineWriteExecutor());
    this.poolSize = checkSegmentPoolSize(options.poolSize);
    this.lowWater = Math.max(1, Math.floor(this.poolSize * poolLowWaterFraction));
    this.floor = options.startEpoch;
    // Fill the pool at once, off the first epoch's path; a failure here
    // fails the first write that needs a file.
    if (options.prefill ?? true) void this.startCreation(this.poolSize, false).catch(() => {});
  }

  /** The pool's figures. */
  poolStats(): SegmentPoolStats {
    return { size: this.poolSize, ready: this.ready.length, ...this.counters };
  }

  /**
   * Takes folded segment files back into the pool instead of unlinking them
   * (a page store's checkpoint): each is renamed to a pool name whose floor
   * is `floor` (every epoch below it is folded: the file's old segment is
   * stale from now on), up to the pool's bound; the rest are unlinked. One
   * directory fsync covers all of it. @returns files taken or unlinked.
   * @throws {WalIoError}
   */
  async recycle(entries: readonly SegmentFileEntry[], floor: bigint): Promise<number> {
    if (entries.length === 0) return 0;
    for (const entry of entries) {
      if (entry.epoch >= floor) {
        throw new WalArgumentError(`segment ${entry.epoch} is not below the floor ${floor}`);
      }
    }
    if (floor > this.floor) this.floor = floor;
    this.recycling = true;
    const room = this.disposed || this.failure !== null ? 0 : Math.min(this.room(), entries.length);
    // Counted as coming, so publications do not create files for the same room.
    this.creatingCount += room;
    const taken: PoolFile[] = [];
    const run = async (): Promise<void> => {
      for (const entry of entries) {
        if (taken.length < room) {
          const path = this.newPoolPath(floor);
          try {
            await this.fs.rename(entry.path, path); // atomic: old segment name or pool name
          } catch (error) {
            throw toIoError(error, 'cannot recycle segment file', 'rename', entry.path);
          }
          let handle: WalFileHandle;
          try {
            handle = await this.fs.open(path, 'readWrite');
          } catch (error) {
            throw toIoError(error, 'cannot open pool file', 'open', path);
          }
          taken.push({ path, handle, length: await handle.size() });
        } else {
          try {
            await this.fs.unlink(entry.path);
          } catch (error) {
            throw toIoError(error, 'cannot delete segment file', 'unlink', entry.path);
          }
        }
      }
      // The renames and unlinks are durable before any recycled file is written into.
      if (this.fsync !== 'off') await this.syncDirectory();
    };
    const running = run();
    const settled = running.catch(() => {});
    this.creating.add(settled);
    try {
      await running;
    } catch (error) {
      for (const file of taken) await file.handle.close().catch(() => {});
      throw error;
    } finally {
      this.creatingCount -= room;
      this.creating.delete(settled);
    }
    this.counters.recycled += taken.length;
    if (this.disposed) {
      for (const file of taken) {
        await file.handle.close().catch(() => {});
        await this.fs.unlink(file.path).catch(() => {});
      }
    } else {
      this.ready.push(...taken);
    }
    return entries.length;
  }

  /**
   * Files the bound still allows: ready ones, ones being created or
   * recycled, and ones holding an acknowledged epoch not yet published all
   * count, so a publication that lags makes writes wait instead of growing
   * the directory.
   */
  private room(): number {
    const held =
      this.ready.length +
      this.creatingCount +
      this.publication.waiting +
      this.publication.epochsInFlight;
    return Math.max(0, this.poolSize - held);
  }

  /**
   * A ready file for `epoch`'s segment of `bytes` bytes, if any (none after
   * a failure: {@link take} throws it); new pool files are named above
   * `epoch` from now on.
   */
  protected override takeNow(epoch: bigint, bytes: number): PoolFile | null {
    const file = this.failure === null ? this.pickReady(bytes) : null;
    if (file !== null) this.noteTaken(epoch);
    return file;
  }

  protected async take(epoch: bigint, bytes: number): Promise<PoolFile> {
    const file = await this.takeFile(bytes);
    this.noteTaken(epoch);
    return file;
  }

  /** `epoch`'s segment took a file: raise the floor. */
  private noteTaken(epoch: bigint): void {
    if (epoch + 1n > this.floor) this.floor = epoch + 1n;
  }

  /** Takes the shortest ready file at least `bytes` long, else the longest; null when none is ready. */
  private pickReady(bytes: number): PoolFile | null {
    if (this.ready.length === 0) return null;
    let best = 0;
    for (let i = 1; i < this.ready.length; i++) {
      const fits = this.ready[i]!.length >= bytes;
      const bestFits = this.ready[best]!.length >= bytes;
      if (
        fits
          ? !bestFits || this.ready[i]!.length < this.ready[best]!.length
          : !bestFits && this.ready[i]!.length > this.ready[best]!.length
      ) {
        best = i;
      }
    }
    this.counters.reused++;
    return this.ready.splice(best, 1)[0]!;
  }

  /** The file now holds `bytes` durable bytes: its written length grows to cover them. */
  protected override noteWritten(file: PoolFile, bytes: number): void {
    if (bytes > file.length) file.length = bytes;
  }

  /** A ready file, preferably one at least `bytes` long; creates one inline when none is ready or coming. */
  private async takeFile(bytes: number): Promise<PoolFile> {
    for (;;) {
      if (this.failure !== null) throw this.failure;
      const ready = this.pickReady(bytes);
      if (ready !== null) return ready;
      // Publishing the queue refills the pool; create inline only when no
      // publication or creation is coming. This bounds the acknowledged,
      // unpublished epochs (each holds a pool file) by the pool size.
      this.publishNow();
      if (this.creatingCount === 0 && this.publication.batchesInFlight === 0) {
        this.counters.createdInline++;
        void this.startCreation(Math.min(this.poolSize, poolFilesInlineMax), false).catch(() => {});
      }
      // Wait for a creation, or a publication (which refills), to finish.
      const coming: Promise<void>[] = [...this.creating];
      if (this.publication.batchesInFlight > 0) coming.push(this.publication.settled);
      await Promise.race(coming);
    }
  }

  protected schedulePublication(): void {
    this.publication.schedule(
      this.disposed ||
        this.failure !== null ||
        this.ready.length + this.creatingCount <= this.lowWater,
    );
  }

  /**
   * Publishes `batch` in epoch order: cut each file to its segment (and
   * fdatasync the cut), close, rename; create the replacement pool files;
   * ONE directory fsync; then resolve each `published` in order.
   */
  protected async publishBatch(batch: readonly Acknowledged[]): Promise<void> {
    if (this.publishFailure !== null) {
      for (const item of batch) item.published.reject(this.publishFailure);
      return;
    }
    let renamed = 0;
    let failure: Error | null = null;
    for (const { epoch, file, bytes } of batch) {
      const finalPath = segmentPath(this.dbPath, epoch);
      let step = 'ftruncate';
      try {
        if (file.length > bytes) {
          // The name must never point at stale bytes: the cut is durable first.
          await file.handle.truncate(bytes);
          if (this.fsync !== 'off') {
            step = 'fdatasync';
            await file.handle.datasync();
            this.syncs++;
          }
          file.length = bytes;
        }
        step = 'close';
        await file.handle.close();
        step = 'rename';
        await this.fs.rename(file.path, finalPath);
      } catch (error) {
        failure = toIoError(error, `cannot publish segment ${finalPath}`, step, file.path);
        this.failure ??= failure;
        this.publishFailure ??= failure;
        break;
      }
      renamed++;
    }
    // Refill only when low. Until a checkpoint first offers files back,
    // refill the whole pool in one go; from then on only just above the
    // low-water mark, leaving the rest of the bound to recycled files (no
    // new file, no unlink).
    const have = this.ready.length + this.creatingCount;
    const target = this.recycling ? this.lowWater + 1 : this.poolSize;
    // This batch's renamed files are segments now, no longer pool files.
    const room = Math.min(this.room() + renamed, this.poolSize);
    const wanted =
      this.disposed || failure !== null || have > this.lowWater
        ? 0
        : Math.max(0, Math.min(target - have, room));
    try {
      if (renamed > 0 || wanted > 0) await this.startCreation(wanted, true);
    } catch (error) {
      const cause = error instanceof Error ? error : new Error(String(error));
      this.publishFailure ??= cause;
      for (const item of batch) item.published.reject(cause);
      return;
    }
    for (let i = 0; i < batch.length; i++) {
      if (i < renamed) batch[i]!.published.resolve();
      else batch[i]!.published.reject(failure!);
    }
  }

  /**
   * Creates `count` empty pool files side by side, then fsyncs the
   * directory once (also when `count` is 0 and `always`: the fsync then
   * covers renames). The files join `ready` only after that fsync.
   */
  private startCreation(count: number, always: boolean): Promise<void> {
    if (count === 0 && !always) return Promise.resolve();
    this.creatingCount += count;
    const run = (async () => {
      const created: PoolFile[] = [];
      try {
        // Created side by side (libuv's pool threads); the one directory fsync below covers them all.
        const opened = await Promise.allSettled(
          Array.from({ length: count }, () => this.createEmpty()),
        );
        for (const outcome of opened) {
          if (outcome.status === 'fulfilled') created.push(outcome.value);
        }
        const refused = opened.find((outcome) => outcome.status === 'rejected');
        if (refused !== undefined) throw refused.reason;
        if (this.fsync !== 'off') await this.syncDirectory();
      } catch (error) {
        // Empty files: removed at the next open if these unlinks do not happen.
        for (const file of created) {
          await file.handle.close().catch(() => {});
          await this.fs.unlink(file.path).catch(() => {});
        }
        const failure = error instanceof Error ? error : new Error(String(error));
        this.failure ??= failure;
        throw failure;
      } finally {
        this.creatingCount -= count;
      }
      this.counters.created += created.length;
      if (this.disposed) {
        for (const file of created) await file.handle.close().catch(() => {});
        for (const file of created) await this.fs.unlink(file.path).catch(() => {});
        return;
      }
      this.ready.push(...created);
    })();
    const settled = run.catch(() => {});
    this.creating.add(settled);
    void settled.finally(() => this.creating.delete(settled));
    return run;
  }

  /**
   * A new, empty pool file. It is not filled: writing an epoch into it
   * allocates its blocks, as the early-ack sink's files do, and only a
   * recycled file is written over in place. Filling new files with zeros
   * first made every epoch's bytes cross the disk twice and measured slower
   * (docs/benchmarks.md, "Reused segment files").
   */
  private async createEmpty(): Promise<PoolFile> {
    const path = this.newPoolPath(this.floor);
    try {
      return { path, handle: await this.fs.open(path, 'createExclusive'), length: 0 };
    } catch (error) {
      throw toIoError(error, 'cannot create pool file', 'open', path);
    }
  }

  private async syncDirectory(): Promise<void> {
    const dir = databaseDirectory(this.dbPath);
    try {
      await this.fs.syncDirectory(dir);
      this.syncs++;
    } catch (error) {
      throw toIoError(error, 'cannot sync segment directory', 'fsync', dir);
    }
  }

  private newPoolPath(floor: bigint): string {
    return nodePath.join(
      databaseDirectory(this.dbPath),
      poolFileName(this.dbPath, floor, randomBytes(tempNameNonceBytes).toString('hex')),
    );
  }
}
