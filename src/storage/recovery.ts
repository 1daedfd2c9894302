/**
 * Recovery from segment files (docs/design.md#recovery): settle the log's
 * temporary files (`adoption.ts`), read the segments in epoch order, fail
 * closed on the first unusable one or the first missing epoch (or, with
 * `skipCorrupt`, stop there and replay only the prefix before it; see
 * `segment-walk.ts`), skip the ranges recorded as given up
 * (`skipped-epochs.ts`), hand back the records in recovery order. Deleting
 * segments is a separate, explicit step taken only after the caller has made
 * the applied pages durable.
 */
import * as nodePath from 'node:path';
import { isInRecoveryOrder, recoveryOrder } from '../format/order.js';
import type { WalRecord } from '../format/types.js';
import {
  type AdoptionOptions,
  adoptOrRemoveTemporaryFiles,
  inspectTemporaryFiles,
} from './adoption.js';
import {
  deleteSegment,
  type FsOptions,
  isNotFound,
  listSegments,
  type SegmentFileEntry,
  scanSegments,
  syncDirectoryAt,
  syncSegmentDirectory,
} from './segment-files.js';
import {
  checkWalkOptions,
  type RecoveryStop,
  skippedRangeAfter,
  walkSegments,
} from './segment-walk.js';
import type { SkippedEpochRange } from './skipped-epochs.js';

// Part of recovery's public surface: its options extend the adoption
// options, its result names where it stopped, and `cleanupTemporaryFiles`
// is the adoption step on its own.
export { type AdoptionOptions, cleanupTemporaryFiles } from './adoption.js';
export type { RecoveryStop } from './segment-walk.js';

/** Options of {@link recoverSegments}. */
export interface SegmentRecoveryOptions extends AdoptionOptions {
  /**
   * `false` (default): the first unusable segment fails recovery.
   * `true`: recovery stops there; that segment and every later one are
   * reported in `partialSegments` and nothing after the gap is replayed.
   */
  skipCorrupt?: boolean;
  /**
   * Report the recovered segments in `deletableSegments`. Nothing is deleted
   * here: call {@link deleteRecoveredSegments} once the applied pages are durable.
   */
  deleteAfterRecovery?: boolean;
  /**
   * First adopt or remove the log's temporary files (`adoptOrRemoveTemporaryFiles`):
   * complete version-2 segments are renamed to their segment names, the rest
   * unlinked. Default false: nothing is modified, but adoptable temporary
   * files (epochs the `earlyAck` sink may have acknowledged before their
   * rename) are read and replayed in epoch order, without renaming them,
   * and listed in `pendingAdoption`.
   */
  cleanupTemporaryFiles?: boolean;
  /**
   * `false` (default): an epoch with no segment between the first segment
   * and a later one is a lost segment ({@link RecoveryGapError}, or with
   * `skipCorrupt` the stop), because this log never leaves an epoch number
   * unused. `true`: the log was written by a writer that does leave numbers
   * unused (one that wrote nothing for empty epochs), so a missing epoch is
   * not evidence of a loss; use it only for such logs.
   */
  allowEpochGaps?: boolean;
  /**
   * The first epoch the destination does not hold yet (a page store's header
   * `nextEpoch`). Segments below it may be missing (folded and deleted);
   * from it up to the newest segment, every epoch must have one, so a lost
   * first segment after a checkpoint is caught too. Default: none, the first
   * segment on disk starts the log.
   */
  firstUnappliedEpoch?: bigint;
}

