/**
 * How the flusher makes an epoch's segment durable.
 *
 * `earlyAck` (default for format version 2): see {@link EarlyAckSegmentSink}.
 *
 * `pool`: epochs written into new files or in place into recycled ones; see
 * `pool-sink.ts` (`PoolSegmentSink`).
 *
 * `storage` (default for format version 1): the storage layer's `writeSegmentFile` — create a
 * temporary file, write, fdatasync, close, rename to the segment name, fsync
 * the directory.
 *
 * `precreate`: the very same steps and crash guarantee, except that the
 * temporary file of the *next* segment is created ahead of time, while the
 * current one is being made durable (between its rename and its directory
 * fsync, so that fsync makes the creation durable too). The create — and
 * the metadata writes it drags into the next fdatasync — leave the critical
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
import { WalArgumentError } from '../errors.js';
import { toIoError } from '../storage/errors.js';
import type { WalFileHandle, WalFileSystem } from '../storage/fs.js';
import {
  databaseDirectory,
  databaseName,
  deleteSegment,
  type FsyncPolicy,
  type SegmentFileEntry,
  segmentPath,
  syncSegmentDirectory,
  TEMP_NAME_INFIX,
  tempNameNonceBytes,
  writeSegmentFile,
} from '../storage/segment-files.js';
import { EARLY_ACK_TEMP_TAG } from '../storage/temp-names.js';
import {
  type DurableWriteExecutor,
  InlineWriteExecutor,
  unwrapWriteFailure,
} from './io-executor.js';
import { PoolSegmentSink, type PoolSinkOptions } from './pool-sink.js';
import { EARLY_ACK_PUBLISH_IDLE_TURNS, earlyAckPublishBatchMax } from './publication-queue.js';
import {
  descriptorFiles,
  type FileMove,
  type FileWorkOutcome,
  runFileWork,
} from './segment-file-work.js';
import { type StagedEpoch, StagedSegmentSink } from './staged-sink.js';

/** What a sink's write reports once the epoch may be acknowledged. */
export interface SegmentWrite {
  /** Bytes written (header included). */
  bytes: number;
  /**
   * `null`: the segment is already under its name (published). Otherwise it
   * resolves once the segment is under its name and that name is durable
   * (publications settle in epoch order); a rejection means the log failed
   * after the epoch was acknowledged (its data stays adoptable).
   */
  published: Promise<void> | null;
}

/** Writes one epoch's encoded segment durably. */
export interface SegmentSink {
  /** Writes `chunks` (header + records) as the segment of `epoch`; resolves when it may be acknowledged. */
  write(epoch: bigint, chunks: readonly Uint8Array[]): Promise<SegmentWrite>;
  /**
   * True when `write` may be called now for the next epoch although the
   * previous write has not resolved: every write so far is handed to the
   * sink's {@link DurableWriteExecutor}, which runs them in call order and
   * starts none after a failed one, so the next epoch's bytes reach the file
   * only after the previous fdatasync returned. Sinks without it take one
   * write at a time.
   */
  canQueueWrite?(): boolean;
  /**
   * Starts publishing every acknowledged epoch now instead of after the
   * sink's batching delay (sinks that publish before `write` resolves omit it).
   */
  publishNow?(): void;
  /** Publishes what is acknowledged, waits for it, then releases anything held ahead of time (pre-created files). */
  dispose(): Promise<void>;
  /** fdatasync + fsync (file and directory) calls issued so far: what `stats().fsyncs` reports. */
  syncCalls(): number;
}

/** Which sink the engine uses; see {@link ParallelWalConfig.segmentSink} in `wal-config.ts`. */
export type SegmentSinkKind = 'pool' | 'earlyAck' | 'precreate' | 'storage';

/** Syncs `writeSegmentFile` issues per segment: one fdatasync of the file, one fsync of its directory. */
const storageSyncsPerSegment = 2;

