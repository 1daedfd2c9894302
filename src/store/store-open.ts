/**
 * Opening a page store: the writer lock, the database file and its header
 * (created when new), recovery of the log into the file
 * (`store-recovery.ts`), and the log itself, numbered above everything
 * already folded or given up. On any failure everything opened so far is
 * closed again and the lock released.
 */
import { ParallelWal, type ParallelWalConfig } from '../engine/wal.js';
import { WalArgumentError } from '../errors.js';
import { RecoveryGapError } from '../storage/errors.js';
import { nodeFileSystem, type WalFileSystem } from '../storage/fs.js';
import { acquireLock, type LockHandle } from '../storage/lockfile.js';
import { floorsAfterSkipped, type SkippedEpochRange } from '../storage/skipped-epochs.js';
import { DatabaseFile } from './db-file.js';
import { describeError, StoreError, StoreErrorCode } from './errors.js';
import { databaseFileSize } from './file-length.js';
import {
  pageSizeBytesDefault,
  readStoreHeader,
  type StoreHeader,
  validatePageSize,
  writeStoreHeader,
} from './header.js';
import {
  checkpointThresholdBytesDefault,
  type PageStoreOptions,
  type StoreRecoveryReport,
} from './page-store-types.js';
import { reseedMarkerPath } from './reseed-files.js';
import { recoverIntoFile } from './store-recovery.js';

/** Everything `PageStore.open` opened, in the state recovery left it. */
export interface OpenedStore {
  lock: LockHandle;
  file: DatabaseFile;
  /** The header after recovery. */
  header: StoreHeader;
  wal: ParallelWal;
  fs: WalFileSystem;
  recovery: StoreRecoveryReport;
}

/**
 * Takes the writer lock, opens (or creates) the database file, folds the
 * log's durable epochs into it and opens the log.
 * @throws {WalArgumentError} for a bad path, page size or threshold; the
 * errors `PageStore.open` documents.
 */
export async function openStore(path: string, options: PageStoreOptions): Promise<OpenedStore> {
  checkOpenArguments(path, options);
  const fs = options.fs ?? nodeFileSystem;
  const lock = await acquireLock(path, { fs, lockTimeoutMs: options.lockTimeoutMs });
  let file: DatabaseFile | null = null;
  let wal: ParallelWal | null = null;
  try {
    await refuseUnfinishedReseed(path, fs);
    // Certificates on: check the chain before folding (and deleting) any
    // segment; the log's own open then finds it verified.
    await options.controlPlane?.verifyAtOpen?.(path, { fs });
    const opened = await openDatabaseFile(path, options.pageSize, fs);
    file = opened.file;
    const recovered = await recoverIntoFile(path, opened.file, opened.header, fs, {
      skipCorrupt: options.skipCorrupt ?? false,
      allowEpochGaps: options.allowEpochGaps ?? false,
      ...(options.retainSegmentsAbove === undefined
        ? {}
        : { retainSegmentsAbove: options.retainSegmentsAbove }),
    });
    wal = await openLog(path, options, fs, recovered.header, recovered.skippedRanges);
    return { lock, file, header: recovered.header, wal, fs, recovery: recovered.report };
  } catch (error) {
    // A missing epoch: the control plane latches recovery_gap (the open
    // still fails closed).
    if (error instanceof RecoveryGapError) {
      options.controlPlane?.reportFallback?.('recoveryGap', error.message);
    }
    await wal?.close().catch(() => undefined);
    await file?.close().catch(() => undefined);
    await lock.release().catch(() => undefined);
    throw error;
  }
}

function checkOpenArguments(path: string, options: PageStoreOptions): void {
  if (typeof path !== 'string' || path.length === 0) {
    throw new WalArgumentError('path must be a non-empty string');
  }
  if (options.pageSize !== undefined) validatePageSize(options.pageSize);
  const threshold = options.checkpointThresholdBytes ?? checkpointThresholdBytesDefault;
  if (!Number.isSafeInteger(threshold) || threshold < 1) {
    throw new WalArgumentError(
      `checkpointThresholdBytes must be a positive integer, got ${threshold}`,
    );
  }
}

