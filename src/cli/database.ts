/**
 * What the CLI checks about a database path before it touches anything, and
 * how it undoes what a failed command created.
 *
 * A database is its file plus the files beside it that share its name
 * (`<db>-wal-…` segments and temporary files, `<db>-pwal-…` store header and
 * state files). The CLI never treats a path with none of these as an empty
 * database: a typo must not read as "ok" or create a new database.
 */
import * as nodePath from 'node:path';
import { toIoError } from '../storage/errors.js';
import type { WalFileSystem } from '../storage/fs.js';
import { acquireLock, LockError } from '../storage/lockfile.js';
import { databaseDirectory, databaseName } from '../storage/segment-files.js';
import { readStoreHeader, storeHeaderPath } from '../store/header.js';
import { CliError, CliErrorCode } from './errors.js';

/** Name prefixes of the files that belong to a database `name`. */
function ownPrefixes(name: string): string[] {
  return [`${name}-wal-`, `${name}-pwal-`];
}

async function kindOf(
  path: string,
  fs: WalFileSystem,
): Promise<'file' | 'directory' | 'other' | null> {
  try {
    return (await fs.stat(path)).kind;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    // ENOTDIR: a file stands where a directory of the path should be; the
    // directory listing that follows names that problem.
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw toIoError(error, 'cannot look at', 'stat', path);
  }
}

/**
 * Fails unless `dbPath` names a database: its file exists, or at least one
 * of its segment, temporary, header or state files does.
 * @throws {CliError} `ERR_NOT_A_DATABASE` for a directory or another
 * non-regular file, `ERR_DATABASE_NOT_FOUND` when nothing of a database is
 * there; `ERR_IO` when the directory cannot be listed (it is not one).
 */
export async function requireDatabase(dbPath: string, fs: WalFileSystem, hint = ''): Promise<void> {
  const kind = await kindOf(dbPath, fs);
  if (kind === 'directory') {
    throw new CliError(
      CliErrorCode.notADatabase,
      `${dbPath} is a directory: give the path of the database file (its segments live beside it)`,
    );
  }
  if (kind === 'other') {
    throw new CliError(CliErrorCode.notADatabase, `${dbPath} is not a regular file`);
  }
  if (kind === 'file') return;
  const prefixes = ownPrefixes(databaseName(dbPath));
  if ((await siblings(dbPath, fs)).some((n) => prefixes.some((p) => n.startsWith(p)))) return;
  throw new CliError(
    CliErrorCode.databaseNotFound,
    `no database at ${dbPath}: no database file, store header or segment files${hint}`,
  );
}

/** Names in the database's directory (none when the directory does not exist). */
async function siblings(dbPath: string, fs: WalFileSystem): Promise<string[]> {
  const dir = databaseDirectory(dbPath);
  try {
    return await fs.readdir(dir);
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT') return [];
    throw toIoError(error, 'cannot list segment directory', 'readdir', dir);
  }
}

/**
 * Like {@link requireDatabase}, for commands that open the page store
 * (`checkpoint`, `recover`): there must be a store header or log files. A
 * bare file is not enough, because opening it would write a header into it.
 */
export async function requireStoreOrLog(
  dbPath: string,
  fs: WalFileSystem,
  hint = '',
): Promise<void> {
  await requireDatabase(dbPath, fs, hint);
  if ((await kindOf(storeHeaderPath(dbPath), fs)) !== null) return;
  const prefix = `${databaseName(dbPath)}-wal-`;
  if ((await siblings(dbPath, fs)).some((n) => n.startsWith(prefix))) return;
  throw new CliError(
    CliErrorCode.databaseNotFound,
    `no database at ${dbPath}: no store header and no segment files${hint}`,
  );
}

/**
 * The files that opening a page store creates when they are missing (the
 * database file and its store header), noted before a command opens one so
 * that a failure can take them away again.
 */
export interface FreshFiles {
  dbPath: string;
  /** Which of the two were missing before the command. */
  missing: string[];
}

/** Notes which of the files a page store open would create are missing now. */
export async function noteFreshFiles(dbPath: string, fs: WalFileSystem): Promise<FreshFiles> {
  const missing: string[] = [];
  // Removal order: the database file before its header (see removeFreshFiles).
  for (const path of [dbPath, storeHeaderPath(dbPath)]) {
    if ((await kindOf(path, fs)) === null) missing.push(path);
  }
  return { dbPath, missing };
}

/**
 * After a failed command: removes the database file and store header it
 * created, and only while they still describe an empty database (a header of
 * 0 pages that never folded an epoch). It takes the writer lock first, so it
 * never races a process that opened the database in the meantime; if that
 * process holds it now, nothing is removed. Returns the paths removed.
 */
export async function removeFreshFiles(fresh: FreshFiles, fs: WalFileSystem): Promise<string[]> {
  if (fresh.missing.length === 0) return [];
  let lock: Awaited<ReturnType<typeof acquireLock>>;
  try {
    lock = await acquireLock(fresh.dbPath, { fs });
  } catch (error) {
    if (error instanceof LockError) return [];
    throw error;
  }
  const removed: string[] = [];
  try {
    const header = await readStoreHeader(fresh.dbPath, fs).catch(() => undefined);
    // Unreadable header: not ours to judge, leave everything.
    if (header === undefined) return [];
    const empty =
      header === null ||
      (header.dbSizePages === 0 && header.nextEpoch === 0n && header.checkpointCommitSeq === 0n);
    if (!empty) return [];
    // The file first: a crash between the two leaves a header of an empty
    // database without its file, which the page store opens as new (the
    // other order could leave pages without a header, which it refuses).
    for (const path of fresh.missing) {
      if ((await kindOf(path, fs)) !== 'file') continue;
      await fs.unlink(path);
      removed.push(path);
    }
    if (removed.length > 0) await fs.syncDirectory(nodePath.dirname(fresh.dbPath));
  } finally {
    await lock.release();
  }
  return removed;
}
