/**
 * What the two sinks that acknowledge before publication share
 * (`EarlyAckSegmentSink` in segment-writer.ts, `PoolSegmentSink` in
 * pool-sink.ts): files made ready off the critical path, an epoch written
 * into one with one write + fdatasync and acknowledged then, and the
 * acknowledged epochs published in the background, in order, in batches.
 * The subclasses differ in where a file comes from (a fresh pre-created one,
 * or a pool file, new or recycled) and in how a batch is published.
 *
 * Crash reasoning (docs/durability.md): nothing is acknowledged before the
 * fdatasync returns; a failed write unlinks its file and fails the sink; an
 * epoch written after a publication failed is unlinked, never left for
 * recovery to adopt; version-3 segments, which recovery does not adopt from
 * a temporary name, are acknowledged only once published.
 */

import { toIoError } from '../storage/errors.js';
import type { WalFileHandle, WalFileSystem } from '../storage/fs.js';
import type { FsyncPolicy } from '../storage/segment-files.js';
import { createDeferred, type Deferred } from './deferred.js';
import { WalClosedError } from './errors.js';
import { type DurableWriteExecutor, unwrapWriteFailure } from './io-executor.js';
import { PublicationQueue } from './publication-queue.js';
import type { SegmentSink, SegmentWrite } from './segment-writer.js';

/** Where a segment header keeps its version: a little-endian u16 after the u32 magic (docs/format.md, section 3). */
const headerVersionOffsetBytes = 4;
/** Header bytes up to the end of the version field. */
const headerVersionEndBytes = headerVersionOffsetBytes + 2;

/** The segment format version in the first bytes of `chunks` (a header), or `null`. */
export function headerVersion(chunks: readonly Uint8Array[]): number | null {
  const lead: number[] = [];
  for (const chunk of chunks) {
    for (let i = 0; i < chunk.length && lead.length < headerVersionEndBytes; i++) {
      lead.push(chunk[i]!);
    }
    if (lead.length === headerVersionEndBytes) {
      return lead[headerVersionOffsetBytes]! | (lead[headerVersionOffsetBytes + 1]! << 8);
    }
  }
  return null;
}

/** A file an epoch is written into: a durable name, open for writing. */
export interface StagedFile {
  path: string;
  handle: WalFileHandle;
}

/** An acknowledged epoch waiting for its publication. */
export interface StagedEpoch<F extends StagedFile> {
  epoch: bigint;
  file: F;
  /** The segment's length (the file may be longer: a pool file's stale bytes). */
  bytes: number;
  published: Deferred<void>;
}

/** Total bytes of `chunks`. */
function byteLength(chunks: readonly Uint8Array[]): number {
  let total = 0;
  for (const chunk of chunks) total += chunk.length;
  return total;
}

/** See the file comment. */
export abstract class StagedSegmentSink<F extends StagedFile> implements SegmentSink {
  protected syncs = 0;
  /** Writes called and not yet handed to the executor (waiting for a file). */
  private notHandedOver = 0;
  /** Files ready for an epoch. */
  protected readonly ready: F[] = [];
  /** Creations (or recycling) whose directory fsync is in flight; their files join `ready` after it. */
  protected readonly creating = new Set<Promise<void>>();
  protected creatingCount = 0;
  /**
   * Acknowledged epochs waiting for publication, and the chain of their
   * batches (an epoch in a batch still holds its file).
   */
  protected readonly publication = new PublicationQueue<StagedEpoch<F>>(
    (batch) => this.publishBatch(batch),
    (cause) => {
      this.failure ??= cause;
      this.publishFailure ??= cause;
    },
  );
  /** The first failure: no write starts after it. */
  protected failure: Error | null = null;
  /**
   * The first failure of a publication step (close, rename, creation,
   * directory fsync): no publication runs after it. A failed write does not
   * stop the publication of epochs acknowledged before it.
   */
  protected publishFailure: Error | null = null;
  protected disposed = false;

  constructor(
    protected readonly fs: WalFileSystem,
    protected readonly fsync: FsyncPolicy,
    /** Runs the critical-path write + fdatasync (see `io-executor.ts`). */
    protected readonly executor: DurableWriteExecutor,
  ) {}

  syncCalls(): number {
    return this.syncs;
  }

