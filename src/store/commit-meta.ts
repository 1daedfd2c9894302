/**
 * How a store commit carries the database size through the log.
 *
 * The segment format has no field for `dbSizeIfCommit` (the engine keeps it
 * only in memory), yet recovery must know the size after every commit that
 * set it — a commit may shrink the database. So a commit that gives an
 * explicit size carries one extra record in the same transaction: page id
 * {@link STORE_META_PAGE_ID} (the largest u32; the store never uses it for a
 * page) with a 12-byte image `u32 magic "PSZ1" | u32 version 1 | u32 dbSizePages`.
 * It is in the same segment and the same transaction as the pages, so it is
 * durable and recovered exactly when they are, and it sorts last in the
 * transaction (recovery order sorts by page id within a transaction).
 *
 * A commit without an explicit size writes no meta record: its size effect
 * is "grow to cover the highest page", which recovery derives from the pages.
 */
import { readU32, writeU32 } from '../format/bytes.js';
import { u32Max } from '../format/types.js';
import { StoreError, StoreErrorCode } from './errors.js';

/** Page id of the size record: never a page of the database. */
export const STORE_META_PAGE_ID = u32Max;
/** Largest page number (and database size in pages) a store accepts. */
export const storePageNumberMax = u32Max - 1;
/** Bytes of a size record's image. */
export const STORE_META_BYTES = 12;
/** `PSZ1` read as a little-endian u32. */
const STORE_META_MAGIC = 0x315a5350;
const STORE_META_VERSION = 1;

/** The image of a size record. */
export function encodeSizeMeta(dbSizePages: number): Uint8Array {
  const bytes = new Uint8Array(STORE_META_BYTES);
  writeU32(bytes, 0, STORE_META_MAGIC);
  writeU32(bytes, 4, STORE_META_VERSION);
  writeU32(bytes, 8, dbSizePages);
  return bytes;
}

/**
 * Decodes a size record's image. It came out of a checksummed segment, so a
 * defect means a foreign writer: fail closed with `ERR_STORE_RECOVERY_FAILED`.
 */
export function decodeSizeMeta(image: Uint8Array, where: string): number {
  if (
    image.length !== STORE_META_BYTES ||
    readU32(image, 0) !== STORE_META_MAGIC ||
    readU32(image, 4) !== STORE_META_VERSION
  ) {
    throw new StoreError(
      StoreErrorCode.recoveryFailed,
      `${where}: record of page ${STORE_META_PAGE_ID} is not a store size record`,
    );
  }
  const size = readU32(image, 8);
  if (size > storePageNumberMax) {
    throw new StoreError(
      StoreErrorCode.recoveryFailed,
      `${where}: size record holds ${size} pages, above the maximum ${storePageNumberMax}`,
    );
  }
  return size;
}