/**
 * Opens the log above everything the database has folded or given up. The
 * header's floors keep the log's numbering increasing for the database's
 * whole life: a checkpoint deletes the segments it folded, and new epochs
 * (and commit sequences) must never look already folded. Epochs given up
 * with skipCorrupt (set aside, possibly on replicas) are never numbered
 * again either.
 */
async function openLog(
  path: string,
  options: PageStoreOptions,
  fs: WalFileSystem,
  header: StoreHeader,
  skippedRanges: readonly SkippedEpochRange[],
): Promise<ParallelWal> {
  const { lock: _ignored, ...walConfig } = options as ParallelWalConfig;
  const skipped = floorsAfterSkipped(skippedRanges);
  return ParallelWal.open(path, {
    ...walConfig,
    fs,
    lock: false,
    firstEpoch: floorOf(walConfig.firstEpoch, maxOf(header.nextEpoch, skipped.epoch)),
    firstCommitSeq: floorOf(
      walConfig.firstCommitSeq,
      maxOf(header.checkpointCommitSeq + 1n, skipped.commitSeq),
    ),
  });
}

/**
 * A replica interrupted while being re-seeded from a snapshot (see
 * `ReplicaStore.reseed`) may have its new file under its old header until a
 * replica open finishes the switch: never open it as a database before that.
 */
async function refuseUnfinishedReseed(path: string, fs: WalFileSystem): Promise<void> {
  const marker = reseedMarkerPath(path);
  try {
    await fs.stat(marker);
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT') return;
    throw new StoreError(StoreErrorCode.io, `cannot stat ${marker}: ${describeError(error)}`, {
      cause: error,
    });
  }
  throw new StoreError(
    StoreErrorCode.replicaState,
    `${path} is a replica whose re-seed from a snapshot was interrupted (${marker} exists): open it with pwal follow (or ReplicaStore.open) first, which finishes it`,
  );
}

function maxOf(a: bigint, b: bigint | null): bigint {
  return b !== null && b > a ? b : a;
}

/** The higher of a caller's floor and the store's own (a non-bigint is passed on for the log to reject). */
function floorOf(given: bigint | undefined, own: bigint): bigint {
  if (typeof given !== 'bigint') return given ?? own;
  return given > own ? given : own;
}

/** Opens or creates the database file and its header. */
export async function openDatabaseFile(
  path: string,
  pageSize: number | undefined,
  fs: WalFileSystem,
): Promise<{ file: DatabaseFile; header: StoreHeader }> {
  let header = await readStoreHeader(path, fs);
  const fileBytes = await databaseFileSize(path, fs);
  if (header === null) {
    if (fileBytes !== null && fileBytes > 0) {
      throw new StoreError(
        StoreErrorCode.headerMissing,
        `${path} exists but has no store header (${path}-pwal-store): not a page store database`,
      );
    }
    header = {
      pageSize: pageSize ?? pageSizeBytesDefault,
      dbSizePages: 0,
      nextEpoch: 0n,
      checkpointCommitSeq: 0n,
    };
    const file = await DatabaseFile.open(path, header.pageSize, fs, true);
    try {
      // Also makes the new database file's directory entry durable (same directory).
      await writeStoreHeader(path, header, fs);
    } catch (error) {
      await file.close().catch(() => undefined);
      throw new StoreError(StoreErrorCode.io, `cannot create ${path}: ${describeError(error)}`, {
        cause: error,
      });
    }
    return { file, header };
  }
  if (pageSize !== undefined && pageSize !== header.pageSize) {
    throw new StoreError(
      StoreErrorCode.pageSizeMismatch,
      `${path} has page size ${header.pageSize}, opened with page size ${pageSize}`,
    );
  }
  if (fileBytes === null && (header.dbSizePages > 0 || header.nextEpoch > 0n)) {
    throw new StoreError(
      StoreErrorCode.headerMissing,
      `${path} is missing, but its store header says it holds ${header.dbSizePages} pages`,
    );
  }
  const file = await DatabaseFile.open(path, header.pageSize, fs, fileBytes === null);
  return { file, header };
}
