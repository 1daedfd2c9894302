/**
 * Segment files next to the database: naming, listing, the durable write
 * protocol, reading and deleting (docs/design.md#segment-files).
 *
 * Every file operation goes through a {@link WalFileSystem} (`options.fs`,
 * default {@link nodeFileSystem}) so tests can put a simulated disk or a
 * fault injector under this exact code.
 */
import { randomBytes } from 'node:crypto';
import * as nodePath from 'node:path';
import { WalArgumentError } from '../errors.js';
import { SegmentFormatError } from '../format/errors.js';
import {
  type DecodedSegment,
  decodeSegment,
  decodeSegmentHeader,
  encodeSegment,
} from '../format/segment.js';
import {
  type FormatVersion,
  formatVersionDefault,
  SEGMENT_HEADER_BYTES,
  u64Max,
  type WalRecord,
} from '../format/types.js';
import {
  errnoOf,
  NotRegularFileError,
  SegmentCorruptError,
  SegmentFileErrorReason,
  toIoError,
} from './errors.js';
import { nodeFileSystem, type WalFileHandle, type WalFileSystem } from './fs.js';

/**
 * How hard a segment write works to survive power loss.
 * - `full` and `normal`: the data is fdatasync'ed before the rename that
 *   publishes it, and the directory is fsync'ed after it.
 * - `off`: no syncs. A process crash still never exposes a partial segment
 *   (the rename is atomic), but after power loss anything may be missing, and
 *   a segment name may even point at unwritten blocks.
 */
export type FsyncPolicy = 'full' | 'normal' | 'off';

/** The fsync policy used when none is given. */
export const fsyncPolicyDefault: FsyncPolicy = 'full';

/** Options naming the file system to use. */
export interface FsOptions {
  /** File system to go through; default {@link nodeFileSystem}. */
  fs?: WalFileSystem;
}

/** Options of {@link writeSegmentFile}. */
export interface WriteSegmentFileOptions extends FsOptions {
  /** Default `full`. */
  fsync?: FsyncPolicy;
}

/** Options of {@link writeSegment}. */
export interface WriteSegmentOptions extends WriteSegmentFileOptions {
  /** Format version to write; default 2. */
  formatVersion?: FormatVersion;
}

/** The records of one epoch, as the engine hands them to the writer. */
export interface EpochFlushBatch {
  /** The epoch every record belongs to (u64). */
  epoch: bigint;
  /** The records, in any order (the writer stores them canonically). */
  records: readonly WalRecord[];
  /** How many records came from each lane, in lane order (informational). */
  recordsPerCore?: readonly number[];
}

/** One segment file found by {@link listSegments}. */
export interface SegmentFileEntry {
  /** The epoch its name states. */
  epoch: bigint;
  /** Full path of the file. */
  path: string;
  /**
   * Only for an adoptable temporary (pool) file read in place: the length of
   * the segment at its start (stale bytes follow it and are not read).
   */
  prefixBytes?: number;
}

/** The infix between the database file name and the epoch of a segment name. */
export const SEGMENT_NAME_INFIX = '-wal-seg-';
/** The infix of temporary files a segment is written under before its rename. */
export const TEMP_NAME_INFIX = '-wal-tmp-';
/**
 * Random bytes at the end of a temporary file's name, written as 12 hex
 * digits (the suffix recovery recognises as the log's own): two writers of
 * one directory never pick the same name by chance.
 */
export const tempNameNonceBytes = 6;
/** Hex digits of the epoch in a segment name. */
export const SEGMENT_EPOCH_HEX_DIGITS = 16;

const EPOCH_HEX = /^[0-9a-fA-F]{16}$/;

/** The directory holding the database file (and therefore its segments). */
export function databaseDirectory(dbPath: string): string {
  return nodePath.dirname(dbPath);
}

/** The database file's name; `db` when the path has none (as in the seed). */
export function databaseName(dbPath: string): string {
  return nodePath.basename(dbPath) || 'db';
}

function checkDbPath(dbPath: unknown): asserts dbPath is string {
  if (typeof dbPath !== 'string' || dbPath.length === 0) {
    throw new WalArgumentError('database path must be a non-empty string');
  }
}

function checkEpoch(epoch: unknown): asserts epoch is bigint {
  if (typeof epoch !== 'bigint' || epoch < 0n || epoch > u64Max) {
    throw new WalArgumentError(`epoch ${String(epoch)} is not a u64 bigint`);
  }
}

function checkFsync(policy: unknown): asserts policy is FsyncPolicy {
  if (policy !== 'full' && policy !== 'normal' && policy !== 'off') {
    throw new WalArgumentError(`fsync policy must be full, normal or off, got ${String(policy)}`);
  }
}

