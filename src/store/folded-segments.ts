/**
 * Deleting the segments a fold made redundant, after the database file and
 * the header that passes them are durable: shared by checkpoints and by
 * recovery on open. A replicated store keeps folded segments until the
 * cluster has them (`retainSegmentsAbove`).
 */
import type { WalFileSystem } from '../storage/fs.js';
import {
  deleteSegment,
  listSegments,
  type SegmentFileEntry,
  syncSegmentDirectory,
} from '../storage/segment-files.js';

/** Segment files unlinked at once after a checkpoint. */
const DELETE_PARALLELISM = 32;

/**
 * The highest folded epoch whose segment may be deleted: `folded`, lowered to
 * what retention allows (`-1n`: none, when nothing is replicated yet).
 */
export function deletableThrough(
  folded: bigint,
  retainSegmentsAbove?: () => bigint | null,
): bigint {
  if (retainSegmentsAbove === undefined) return folded;
  const replicated = retainSegmentsAbove();
  if (replicated === null) return -1n;
  return replicated < folded ? replicated : folded;
}

/**
 * Deletes the segments of epochs `<= through` (already in the file). The log
 * reopens above the header's next epoch and last folded commit sequence
 * (`firstEpoch` / `firstCommitSeq`), so no segment needs to stay behind to
 * keep it from reusing an epoch. Fsyncs the directory. @returns files deleted.
 */
export async function deleteFolded(
  path: string,
  fs: WalFileSystem,
  through: bigint,
  recycle?: (doomed: SegmentFileEntry[]) => Promise<number>,
): Promise<number> {
  if (through < 0n) return 0;
  const all = await listSegments(path, { fs });
  const doomed = all.filter((entry) => entry.epoch <= through);
  if (recycle !== undefined) return recycle(doomed);
  // Unlinks in parallel (freeing a large file's extents takes a while on
  // ext4); one directory fsync then makes them all durable.
  for (let i = 0; i < doomed.length; i += DELETE_PARALLELISM) {
    await Promise.all(
      doomed.slice(i, i + DELETE_PARALLELISM).map((entry) => deleteSegment(entry.path, { fs })),
    );
  }
  if (doomed.length > 0) await syncSegmentDirectory(path, { fs });
  return doomed.length;
}