/** The storage layer's protocol, unchanged. */
export function storageSegmentSink(
  dbPath: string,
  fs: WalFileSystem,
  fsync: FsyncPolicy,
): SegmentSink {
  let syncs = 0;
  return {
    write: async (epoch, chunks) => {
      const bytes = await writeSegmentFile(dbPath, epoch, chunks, { fsync, fs });
      if (fsync !== 'off') syncs += storageSyncsPerSegment;
      return { bytes, published: null };
    },
    dispose: async () => {},
    syncCalls: () => syncs,
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
  private syncs = 0;

  syncCalls(): number {
    return this.syncs;
  }

  constructor(
    private readonly dbPath: string,
    private readonly fs: WalFileSystem,
    private readonly fsync: FsyncPolicy,
    private readonly executor: DurableWriteExecutor = new InlineWriteExecutor(),
  ) {}

  async write(epoch: bigint, chunks: readonly Uint8Array[]): Promise<SegmentWrite> {
    const ahead = this.prepared === null ? null : await this.prepared;
    this.prepared = null;
    const { path: temp, handle } = ahead ?? (await this.create());
    let total = 0;
    for (const chunk of chunks) total += chunk.length;
    let step = 'write';
    try {
      // Data on stable storage before any name points at it.
      await this.executor.writeAt(handle, chunks, 0, this.fsync !== 'off');
      if (this.fsync !== 'off') this.syncs++;
      // close stays on the critical path: on some file systems (NFS) it is
      // where a deferred write error surfaces. Measured cost ~0.04 ms.
      step = 'close';
      await handle.close();
    } catch (raw) {
      if (step !== 'close') await handle.close().catch(() => {});
      await this.fs.unlink(temp).catch(() => {});
      const { error, failedStep } = unwrapWriteFailure(raw, step);
      throw toIoError(error, 'cannot write segment file', failedStep, temp);
    }
    const finalPath = segmentPath(this.dbPath, epoch);
    try {
      await this.fs.rename(temp, finalPath); // atomic: no name ever shows a partial segment
    } catch (error) {
      await this.fs.unlink(temp).catch(() => {});
      throw toIoError(error, `cannot rename ${temp} to segment`, 'rename', finalPath);
    }
    // Create the next temporary file now: the directory fsync below makes its
    // entry durable, instead of the next epoch's fdatasync.
    this.prepareNext();
    if (this.fsync !== 'off') {
      const dir = databaseDirectory(this.dbPath);
      try {
        await this.fs.syncDirectory(dir); // the rename survives power loss
        this.syncs++;
      } catch (error) {
        throw toIoError(error, 'cannot sync segment directory', 'fsync', dir);
      }
    }
    return { bytes: total, published: null };
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
    const name = `${databaseName(this.dbPath)}${TEMP_NAME_INFIX}next-${randomBytes(tempNameNonceBytes).toString('hex')}`;
    const path = nodePath.join(databaseDirectory(this.dbPath), name);
    try {
      return { path, handle: await this.fs.open(path, 'createExclusive') };
    } catch (error) {
      throw toIoError(error, 'cannot create segment file', 'open', path);
    }
  }
}

/** Pre-created files the early-ack sink keeps ready (directory entry durable) ahead of the writes. */
export const EARLY_ACK_FILES_AHEAD = 32;

/** Files created inline (one directory fsync) when a write finds none ready and none coming. */
const EARLY_ACK_FILES_INLINE = 4;

/** Ready files at or below which a write starts publishing the queue (which refills them). */
const EARLY_ACK_READY_LOW = 8;

export { headerVersion } from './staged-sink.js';
export { EARLY_ACK_PUBLISH_IDLE_TURNS, earlyAckPublishBatchMax };

/** An acknowledged epoch waiting for its publication. */
type Acknowledged = StagedEpoch<Prepared>;

/**
 * "Acknowledge at data durability; publish in the background, in batches."
 *
 * Temporary files are created ahead of time (a pool of
 * {@link EARLY_ACK_FILES_AHEAD}) and their directory entries made durable
 * (one directory fsync) BEFORE any of them is used. Writing epoch E: writev
 * header + records at offset 0 of such an empty file, fdatasync (which also
 * makes the new file size durable). E's bytes are now durable and findable
 * under a durable name, so `write` resolves: E may be acknowledged.
 *
 * Publication is batched so that its directory fsync (and the metadata
 * writes it forces) stays off the path of the next epochs' fdatasyncs: acknowledged
 * files are queued and published together — strictly in epoch order: close
 * and rename each to its segment name, create the replacement pre-created
 * files, then ONE directory fsync covering all of it, then each epoch's
 * `published` resolves in order — once no write has started for
 * {@link EARLY_ACK_PUBLISH_IDLE_TURNS} event-loop turns, or the queue holds
 * {@link earlyAckPublishBatchMax} epochs, or the ready pool runs low, or
 * on {@link EarlyAckSegmentSink.publishNow} / dispose.
 *
 * Crash reasoning: before the fdatasync returns nothing is acknowledged, and
 * whatever reached the file is at worst a torn prefix, which fails the
 * version-2 CRCs or the exact-length check, so recovery removes it. After
 * it returns, the complete segment is durable under the temporary name (or,
 * once the rename is durable, under the segment name; the rename is atomic):
 * recovery (`adoptOrRemoveTemporaryFiles`) adopts a temporary file that
 * decodes completely as a version-2 segment whose epoch has no segment file.
 * Epoch E+1's write starts only after E's fdatasync returned (the flusher
 * starts it before telling E's commits, but E is durable by then), so an
 * adoptable E+1 never exists without E. Batching changes none of this: acknowledgement
 * never waits for publication. Version 1 (no record CRCs) cannot tell torn
 * from complete and never uses this sink; version-3 segments (certificate
 * trailer), which the storage layer cannot validate yet, are written the same
 * way but acknowledged only once published (their publication starts at once).
 *
 * A failed write or fdatasync: the file is unlinked, the error thrown (the
 * log fails, nothing acknowledged). A failed publication step: `published`
 * rejects (for that epoch and the ones queued after it) and every later write
 * and publication is refused; acknowledged epochs' temporary files are left
 * in place for recovery to adopt.
 */
export class EarlyAckSegmentSink extends StagedSegmentSink<Prepared> {
  protected readonly writeStep = 'write';
  /** The first pool was requested (later inline creations are smaller). */
  private primed = false;

  constructor(
    private readonly dbPath: string,
    fs: WalFileSystem,
    fsync: FsyncPolicy,
    executor: DurableWriteExecutor = new InlineWriteExecutor(),
  ) {
    super(fs, fsync, executor);
    // Its file thread starts with the log, as the I/O thread does.
    if (descriptorFiles(fs)) executor.prepareFileWork?.();
  }

  /** After a write: publish now if the queue is full, the pool low or the sink stopping; else once idle. */
  protected schedulePublication(): void {
    this.publication.schedule(
      this.disposed || this.failure !== null || this.ready.length <= EARLY_ACK_READY_LOW,
    );
  }

  /** A pre-created file, if one is ready (none after a failure: {@link take} throws it). */
  protected override takeNow(): Prepared | null {
    return this.failure === null ? (this.ready.shift() ?? null) : null;
  }

  /** A pre-created file whose directory entry is durable; creates some inline if none is coming. */
  protected async take(): Promise<Prepared> {
    for (;;) {
      if (this.failure !== null) throw this.failure;
      const file = this.ready.shift();
      if (file !== undefined) return file;
      // Publishing the queue refills the pool. Create inline only when no
      // creation and no publication is coming: a publication that lags then
      // makes writes wait for it, and the acknowledged epochs waiting for
      // their names stay bounded (creating inline instead let them, and the
      // directory, grow without end under a load publication could not follow).
      this.publishNow();
      if (this.creatingCount === 0 && this.publication.batchesInFlight === 0) {
        const count = this.primed ? EARLY_ACK_FILES_INLINE : EARLY_ACK_FILES_AHEAD;
        this.primed = true;
        void this.startCreation(count).catch(() => {});
      }
      const coming: Promise<void>[] = [...this.creating];
      if (this.publication.batchesInFlight > 0) coming.push(this.publication.settled);
      await Promise.race(coming);
    }
  }

  /**
   * Publishes `batch` (in epoch order): close and rename each, create the
   * replacement pre-created files, ONE directory fsync, then resolve each
   * `published` in order — one unit of file work (`segment-file-work.ts`:
   * one job for the log's file thread). A failed close or rename rejects the epochs
   * from the failed one on; epochs renamed before it are still made durable
   * if the directory fsync succeeds.
   */
  protected async publishBatch(batch: readonly Acknowledged[]): Promise<void> {
    // Leave the files for recovery to adopt.
    if (this.publishFailure !== null) {
      for (const item of batch) item.published.reject(this.publishFailure);
      return;
    }
    const moves = batch.map(({ epoch, file }) => ({
      handle: file.handle,
      from: file.path,
      to: segmentPath(this.dbPath, epoch),
    }));
    const wanted = this.disposed
      ? 0
      : Math.max(0, EARLY_ACK_FILES_AHEAD - this.ready.length - this.creatingCount);
    let renamed: number;
    try {
      renamed = await this.startWork(moves, wanted);
    } catch (error) {
      const cause = error instanceof Error ? error : new Error(String(error));
      this.publishFailure ??= cause;
      for (const item of batch) item.published.reject(cause);
      return;
    }
    const failure = this.publishFailure;
    for (let i = 0; i < batch.length; i++) {
      if (i < renamed) batch[i]!.published.resolve();
      else batch[i]!.published.reject(failure!);
    }
  }

  /**
   * Creates `count` temporary files and fsyncs the directory once; the files
   * join `ready` only after that fsync.
   */
  private startCreation(count: number): Promise<void> {
    if (count === 0) return Promise.resolve();
    return this.startWork([], count).then(() => {});
  }

  /**
   * One unit of file work: close and rename `moves` in order, then (if none
   * failed) create `count` temporary files, then one directory fsync. The
   * new files join `ready` after the fsync. A failed close or rename fails
   * the sink (and its publication) and resolves with the moves renamed
   * before it; a failed creation or fsync fails the sink and rejects.
   * @returns the number of moves renamed.
   */
  private startWork(moves: FileMove[], count: number): Promise<number> {
    this.creatingCount += count;
    const dir = databaseDirectory(this.dbPath);
    const run = (async () => {
      let outcome: FileWorkOutcome;
      try {
        const create = Array.from({ length: count }, () => this.tempPath());
        const work = { moves, create, syncDir: this.fsync === 'off' ? null : dir };
        outcome = await runFileWork(work, this.fs, (job) => this.executor.fileWork?.(job) ?? null);
      } catch (error) {
        // The file thread failed under the job (it exited or could not run
        // it): no system call is known to have failed, and nothing of the
        // job is known done.
        const { error: cause } = unwrapWriteFailure(error, 'thread');
        const failure = toIoError(
          cause,
          'cannot publish or create segment files: the file thread failed, in',
          'thread',
          dir,
        );
        this.failure ??= failure;
        this.publishFailure ??= failure;
        throw failure;
      } finally {
        this.creatingCount -= count;
      }
      if (outcome.synced) this.syncs++;
      const { failure, syncFailure } = outcome;
      if (failure !== null && failure.step !== 'open') {
        // A failed close or rename is the first failure, whatever follows it.
        const to = moves.find((m) => m.from === failure.path)?.to ?? failure.path;
        const thrown = toIoError(
          failure.error,
          `cannot publish segment ${to}`,
          failure.step,
          failure.path,
        );
        this.failure ??= thrown;
        this.publishFailure ??= thrown;
      }
      if (syncFailure !== null || failure?.step === 'open') {
        // Empty files: removed at the next open if the unlink does not happen.
        for (const handle of outcome.created) await handle.close().catch(() => {});
        const f = syncFailure ?? failure!;
        const thrown =
          f.step === 'open'
            ? toIoError(f.error, 'cannot create segment file', 'open', f.path)
            : toIoError(f.error, 'cannot sync segment directory', 'fsync', f.path);
        this.failure ??= thrown;
        throw thrown;
      }
      for (const handle of outcome.created) this.ready.push({ path: handle.path, handle });
      return outcome.renamed;
    })();
    const settled = run.then(
      () => {},
      () => {},
    );
    this.creating.add(settled);
    void settled.finally(() => this.creating.delete(settled));
    return run;
  }

  /** A new temporary name for a pre-created file. */
  private tempPath(): string {
    const name = `${databaseName(this.dbPath)}${TEMP_NAME_INFIX}${EARLY_ACK_TEMP_TAG}-${randomBytes(tempNameNonceBytes).toString('hex')}`;
    return nodePath.join(databaseDirectory(this.dbPath), name);
  }
}

/**
 * The sink of `kind` for the log of `dbPath`; its critical-path writes run
 * on `executor` (the `storage` sink keeps the storage layer's own calls).
 */
export function createSegmentSink(
  kind: SegmentSinkKind,
  dbPath: string,
  fs: WalFileSystem,
  fsync: FsyncPolicy,
  executor: DurableWriteExecutor,
  pool: PoolSinkOptions,
): SegmentSink {
  if (kind === 'pool') return new PoolSegmentSink(dbPath, fs, fsync, { ...pool, executor });
  if (kind === 'earlyAck') return new EarlyAckSegmentSink(dbPath, fs, fsync, executor);
  if (kind === 'precreate') return new PrecreatingSegmentSink(dbPath, fs, fsync, executor);
  return storageSegmentSink(dbPath, fs, fsync);
}

/**
 * Gives folded segment files (`entries`, every one below `floor`, the first
 * epoch not folded) back to the log: a `pool` sink that is still `open`
 * takes them into its pool (up to its bound) to be written over in place;
 * otherwise they are unlinked, and one directory fsync makes that durable.
 * @returns the number of files taken or unlinked.
 * @throws {WalArgumentError} for an entry at or above `floor`; {@link WalIoError}.
 */
export async function recycleFoldedSegments(
  sink: SegmentSink,
  entries: readonly SegmentFileEntry[],
  floor: bigint,
  options: { dbPath: string; fs: WalFileSystem; open: boolean },
): Promise<number> {
  if (sink instanceof PoolSegmentSink && options.open) return sink.recycle(entries, floor);
  for (const entry of entries) {
    if (entry.epoch >= floor) {
      throw new WalArgumentError(`segment ${entry.epoch} is not below the floor ${floor}`);
    }
  }
  const { dbPath, fs } = options;
  for (const entry of entries) await deleteSegment(entry.path, { fs });
  if (entries.length > 0) await syncSegmentDirectory(dbPath, { fs });
  return entries.length;
}
