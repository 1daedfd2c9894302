/**
 * Recovery from segment files (docs/design.md#recovery): read the segments
 * in epoch order, fail closed on the first unusable one or the first missing
 * epoch (or, with `skipCorrupt`, stop there and replay only the prefix before
 * it), skip the ranges recorded as given up (`skipped-epochs.ts`), hand back
 * the records in recovery order. Deleting segments is a separate, explicit step taken only
 * after the caller has made the applied pages durable.
 */
import * as nodePath from 'node:path';
import { WalArgumentError, WalError } from '../errors.js';
import { readU32 } from '../format/bytes.js';
import { SegmentFormatError } from '../format/errors.js';
import { isInRecoveryOrder, recoveryOrder } from '../format/order.js';
import { decodeSegmentHeader } from '../format/segment.js';
import {
  RECORD_MIN_BYTES_V1,
  recordMaxBytes,
  SEGMENT_HEADER_BYTES,
  U64_MAX,
  type WalRecord,
} from '../format/types.js';
import {
  RecoveryGapError,
  SegmentCorruptError,
  SegmentFileErrorReason,
  toIoError,
} from './errors.js';
import { nodeFileSystem, type WalFileHandle, type WalFileSystem } from './fs.js';
import {
  databaseDirectory,
  databaseName,
  decodeFile,
  deleteSegment,
  duplicateEpochError,
  type FsOptions,
  groupByEpoch,
  isNotFound,
  listSegments,
  readWholeFile,
  type SegmentFileEntry,
  scanSegments,
  segmentPath,
  syncDirectoryAt,
  syncSegmentDirectory,
  TEMP_NAME_INFIX,
} from './segment-files.js';
import { readSkippedEpochs, type SkippedEpochRange, skippedRangeOf } from './skipped-epochs.js';

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

