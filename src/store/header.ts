/**
 * The store header: a 40-byte sidecar file `<db>-pwal-store` beside the
 * database file. It says how to read the database file (page size) and how far
 * the log has been folded into it (last checkpointed epoch, size in pages).
 *
 * Layout (little-endian):
 *
 * | bytes  | field |
 * |--------|-------|
 * | 0..8   | magic `PWALSTOR` |
 * | 8..10  | version u16 = 1 |
 * | 10..12 | reserved, 0 |
 * | 12..16 | page size u32 (512 ..= 65536, a power of two) |
 * | 16..20 | database size in pages u32 |
 * | 20..28 | next epoch u64: the first epoch not yet folded into the database file |
 * | 28..36 | last folded commit sequence u64 (0 = none) |
 * | 36..40 | crc32c of bytes 0..36 |
 *
 * It is replaced atomically and durably (`writeFileDurably`): a fresh
 * `<db>-pwal-store.tmp` (whatever was under that name removed first, then
 * created with `O_CREAT|O_EXCL|O_NOFOLLOW`), fdatasynced, renamed over the
 * header, and the directory fsynced. A crash leaves the old header or the new
 * one, never a mix, and neither a planted symlink nor a stray `.tmp` can
 * redirect the write.
 */
import { WalArgumentError } from '../errors.js';
import { readU16, readU32, readU64, writeU16, writeU32, writeU64 } from '../format/bytes.js';
import { crc32c } from '../format/crc32c.js';
import { u32Max, u64Max } from '../format/types.js';
import type { WalFileSystem } from '../storage/fs.js';
import { writeFileDurably } from '../storage/small-file.js';
import { describeError, StoreError, StoreErrorCode } from './errors.js';

/** Size of the store header, in bytes. */
export const STORE_HEADER_BYTES = 40;
/** `PWALSTOR` in ASCII. */
export const STORE_HEADER_MAGIC = new Uint8Array([0x50, 0x57, 0x41, 0x4c, 0x53, 0x54, 0x4f, 0x52]);
/** The only header version so far. */
export const STORE_HEADER_VERSION = 1;
/** Smallest page size, in bytes. */
export const pageSizeBytesMin = 512;
/** Largest page size, in bytes (the log's largest image). */
export const pageSizeBytesMax = 65536;
/** Page size of a new database unless told otherwise, in bytes. */
export const pageSizeBytesDefault = 4096;
/** Largest database size, in pages (page numbers are u32). */
export const dbSizePagesMax = u32Max;

/** The store header, decoded. */
export interface StoreHeader {
  /** Page size in bytes. */
  pageSize: number;
  /** Size of the database in pages as of the last checkpoint. */
  dbSizePages: number;
  /**
   * The first epoch not yet folded into the database file: every segment of
   * a smaller epoch is already applied (`0n`: nothing folded yet). The last
   * checkpointed epoch is `nextEpoch - 1`.
   */
  nextEpoch: bigint;
  /** Highest commit sequence folded into the database file (`0n`: none yet). */
  checkpointCommitSeq: bigint;
}

/** `<db>-pwal-store` */
export function storeHeaderPath(dbPath: string): string {
  return `${dbPath}-pwal-store`;
}

/** Throws `ERR_INVALID_ARGUMENT` unless `pageSize` is a power of two in 512 ..= 65536. */
export function validatePageSize(pageSize: number): void {
  if (
    !Number.isInteger(pageSize) ||
    pageSize < pageSizeBytesMin ||
    pageSize > pageSizeBytesMax ||
    (pageSize & (pageSize - 1)) !== 0
  ) {
    throw new WalArgumentError(
      `page size must be a power of two between ${pageSizeBytesMin} and ${pageSizeBytesMax}, got ${pageSize}`,
    );
  }
}

