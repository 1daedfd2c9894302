/**
 * Little-endian integer helpers: the only place the format reads or writes
 * multi-byte integers. Callers check bounds first; these functions assume
 * `offset + width <= bytes.length`. u64 values are `bigint` and never pass
 * through a JavaScript `number`.
 */

const TWO_POW_32 = 0x1_0000_0000;

/** Reads a u16 at `offset`. */
export function readU16(bytes: Uint8Array, offset: number): number {
  return bytes[offset]! | (bytes[offset + 1]! << 8);
}

/** Reads a u32 at `offset`. */
export function readU32(bytes: Uint8Array, offset: number): number {
  return (
    (bytes[offset]! |
      (bytes[offset + 1]! << 8) |
      (bytes[offset + 2]! << 16) |
      (bytes[offset + 3]! << 24)) >>>
    0
  );
}

/** Reads a u64 at `offset` as a bigint. */
export function readU64(bytes: Uint8Array, offset: number): bigint {
  const lo = readU32(bytes, offset);
  const hi = readU32(bytes, offset + 4);
  // Below 2^53 the number path is exact and avoids two bigint operations.
  if (hi < 0x20_0000) return BigInt(hi * TWO_POW_32 + lo);
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/** Writes a u16 at `offset`. */
export function writeU16(bytes: Uint8Array, offset: number, value: number): void {
  bytes[offset] = value & 0xff;
  bytes[offset + 1] = (value >>> 8) & 0xff;
}

/** Writes a u32 at `offset`. */
export function writeU32(bytes: Uint8Array, offset: number, value: number): void {
  bytes[offset] = value & 0xff;
  bytes[offset + 1] = (value >>> 8) & 0xff;
  bytes[offset + 2] = (value >>> 16) & 0xff;
  bytes[offset + 3] = (value >>> 24) & 0xff;
}

/** Writes a u64 (0 ..= 2^64-1, already range-checked by the caller) at `offset`. */
export function writeU64(bytes: Uint8Array, offset: number, value: bigint): void {
  writeU32(bytes, offset, Number(value & 0xffff_ffffn));
  writeU32(bytes, offset + 4, Number(value >> 32n));
}

/** Formats a u32 as `0x…` lowercase hex without padding, like Rust's `{:#x}`. */
export function hex32(value: number): string {
  return `0x${(value >>> 0).toString(16)}`;
}