/** What {@link recoverSegments} found. */
export interface SegmentRecoveryResult {
  /** Segments read completely and replayed. */
  segmentsRecovered: number;
  /** Records in those segments (committed or not). */
  recordsApplied: number;
  /** Bytes of those segments. */
  bytesRead: number;
  /** Their epochs, ascending. */
  epochs: bigint[];
  /** The unusable segment (or the first after a hole) and every later one (only with `skipCorrupt`). */
  partialSegments: string[];
  /** Segments inside a recorded skipped range (`<db>-wal-skipped`), not replayed. */
  skippedSegments: string[];
  /** The recorded skipped ranges of this log, oldest first. */
  skippedRanges: SkippedEpochRange[];
  /**
   * When recovery stopped early: the range a writer gives up by writing
   * after it (see `skippedRangeAfter`); it must record it first
   * (`recordSkippedEpochs`). `null` when nothing was given up.
   */
  rangeToSkip: SkippedEpochRange | null;
  /** Segments safe to delete once the applied pages are durable (only with `deleteAfterRecovery`). */
  deletableSegments: string[];
  /**
   * All recovered records in recovery order. They carry no database size:
   * the log never persists a commit's `dbSizeIfCommit` (see
   * docs/format.md, section 5.2). A layer that needs it writes it as a record
   * of its own, as the page store's size record (page id 4294967295) does.
   */
  records: WalRecord[];
  /** Why recovery stopped early, or `null` when every segment was recovered. */
  stoppedAt: RecoveryStop | null;
  /** Temporary files removed first (with `cleanupTemporaryFiles`). */
  temporaryFilesRemoved: number;
  /** Temporary files adopted as segments first (with `cleanupTemporaryFiles`). */
  temporaryFilesAdopted: number;
  /**
   * Adoptable temporary files (complete early-acknowledged segments not yet
   * renamed), replayed in place (only without `cleanupTemporaryFiles`).
   */
  pendingAdoption: string[];
}

/**
 * Reads every segment of `dbPath` in epoch order and returns its records in
 * recovery order. Fails closed by default, on an unusable segment and on a
 * missing one (see `walkSegments`); see {@link SegmentRecoveryOptions}.
 * @throws {SegmentCorruptError} naming the first unusable segment and why
 * (unless `skipCorrupt`).
 * @throws {RecoveryGapError} naming the first missing epoch (unless
 * `skipCorrupt` or `allowEpochGaps`).
 * @throws {SkippedEpochsCorruptError} when the record of skipped epochs is malformed.
 * @throws {WalIoError} when the directory cannot be listed, or (unless
 * `skipCorrupt`) a segment cannot be read.
 */
export async function recoverSegments(
  dbPath: string,
  options: SegmentRecoveryOptions = {},
): Promise<SegmentRecoveryResult> {
  checkWalkOptions(options);
  const temporary = await settleTemporaryFiles(dbPath, options);
  const entries = await scanSegments(dbPath, options);
  if (temporary.pending.length > 0) {
    entries.push(...temporary.pending);
    entries.sort((a, b) => (a.epoch < b.epoch ? -1 : a.epoch > b.epoch ? 1 : 0));
  }
  const result = emptyResult(temporary);
  const recovered: string[] = [];
  const chunks: WalRecord[][] = [];
  const walk = await walkSegments(dbPath, entries, options, (entry, records, bytes) => {
    result.segmentsRecovered += 1;
    result.recordsApplied += records.length;
    result.bytesRead += bytes;
    result.epochs.push(entry.epoch);
    recovered.push(entry.path);
    chunks.push(records);
  });
  result.partialSegments = walk.partial.map((e) => e.path);
  result.skippedSegments = walk.skipped.map((e) => e.path);
  result.skippedRanges = walk.skippedRanges;
  result.stoppedAt = walk.stoppedAt;
  const all = chunks.flat();
  // Segments are sorted and each is canonical, so this is normally a no-op check.
  result.records = isInRecoveryOrder(all) ? all : recoveryOrder(all);
  if (walk.stoppedAt !== null) {
    result.rangeToSkip = await skippedRangeAfter(
      walk.stoppedAt,
      walk.partial,
      highestCommitSeq(all),
      options,
    );
  }
  if (options.deleteAfterRecovery) result.deletableSegments = recovered;
  return result;
}

/** What happened to the temporary files before the walk. */
interface TemporaryFiles {
  removed: number;
  adopted: number;
  /** Adoptable files left in place, to replay under their temporary names (read-only recovery). */
  pending: SegmentFileEntry[];
}

/**
 * With `cleanupTemporaryFiles`, adopts or removes the log's temporary files;
 * else (read-only) finds the adoptable ones, whose acknowledged epoch may
 * still sit under its temporary name.
 */
