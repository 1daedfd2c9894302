/**
 * The database file's length against its store header: a file shorter than
 * any crash can leave it is lost data, never pages of zeros.
 *
 * The header moves only after the database file (data and length) was
 * fsynced, so after a checkpoint the file holds at least the header's
 * `dbSizePages`. The one way a crash leaves it shorter is a fold that cut it
 * (a commit that shrank the database) before the header moved: then the
 * segments of that fold are still on disk above the header's epoch, and
 * folding them again cuts the database at least as far. So the file must
 * hold `min(header size, smallest size the pending log reaches)` whole
 * pages; anything shorter was truncated from outside (a copy cut short, a
 * full disk while copying, an operator's `truncate`), and opening must fail
 * closed instead of serving the missing pages as zeros.
 */

import { fileSize } from '../storage/file-size.js';
import type { WalFileSystem } from '../storage/fs.js';
import { recoverSegments } from '../storage/recovery.js';
import { describeError, StoreError, StoreErrorCode } from './errors.js';
import { readStoreHeader, type StoreHeader } from './header.js';
import { foldRecords, startReplay } from './replay.js';

/**
 * `ERR_STORE_FILE_TRUNCATED` when `fileBytes` cannot hold the pages the
 * header and the pending log need, else `null`.
 * @param minSizePages the smallest size the fold of the log above the
 * header's epoch reaches (the header's size when it holds no commit).
 */
export function truncationError(
  path: string,
  header: StoreHeader,
  fileBytes: number,
  minSizePages: number,
): StoreError | null {
  const neededPages = Math.min(header.dbSizePages, minSizePages);
  const neededBytes = neededPages * header.pageSize;
  if (fileBytes >= neededBytes) return null;
  const wholePages = Math.floor(fileBytes / header.pageSize);
  return new StoreError(
    StoreErrorCode.fileTruncated,
    `${path} is truncated: ${fileBytes} bytes (${wholePages} whole page(s) of ${header.pageSize}), ` +
      `but its store header says ${header.dbSizePages} page(s) and the log above epoch ` +
      `${header.nextEpoch - 1n} cuts it to no fewer than ${neededPages}: pages ` +
      `${wholePages + 1}..${neededPages} are missing (no crash leaves the file this short)`,
  );
}

/**
 * Checks a page store database at `path` without modifying anything (for
 * `pwal verify`): `null` when it is not a page store (no store header) or its
 * file is long enough; else the `ERR_STORE_FILE_TRUNCATED` error opening it
 * would fail with (`ERR_STORE_HEADER_MISSING` when the file is gone). Reads the segments above the header's epoch only when the
 * file is shorter than the header's size.
 * @throws {StoreError} `ERR_STORE_HEADER_CORRUPT` / `ERR_STORE_IO`; the
 * storage layer's errors for an unusable segment.
 */
export async function findFileTruncation(
  path: string,
  fs: WalFileSystem,
): Promise<StoreError | null> {
  const header = await readStoreHeader(path, fs);
  if (header === null) return null;
  const size = await databaseFileSize(path, fs);
  if (size === null && (header.dbSizePages > 0 || header.nextEpoch > 0n)) {
    return new StoreError(
      StoreErrorCode.headerMissing,
      `${path} is missing, but its store header says it holds ${header.dbSizePages} pages`,
    );
  }
  const fileBytes = size ?? 0;
  if (fileBytes >= header.dbSizePages * header.pageSize) return null;
  const recovered = await recoverSegments(path, { fs });
  const state = startReplay(header.dbSizePages);
  foldRecords(state, recovered.records, header.nextEpoch, header.pageSize, path);
  return truncationError(path, header, fileBytes, state.minSizePages);
}

/**
 * {@link fileSize} for the store: its failures are the store's I/O errors
 * (`ERR_STORE_IO`, caused by the storage layer's error).
 */
export async function databaseFileSize(path: string, fs: WalFileSystem): Promise<number | null> {
  try {
    return await fileSize(path, fs);
  } catch (error) {
    throw new StoreError(StoreErrorCode.io, describeError(error), { cause: error });
  }
}
