/**
 * The walk over a log's segments in epoch order, and what stops it: an
 * unusable segment, or a hole (an epoch with no segment, outside every range
 * recorded as given up in `skipped-epochs.ts`). By default the walk fails
 * closed there; with `skipCorrupt` it stops and reports the range a writer
 * gives up by writing after it.
 */
import { strict as assert } from 'node:assert';
import { WalArgumentError, WalError } from '../errors.js';
import { SegmentFormatError } from '../format/errors.js';
import { recordBytesMinV1, SEGMENT_HEADER_BYTES, u64Max, type WalRecord } from '../format/types.js';
import {
  RecoveryGapError,
  SegmentCorruptError,
  SegmentFileErrorReason,
  toIoError,
} from './errors.js';
import { nodeFileSystem } from './fs.js';
import {
  decodeFile,
  duplicateEpochError,
  type FsOptions,
  groupByEpoch,
  isNotFound,
  readWholeFile,
  type SegmentFileEntry,
  segmentPath,
} from './segment-files.js';
import { readSkippedEpochs, type SkippedEpochRange, skippedRangeOf } from './skipped-epochs.js';

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
  /** See `SegmentRecoveryOptions.skipCorrupt` (recovery.ts). */
  skipCorrupt?: boolean;
  /** See `SegmentRecoveryOptions.allowEpochGaps` (recovery.ts). */
  allowEpochGaps?: boolean;
  /** See `SegmentRecoveryOptions.firstUnappliedEpoch` (recovery.ts). */
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

/**
 * Checks the walk's options as given by a caller (they reach public calls).
 * @throws {WalArgumentError} for a non-boolean `allowEpochGaps` or a floor
 * that is not a u64 bigint.
 */
export function checkWalkOptions(options: SegmentWalkOptions): void {
  if (options.allowEpochGaps !== undefined && typeof options.allowEpochGaps !== 'boolean') {
    throw new WalArgumentError(
      `allowEpochGaps must be a boolean, got ${String(options.allowEpochGaps)}`,
    );
  }
  for (const name of ['firstUnappliedEpoch', 'ignoreHolesBelow'] as const) {
    const floor = options[name];
    if (floor !== undefined && (typeof floor !== 'bigint' || floor < 0n || floor > u64Max)) {
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
  const holes = new HoleCheck(dbPath, options, walk.skippedRanges);
  const groups = groupByEpoch(entries);
  for (let index = 0; index < groups.length; index++) {
    const group = groups[index]!;
    const entry = group[0]!;
    // Recovered epochs only grow: a segment replayed after a later one would
    // put its commits out of recovery order.
    assert.ok(
      index === 0 || entry.epoch > groups[index - 1]![0]!.epoch,
      `segments of ${dbPath} walked out of epoch order: ${entry.epoch} after ${groups[index - 1]?.[0]?.epoch}`,
    );
    try {
      holes.check(entry.epoch);
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
      walk.stoppedAt = stopOf(entry, error);
      break;
    }
  }
  return walk;
}

/** The hole rule of {@link walkSegments}: every epoch from the first one checked on needs a segment. */
class HoleCheck {
  /** The next epoch that must have a segment (`null`: whichever comes first). */
  private expected: bigint | null;

  constructor(
    private readonly dbPath: string,
    private readonly options: SegmentWalkOptions,
    private readonly skippedRanges: readonly SkippedEpochRange[],
  ) {
    this.expected = options.firstUnappliedEpoch ?? null;
  }

  /**
   * The walk reached a segment of `epoch`.
   * @throws {RecoveryGapError} when an epoch before it, from the one
   * expected on, has no segment and lies in no recorded skipped range.
   */
  check(epoch: bigint): void {
    const { firstUnappliedEpoch: floor, allowEpochGaps } = this.options;
    // Below the first unapplied epoch segments may be missing (folded).
    if (floor !== undefined && epoch < floor) return;
    const ignoredBelow = this.options.ignoreHolesBelow ?? 0n;
    const expected = this.expected;
    if (expected !== null && epoch > expected && epoch > ignoredBelow && !allowEpochGaps) {
      const from = expected > ignoredBelow ? expected : ignoredBelow;
      const hole = firstHole(this.skippedRanges, from, epoch - 1n);
      if (hole !== null) {
        throw new RecoveryGapError(
          segmentPath(this.dbPath, hole.first),
          hole.first,
          hole.last,
          epoch,
        );
      }
    }
    this.expected = epoch + 1n;
  }
}

/** Where and why the walk stopped at `entry` with `error` (`skipCorrupt`). */
function stopOf(entry: SegmentFileEntry, error: WalError): RecoveryStop {
  if (error instanceof RecoveryGapError) {
    return {
      path: error.path,
      epoch: error.missingEpoch,
      code: error.code,
      message: error.message,
    };
  }
  return {
    path: entry.path,
    epoch: entry.epoch,
    code: error instanceof SegmentCorruptError ? error.reason : error.code,
    message: error.message,
  };
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
      // A symlink, FIFO or device under a segment name holds nothing our
      // writer wrote (it only makes regular files): no sequence to stay above.
      if (
        error instanceof SegmentCorruptError &&
        error.reason === SegmentFileErrorReason.notRegular
      )
        continue;
      throw error;
    }
    try {
      for (const record of decodeFile(entry.path, bytes).records) {
        const seq = record.endSeq ?? record.beginSeq;
        if (seq > ceiling) ceiling = seq;
      }
    } catch {
      const capacity = Math.max(0, bytes.length - SEGMENT_HEADER_BYTES) / (4 + recordBytesMinV1);
      ceiling += BigInt(Math.floor(capacity));
    }
  }
  return { firstEpoch: stoppedAt.epoch, lastEpoch, commitSeqCeiling: ceiling };
}
