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
import { nodeFileSystem, type WalFileHandle } from './fs.js';
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
  /**
   * First adopt or remove the log's temporary files ({@link adoptOrRemoveTemporaryFiles}):
   * complete version-2 segments are renamed to their segment names, the rest
   * unlinked. Default false: nothing is modified, but adoptable temporary
   * files (epochs the `earlyAck` sink may have acknowledged before their
   * rename) are read and replayed in epoch order, without renaming them,
   * and listed in `pendingAdoption`.
   */
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
  /**
   * All recovered records in recovery order. They carry no database size:
   * the log never persists a commit's `dbSizeIfCommit` (see
   * docs/format.md, section 5.1). A layer that needs it writes it as a record
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
  let temporaryFilesRemoved = 0;
  let temporaryFilesAdopted = 0;
  let pending: SegmentFileEntry[] = [];
  if (options.cleanupTemporaryFiles) {
    const cleanup = await adoptOrRemoveTemporaryFiles(dbPath, options);
    temporaryFilesRemoved = cleanup.removed.length;
    temporaryFilesAdopted = cleanup.adopted.length;
  } else {
    // Read-only: an acknowledged epoch may still sit under its temporary name.
    pending = (await inspectTemporaryFiles(dbPath, options))
      .filter((v) => v.verdict === 'adoptable')
      .map((v) => ({ epoch: v.epoch!, path: v.path }));
  }
  const entries = await scanSegments(dbPath, options);
  if (pending.length > 0) {
    entries.push(...pending);
    entries.sort((a, b) => (a.epoch < b.epoch ? -1 : a.epoch > b.epoch ? 1 : 0));
  }
  const groups = groupByEpoch(entries);
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
    temporaryFilesAdopted,
    pendingAdoption: pending.map((e) => e.path),
  };
  const recovered: string[] = [];
  const chunks: WalRecord[][] = [];
  for (let index = 0; index < groups.length; index++) {
    const group = groups[index]!;
    const entry = group[0]!;
    try {
      if (group.length > 1) throw duplicateEpochError(group);
      const { records, bytes } = await recoverSegmentEntry(entry, options);
      result.segmentsRecovered += 1;
      result.recordsApplied += records.length;
      result.bytesRead += bytes;
      result.epochs.push(entry.epoch);
      recovered.push(entry.path);
      chunks.push(records);
    } catch (raw) {
      const error = segmentEntryError(entry, raw);
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
 * `<db>-wal-tmp-<16 hex epoch>-<12 hex random>` (segment-files.ts),
 * `<db>-wal-tmp-next-<12 hex random>` (the precreate sink's next file) and
 * `<db>-wal-tmp-ack-<12 hex random>` (the early-acknowledgement sink's
 * pre-created files). Anything else that merely starts with the infix
 * belongs to someone else.
 */
const OWNED_TEMP_SUFFIX = /^(?:[0-9a-f]{16}|next|ack)-[0-9a-f]{12}$/;

/**
 * The tag of temporary files written by a protocol that may acknowledge an
 * epoch before its rename (the engine's `earlyAck` sink). Only these are
 * ever adopted: the other shapes are renamed before anything is acknowledged,
 * so a leftover one holds an epoch nobody was told is durable (possibly one
 * whose commits were rejected), and it is removed as before.
 */
export const EARLY_ACK_TEMP_TAG = 'ack';

const ADOPTABLE_TEMP_SUFFIX = new RegExp(`^${EARLY_ACK_TEMP_TAG}-[0-9a-f]{12}$`);

/** True when `name` is a temporary file the log created for `dbPath` (and may delete). */
export function isOwnedTemporaryName(dbPath: string, name: string): boolean {
  const prefix = `${databaseName(dbPath)}${TEMP_NAME_INFIX}`;
  return name.startsWith(prefix) && OWNED_TEMP_SUFFIX.test(name.slice(prefix.length));
}

