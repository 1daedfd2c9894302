/**
 * What `ParallelWal.open` needs to know about an existing log, read one
 * segment at a time (memory bounded by the largest segment, not the log):
 * every segment is fully decoded and checked (the storage layer's reader
 * checks, plus header epoch = file-name epoch and one file per epoch), no
 * epoch missing inside the log, the newest epoch with a file or given up
 * (numbering continues after it, so no name is ever reused), and the highest
 * commit sequence (numbering continues after it).
 */

import { adoptOrRemoveTemporaryFiles, inspectTemporaryFiles } from '../storage/adoption.js';
import type { WalFileSystem } from '../storage/fs.js';
import { type SegmentFileEntry, scanSegments } from '../storage/segment-files.js';
import { type RecoveryStop, skippedRangeAfter, walkSegments } from '../storage/segment-walk.js';
import { recordSkippedEpochs, type SkippedEpochRange } from '../storage/skipped-epochs.js';

/** The existing log, as {@link scanExistingLog} found it. */
export interface ExistingLog {
  /** Newest epoch with a segment file (readable or not) or in a recorded skipped range, or `null`. */
  newestEpoch: bigint | null;
  /**
   * Highest commit sequence on disk: in the readable segments, and in the
   * ceilings of the recorded skipped ranges; `null` when none.
   */
  lastCommitSeq: bigint | null;
  /** Segments read completely. */
  segmentsRead: number;
  /** The first unusable segment or missing epoch (only with `skipCorrupt`), or `null`. */
  stoppedAt: RecoveryStop | null;
  /** With a stop: what opening for writing gives up (see `skippedRangeAfter`). */
  rangeToSkip: SkippedEpochRange | null;
}

function maxOf(a: bigint | null, b: bigint | null): bigint | null {
  if (a === null) return b;
  return b !== null && b > a ? b : a;
}

/**
 * Reads every segment of `dbPath` in epoch order, one at a time. Fails closed
 * on the first unusable segment or missing epoch unless `skipCorrupt` (then
 * it stops there: prefix semantics). Segments in recorded skipped ranges are
 * not read; the ranges still count for numbering.
 * @throws {SegmentCorruptError} / {@link RecoveryGapError} / {@link WalIoError}
 * as the storage layer's recovery does.
 */
export async function scanExistingLog(
  dbPath: string,
  options: {
    fs: WalFileSystem;
    skipCorrupt: boolean;
    allowEpochGaps: boolean;
    /** Epochs below it are held elsewhere (folded, replicated): holes there are not losses. */
    ignoreHolesBelow?: bigint;
    /** Adoptable temporary files read in place (an open without the lock may not adopt them). */
    pending?: readonly SegmentFileEntry[];
  },
): Promise<ExistingLog> {
  const { fs } = options;
  const entries = await scanSegments(dbPath, { fs });
  if (options.pending !== undefined && options.pending.length > 0) {
    entries.push(...options.pending);
    entries.sort((a, b) => (a.epoch < b.epoch ? -1 : a.epoch > b.epoch ? 1 : 0));
  }
  let lastCommitSeq: bigint | null = null;
  let segmentsRead = 0;
  const walk = await walkSegments(
    dbPath,
    entries,
    {
      fs,
      skipCorrupt: options.skipCorrupt,
      allowEpochGaps: options.allowEpochGaps,
      ...(options.ignoreHolesBelow === undefined
        ? {}
        : { ignoreHolesBelow: options.ignoreHolesBelow }),
    },
    (_entry, records) => {
      for (const record of records)
        lastCommitSeq = maxOf(lastCommitSeq, record.endSeq ?? record.beginSeq);
      segmentsRead++;
    },
  );
  const rangeToSkip = await skippedRangeAfter(walk.stoppedAt, walk.partial, lastCommitSeq, { fs });
  let newestEpoch = walk.newestEpoch;
  for (const range of rangeToSkip === null
    ? walk.skippedRanges
    : [...walk.skippedRanges, rangeToSkip]) {
    newestEpoch = maxOf(newestEpoch, range.lastEpoch);
    lastCommitSeq = maxOf(lastCommitSeq, range.commitSeqCeiling);
  }
  return { newestEpoch, lastCommitSeq, segmentsRead, stoppedAt: walk.stoppedAt, rangeToSkip };
}

