/**
 * What `ParallelWal.open` needs to know about an existing log, read one
 * segment at a time (memory bounded by the largest segment, not the log):
 * every segment is fully decoded and checked (the storage layer's reader
 * checks, plus header epoch = file-name epoch and one file per epoch), the
 * newest epoch with a file (numbering continues after it, so no name is ever
 * reused), and the highest commit sequence (numbering continues after it).
 */
import type { WalError } from '../errors.js';
import type { WalFileSystem } from '../storage/fs.js';
import {
  adoptOrRemoveTemporaryFiles,
  inspectTemporaryFiles,
  recoverSegmentEntry,
  segmentEntryError,
} from '../storage/recovery.js';
import { duplicateEpochError, groupByEpoch, scanSegments } from '../storage/segment-files.js';

/** The existing log, as {@link scanExistingLog} found it. */
export interface ExistingLog {
  /** Newest epoch with a segment file (readable or not), or `null`. */
  newestEpoch: bigint | null;
  /** Highest commit sequence in the readable prefix, or `null`. */
  lastCommitSeq: bigint | null;
  /** Segments read completely. */
  segmentsRead: number;
  /** The first unusable segment (only with `skipCorrupt`), or `null`. */
  stoppedAt: WalError | null;
}

/**
 * Reads every segment of `dbPath` in epoch order. Fails closed on the first
 * unusable one unless `skipCorrupt` (then it stops there: prefix semantics).
 * @throws {SegmentCorruptError} / {@link WalIoError} as the storage layer's recovery does.
 */
export async function scanExistingLog(
  dbPath: string,
  options: { fs: WalFileSystem; skipCorrupt: boolean },
): Promise<ExistingLog> {
  const entries = await scanSegments(dbPath, { fs: options.fs });
  const result: ExistingLog = {
    newestEpoch: entries.length === 0 ? null : entries[entries.length - 1]!.epoch,
    lastCommitSeq: null,
    segmentsRead: 0,
    stoppedAt: null,
  };
  for (const group of groupByEpoch(entries)) {
    const entry = group[0]!;
    try {
      if (group.length > 1) throw duplicateEpochError(group);
      const { records } = await recoverSegmentEntry(entry, { fs: options.fs });
      for (const record of records) {
        const seq = record.endSeq ?? record.beginSeq;
        if (result.lastCommitSeq === null || seq > result.lastCommitSeq) result.lastCommitSeq = seq;
      }
      result.segmentsRead++;
    } catch (raw) {
      const error = segmentEntryError(entry, raw);
      if (!options.skipCorrupt) throw error;
      result.stoppedAt = error;
      break;
    }
  }
  return result;
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
  const existing = await scanExistingLog(dbPath, { fs, skipCorrupt: options.skipCorrupt });
  let newest = existing.newestEpoch;
  if (!options.locked) {
    // Not ours to adopt, but never reuse the epoch of an adoptable file.
    for (const v of await inspectTemporaryFiles(dbPath, { fs, ...floor })) {
      if (v.verdict === 'adoptable' && (newest === null || v.epoch! > newest)) newest = v.epoch;
    }
  }
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