async function settleTemporaryFiles(
  dbPath: string,
  options: SegmentRecoveryOptions,
): Promise<TemporaryFiles> {
  if (options.cleanupTemporaryFiles) {
    const cleanup = await adoptOrRemoveTemporaryFiles(dbPath, options);
    return { removed: cleanup.removed.length, adopted: cleanup.adopted.length, pending: [] };
  }
  const adoptable = (await inspectTemporaryFiles(dbPath, options)).filter(
    (v) => v.verdict === 'adoptable',
  );
  const pending = adoptable.map((v) => ({
    epoch: v.epoch!,
    path: v.path,
    prefixBytes: v.segmentBytes,
  }));
  return { removed: 0, adopted: 0, pending };
}

function emptyResult(temporary: TemporaryFiles): SegmentRecoveryResult {
  return {
    segmentsRecovered: 0,
    recordsApplied: 0,
    bytesRead: 0,
    epochs: [],
    partialSegments: [],
    skippedSegments: [],
    skippedRanges: [],
    rangeToSkip: null,
    deletableSegments: [],
    records: [],
    stoppedAt: null,
    temporaryFilesRemoved: temporary.removed,
    temporaryFilesAdopted: temporary.adopted,
    pendingAdoption: temporary.pending.map((e) => e.path),
  };
}

/** The highest commit sequence among `records` (an uncommitted record counts its begin), `null` for none. */
function highestCommitSeq(records: readonly WalRecord[]): bigint | null {
  let highest: bigint | null = null;
  for (const record of records) {
    const seq = record.endSeq ?? record.beginSeq;
    if (highest === null || seq > highest) highest = seq;
  }
  return highest;
}

/**
 * Deletes the segments a recovery reported as deletable, then fsyncs the
 * directory so the deletions are durable. Call only after the pages applied
 * from them are durable in their destination. Already missing files are
 * skipped. @returns the number of files deleted.
 * @throws {WalIoError}
 */
export async function deleteRecoveredSegments(
  result: Pick<SegmentRecoveryResult, 'deletableSegments'>,
  options?: FsOptions,
): Promise<number> {
  let deleted = 0;
  const dirs = new Set<string>();
  for (const path of result.deletableSegments) {
    try {
      await deleteSegment(path, options);
      deleted += 1;
    } catch (error) {
      if (!isNotFound(error)) throw error;
    }
    dirs.add(nodePath.dirname(path));
  }
  for (const dir of dirs) await syncDirectoryAt(dir, options);
  return deleted;
}

/**
 * Recovers (as {@link recoverSegments}) and applies every committed record's
 * after-image to `pages` in recovery order, the last write to a page winning.
 * Records without `endSeq` (never committed) are not applied; neither are
 * empty after-images (no new page content, as in the seed).
 */
export async function recoverAndApplySegments(
  dbPath: string,
  pages: Map<number, Uint8Array>,
  options: SegmentRecoveryOptions = {},
): Promise<SegmentRecoveryResult> {
  const result = await recoverSegments(dbPath, options);
  const applied = new Map<number, Uint8Array>();
  for (const record of result.records) {
    if (record.endSeq === null || record.afterImage.length === 0) continue;
    applied.set(record.pageId, record.afterImage);
  }
  // Decoded images are views into whole segment buffers; copy the winners so
  // `pages` does not keep every segment's bytes alive.
  for (const [pageId, image] of applied) pages.set(pageId, new Uint8Array(image));
  return result;
}

/**
 * The newest epoch with a segment file, or `null` when there is none.
 * @throws {SegmentCorruptError} on two files for one epoch; {@link WalIoError}.
 */
export async function maxDurableEpoch(dbPath: string, options?: FsOptions): Promise<bigint | null> {
  const segments = await listSegments(dbPath, options);
  return segments.length === 0 ? null : segments[segments.length - 1]!.epoch;
}

/**
 * Deletes every segment file of `dbPath` (duplicates included), then fsyncs
 * the directory. @returns the number deleted.
 */
export async function cleanupSegments(dbPath: string, options?: FsOptions): Promise<number> {
  const segments = await scanSegments(dbPath, options);
  for (const segment of segments) await deleteSegment(segment.path, options);
  if (segments.length > 0) await syncSegmentDirectory(dbPath, options);
  return segments.length;
}