function epochHex(epoch: bigint): string {
  return epoch.toString(16).padStart(SEGMENT_EPOCH_HEX_DIGITS, '0');
}

/**
 * Path of the segment for `epoch`:
 * `<dir of db>/<db file name>-wal-seg-<epoch as 16 lowercase hex digits>`.
 */
export function segmentPath(dbPath: string, epoch: bigint): string {
  checkDbPath(dbPath);
  checkEpoch(epoch);
  return nodePath.join(
    databaseDirectory(dbPath),
    `${databaseName(dbPath)}${SEGMENT_NAME_INFIX}${epochHex(epoch)}`,
  );
}

/**
 * The epoch a directory entry names, or `null` when the entry is not a
 * segment of `dbName` (exactly the prefix, then exactly 16 hex digits; upper-
 * case hex is accepted so that a duplicate epoch can be detected).
 */
export function parseSegmentName(dbName: string, entry: string): bigint | null {
  const prefix = `${dbName}${SEGMENT_NAME_INFIX}`;
  if (!entry.startsWith(prefix)) return null;
  const hex = entry.slice(prefix.length);
  return EPOCH_HEX.test(hex) ? BigInt(`0x${hex}`) : null;
}

/** Every entry of the database directory, mapped to typed I/O errors. */
async function readDirectory(dbPath: string, fs: WalFileSystem): Promise<string[]> {
  const dir = databaseDirectory(dbPath);
  try {
    return await fs.readdir(dir);
  } catch (error) {
    throw toIoError(error, 'cannot list segment directory', 'readdir', dir);
  }
}

/**
 * All segment files of a database, duplicates included, sorted by epoch then
 * name. Most callers want {@link listSegments}, which rejects duplicates.
 */
export async function scanSegments(
  dbPath: string,
  options?: FsOptions,
): Promise<SegmentFileEntry[]> {
  checkDbPath(dbPath);
  const fs = options?.fs ?? nodeFileSystem;
  const dbName = databaseName(dbPath);
  const dir = databaseDirectory(dbPath);
  const found: SegmentFileEntry[] = [];
  for (const entry of await readDirectory(dbPath, fs)) {
    const epoch = parseSegmentName(dbName, entry);
    if (epoch !== null) found.push({ epoch, path: nodePath.join(dir, entry) });
  }
  found.sort((a, b) =>
    a.epoch !== b.epoch ? (a.epoch < b.epoch ? -1 : 1) : a.path < b.path ? -1 : 1,
  );
  return found;
}

/** Groups sorted entries by epoch; a group of two or more is a duplicate. */
export function groupByEpoch(entries: readonly SegmentFileEntry[]): SegmentFileEntry[][] {
  const groups: SegmentFileEntry[][] = [];
  for (const entry of entries) {
    const last = groups[groups.length - 1];
    if (last !== undefined && last[0]!.epoch === entry.epoch) last.push(entry);
    else groups.push([entry]);
  }
  return groups;
}

/** The error for two or more files claiming one epoch. */
export function duplicateEpochError(group: readonly SegmentFileEntry[]): SegmentCorruptError {
  const first = group[0]!;
  return new SegmentCorruptError(
    first.path,
    first.epoch,
    SegmentFileErrorReason.duplicateEpoch,
    `segment epoch ${first.epoch} has ${group.length} files: ${group.map((e) => e.path).join(', ')}`,
  );
}

/**
 * The database's segment files sorted by epoch. Temporary files and names
 * that merely resemble segments are ignored.
 * @throws {SegmentCorruptError} (`reason` `ERR_SEGMENT_DUPLICATE_EPOCH`) when
 * two files name one epoch.
 * @throws {WalIoError} when the directory cannot be read (missing, not a
 * directory, permission denied, …).
 */
export async function listSegments(
  dbPath: string,
  options?: FsOptions,
): Promise<SegmentFileEntry[]> {
  const entries = await scanSegments(dbPath, options);
  for (const group of groupByEpoch(entries)) {
    if (group.length > 1) throw duplicateEpochError(group);
  }
  return entries;
}

function totalLength(chunks: readonly Uint8Array[]): number {
  let total = 0;
  for (const chunk of chunks) {
    if (!(chunk instanceof Uint8Array)) throw new WalArgumentError('chunks must be Uint8Arrays');
    total += chunk.length;
  }
  return total;
}