  async write(epoch: bigint, chunks: readonly Uint8Array[]): Promise<SegmentWrite> {
    if (this.disposed) throw new WalClosedError('segment sink is disposed');
    // A write starts: the queue is not idle.
    this.publication.cancelIdle();
    this.notHandedOver++;
    let handedOver = false;
    const handOver = (): void => {
      if (handedOver) return;
      handedOver = true;
      this.notHandedOver--;
    };
    try {
      const bytes = byteLength(chunks);
      // A file ready now: no await before the job is posted, so a write
      // started before acknowledging the previous epoch is on its way before
      // that epoch's commits continue.
      const file = this.takeNow(epoch, bytes) ?? (await this.take(epoch, bytes));
      return await this.writeInto(epoch, chunks, file, bytes, handOver);
    } finally {
      handOver();
      this.schedulePublication();
    }
  }

  /** See {@link SegmentSink.canQueueWrite}. */
  canQueueWrite(): boolean {
    return this.notHandedOver === 0 && this.failure === null && !this.disposed;
  }

  /** Starts publishing every acknowledged epoch queued so far (no idle wait). */
  publishNow(): void {
    this.publication.publishNow();
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    this.publishNow();
    await this.publication.settled;
    await Promise.all(this.creating);
    // Ready files stay on disk only as long as the log is open: the next
    // open's recovery removes whatever it does not adopt.
    for (const file of this.ready.splice(0)) {
      await file.handle.close().catch(() => {});
      await this.fs.unlink(file.path).catch(() => {});
    }
  }

  /** A file ready for `epoch`'s segment of `bytes` bytes without waiting, or null (then {@link take}). */
  protected takeNow(_epoch: bigint, _bytes: number): F | null {
    return null;
  }
  /** A file for `epoch`'s segment of `bytes` bytes. */
  protected abstract take(epoch: bigint, bytes: number): Promise<F>;
  /** After a write: publish now, or once the queue is idle. */
  protected abstract schedulePublication(): void;
  /** Publishes a batch of acknowledged epochs, in epoch order. */
  protected abstract publishBatch(batch: readonly StagedEpoch<F>[]): Promise<void>;
  /** The step a failed write reports (`writev+fdatasync`, …). */
  protected abstract readonly writeStep: string;
  /** `file` now holds `bytes` durable bytes from offset 0. */
  protected noteWritten(_file: F, _bytes: number): void {}

  /** Writes the segment at offset 0 of `file` with one fdatasync, then queues its publication. */
  private async writeInto(
    epoch: bigint,
    chunks: readonly Uint8Array[],
    file: F,
    bytes: number,
    handOver: () => void,
  ): Promise<SegmentWrite> {
    try {
      // The critical path: one write and one fdatasync, one job for the
      // log's executor (the I/O thread for the real file system), queued
      // behind the writes handed over before it. The file's name is durable
      // already.
      const written = this.executor.writeAt(file.handle, chunks, 0, this.fsync !== 'off');
      handOver();
      await written;
      if (this.fsync !== 'off') this.syncs++;
    } catch (raw) {
      const { error, failedStep } = unwrapWriteFailure(raw, this.writeStep);
      const failure = toIoError(error, 'cannot write segment file', failedStep, file.path);
      // Before any await: no write is queued, nor published, after this one.
      this.failure ??= failure;
      await this.discard(file);
      throw failure;
    }
    this.noteWritten(file, bytes);
    if (this.failure !== null) {
      // A publication failed meanwhile: the log is failing and this epoch is
      // not acknowledged; never leave it for recovery to adopt.
      await this.discard(file);
      throw this.failure;
    }
    // Marked handled: a caller that drops `published` (a failing log) leaves no unhandled rejection.
    const published = createDeferred<void>();
    this.publication.push({ epoch, file, bytes, published });
    if (headerVersion(chunks) !== 2) {
      // Recovery adopts only version 2: acknowledge once published, which starts now.
      this.publishNow();
      await published.promise;
      return { bytes, published: null };
    }
    return { bytes, published: published.promise };
  }

  /** Closes and unlinks a file that must not survive. */
  private async discard(file: F): Promise<void> {
    await file.handle.close().catch(() => {});
    await this.fs.unlink(file.path).catch(() => {});
  }
}
