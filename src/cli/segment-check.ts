/**
 * One place that decides whether a segment file is usable, exactly as
 * recovery does: it decodes, its header epoch matches its name, and no other
 * file claims its epoch. Used by `inspect` and `verify`.
 */
import * as nodePath from 'node:path';
import { WalError } from '../errors.js';
import { decodeSegmentHeader } from '../format/segment.js';
import type { SegmentHeader } from '../format/types.js';
import { inspectTemporaryFiles } from '../storage/adoption.js';
import { SegmentCorruptError, SegmentFileErrorReason, toIoError } from '../storage/errors.js';
import type { WalFileSystem } from '../storage/fs.js';
import {
  databaseDirectory,
  databaseName,
  decodeFile,
  groupByEpoch,
  readWholeFile,
  scanSegments,
  TEMP_NAME_INFIX,
} from '../storage/segment-files.js';
import { POOL_TEMP_TAG } from '../storage/temp-names.js';

/** The verdict on one segment file. */
export interface SegmentCheck {
  epoch: bigint;
  path: string;
  file: string;
  /** File size in bytes, or null when it could not be read. */
  bytes: number | null;
  /** From the header when the header decodes, else null. */
  version: number | null;
  recordCount: number | null;
  /** Records successfully decoded (0 unless the whole segment is valid). */
  records: number;
  /**
   * `ok`; `pending-adoption` for a complete early-acknowledged temporary file
   * that recovery will rename to its segment name (its epoch counts as
   * present); or the error code.
   */
  status: string;
  /** The error message, or null when ok. */
  error: string | null;
}

/** Status of a temporary file that recovery adopts as its epoch's segment. */
export const PENDING_ADOPTION = 'pending-adoption';

/** True when a row counts as a present, readable epoch. */
export function isHealthy(row: SegmentCheck): boolean {
  return row.status === 'ok' || row.status === PENDING_ADOPTION;
}

/** Everything found for a database. */
export interface DatabaseCheck {
  segments: SegmentCheck[];
  /** Leftover temporary files of interrupted writes (harmless; recovery can remove them). */
  temporaryFiles: string[];
  /** The `pool` sink's reusable segment files (while a log is open, or left by a crash). */
  pool: { files: number; bytes: number };
}

function codeOf(error: unknown): string {
  if (error instanceof SegmentCorruptError) return error.reason;
  if (error instanceof WalError) return error.code;
  return 'ERR_UNEXPECTED';
}

async function checkOne(
  epoch: bigint,
  path: string,
  duplicates: number,
  fs: WalFileSystem,
  /** A pool file's segment length (stale bytes follow it). */
  prefixBytes?: number,
): Promise<SegmentCheck> {
  const row: SegmentCheck = {
    epoch,
    path,
    file: nodePath.basename(path),
    bytes: null,
    version: null,
    recordCount: null,
    records: 0,
    status: 'ok',
    error: null,
  };
  try {
    const whole = await readWholeFile(path, fs);
    const bytes = prefixBytes === undefined ? whole : whole.subarray(0, prefixBytes);
    row.bytes = bytes.length;
    let header: SegmentHeader | null = null;
    try {
      header = decodeSegmentHeader(bytes);
      row.version = header.version;
      row.recordCount = header.recordCount;
    } catch {
      // decodeFile below reports the same problem with its code.
    }
    const decoded = decodeFile(path, bytes);
    if (decoded.header.epoch !== epoch) {
      row.status = SegmentFileErrorReason.nameMismatch;
      row.error = `segment ${path} has mismatched epoch: header=${decoded.header.epoch}, filename=${epoch}`;
      return row;
    }
    row.records = decoded.records.length;
    if (duplicates > 1) {
      row.status = SegmentFileErrorReason.duplicateEpoch;
      row.error = `segment epoch ${epoch} has ${duplicates} files`;
    }
  } catch (error) {
    row.status = codeOf(error);
    row.error = error instanceof Error ? error.message : String(error);
  }
  return row;
}

/**
 * Checks every segment file of `dbPath` in epoch order, calling `onProgress`
 * with the files checked so far and the files to check.
 * @throws {WalIoError} when the directory cannot be listed.
 */
export async function checkDatabase(
  dbPath: string,
  fs: WalFileSystem,
  onProgress: (checked: number, total: number) => void = () => {},
): Promise<DatabaseCheck> {
  const groups = groupByEpoch(await scanSegments(dbPath, { fs }));
  // Read-only: an acknowledged epoch may still sit under its temporary name.
  const adoptable = (await inspectTemporaryFiles(dbPath, { fs })).filter(
    (v) => v.verdict === 'adoptable',
  );
  const total = groups.reduce((n, g) => n + g.length, 0) + adoptable.length;
  const segments: SegmentCheck[] = [];
  onProgress(0, total);
  for (const group of groups) {
    for (const entry of group) {
      segments.push(await checkOne(entry.epoch, entry.path, group.length, fs));
      onProgress(segments.length, total);
    }
  }
  for (const v of adoptable) {
    const row = await checkOne(v.epoch!, v.path, 1, fs, v.segmentBytes);
    if (row.status === 'ok') row.status = PENDING_ADOPTION;
    segments.push(row);
    onProgress(segments.length, total);
  }
  segments.sort((a, b) => (a.epoch < b.epoch ? -1 : a.epoch > b.epoch ? 1 : 0));
  const dir = databaseDirectory(dbPath);
  const prefix = `${databaseName(dbPath)}${TEMP_NAME_INFIX}`;
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (error) {
    throw toIoError(error, 'cannot list segment directory', 'readdir', dir);
  }
  const temporaryFiles = names
    .filter((n) => n.startsWith(prefix))
    .sort()
    .map((n) => nodePath.join(dir, n));
  const pool = { files: 0, bytes: 0 };
  for (const path of temporaryFiles) {
    if (!nodePath.basename(path).startsWith(`${prefix}${POOL_TEMP_TAG}-`)) continue;
    try {
      pool.bytes += (await fs.stat(path)).size;
      pool.files += 1;
    } catch {
      // Renamed (published) or removed by a running log meanwhile.
    }
  }
  return { segments, temporaryFiles, pool };
}