/** What {@link inspectTemporaryFiles} decided about one temporary file of the log. */
export interface TemporaryFileVerdict {
  /** Full path. */
  path: string;
  /**
   * `adoptable`: a complete, valid version-2 segment (every CRC, exact
   * length) whose epoch has no segment file — an epoch whose data was made
   * durable (and possibly acknowledged) before its rename. `remove`: anything
   * else (empty pre-created file, torn or partial write, version 1, duplicate
   * of an existing segment or of another adoptable file).
   */
  verdict: 'adoptable' | 'remove';
  /** The header's epoch when the file decodes as a segment, else `null`. */
  epoch: bigint | null;
  /** File size in bytes. */
  bytes: number;
  /** Why it is removed (`empty`, `version 1`, `duplicate`, or the decoder's message); `null` when adoptable. */
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
 * Classifies the log's own temporary files ({@link isOwnedTemporaryName})
 * without changing anything. A file is adoptable only when it carries the
 * early-acknowledgement tag ({@link EARLY_ACK_TEMP_TAG}), decodes
 * completely as a version-2 segment (header CRC, every record CRC, exact
 * length, no trailing bytes) and no segment file (nor an earlier-named
 * adoptable file) holds its epoch. Version 1 is never adoptable: its records
 * carry no CRC, so a torn version-1 file cannot be told from a complete one.
 * Files that vanish while being read (a running writer renamed them) are skipped.
 * @throws {WalIoError} when the directory or a temporary file cannot be read:
 * a file that cannot be judged is neither adopted nor removed.
 */
export async function inspectTemporaryFiles(
  dbPath: string,
  options?: FsOptions,
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
  const verdicts: TemporaryFileVerdict[] = [];
  for (const name of owned) {
    const path = nodePath.join(dir, name);
    let bytes: Uint8Array;
    try {
      bytes = await fs.readFile(path);
    } catch (error) {
      if (isNotFound(error)) continue;
      throw toIoError(error, 'cannot read temporary file', 'read', path);
    }
    const adoptableName = ADOPTABLE_TEMP_SUFFIX.test(
      name.slice(databaseName(dbPath).length + TEMP_NAME_INFIX.length),
    );
    const verdict = adoptableName
      ? judgeTemporaryBytes(path, bytes, segmentEpochs)
      : {
          path,
          verdict: 'remove' as const,
          epoch: null,
          bytes: bytes.length,
          reason: 'never acknowledged before its rename',
        };
    // One epoch, one file: a later-named duplicate is removed.
    if (verdict.verdict === 'adoptable') segmentEpochs.add(verdict.epoch!);
    verdicts.push(verdict);
  }
  return verdicts;
}

function judgeTemporaryBytes(
  path: string,
  bytes: Uint8Array,
  taken: ReadonlySet<bigint>,
): TemporaryFileVerdict {
  const remove = (epoch: bigint | null, reason: string): TemporaryFileVerdict => ({
    path,
    verdict: 'remove',
    epoch,
    bytes: bytes.length,
    reason,
  });
  if (bytes.length === 0) return remove(null, 'empty');
  let header: { epoch: bigint; version: number };
  try {
    // Every reader check of SYSTEM.md §4, including exact length.
    header = decodeFile(path, bytes).header;
  } catch (error) {
    return remove(null, error instanceof Error ? error.message : String(error));
  }
  if (header.version === 1) return remove(header.epoch, 'version 1 (no record CRCs)');
  if (taken.has(header.epoch)) return remove(header.epoch, 'duplicate');
  return { path, verdict: 'adoptable', epoch: header.epoch, bytes: bytes.length, reason: null };
}

/**
 * Adopt-or-remove for the log's temporary files, run before any recovery
 * that replays segments (only while no writer is running: hold the lock).
 * Each adoptable file ({@link inspectTemporaryFiles}) is fsynced (its bytes
 * reach stable storage before a segment name points at them) and renamed to
 * its segment name; every other owned temporary file is unlinked; then one
 * directory fsync makes the renames and unlinks durable. Foreign files that
 * merely start with the infix are never touched.
 * @throws {WalIoError}
 */
export async function adoptOrRemoveTemporaryFiles(
  dbPath: string,
  options?: FsOptions,
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
      handle = await fs.open(v.path, 'read');
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
 * {@link adoptOrRemoveTemporaryFiles}, returning only how many files were
 * removed (adopted files become segments and are counted by recovery).
 * Only safe while no writer is running.
 */
export async function cleanupTemporaryFiles(dbPath: string, options?: FsOptions): Promise<number> {
  return (await adoptOrRemoveTemporaryFiles(dbPath, options)).removed.length;
}
