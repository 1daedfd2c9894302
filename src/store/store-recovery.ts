/**
 * Recovery on open (and `pwal recover`): fold every durable epoch the header
 * has not passed into the database file, fsync, move the header, then delete
 * the applied segments. The order is the one a checkpoint keeps, so a crash
 * at any step leaves a database the next recovery completes
 * (docs/design.md#recovery).
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import type { WalFileSystem } from '../storage/fs.js';
import { recoverSegments, type SegmentRecoveryResult } from '../storage/recovery.js';
import { syncSegmentDirectory } from '../storage/segment-files.js';
import { recordSkippedEpochs, type SkippedEpochRange } from '../storage/skipped-epochs.js';
import type { DatabaseFile } from './db-file.js';
import { truncationError } from './file-length.js';
import { deletableThrough, deleteFolded } from './folded-segments.js';
import { type StoreHeader, writeStoreHeader } from './header.js';
import type { StoreRecoveryReport } from './page-store-types.js';
import { applyReplay, foldRecords, type ReplayState, startReplay } from './replay.js';
import { checkpointEpochOf } from './store-core.js';

/** Options of {@link recoverIntoFile}. */
export interface StoreRecoveryOptions {
  /** Set unusable segments aside instead of failing (see `recoverIntoFile`). */
  skipCorrupt: boolean;
  /** A missing epoch is not a lost segment (logs of writers that skip numbers). */
  allowEpochGaps?: boolean;
  /** Retention of a replicated store (`PageStoreOptions.retainSegmentsAbove`). */
  retainSegmentsAbove?: () => bigint | null;
}

/** What {@link recoverIntoFile} leaves behind. */
export interface StoreRecovery {
  /** The header now durable (the given one when nothing was folded). */
  header: StoreHeader;
  report: StoreRecoveryReport;
  /** Every range of epochs given up so far (`<db>-wal-skipped`). */
  skippedRanges: SkippedEpochRange[];
}

/**
 * Folds the log above `header` into `file` and makes it durable. Segments
 * from the header's next epoch on must be contiguous: a missing one fails
 * closed (`ERR_RECOVERY_GAP`) unless `allowEpochGaps`. With `skipCorrupt`,
 * the unusable (or missing) epoch through the newest one on disk are first
 * recorded as given up (`<db>-wal-skipped`, durably), then the segments
 * among them are renamed aside (`…-wal-corrupt-…`): kept for inspection,
 * never replayed, never numbered again, and not a gap for later recoveries.
 * @throws {StoreError} `ERR_STORE_FILE_TRUNCATED` when the file is shorter
 * than the header and the log allow; the storage layer's recovery errors.
 */
export async function recoverIntoFile(
  path: string,
  file: DatabaseFile,
  header: StoreHeader,
  fs: WalFileSystem,
  options: StoreRecoveryOptions,
): Promise<StoreRecovery> {
  const started = performance.now();
  const recovered = await recoverSegments(path, {
    fs,
    skipCorrupt: options.skipCorrupt,
    allowEpochGaps: options.allowEpochGaps ?? false,
    firstUnappliedEpoch: header.nextEpoch,
    cleanupTemporaryFiles: true,
    // Epochs below the header's are folded (their segments may all be gone):
    // a temporary or pool file still holding one is stale, never adopted.
    floorEpoch: header.nextEpoch,
    floorCommitSeq: header.checkpointCommitSeq,
  });
  const state = startReplay(header.dbSizePages);
  foldRecords(state, recovered.records, header.nextEpoch, header.pageSize, path);
  const report = emptyReport(header, recovered);
  await writeFold(path, file, header, state, report);
  const next = await moveHeader(path, header, state, recovered.epochs, fs, report);
  const skippedRanges = await recordGivenUp(path, header, recovered, fs);
  await setAside(path, recovered, fs, report);
  report.segmentsDeleted = await deleteFolded(
    path,
    fs,
    deletableThrough(next.nextEpoch - 1n, options.retainSegmentsAbove),
  );
  report.durationMs = performance.now() - started;
  return { header: next, report, skippedRanges };
}

