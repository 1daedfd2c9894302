/**
 * Replacing a small file durably and atomically: the store header, the
 * replica's re-seed marker, the replication state, the follower position and
 * the skipped-epochs record.
 * One function, so that every such file gets the same steps and the same
 * protection against a file planted under the temporary name.
 */
import * as nodePath from 'node:path';
import { WalArgumentError } from '../errors.js';
import { toIoError } from './errors.js';
import { nodeFileSystem, type WalFileHandle, type WalFileSystem } from './fs.js';

/** Largest file {@link writeFileDurably} writes, in bytes: it is for small files only. */
export const smallFileBytesMax = 1024 * 1024;

/** `<path>.tmp`: the one temporary name of `path`'s replacement. */
export function smallFileTempPath(path: string): string {
  return `${path}.tmp`;
}

/**
 * Writes of one path in progress in this process, so that two overlapping
 * replacements of one file cannot remove each other's temporary file. (Other
 * processes do not write these files: they belong to the database's lock
 * holder.)
 */
const inFlight = new WeakMap<WalFileSystem, Map<string, Promise<void>>>();

/**
 * Replaces `path` with `data` so that after a crash at any point the name
 * holds either the whole old contents or the whole new ones, and once this
 * returns the new contents survive power loss.
 * @throws {WalIoError} naming the step that failed (and the file).
 */
export async function writeFileDurably(
  path: string,
  data: Uint8Array,
  fs: WalFileSystem = nodeFileSystem,
): Promise<void> {
  if (data.length > smallFileBytesMax) {
    throw new WalArgumentError(
      `${path}: ${data.length} bytes is beyond a small file's limit of ${smallFileBytesMax}`,
    );
  }
  let byPath = inFlight.get(fs);
  if (byPath === undefined) {
    byPath = new Map();
    inFlight.set(fs, byPath);
  }
  const key = nodePath.resolve(path);
  const previous = byPath.get(key) ?? Promise.resolve();
  const mine = previous.catch(() => undefined).then(() => replace(path, data, fs));
  const tail = mine.catch(() => undefined);
  byPath.set(key, tail);
  try {
    await mine;
  } finally {
    if (byPath.get(key) === tail) byPath.delete(key);
  }
}

async function replace(path: string, data: Uint8Array, fs: WalFileSystem): Promise<void> {
  const temp = smallFileTempPath(path);
  // 1. Remove a stale temporary file: one left by a write that crashed, or
  //    anything planted under the name (a symlink would otherwise redirect
  //    our write to its target). Unlinking a name never touches a target.
  try {
    await fs.unlink(temp);
  } catch (error) {
    if ((error as { code?: unknown }).code !== 'ENOENT') {
      throw toIoError(error, 'cannot remove stale temporary file', 'unlink', temp);
    }
  }
  // 2. Create it new: O_CREAT|O_EXCL never follows a symlink and never opens
  //    an existing file, so the bytes land in a fresh regular file of ours
  //    (if someone re-created the name since step 1, this fails: EEXIST).
  let handle: WalFileHandle;
  try {
    handle = await fs.open(temp, 'createExclusive');
  } catch (error) {
    throw toIoError(error, 'cannot create temporary file', 'open', temp);
  }
  let step = 'write';
  try {
    // 3. Write the new contents into the temporary file, never into `path`
    //    itself: a crash in the middle of this write leaves a torn temporary
    //    file (removed by step 1 of the next write) and `path` untouched.
    await handle.write(data, 0);
    // 4. fdatasync before any name points at them: otherwise a power cut
    //    after the rename could show the new name with empty or torn content.
    step = 'datasync';
    await handle.datasync();
    step = 'close';
  } catch (error) {
    await handle.close().catch(() => undefined);
    await fs.unlink(temp).catch(() => undefined);
    throw toIoError(error, 'cannot write temporary file', step, temp);
  }
  try {
    // Close before the rename so that no descriptor of ours still points at
    // the file once it carries the real name (and a failed close is reported
    // before anything is replaced).
    await handle.close();
    // 5. Atomic replace: the name shows the old file or the new one, never a
    //    mix. rename replaces the directory entry itself — if `path` was a
    //    symlink, it is now our regular file, and the link's target is untouched.
    step = 'rename';
    await fs.rename(temp, path);
  } catch (error) {
    await fs.unlink(temp).catch(() => undefined);
    throw toIoError(error, `cannot replace ${path}`, step, temp);
  }
  // 6. fsync the directory: without it a power cut can undo the rename and
  //    bring back the old contents after we reported the new ones durable.
  const dir = nodePath.dirname(path);
  try {
    await fs.syncDirectory(dir);
  } catch (error) {
    throw toIoError(error, `cannot make the replacement of ${path} durable`, 'fsync', dir);
  }
}
