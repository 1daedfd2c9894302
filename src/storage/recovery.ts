/**
 * Recovery from segment files (SYSTEM.md §5): read the segments in epoch
 * order, fail closed on the first unusable one (or, with `skipCorrupt`, stop
 * there and replay only the prefix before it), hand back the records in
 * recovery order. Deleting segments is a separate, explicit step taken only
 * after the caller has made the applied pages durable.
 */
import * as nodePath from 'node:path';
import { WalError } from '../errors.js';
import { SegmentFormatError } from '../format/errors.js';
import { isInRecoveryOrder, recoveryOrder } from '../format/order.js';
import type { WalRecord } from '../format/types.js';
import { SegmentCorruptError, SegmentFileErrorReason, toIoError } from './errors.js';
import { nodeFileSystem } from './fs.js';
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
  syncDirectoryAt,
  syncSegmentDirectory,
  TEMP_NAME_INFIX,
} from './segment-files.js';

/** Options of {@link recoverSegments}. */
export interface SegmentRecoveryOptions extends FsOptions {
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
  /** Remove leftover temporary files of interrupted writes first (default false). */
  cleanupTemporaryFiles?: boolean;
}

/** Why recovery stopped early (with `skipCorrupt`). */
export interface RecoveryStop {
  /** The first unusable segment. */
  path: string;
  /** Its epoch, from its file name. */
  epoch: bigint;
  /** The specific code (`ERR_SEGMENT_HEADER_CHECKSUM`, `ERR_SEGMENT_NAME_MISMATCH`, `ERR_IO`, …). */
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
  /** The unusable segment and every later one (only with `skipCorrupt`). */
  partialSegments: string[];
  /** Segments safe to delete once the applied pages are durable (only with `deleteAfterRecovery`). */
  deletableSegments: string[];
  /** All recovered records in recovery order. */
  records: WalRecord[];
  /** Why recovery stopped early, or `null` when every segment was recovered. */
  stoppedAt: RecoveryStop | null;
  /** Temporary files removed first (with `cleanupTemporaryFiles`). */
  temporaryFilesRemoved: number;
}

function corruptionOf(entry: SegmentFileEntry, error: unknown): SegmentCorruptError | WalError {
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
async function recoverOne(
  entry: SegmentFileEntry,
  options: FsOptions,
): Promise<{ records: WalRecord[]; bytes: number }> {
  const bytes = await readWholeFile(entry.path, options.fs ?? nodeFileSystem);
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

/**
 * Reads every segment of `dbPath` in epoch order and returns its records in
 * recovery order. Fails closed by default; see {@link SegmentRecoveryOptions}.
 * @throws {SegmentCorruptError} naming the first unusable segment and why
 * (unless `skipCorrupt`).
 * @throws {WalIoError} when the directory cannot be listed, or (unless
 * `skipCorrupt`) a segment cannot be read.
 */
export async function recoverSegments(
  dbPath: string,
  options: SegmentRecoveryOptions = {},
): Promise<SegmentRecoveryResult> {
  const temporaryFilesRemoved = options.cleanupTemporaryFiles
    ? await cleanupTemporaryFiles(dbPath, options)
    : 0;
  const groups = groupByEpoch(await scanSegments(dbPath, options));
  const result: SegmentRecoveryResult = {
    segmentsRecovered: 0,
    recordsApplied: 0,
    bytesRead: 0,
    epochs: [],
    partialSegments: [],
    deletableSegments: [],
    records: [],
    stoppedAt: null,
    temporaryFilesRemoved,
  };
  const recovered: string[] = [];
  const chunks: WalRecord[][] = [];
  for (let index = 0; index < groups.length; index++) {
    const group = groups[index]!;
    const entry = group[0]!;
    try {
      if (group.length > 1) throw duplicateEpochError(group);
      const { records, bytes } = await recoverOne(entry, options);
      result.segmentsRecovered += 1;
      result.recordsApplied += records.length;
      result.bytesRead += bytes;
      result.epochs.push(entry.epoch);
      recovered.push(entry.path);
      chunks.push(records);
    } catch (raw) {
      const error = corruptionOf(entry, raw);
      if (!options.skipCorrupt) throw error;
      // Prefix semantics: never replay E+1 without E.
      result.partialSegments = groups.slice(index).flatMap((g) => g.map((e) => e.path));
      result.stoppedAt = {
        path: entry.path,
        epoch: entry.epoch,
        code: error instanceof SegmentCorruptError ? error.reason : error.code,
        message: error.message,
      };
      break;
    }
  }
  const all = chunks.flat();
  // Segments are sorted and each is canonical, so this is normally a no-op check.
  result.records = isInRecoveryOrder(all) ? all : recoveryOrder(all);
  if (options.deleteAfterRecovery) result.deletableSegments = recovered;
  return result;
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
 * `<db>-wal-tmp-<16 hex epoch>-<12 hex random>` (segment-files.ts) and
 * `<db>-wal-tmp-next-<12 hex random>` (the engine's pre-created next file).
 * Anything else that merely starts with the infix belongs to someone else.
 */
const OWNED_TEMP_SUFFIX = /^(?:[0-9a-f]{16}|next)-[0-9a-f]{12}$/;

/** True when `name` is a temporary file the log created for `dbPath` (and may delete). */
export function isOwnedTemporaryName(dbPath: string, name: string): boolean {
  const prefix = `${databaseName(dbPath)}${TEMP_NAME_INFIX}`;
  return name.startsWith(prefix) && OWNED_TEMP_SUFFIX.test(name.slice(prefix.length));
}

/**
 * Deletes temporary files (`<db>-wal-tmp-…`, only of the shapes the log
 * creates: {@link isOwnedTemporaryName}) left by interrupted segment writes,
 * then fsyncs the directory. Only safe while no writer is running.
 * @returns the number deleted.
 */
export async function cleanupTemporaryFiles(dbPath: string, options?: FsOptions): Promise<number> {
  const fs = options?.fs ?? nodeFileSystem;
  const dir = databaseDirectory(dbPath);
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (error) {
    throw toIoError(error, 'cannot list segment directory', 'readdir', dir);
  }
  let removed = 0;
  for (const name of names) {
    if (!isOwnedTemporaryName(dbPath, name)) continue;
    const path = nodePath.join(dir, name);
    try {
      await fs.unlink(path);
      removed += 1;
    } catch (error) {
      if (!isNotFound(error))
        throw toIoError(error, 'cannot delete temporary file', 'unlink', path);
    }
  }
  if (removed > 0) await syncSegmentDirectory(dbPath, options);
  return removed;
}