/** The first `count` bytes of the concatenated chunks (fewer if there are fewer). */
function leadingBytes(chunks: readonly Uint8Array[], count: number): Uint8Array {
  const out = new Uint8Array(count);
  let filled = 0;
  for (const chunk of chunks) {
    if (filled === count) break;
    const take = Math.min(count - filled, chunk.length);
    out.set(chunk.subarray(0, take), filled);
    filled += take;
  }
  return out.subarray(0, filled);
}

function tempPath(dbPath: string, epoch: bigint): string {
  const name = `${databaseName(dbPath)}${TEMP_NAME_INFIX}${epochHex(epoch)}-${randomBytes(tempNameNonceBytes).toString('hex')}`;
  return nodePath.join(databaseDirectory(dbPath), name);
}

async function closeQuietly(handle: WalFileHandle): Promise<void> {
  try {
    await handle.close();
  } catch {
    // Already failing; the original error is the one to report.
  }
}

async function unlinkQuietly(fs: WalFileSystem, path: string): Promise<void> {
  try {
    await fs.unlink(path);
  } catch {
    // Best effort: a leftover temporary file is never listed as a segment and
    // is removed by cleanupTemporaryFiles.
  }
}

/**
 * Writes already-encoded segment bytes (header + records, as `chunks` laid
 * end to end) as the segment file of `epoch`, durably:
 *
 * 1. check the arguments and that the bytes start with a valid header for
 *    `epoch` — before touching the disk;
 * 2. create `<db>-wal-tmp-<epoch>-<random>` exclusively and write the bytes —
 *    a crash now leaves only a temporary file, which listing never returns;
 * 3. fdatasync it (`full`/`normal`) — so the data is on stable storage before
 *    any name points at it;
 * 4. rename it to the segment name — atomic: the name refers to the old file
 *    (or none) or to the complete new one, never to a partial file;
 * 5. fsync the directory (`full`/`normal`) — so the rename itself survives
 *    power loss (the seed forgot this step).
 *
 * On failure before the rename the temporary file is removed (best effort).
 * A failure after the rename (directory fsync) leaves the segment in place
 * with unknown durability: the caller must not treat the epoch as durable.
 * @returns the number of bytes written.
 * @throws {WalArgumentError} for bad arguments or bytes that are not a segment of `epoch`.
 * @throws {WalIoError} for file-system failures.
 */
export async function writeSegmentFile(
  dbPath: string,
  epoch: bigint,
  chunks: readonly Uint8Array[],
  options?: WriteSegmentFileOptions,
): Promise<number> {
  checkDbPath(dbPath);
  checkEpoch(epoch);
  const fsync = options?.fsync ?? fsyncPolicyDefault;
  checkFsync(fsync);
  const fs = options?.fs ?? nodeFileSystem;
  if (!Array.isArray(chunks)) throw new WalArgumentError('chunks must be an array');
  const total = totalLength(chunks);
  let header: ReturnType<typeof decodeSegmentHeader>;
  try {
    header = decodeSegmentHeader(leadingBytes(chunks, SEGMENT_HEADER_BYTES));
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    throw new WalArgumentError(
      `segment bytes for epoch ${epoch} do not start with a valid header: ${why}`,
    );
  }
  if (header.epoch !== epoch) {
    throw new WalArgumentError(`segment bytes name epoch ${header.epoch}, not ${epoch}`);
  }

  const finalPath = segmentPath(dbPath, epoch);
  const dir = databaseDirectory(dbPath);
  const temp = tempPath(dbPath, epoch);
  let handle: WalFileHandle;
  try {
    handle = await fs.open(temp, 'createExclusive');
  } catch (error) {
    // The open may have created the file before failing; never leave it behind
    // (unless it existed already: then it is not ours).
    if (errnoOf(error) !== 'EEXIST') await unlinkQuietly(fs, temp);
    throw toIoError(error, 'cannot create segment file', 'open', temp);
  }
  let step = 'write';
  try {
    await handle.writev(chunks, 0);
    if (fsync !== 'off') {
      step = 'datasync';
      await handle.datasync();
    }
    step = 'close';
    await handle.close();
  } catch (error) {
    if (step !== 'close') await closeQuietly(handle);
    await unlinkQuietly(fs, temp);
    throw toIoError(error, 'cannot write segment file', step, temp);
  }
  try {
    await fs.rename(temp, finalPath);
  } catch (error) {
    await unlinkQuietly(fs, temp);
    throw toIoError(error, `cannot rename ${temp} to segment`, 'rename', finalPath);
  }
  if (fsync !== 'off') {
    try {
      await fs.syncDirectory(dir);
    } catch (error) {
      throw toIoError(error, 'cannot sync segment directory', 'fsync', dir);
    }
  }
  return total;
}