/** Where a log being opened starts numbering; see {@link planOpen}. */
export interface OpenPlan {
  /** Temporary files adopted as segments (acknowledged epochs whose rename was lost). */
  adopted: number;
  /** First epoch the log uses. */
  startEpoch: bigint;
  /** Every epoch below the start counts as durable (`null`: none). */
  durableEpoch: bigint | null;
  /** First commit sequence the log assigns. */
  nextCommitSeq: bigint;
}

/**
 * Prepares opening the log of `dbPath`: adopts or removes temporary files
 * (only the lock holder may: another writer's in-progress segment looks
 * exactly like an interrupted one), validates every segment, and numbers
 * after every file present — corrupt or not, adoptable or not — so no name
 * is ever reused, and after the floors `firstEpoch` / `firstCommitSeq`.
 */
export async function planOpen(
  dbPath: string,
  options: {
    fs: WalFileSystem;
    skipCorrupt: boolean;
    allowEpochGaps: boolean;
    locked: boolean;
    firstEpoch: bigint;
    firstCommitSeq: bigint;
    /** The floor the caller knows (an explicit `firstEpoch`): no older epoch is adopted. */
    floorEpoch?: bigint;
    /** With `floorEpoch`: the commit sequence below the floor (explicit `firstCommitSeq` - 1). */
    floorCommitSeq?: bigint;
  },
): Promise<OpenPlan> {
  const { fs } = options;
  const floor =
    options.floorEpoch === undefined
      ? {}
      : {
          floorEpoch: options.floorEpoch,
          ...(options.floorCommitSeq === undefined
            ? {}
            : { floorCommitSeq: options.floorCommitSeq }),
        };
  // Adoption renames complete temporary segments before the scan validates them.
  const adopted = options.locked
    ? (await adoptOrRemoveTemporaryFiles(dbPath, { fs, ...floor })).adopted.length
    : 0;
  // Without the lock, acknowledged epochs still under their temporary names
  // are not ours to adopt, but they are part of the log (and fill its numbers).
  const pending = options.locked
    ? []
    : (await inspectTemporaryFiles(dbPath, { fs, ...floor }))
        .filter((v) => v.verdict === 'adoptable')
        .map((v) => ({ epoch: v.epoch!, path: v.path, prefixBytes: v.segmentBytes }));
  const existing = await scanExistingLog(dbPath, {
    fs,
    skipCorrupt: options.skipCorrupt,
    allowEpochGaps: options.allowEpochGaps,
    // The floor: every epoch below it is durable elsewhere (a store's file,
    // the cluster), so only holes from it up count.
    ...(options.firstEpoch > 0n ? { ignoreHolesBelow: options.firstEpoch } : {}),
    pending,
  });
  if (existing.rangeToSkip !== null) {
    // Given up for good, durably, before any epoch above it is written:
    // later recoveries skip it instead of stopping there (which would hide
    // every commit acknowledged from now on), and its numbers stay used.
    await recordSkippedEpochs(dbPath, existing.rangeToSkip, { fs });
  }
  const newest = existing.newestEpoch;
  const afterNewest = newest === null ? 0n : newest + 1n;
  // A floor keeps numbering above epochs (and sequences) that were used
  // but whose segments are gone (folded by a checkpoint, replicated).
  const startEpoch = afterNewest > options.firstEpoch ? afterNewest : options.firstEpoch;
  const lastSeq = existing.lastCommitSeq;
  const afterLastSeq = lastSeq === null ? 1n : lastSeq + 1n;
  return {
    adopted,
    startEpoch,
    durableEpoch: startEpoch === 0n ? null : startEpoch - 1n,
    nextCommitSeq: afterLastSeq > options.firstCommitSeq ? afterLastSeq : options.firstCommitSeq,
  };
}