function emptyReport(header: StoreHeader, recovered: SegmentRecoveryResult): StoreRecoveryReport {
  return {
    checkpointEpoch: checkpointEpochOf(header),
    source: 'log',
    phasesMs: { fold: 0, write: 0, header: 0, delete: 0 },
    segmentsApplied: recovered.epochs.filter((e) => e >= header.nextEpoch).length,
    segmentsDeleted: 0,
    pagesWritten: 0,
    bytesWritten: 0,
    dbSizePages: header.dbSizePages,
    conflict: false,
    durationMs: 0,
    quarantinedSegments: [],
  };
}

/**
 * Writes the fold into the file (fsynced) when it changes anything: commits
 * to apply, or a length other than the header's (a fold cut short). A file
 * shorter than any crash can leave it fails first.
 */
async function writeFold(
  path: string,
  file: DatabaseFile,
  header: StoreHeader,
  state: ReplayState,
  report: StoreRecoveryReport,
): Promise<void> {
  const fileBytes = await file.size();
  const truncated = truncationError(path, header, fileBytes, state.minSizePages);
  if (truncated !== null) throw truncated;
  const lengthOk = fileBytes === header.dbSizePages * header.pageSize;
  if (state.commits > 0 || !lengthOk) {
    report.pagesWritten = await applyReplay(file, state);
    report.bytesWritten = report.pagesWritten * header.pageSize;
  }
}

/**
 * Moves the header past the newest recovered epoch, durably (the file is
 * durable already). @returns the header now in force.
 */
async function moveHeader(
  path: string,
  header: StoreHeader,
  state: ReplayState,
  epochs: readonly bigint[],
  fs: WalFileSystem,
  report: StoreRecoveryReport,
): Promise<StoreHeader> {
  const newest = epochs[epochs.length - 1];
  if (newest === undefined || newest < header.nextEpoch) return header;
  const next: StoreHeader = {
    pageSize: header.pageSize,
    dbSizePages: state.sizePages,
    nextEpoch: newest + 1n,
    checkpointCommitSeq: state.lastStamp?.commitSeq ?? header.checkpointCommitSeq,
  };
  assert.ok(
    next.nextEpoch > header.nextEpoch,
    `recovery would move the folded floor of ${path} back from epoch ${header.nextEpoch} to ${next.nextEpoch}`,
  );
  await writeStoreHeader(path, next, fs);
  report.checkpointEpoch = newest;
  report.dbSizePages = state.sizePages;
  return next;
}

/**
 * Records the range a stopped recovery gives up, durably, before anything is
 * renamed aside or written above it: from now on these epochs (and their
 * commit sequences) are never used again. @returns every recorded range.
 */
async function recordGivenUp(
  path: string,
  header: StoreHeader,
  recovered: SegmentRecoveryResult,
  fs: WalFileSystem,
): Promise<SkippedEpochRange[]> {
  const range = recovered.rangeToSkip;
  if (range === null) return recovered.skippedRanges;
  if (range.commitSeqCeiling < header.checkpointCommitSeq) {
    range.commitSeqCeiling = header.checkpointCommitSeq;
  }
  return recordSkippedEpochs(path, range, { fs });
}

/**
 * Renames the given-up segments (this run's and earlier recorded ones still
 * under their names) aside: never replayed, never folded by a checkpoint.
 */
async function setAside(
  path: string,
  recovered: SegmentRecoveryResult,
  fs: WalFileSystem,
  report: StoreRecoveryReport,
): Promise<void> {
  const givenUp = [...recovered.partialSegments, ...recovered.skippedSegments];
  for (const partial of givenUp) {
    const aside = partial.replace('-wal-seg-', '-wal-corrupt-');
    const target = `${aside}-${randomBytes(4).toString('hex')}`;
    await fs.rename(partial, target);
    report.quarantinedSegments.push(target);
  }
  if (givenUp.length > 0) await syncSegmentDirectory(path, { fs });
}
