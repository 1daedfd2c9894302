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
import { recoverSegmentEntry, segmentEntryError } from '../storage/recovery.js';
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