/** Why recovery stopped early (with `skipCorrupt`). */
export interface RecoveryStop {
  /** The first unusable segment (for a hole: the name the missing segment would have). */
  path: string;
  /** Its epoch, from its file name (for a hole: the first missing epoch). */
  epoch: bigint;
  /**
   * The specific code (`ERR_SEGMENT_HEADER_CHECKSUM`, `ERR_SEGMENT_NAME_MISMATCH`,
   * `ERR_IO`, `ERR_RECOVERY_GAP` for a hole, …).
   */
  code: string;
  /** What was wrong. */
  message: string;
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
 * The typed error for a segment that could not be recovered: format errors
 * become {@link SegmentCorruptError} naming the file, other {@link WalError}s
 * pass through, anything else becomes a {@link WalIoError}.
 */
export function segmentEntryError(
  entry: SegmentFileEntry,
  error: unknown,
): SegmentCorruptError | WalError {
  if (error instanceof SegmentCorruptError) return error;
  if (error instanceof SegmentFormatError) {
    return new SegmentCorruptError(
      entry.path,
      entry.epoch,
      error.code,
      `segment ${entry.path} is corrupt: ${error.message} (${error.code})`,
      { cause: error },
    );
  }
  if (error instanceof WalError) return error;
  return toIoError(error, 'cannot read segment file', 'read', entry.path);
}

/** Reads one segment and checks its header epoch against its name. */
export async function recoverSegmentEntry(
  entry: SegmentFileEntry,
  options: FsOptions & {
    /** Decode only this many leading bytes (an unadopted pool file's segment; stale bytes follow). */
    prefixBytes?: number;
  },
): Promise<{ records: WalRecord[]; bytes: number }> {
  const whole = await readWholeFile(entry.path, options.fs ?? nodeFileSystem);
  const prefix = entry.prefixBytes ?? options.prefixBytes;
  const bytes = prefix === undefined ? whole : whole.subarray(0, prefix);
  const { header, records } = decodeFile(entry.path, bytes);
  if (header.epoch !== entry.epoch) {
    throw new SegmentCorruptError(
      entry.path,
      entry.epoch,
      SegmentFileErrorReason.nameMismatch,
      `segment ${entry.path} has mismatched epoch: header=${header.epoch}, filename=${entry.epoch}`,
    );
  }
  return { records, bytes: bytes.length };
}

/** Options of {@link walkSegments}: what a damaged or holed log does to the walk. */
export interface SegmentWalkOptions extends FsOptions {
  /** See {@link SegmentRecoveryOptions.skipCorrupt}. */
  skipCorrupt?: boolean;
  /** See {@link SegmentRecoveryOptions.allowEpochGaps}. */
  allowEpochGaps?: boolean;
  /** See {@link SegmentRecoveryOptions.firstUnappliedEpoch}. */
  firstUnappliedEpoch?: bigint;
  /**
   * Epochs below it are durable elsewhere (a log's `firstEpoch` floor): a
   * hole made only of them is not a loss. Unlike `firstUnappliedEpoch` it
   * does not require a segment at the floor itself (the floor may be stale).
   */
  ignoreHolesBelow?: bigint;
}

/** What {@link walkSegments} found besides the segments it visited. */
export interface SegmentWalk {
  /** Why the walk stopped early (only with `skipCorrupt`), or `null`. */
  stoppedAt: RecoveryStop | null;
  /** The unusable (or first after a hole) segment and every later one (only with `skipCorrupt`). */
  partial: SegmentFileEntry[];
  /** Segments inside a recorded skipped range: neither replayed nor a reason to stop. */
  skipped: SegmentFileEntry[];
  /** The skipped ranges recorded for this log (`<db>-wal-skipped`). */
  skippedRanges: SkippedEpochRange[];
  /** Newest epoch with a file (segment, pending temporary file, readable or not), or `null`. */
  newestEpoch: bigint | null;
}

function checkWalkOptions(options: SegmentWalkOptions): void {
  if (options.allowEpochGaps !== undefined && typeof options.allowEpochGaps !== 'boolean') {
    throw new WalArgumentError(
      `allowEpochGaps must be a boolean, got ${String(options.allowEpochGaps)}`,
    );
  }
  for (const name of ['firstUnappliedEpoch', 'ignoreHolesBelow'] as const) {
    const floor = options[name];
    if (floor !== undefined && (typeof floor !== 'bigint' || floor < 0n || floor > U64_MAX)) {
      throw new WalArgumentError(`${name} must be a u64 bigint, got ${String(floor)}`);
    }
  }
}

/**
 * The first epoch of `from ..= to` that neither has a segment (the caller
 * checked there is none in between) nor lies in a recorded skipped range,
 * with the last epoch of that hole; `null` when every one is accounted for.
 */
function firstHole(
  ranges: readonly SkippedEpochRange[],
  from: bigint,
  to: bigint,
): { first: bigint; last: bigint } | null {
  let at = from;
  while (at <= to) {
    const range = skippedRangeOf(ranges, at);
    if (range === undefined) {
      let last = to;
      for (const r of ranges) {
        if (r.firstEpoch > at && r.firstEpoch - 1n < last) last = r.firstEpoch - 1n;
      }
      return { first: at, last };
    }
    at = range.lastEpoch + 1n;
  }
  return null;
}

/**
 * The first lost segment among `epochs` (the epochs with a usable segment,
 * ascending) as recovery would find it: an epoch missing between the first
 * of them (or `firstUnappliedEpoch`) and a later one, outside every recorded
 * skipped range. `null` when there is none.
 */
export function findEpochGap(
  dbPath: string,
  epochs: readonly bigint[],
  ranges: readonly SkippedEpochRange[],
  firstUnappliedEpoch?: bigint,
): RecoveryGapError | null {
  let expected: bigint | null = firstUnappliedEpoch ?? null;
  for (const epoch of epochs) {
    if (firstUnappliedEpoch !== undefined && epoch < firstUnappliedEpoch) continue;
    if (expected !== null && epoch > expected) {
      const hole = firstHole(ranges, expected, epoch - 1n);
      if (hole !== null) {
        return new RecoveryGapError(segmentPath(dbPath, hole.first), hole.first, hole.last, epoch);
      }
    }
    expected = epoch + 1n;
  }
  return null;
}

/**
 * Walks the segments `entries` (sorted by epoch, duplicates included) in
 * epoch order and hands each usable one to `visit`, failing closed on:
 * - a segment that cannot be used (unreadable, corrupt, header epoch other
 *   than its name, two files for one epoch): {@link SegmentCorruptError} /
 *   {@link WalIoError};
 * - a hole: the log never leaves an epoch number unused, so an epoch with no
 *   segment between the first segment (or `firstUnappliedEpoch`) and a later
 *   segment is a lost segment: {@link RecoveryGapError} naming it. Epochs in
 *   a recorded skipped range are not holes, and their segments are not visited.
 *
 * With `skipCorrupt` it stops there instead (prefix semantics: never E+1
 * without E) and reports the rest in `partial`.
 */
export async function walkSegments(
  dbPath: string,
  entries: readonly SegmentFileEntry[],
  options: SegmentWalkOptions,
  visit: (entry: SegmentFileEntry, records: WalRecord[], bytes: number) => void,
): Promise<SegmentWalk> {
  checkWalkOptions(options);
  const walk: SegmentWalk = {
    stoppedAt: null,
    partial: [],
    skipped: [],
    skippedRanges: await readSkippedEpochs(dbPath, options),
    newestEpoch: entries.length === 0 ? null : entries[entries.length - 1]!.epoch,
  };
  const floor = options.firstUnappliedEpoch;
  // The next epoch that must have a segment (null: whichever comes first).
  let expected: bigint | null = floor ?? null;
  const groups = groupByEpoch(entries);
  for (let index = 0; index < groups.length; index++) {
    const group = groups[index]!;
    const entry = group[0]!;
    const checked = floor === undefined || entry.epoch >= floor;
    try {
      const ignoredBelow = options.ignoreHolesBelow ?? 0n;
      if (
        checked &&
        expected !== null &&
        entry.epoch > expected &&
        entry.epoch > ignoredBelow &&
        !options.allowEpochGaps
      ) {
        const from = expected > ignoredBelow ? expected : ignoredBelow;
        const hole = firstHole(walk.skippedRanges, from, entry.epoch - 1n);
        if (hole !== null) {
          throw new RecoveryGapError(
            segmentPath(dbPath, hole.first),
            hole.first,
            hole.last,
            entry.epoch,
          );
        }
      }
      if (checked) expected = entry.epoch + 1n;
      if (skippedRangeOf(walk.skippedRanges, entry.epoch) !== undefined) {
        walk.skipped.push(...group);
        continue;
      }
      if (group.length > 1) throw duplicateEpochError(group);
      const { records, bytes } = await recoverSegmentEntry(entry, options);
      visit(entry, records, bytes);
    } catch (raw) {
      const error = raw instanceof RecoveryGapError ? raw : segmentEntryError(entry, raw);
      if (!options.skipCorrupt) throw error;
      walk.partial = groups.slice(index).flat();
      walk.stoppedAt =
        error instanceof RecoveryGapError
          ? {
              path: error.path,
              epoch: error.missingEpoch,
              code: error.code,
              message: error.message,
            }
          : {
              path: entry.path,
              epoch: entry.epoch,
              code: error instanceof SegmentCorruptError ? error.reason : error.code,
              message: error.message,
            };
      break;
    }
  }
  return walk;
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
  let temporaryFilesRemoved = 0;
  let temporaryFilesAdopted = 0;
  let pending: SegmentFileEntry[] = [];
  if (options.cleanupTemporaryFiles) {
    const cleanup = await adoptOrRemoveTemporaryFiles(dbPath, options);
    temporaryFilesRemoved = cleanup.removed.length;
    temporaryFilesAdopted = cleanup.adopted.length;
  } else {
    // Read-only: an acknowledged epoch may still sit under its temporary name.
    const adoptable = (await inspectTemporaryFiles(dbPath, options)).filter(
      (v) => v.verdict === 'adoptable',
    );
    pending = adoptable.map((v) => ({
      epoch: v.epoch!,
      path: v.path,
      prefixBytes: v.segmentBytes,
    }));
  }
  const entries = await scanSegments(dbPath, options);
  if (pending.length > 0) {
    entries.push(...pending);
    entries.sort((a, b) => (a.epoch < b.epoch ? -1 : a.epoch > b.epoch ? 1 : 0));
  }
  const result: SegmentRecoveryResult = {
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
    temporaryFilesRemoved,
    temporaryFilesAdopted,
    pendingAdoption: pending.map((e) => e.path),
  };
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
    let highest: bigint | null = null;
    for (const record of all) {
      const seq = record.endSeq ?? record.beginSeq;
      if (highest === null || seq > highest) highest = seq;
    }
    result.rangeToSkip = await skippedRangeAfter(walk.stoppedAt, walk.partial, highest, options);
  }
  if (options.deleteAfterRecovery) result.deletableSegments = recovered;
  return result;
}