/** Encodes a header (validating every field first). */
export function encodeStoreHeader(header: StoreHeader): Uint8Array {
  validatePageSize(header.pageSize);
  if (!Number.isInteger(header.dbSizePages) || header.dbSizePages < 0) {
    throw new WalArgumentError(`dbSizePages must be a u32, got ${header.dbSizePages}`);
  }
  if (header.dbSizePages > dbSizePagesMax) {
    throw new WalArgumentError(`dbSizePages must be a u32, got ${header.dbSizePages}`);
  }
  for (const [name, value] of [
    ['nextEpoch', header.nextEpoch],
    ['checkpointCommitSeq', header.checkpointCommitSeq],
  ] as const) {
    if (value < 0n || value > u64Max) throw new WalArgumentError(`${name} must be a u64`);
  }
  const bytes = new Uint8Array(STORE_HEADER_BYTES);
  bytes.set(STORE_HEADER_MAGIC, 0);
  writeU16(bytes, 8, STORE_HEADER_VERSION);
  writeU16(bytes, 10, 0);
  writeU32(bytes, 12, header.pageSize);
  writeU32(bytes, 16, header.dbSizePages);
  writeU64(bytes, 20, header.nextEpoch);
  writeU64(bytes, 28, header.checkpointCommitSeq);
  writeU32(bytes, 36, crc32c(bytes.subarray(0, 36)));
  return bytes;
}

/** Decodes a header; any defect is `ERR_STORE_HEADER_CORRUPT` naming it. */
export function decodeStoreHeader(bytes: Uint8Array, where = 'store header'): StoreHeader {
  const corrupt = (why: string) =>
    new StoreError(StoreErrorCode.headerCorrupt, `${where} is corrupt: ${why}`);
  if (bytes.length !== STORE_HEADER_BYTES) {
    throw corrupt(`length ${bytes.length}, expected ${STORE_HEADER_BYTES}`);
  }
  for (let i = 0; i < STORE_HEADER_MAGIC.length; i++) {
    if (bytes[i] !== STORE_HEADER_MAGIC[i]) throw corrupt('bad magic');
  }
  const stored = readU32(bytes, 36);
  const computed = crc32c(bytes.subarray(0, 36));
  if (stored !== computed) {
    throw corrupt(
      `checksum mismatch: stored=0x${stored.toString(16)}, computed=0x${computed.toString(16)}`,
    );
  }
  const version = readU16(bytes, 8);
  if (version !== STORE_HEADER_VERSION) throw corrupt(`unsupported version ${version}`);
  const pageSize = readU32(bytes, 12);
  try {
    validatePageSize(pageSize);
  } catch {
    throw corrupt(`invalid page size ${pageSize}`);
  }
  return {
    pageSize,
    dbSizePages: readU32(bytes, 16),
    nextEpoch: readU64(bytes, 20),
    checkpointCommitSeq: readU64(bytes, 28),
  };
}

/** Reads the header of `dbPath`; `null` when there is none. */
export async function readStoreHeader(
  dbPath: string,
  fs: WalFileSystem,
): Promise<StoreHeader | null> {
  const file = storeHeaderPath(dbPath);
  let size: number;
  try {
    const stat = await fs.stat(file);
    if (stat.kind !== 'file') {
      throw new StoreError(StoreErrorCode.headerCorrupt, `${file} is not a regular file`);
    }
    size = stat.size;
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT') return null;
    if (error instanceof StoreError) throw error;
    throw new StoreError(StoreErrorCode.io, `cannot read ${file}: ${describeError(error)}`, {
      cause: error,
    });
  }
  // Never read more than a header's worth, whatever the file claims.
  if (size !== STORE_HEADER_BYTES) {
    throw new StoreError(
      StoreErrorCode.headerCorrupt,
      `${file} is corrupt: length ${size}, expected ${STORE_HEADER_BYTES}`,
    );
  }
  let bytes: Uint8Array;
  try {
    bytes = await fs.readFile(file);
  } catch (error) {
    throw new StoreError(StoreErrorCode.io, `cannot read ${file}: ${describeError(error)}`, {
      cause: error,
    });
  }
  return decodeStoreHeader(bytes, file);
}

/**
 * Replaces the header of `dbPath` durably (`writeFileDurably`: fresh temp
 * file, fdatasync, rename, fsync of the directory). When this returns, a
 * power cut keeps the new header.
 * @throws {WalIoError} naming the step that failed.
 */
export async function writeStoreHeader(
  dbPath: string,
  header: StoreHeader,
  fs: WalFileSystem,
): Promise<void> {
  // Durable before it returns: the checkpoint deletes segments right after,
  // and must never do so while the old header could come back.
  await writeFileDurably(storeHeaderPath(dbPath), encodeStoreHeader(header), fs);
}
