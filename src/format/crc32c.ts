/**
 * CRC-32C (Castagnoli): reflected polynomial 0x82F63B78, initial value and
 * final xor 0xFFFFFFFF. Check value: `crc32c("123456789") = 0xE3069283`.
 *
 * Two implementations with identical results: a slicing-by-8 table in
 * JavaScript, and the native `@node-rs/crc32` (hardware CRC instructions).
 * The native call costs a fixed N-API crossing (~100-200 ns), so below
 * {@link CRC32C_NATIVE_THRESHOLD_BYTES} the JS table wins; above it the
 * native version is many times faster. `zlib.crc32` is CRC-32 (IEEE), a
 * different checksum, and must never be used for the log.
 */
import { crc32c as nativeCrc32c } from '@node-rs/crc32';

/** The reflected CRC-32C polynomial. */
export const CRC32C_POLYNOMIAL = 0x82f63b78;

/**
 * Inputs at least this long go to the native implementation.
 * Measured on the project machine (bench/codec.ts era): the JS table is
 * faster up to roughly 64-128 bytes, native beyond.
 */
export const CRC32C_NATIVE_THRESHOLD_BYTES = 96;

/** 8 tables of 256 entries for slicing-by-8. */
const TABLES: Uint32Array = buildTables();

function buildTables(): Uint32Array {
  const tables = new Uint32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ CRC32C_POLYNOMIAL : c >>> 1;
    tables[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    let c = tables[n]!;
    for (let t = 1; t < 8; t++) {
      c = (c >>> 8) ^ tables[c & 0xff]!;
      tables[t * 256 + n] = c >>> 0;
    }
  }
  return tables;
}

/**
 * CRC-32C in JavaScript (slicing-by-8). `seed` is the CRC of the bytes that
 * came before `data` (0 for none), so `crc32cJs(b, crc32cJs(a)) === crc32cJs(a ++ b)`.
 */
export function crc32cJs(data: Uint8Array, seed = 0): number {
  const t = TABLES;
  let crc = ~seed >>> 0;
  let i = 0;
  const length = data.length;
  const end8 = length - (length % 8);
  while (i < end8) {
    const lo =
      (crc ^ (data[i]! | (data[i + 1]! << 8) | (data[i + 2]! << 16) | (data[i + 3]! << 24))) >>> 0;
    crc =
      t[7 * 256 + (lo & 0xff)]! ^
      t[6 * 256 + ((lo >>> 8) & 0xff)]! ^
      t[5 * 256 + ((lo >>> 16) & 0xff)]! ^
      t[4 * 256 + (lo >>> 24)]! ^
      t[3 * 256 + data[i + 4]!]! ^
      t[2 * 256 + data[i + 5]!]! ^
      t[256 + data[i + 6]!]! ^
      t[data[i + 7]!]!;
    i += 8;
  }
  while (i < length) {
    crc = (crc >>> 8) ^ t[(crc ^ data[i]!) & 0xff]!;
    i++;
  }
  return ~crc >>> 0;
}

/** CRC-32C through the native `@node-rs/crc32` module; same contract as {@link crc32cJs}. */
export function crc32cNative(data: Uint8Array, seed = 0): number {
  return nativeCrc32c(data, seed) >>> 0;
}

/**
 * CRC-32C of `data`, continuing from `seed` (the CRC of the preceding bytes, 0
 * for none). Picks the JS table for short inputs and the native code for long ones.
 */
export function crc32c(data: Uint8Array, seed = 0): number {
  return data.length < CRC32C_NATIVE_THRESHOLD_BYTES
    ? crc32cJs(data, seed)
    : nativeCrc32c(data, seed) >>> 0;
}
