/**
 * The files of a replica's re-seed from a snapshot (see
 * `ReplicaStore.reseed`): their names, writing them, and finishing or
 * dropping a switch a crash interrupted. Their names are here, below both
 * the page store and the replica store, because the page store must refuse a
 * database whose re-seed was interrupted, and the replica store writes and
 * finishes them.
 *
 * The order that makes the switch crash-safe: the image is written to
 * `<db>-pwal-reseed-image` and fsynced; then the marker (`<db>-pwal-reseed`,
 * the new store header) is made durable; then the image is renamed over the
 * database file, the header replaced and the marker removed.
 */
import * as nodePath from 'node:path';
import type { WalFileSystem } from '../storage/fs.js';
import { isNotFound } from '../storage/segment-files.js';
import { writeFileDurably } from '../storage/small-file.js';
import { describeError, StoreError, StoreErrorCode } from './errors.js';
import {
  decodeStoreHeader,
  encodeStoreHeader,
  type StoreHeader,
  writeStoreHeader,
} from './header.js';

/** `<db>-pwal-reseed-image`: a snapshot being written for `ReplicaStore.reseed`. */
export function reseedImagePath(dbPath: string): string {
  return `${dbPath}-pwal-reseed-image`;
}

/** `<db>-pwal-reseed`: the new store header, durable once the image is; removed when the switch is done. */
export function reseedMarkerPath(dbPath: string): string {
  return `${dbPath}-pwal-reseed`;
}

/**
 * A writer for `fill` that refuses a chunk outside the image's `bytes`
 * bytes and passes the others to `write`.
 */
export function imageWriter(
  bytes: number,
  write: (chunk: Uint8Array, offset: number) => Promise<unknown>,
): (chunk: Uint8Array, offset: number) => Promise<void> {
  return async (chunk, offset) => {
    if (offset < 0 || offset + chunk.length > bytes) {
      throw new StoreError(
        StoreErrorCode.replicaState,
        `snapshot chunk at ${offset} (+${chunk.length}) is outside the image's ${bytes} bytes`,
      );
    }
    await write(chunk, offset);
  };
}

/**
 * Writes the snapshot's `bytes` bytes, as `fill` hands them over, to
 * `<db>-pwal-reseed-image` and fsyncs it. When `fill` or a write fails, the
 * image is removed, `onFailure` runs, and the error is rethrown: the replica
 * keeps its old content.
 */
export async function writeReseedImage(
  dbPath: string,
  fs: WalFileSystem,
  bytes: number,
  fill: (write: (chunk: Uint8Array, offset: number) => Promise<void>) => Promise<void>,
  onFailure: () => void,
): Promise<void> {
  const imagePath = reseedImagePath(dbPath);
  const handle = await fs.open(imagePath, 'createOrTruncate');
  try {
    await fill(imageWriter(bytes, (chunk, offset) => handle.write(chunk, offset)));
    await handle.truncate(bytes);
    await handle.sync();
  } catch (error) {
    await handle.close().catch(() => undefined);
    await fs.unlink(imagePath).catch(() => undefined);
    onFailure();
    throw error;
  }
  await handle.close();
}

/**
 * Makes the marker (the new header) durable: from here on, opening the
 * replica finishes the switch ({@link finishReseed}) instead of dropping it.
 */
export async function writeReseedMarker(
  dbPath: string,
  fs: WalFileSystem,
  header: StoreHeader,
): Promise<void> {
  await writeFileDurably(reseedMarkerPath(dbPath), encodeStoreHeader(header), fs);
}

/**
 * Finishes or drops an interrupted re-seed (see `ReplicaStore.reseed`):
 * with the marker, the image (if still there) is renamed over the database
 * file and the marker becomes the header; without it, a leftover image is an
 * unfinished download and is removed.
 */
export async function finishReseed(path: string, fs: WalFileSystem): Promise<void> {
  const markerPath = reseedMarkerPath(path);
  const imagePath = reseedImagePath(path);
  let marker: Uint8Array | null = null;
  try {
    marker = await fs.readFile(markerPath);
  } catch (error) {
    if (!isNotFound(error)) throw ioError(`cannot read ${markerPath}`, error);
  }
  if (marker === null) {
    await fs.unlink(imagePath).catch((error: unknown) => {
      if (!isNotFound(error)) throw ioError(`cannot remove ${imagePath}`, error);
    });
    return;
  }
  const header = decodeStoreHeader(marker, markerPath);
  try {
    await fs.rename(imagePath, path);
    await fs.syncDirectory(nodePath.dirname(path));
  } catch (error) {
    // Gone: renamed before a crash (the marker is written after the image).
    if (!isNotFound(error)) throw ioError(`cannot move ${imagePath} into place`, error);
  }
  await writeStoreHeader(path, header, fs);
  await fs.unlink(markerPath).catch((error: unknown) => {
    if (!isNotFound(error)) throw ioError(`cannot remove ${markerPath}`, error);
  });
}

function ioError(what: string, error: unknown): StoreError {
  return new StoreError(StoreErrorCode.io, `${what}: ${describeError(error)}`, { cause: error });
}
