/**
 * The length of a file that may not exist yet: the one question the store
 * (is there a database file, how long is it) and a restore (is the target
 * free) both ask before they create anything.
 */
import { NotRegularFileError, toIoError } from './errors.js';
import type { WalFileSystem } from './fs.js';

/**
 * Size in bytes of the regular file at `path` (symlinks followed, as `stat`
 * does), `null` when nothing is there.
 * @throws {NotRegularFileError} when `path` is a directory, FIFO, device or
 * socket; {@link WalIoError} when it cannot be looked at.
 */
export async function fileSize(path: string, fs: WalFileSystem): Promise<number | null> {
  let stat: Awaited<ReturnType<WalFileSystem['stat']>>;
  try {
    stat = await fs.stat(path);
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT') return null;
    throw toIoError(error, 'cannot look at', 'stat', path);
  }
  if (stat.kind === 'directory') throw new NotRegularFileError(path, 'directory');
  if (stat.kind !== 'file') throw new NotRegularFileError(path, 'special file');
  return stat.size;
}