/**
 * Validates and encodes `batch` (records in canonical order, format version
 * `formatVersion`, default 2) and writes it with `writeSegmentFile`.
 * Every check — record epochs, image sizes, field ranges, count — happens
 * before any file is created or truncated.
 * @returns bytes written.
 * @throws {InvalidRecordError} for records the format cannot hold.
 * @throws {WalIoError} for file-system failures.
 */
export async function writeSegment(
  dbPath: string,
  batch: EpochFlushBatch,
  options?: WriteSegmentOptions,
): Promise<number> {
  checkDbPath(dbPath);
  checkEpoch(batch?.epoch);
  const version = options?.formatVersion ?? formatVersionDefault;
  checkFsync(options?.fsync ?? fsyncPolicyDefault);
  const bytes = encodeSegment(batch.epoch, batch.records, version);
  return writeSegmentFile(dbPath, batch.epoch, [bytes], options);
}

/**
 * Reads a whole file, mapping failures to {@link WalIoError}. A segment name
 * that is not a regular file is a corrupt segment (`ERR_SEGMENT_NOT_REGULAR`):
 * recovery fails closed at it, and `skipCorrupt` stops before it.
 */
export async function readWholeFile(path: string, fs: WalFileSystem): Promise<Uint8Array> {
  try {
    return await fs.readFile(path);
  } catch (error) {
    const epoch = epochOfSegmentPath(path);
    if (error instanceof NotRegularFileError && epoch !== null) {
      throw new SegmentCorruptError(
        path,
        epoch,
        SegmentFileErrorReason.notRegular,
        `segment ${path} is a ${error.fileType}, not a regular file: not read`,
        { cause: error },
      );
    }
    throw toIoError(error, 'cannot read segment file', 'read', path);
  }
}

/** The epoch a segment file's path names, or null when it is not named like a segment. */
function epochOfSegmentPath(path: string): bigint | null {
  const name = nodePath.basename(path);
  const at = name.lastIndexOf(SEGMENT_NAME_INFIX);
  if (at < 0) return null;
  const hex = name.slice(at + SEGMENT_NAME_INFIX.length);
  return EPOCH_HEX.test(hex) ? BigInt(`0x${hex}`) : null;
}

/**
 * Reads and fully checks one segment file.
 * @returns its header and its records in recovery order.
 * @throws {SegmentFormatError} (with `path` set) if the bytes are not a valid segment.
 * @throws {WalIoError} if the file cannot be read.
 */
export async function readSegment(path: string, options?: FsOptions): Promise<DecodedSegment> {
  if (typeof path !== 'string' || path.length === 0) {
    throw new WalArgumentError('segment path must be a non-empty string');
  }
  const bytes = await readWholeFile(path, options?.fs ?? nodeFileSystem);
  return decodeFile(path, bytes);
}

/** Decodes bytes read from `path`; images are views into `bytes`, which nobody else holds. */
export function decodeFile(path: string, bytes: Uint8Array): DecodedSegment {
  try {
    return decodeSegment(bytes, { copyImages: false });
  } catch (error) {
    if (error instanceof SegmentFormatError) throw error.withPath(path);
    throw error;
  }
}

/**
 * Deletes one segment file. Not durable on its own: callers that need the
 * deletion to survive power loss sync the directory (see `syncSegmentDirectory`).
 * @throws {WalIoError} (including `ENOENT` when it does not exist).
 */
export async function deleteSegment(path: string, options?: FsOptions): Promise<void> {
  const fs = options?.fs ?? nodeFileSystem;
  try {
    await fs.unlink(path);
  } catch (error) {
    throw toIoError(error, 'cannot delete segment file', 'unlink', path);
  }
}

/** fsyncs the database directory, making creations, renames and unlinks in it durable. */
export async function syncSegmentDirectory(dbPath: string, options?: FsOptions): Promise<void> {
  await syncDirectoryAt(databaseDirectory(dbPath), options);
}

/** fsyncs directory `dir`, mapping failures to {@link WalIoError}. */
export async function syncDirectoryAt(dir: string, options?: FsOptions): Promise<void> {
  const fs = options?.fs ?? nodeFileSystem;
  try {
    await fs.syncDirectory(dir);
  } catch (error) {
    throw toIoError(error, 'cannot sync segment directory', 'fsync', dir);
  }
}

/** True when `error` is a file-system "does not exist". */
export function isNotFound(error: unknown): boolean {
  if (errnoOf(error) === 'ENOENT') return true;
  return (
    typeof error === 'object' &&
    error !== null &&
    'errno' in error &&
    (error as { errno: unknown }).errno === 'ENOENT'
  );
}