/**
 * The range a writer gives up after a recovery stopped early: from the
 * unusable (or missing) epoch through the newest epoch on disk, with a
 * commit-sequence ceiling above every sequence those epochs may hold — the
 * highest one decodable anywhere in them, and for each segment that cannot be
 * decoded the highest sequence before it plus the most records its size can
 * hold (exact for the log's own contiguous sequences; a caller-chosen
 * sequence inside an undecodable segment cannot be known). `null` when the
 * recovery did not stop.
 * @throws {WalIoError} when a partial segment cannot be read at all.
 */
export async function skippedRangeAfter(
  stoppedAt: RecoveryStop | null,
  partial: readonly SegmentFileEntry[],
  highestSeqBefore: bigint | null,
  options?: FsOptions,
): Promise<SkippedEpochRange | null> {
  if (stoppedAt === null) return null;
  const fs = options?.fs ?? nodeFileSystem;
  let ceiling = highestSeqBefore ?? 0n;
  let lastEpoch = stoppedAt.epoch;
  for (const entry of partial) {
    if (entry.epoch > lastEpoch) lastEpoch = entry.epoch;
    let bytes: Uint8Array;
    try {
      bytes = await readWholeFile(entry.path, fs);
    } catch (error) {
      if (isNotFound(error)) continue;
      throw error;
    }
    try {
      for (const record of decodeFile(entry.path, bytes).records) {
        const seq = record.endSeq ?? record.beginSeq;
        if (seq > ceiling) ceiling = seq;
      }
    } catch {
      const capacity = Math.max(0, bytes.length - SEGMENT_HEADER_BYTES) / (4 + RECORD_MIN_BYTES_V1);
      ceiling += BigInt(Math.floor(capacity));
    }
  }
  return { firstEpoch: stoppedAt.epoch, lastEpoch, commitSeqCeiling: ceiling };
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

/**
 * The exact shapes of the temporary names the log itself creates:
 * `<db>-wal-tmp-<16 hex epoch>-<12 hex random>` (segment-files.ts),
 * `<db>-wal-tmp-next-<12 hex random>` (the precreate sink's next file),
 * `<db>-wal-tmp-ack-<12 hex random>` (the early-acknowledgement sink's
 * pre-created files) and `<db>-wal-tmp-pool-<16 hex floor epoch>-<12 hex
 * random>` (the pool sink's reusable files). Anything else that merely
 * starts with the infix belongs to someone else.
 */
const OWNED_TEMP_SUFFIX = /^(?:[0-9a-f]{16}|next|ack|pool-[0-9a-f]{16})-[0-9a-f]{12}$/;

/**
 * The tag of temporary files written by a protocol that may acknowledge an
 * epoch before its rename (the engine's `earlyAck` sink). These and pool
 * files ({@link POOL_TEMP_TAG}) are the only ones ever adopted: the other
 * shapes are renamed before anything is acknowledged, so a leftover one
 * holds an epoch nobody was told is durable (possibly one whose commits
 * were rejected), and it is removed as before.
 */
export const EARLY_ACK_TEMP_TAG = 'ack';

/**
 * The tag of the pool sink's reusable segment files. The name carries a
 * floor epoch: the file entered the pool when every epoch below the floor
 * was already written elsewhere (or folded), so any segment below it that
 * the file still holds is a stale leftover of an earlier life, never a
 * candidate.
 */
export const POOL_TEMP_TAG = 'pool';

const ADOPTABLE_TEMP_SUFFIX = new RegExp(
  `^(?:${EARLY_ACK_TEMP_TAG}|${POOL_TEMP_TAG}-([0-9a-f]{16}))-[0-9a-f]{12}$`,
);

/** True when `name` is a temporary file the log created for `dbPath` (and may delete). */
export function isOwnedTemporaryName(dbPath: string, name: string): boolean {
  const prefix = `${databaseName(dbPath)}${TEMP_NAME_INFIX}`;
  return name.startsWith(prefix) && OWNED_TEMP_SUFFIX.test(name.slice(prefix.length));
}

/** The pool file name for `dbPath` with floor epoch `floor` and random part `random` (12 hex digits). */
export function poolFileName(dbPath: string, floor: bigint, random: string): string {
  return `${databaseName(dbPath)}${TEMP_NAME_INFIX}${POOL_TEMP_TAG}-${floor.toString(16).padStart(16, '0')}-${random}`;
}

/** Options of `inspectTemporaryFiles` and `adoptOrRemoveTemporaryFiles` (temporary-file adoption). */
export interface AdoptionOptions extends FsOptions {
  /**
   * The lowest epoch the log may still need: every epoch below it is known
   * to be folded or superseded (a page store's header `nextEpoch`, a log's
   * explicit `firstEpoch`). A candidate below it is stale; with no segment
   * file at or above it, the chain of adoptable epochs starts exactly here.
   * Unset: the log knows no floor beyond its segment files.
   */
  floorEpoch?: bigint;
  /**
   * The highest commit sequence folded below `floorEpoch` (a store header's
   * checkpoint sequence): a candidate whose first commit sequence follows it
   * is next in line even when empty epochs (which write no file) lie between.
   */
  floorCommitSeq?: bigint;
}

/** What {@link inspectTemporaryFiles} decided about one temporary file of the log. */
export interface TemporaryFileVerdict {
  /** Full path. */
  path: string;
  /**
   * `adoptable`: the file starts with a complete, valid version-2 segment
   * (header CRC, every record CRC, every record of the header's epoch) whose
   * epoch is the next one after the segments (see {@link inspectTemporaryFiles}).
   * `remove`: anything else (empty or zero-filled pool file, torn or partial
   * write, version 1 or 3, an epoch below the floor or not next in line, a
   * duplicate of an existing segment).
   */
  verdict: 'adoptable' | 'remove';
  /** The header's epoch when the file starts with a whole segment, else `null`. */
  epoch: bigint | null;
  /** File size in bytes. */
  bytes: number;
  /** Length of the segment at the start of the file (the rest is stale and ignored); 0 when none. */
  segmentBytes: number;
  /** Why it is removed; `null` when adoptable. */
  reason: string | null;
}

/** What {@link adoptOrRemoveTemporaryFiles} did. */
export interface TemporaryFileCleanup {
  /** Temporary files renamed to their segment name, in epoch order. */
  adopted: { epoch: bigint; from: string; to: string }[];
  /** Temporary files unlinked. */
  removed: string[];
}

/**
 * The length of the segment at the start of `bytes`, found by walking the
 * header's record count over the length prefixes (a pool file holds stale
 * bytes after it), or `null` when the walk leaves the file or meets a length
 * no record can have. Checks nothing else: the caller decodes that prefix.
 */
export function segmentPrefixLength(bytes: Uint8Array): number | null {
  let header: { version: number; recordCount: number };
  try {
    header = decodeSegmentHeader(bytes);
  } catch {
    return null;
  }
  const maxBody = recordMaxBytes(header.version === 1 ? 1 : 2);
  let at = SEGMENT_HEADER_BYTES;
  for (let i = 0; i < header.recordCount; i++) {
    if (at + 4 > bytes.length) return null;
    const length = readU32(bytes, at);
    if (length > maxBody) return null;
    at += 4 + length;
    if (at > bytes.length) return null;
  }
  return at;
}

/**
 * Classifies the log's own temporary files ({@link isOwnedTemporaryName})
 * without changing anything. The rule (docs/durability.md, "Which temporary
 * files recovery adopts"):
 *
 * 1. only early-acknowledgement (`ack-`) and pool (`pool-`) files are
 *    candidates; every other shape is renamed before acknowledgement;
 * 2. the file must START with a complete version-2 segment: header CRC,
 *    every record's CRC, every record carrying the header's epoch (exactly
 *    the reader checks of docs/format.md section 4 over that prefix).
 *    Whatever follows it is stale and ignored. Version 1 (no record CRCs)
 *    and version 3 (acknowledged only once published) are never adopted;
 * 3. a pool file's segment below the floor in its name is stale; so is any
 *    segment below `options.floorEpoch`;
 * 4. two candidates for one epoch with different segment bytes fail closed
 *    (`ERR_SEGMENT_CORRUPT`, reason `ERR_SEGMENT_DUPLICATE_EPOCH`), as two
 *    segment files for one epoch do; identical ones are one candidate;
 * 5. a candidate is adoptable only as the next epoch in line after its
 *    predecessor (the nearest lower epoch with a segment file or an
 *    adoptable candidate): it is the predecessor's epoch + 1, or its first
 *    commit sequence is the predecessor's last + 1 (the epochs between were
 *    empty: they write no file). The last epoch of a recorded skipped range
 *    (`skipped-epochs.ts`) is a predecessor too, its ceiling the last
 *    sequence. Without such a predecessor it must be
 *    `floorEpoch` or follow `floorCommitSeq`; with no floor known and no
 *    segment file below it, only the lowest candidate starts the chain. So a
 *    temporary file for epoch 6 with only epoch 0 on disk (and a commit
 *    sequence that does not follow epoch 0's) is removed.
 *
 * Files that vanish while being read (a running writer renamed them) are skipped.
 * @throws {SegmentCorruptError} on two different candidates for one epoch.
 * @throws {WalIoError} when the directory or a temporary file cannot be read:
 * a file that cannot be judged is neither adopted nor removed.
 */
export async function inspectTemporaryFiles(
  dbPath: string,
  options?: AdoptionOptions,
): Promise<TemporaryFileVerdict[]> {
  const fs = options?.fs ?? nodeFileSystem;
  const dir = databaseDirectory(dbPath);
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (error) {
    throw toIoError(error, 'cannot list segment directory', 'readdir', dir);
  }
  const owned = names.filter((name) => isOwnedTemporaryName(dbPath, name)).sort();
  if (owned.length === 0) return [];
  const segmentEpochs = new Set((await scanSegments(dbPath, options)).map((e) => e.epoch));
  const floor = options?.floorEpoch;
  const verdicts: TemporaryFileVerdict[] = [];
  /** Candidates by epoch: the first file's verdict and its segment bytes. */
  const candidates = new Map<
    bigint,
    { verdict: TemporaryFileVerdict; segment: Uint8Array; seqs: CommitSeqRange | null }
  >();
  for (const name of owned) {
    const path = nodePath.join(dir, name);
    let bytes: Uint8Array;
    try {
      bytes = await fs.readFile(path);
    } catch (error) {
      if (isNotFound(error)) continue;
      throw toIoError(error, 'cannot read temporary file', 'read', path);
    }
    const suffix = ADOPTABLE_TEMP_SUFFIX.exec(
      name.slice(databaseName(dbPath).length + TEMP_NAME_INFIX.length),
    );
    if (suffix === null) {
      verdicts.push(removal(path, bytes, null, 'never acknowledged before its rename'));
      continue;
    }
    const nameFloor = suffix[1] === undefined ? null : BigInt(`0x${suffix[1]}`);
    const judged = judgeTemporaryBytes(path, bytes);
    if (!('segment' in judged)) {
      verdicts.push(judged);
      continue;
    }
    const { verdict, segment, seqs } = judged;
    const epoch = verdict.epoch!;
    if (nameFloor !== null && epoch < nameFloor) {
      verdicts.push(removal(path, bytes, epoch, 'stale: below the pool file floor'));
    } else if (floor !== undefined && epoch < floor) {
      verdicts.push(removal(path, bytes, epoch, 'stale: below the floor epoch'));
    } else if (segmentEpochs.has(epoch)) {
      verdicts.push(removal(path, bytes, epoch, 'duplicate of a segment file'));
    } else {
      const first = candidates.get(epoch);
      if (first === undefined) {
        candidates.set(epoch, { verdict, segment, seqs });
        verdicts.push(verdict);
      } else if (sameBytes(first.segment, segment)) {
        verdicts.push(removal(path, bytes, epoch, 'duplicate'));
      } else {
        throw new SegmentCorruptError(
          first.verdict.path,
          epoch,
          SegmentFileErrorReason.duplicateEpoch,
          `segment epoch ${epoch} has 2 different candidate temporary files: ${first.verdict.path}, ${path}`,
        );
      }
    }
  }
  // Only the next epoch in line is adopted (rule 5), then the one after it.
  const ascending = (a: bigint, b: bigint) => (a < b ? -1 : a > b ? 1 : 0);
  const sorted = [...candidates.keys()].sort(ascending);
  const segmentsSorted = [...segmentEpochs].sort(ascending);
  /** Adoptable epochs and their last commit sequence. */
  const chained = new Map<bigint, bigint | null>();
  const segmentLastSeq = new Map<bigint, bigint | null>();
  // A recorded skipped range (given up after corruption) counts as present:
  // its last epoch is a predecessor whose last sequence is the range's ceiling.
  const skippedLast = new Map<bigint, bigint>();
  for (const range of await readSkippedEpochs(dbPath, { fs })) {
    skippedLast.set(range.lastEpoch, range.commitSeqCeiling);
  }
  const lastSeqBefore = async (epoch: bigint): Promise<bigint | null> => {
    if (chained.has(epoch)) return chained.get(epoch)!;
    if (skippedLast.has(epoch) && !segmentEpochs.has(epoch)) return skippedLast.get(epoch)!;
    if (!segmentLastSeq.has(epoch)) {
      segmentLastSeq.set(epoch, await lastCommitSeqOf(segmentPath(dbPath, epoch), fs));
    }
    return segmentLastSeq.get(epoch)!;
  };
  for (const epoch of sorted) {
    const { seqs } = candidates.get(epoch)!;
    let predecessor: bigint | null = null;
    for (const e of [...segmentsSorted, ...chained.keys(), ...skippedLast.keys()]) {
      if (e < epoch && (predecessor === null || e > predecessor)) predecessor = e;
    }
    let next = false;
    if (predecessor !== null) {
      if (predecessor === epoch - 1n) next = true;
      else if (seqs !== null) {
        const last = await lastSeqBefore(predecessor);
        next = last !== null && seqs.lo === last + 1n;
      }
    }
    if (!next && floor !== undefined) {
      const afterFloorSeq = options?.floorCommitSeq;
      next =
        epoch === floor ||
        (afterFloorSeq !== undefined && seqs !== null && seqs.lo === afterFloorSeq + 1n);
    }
    if (!next && floor === undefined && predecessor === null) next = chained.size === 0;
    if (next) {
      const carried = predecessor === null ? null : await lastSeqBefore(predecessor);
      chained.set(epoch, seqs?.hi ?? carried);
    }
  }
  for (const [epoch, { verdict }] of candidates) {
    if (chained.has(epoch)) continue;
    verdict.verdict = 'remove';
    verdict.reason = 'not the next epoch after the segments';
  }
  return verdicts;
}

function removal(
  path: string,
  bytes: Uint8Array,
  epoch: bigint | null,
  reason: string,
): TemporaryFileVerdict {
  return { path, verdict: 'remove', epoch, bytes: bytes.length, segmentBytes: 0, reason };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The commit sequences of a segment's committed records. */
interface CommitSeqRange {
  lo: bigint;
  hi: bigint;
}

function commitSeqRange(records: readonly WalRecord[]): CommitSeqRange | null {
  let range: CommitSeqRange | null = null;
  for (const r of records) {
    if (r.endSeq === null) continue;
    if (range === null) range = { lo: r.endSeq, hi: r.endSeq };
    else {
      if (r.endSeq < range.lo) range.lo = r.endSeq;
      if (r.endSeq > range.hi) range.hi = r.endSeq;
    }
  }
  return range;
}

/** The last commit sequence in the segment file at `path`, `null` when none or unreadable. */
async function lastCommitSeqOf(path: string, fs: WalFileSystem): Promise<bigint | null> {
  try {
    return commitSeqRange(decodeFile(path, await fs.readFile(path)).records)?.hi ?? null;
  } catch {
    // Not judged here (recovery reports a bad segment itself); it shows no continuity.
    return null;
  }
}

/** Rule 2 of {@link inspectTemporaryFiles}: a whole version-2 segment at the start, or a removal. */
function judgeTemporaryBytes(
  path: string,
  bytes: Uint8Array,
):
  | TemporaryFileVerdict
  | { verdict: TemporaryFileVerdict; segment: Uint8Array; seqs: CommitSeqRange | null } {
  if (bytes.length === 0) return removal(path, bytes, null, 'empty');
  const length = segmentPrefixLength(bytes);
  if (length === null) return removal(path, bytes, null, 'no whole segment at the start');
  const segment = bytes.subarray(0, length);
  let header: { epoch: bigint; version: number };
  let records: WalRecord[];
  try {
    // Every reader check of docs/format.md#4-reading-validation-order-and-error-codes
    // over the prefix: header, every record CRC, every record of the header's epoch.
    ({ header, records } = decodeFile(path, segment));
  } catch (error) {
    return removal(path, bytes, null, error instanceof Error ? error.message : String(error));
  }
  if (header.version === 1) return removal(path, bytes, header.epoch, 'version 1 (no record CRCs)');
  if (header.version !== 2) {
    return removal(
      path,
      bytes,
      header.epoch,
      `version ${header.version} (acknowledged only once published)`,
    );
  }
  return {
    verdict: {
      path,
      verdict: 'adoptable',
      epoch: header.epoch,
      bytes: bytes.length,
      segmentBytes: length,
      reason: null,
    },
    segment,
    seqs: commitSeqRange(records),
  };
}

/**
 * Adopt-or-remove for the log's temporary files, run before any recovery
 * that replays segments (only while no writer is running: hold the lock).
 * Each adoptable file ({@link inspectTemporaryFiles}) is cut to its
 * segment's length (a pool file's stale tail), fsynced (its bytes reach
 * stable storage before a segment name points at them) and renamed to its
 * segment name; every other owned temporary file is unlinked; then one
 * directory fsync makes the renames and unlinks durable. Foreign files that
 * merely start with the infix are never touched.
 * @throws {WalIoError}
 */
export async function adoptOrRemoveTemporaryFiles(
  dbPath: string,
  options?: AdoptionOptions,
): Promise<TemporaryFileCleanup> {
  const fs = options?.fs ?? nodeFileSystem;
  const result: TemporaryFileCleanup = { adopted: [], removed: [] };
  const verdicts = await inspectTemporaryFiles(dbPath, options);
  for (const v of verdicts.filter((x) => x.verdict === 'adoptable')) {
    const to = segmentPath(dbPath, v.epoch!);
    let handle: WalFileHandle | null = null;
    let step = 'open';
    try {
      // The writer may have died before its fdatasync (a process crash keeps
      // the page cache): make the bytes durable before a name points at them.
      // A pool file holds stale bytes after the segment: cut them first, so
      // the segment name points at exactly one segment (docs/format.md).
      const cut = v.segmentBytes < v.bytes;
      handle = await fs.open(v.path, cut ? 'readWrite' : 'read');
      if (cut) {
        step = 'truncate';
        await handle.truncate(v.segmentBytes);
      }
      step = 'fsync';
      await handle.sync();
      step = 'close';
      await handle.close();
      handle = null;
      step = 'rename';
      await fs.rename(v.path, to); // atomic; made durable by the directory fsync below
    } catch (error) {
      await handle?.close().catch(() => undefined);
      throw toIoError(error, `cannot adopt temporary file ${v.path}`, step, to);
    }
    result.adopted.push({ epoch: v.epoch!, from: v.path, to });
  }
  result.adopted.sort((a, b) => (a.epoch < b.epoch ? -1 : a.epoch > b.epoch ? 1 : 0));
  for (const v of verdicts.filter((x) => x.verdict === 'remove')) {
    try {
      await fs.unlink(v.path);
      result.removed.push(v.path);
    } catch (error) {
      if (!isNotFound(error))
        throw toIoError(error, 'cannot delete temporary file', 'unlink', v.path);
    }
  }
  if (result.adopted.length > 0 || result.removed.length > 0) {
    await syncSegmentDirectory(dbPath, options);
  }
  return result;
}

/**
 * `adoptOrRemoveTemporaryFiles`, returning only how many files were
 * removed (adopted files become segments and are counted by recovery).
 * Only safe while no writer is running.
 */
export async function cleanupTemporaryFiles(
  dbPath: string,
  options?: AdoptionOptions,
): Promise<number> {
  return (await adoptOrRemoveTemporaryFiles(dbPath, options)).removed.length;
}
