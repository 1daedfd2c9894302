/**
 * A read-only description of a page store database, for `pwal inspect`:
 * its header (page size, size in pages, last checkpointed epoch), the
 * database file's length, and the writer lock's holder. Takes no lock and
 * writes nothing; a corrupt header is reported, not thrown.
 */
import { WalError } from '../errors.js';
import { nodeFileSystem, type WalFileSystem } from '../storage/fs.js';
import { readLock } from '../storage/lockfile.js';
import { readStoreHeader, type StoreHeader, storeHeaderPath } from './header.js';

/** What {@link describeStore} found. */
export interface StoreDescription {
  /** Path of the store header file. */
  headerPath: string;
  /** The decoded header, or `null` when there is none (or it is unreadable: see `headerError`). */
  header: StoreHeader | null;
  /** Last epoch folded into the database file (`null`: none, or no header). */
  checkpointEpoch: bigint | null;
  /** `{ code, message }` when the header exists but cannot be used. */
  headerError: { code: string; message: string } | null;
  /** Length of the database file in bytes (`null`: no file). */
  fileBytes: number | null;
  /** True when the file length is exactly `dbSizePages × pageSize` (as after a checkpoint or recovery). */
  fileLengthMatches: boolean | null;
  /** The lock file: the pid it names and whether the lock is held now (the kernel says); `null`: no lock file. */
  lock: { pid: number | null; alive: boolean } | null;
}

/** Describes the page store at `dbPath` without changing anything. */
export async function describeStore(
  dbPath: string,
  options: { fs?: WalFileSystem } = {},
): Promise<StoreDescription> {
  const fs = options.fs ?? nodeFileSystem;
  let header: StoreHeader | null = null;
  let headerError: StoreDescription['headerError'] = null;
  try {
    header = await readStoreHeader(dbPath, fs);
  } catch (error) {
    headerError =
      error instanceof WalError
        ? { code: error.code, message: error.message }
        : { code: 'ERR_UNKNOWN', message: String(error) };
  }
  let fileBytes: number | null = null;
  try {
    fileBytes = (await fs.stat(dbPath)).size;
  } catch {
    fileBytes = null;
  }
  let lock: StoreDescription['lock'] = null;
  try {
    const held = await readLock(dbPath, { fs });
    if (held !== null) lock = { pid: held.info?.pid ?? null, alive: held.alive };
  } catch {
    lock = { pid: null, alive: false };
  }
  return {
    headerPath: storeHeaderPath(dbPath),
    header,
    checkpointEpoch: header === null || header.nextEpoch === 0n ? null : header.nextEpoch - 1n,
    headerError,
    fileBytes,
    fileLengthMatches:
      header === null || fileBytes === null
        ? null
        : fileBytes === header.dbSizePages * header.pageSize,
    lock,
  };
}

/** The description as text lines, for a human (`pwal inspect`). */
export function formatStoreDescription(d: StoreDescription): string {
  if (d.headerError !== null)
    return `store header: ${d.headerError.message} (${d.headerError.code})\n`;
  if (d.header === null) return 'store header: none (not a page store database)\n';
  const h = d.header;
  const lines = [
    `store header: page size ${h.pageSize}, ${h.dbSizePages} pages, last checkpointed epoch ${
      d.checkpointEpoch === null ? 'none' : d.checkpointEpoch.toString()
    }, last checkpointed commit seq ${h.checkpointCommitSeq}`,
    `database file: ${d.fileBytes === null ? 'missing' : `${d.fileBytes} bytes`}${
      d.fileLengthMatches === false ? ' (length differs from the header: segments to replay)' : ''
    }`,
  ];
  if (d.lock !== null) {
    lines.push(
      d.lock.alive
        ? `lock: held by process ${d.lock.pid ?? 'unknown'}`
        : `lock: not held (a leftover lock file names process ${d.lock.pid ?? 'unknown'})`,
    );
  }
  return `${lines.join('\n')}\n`;
}
