/**
 * Patching the epoch and commit-sequence fields of an already encoded record
 * without re-reading its images.
 *
 * Why: a worker encodes and checksums its records on its own core BEFORE it
 * takes its lane lock, with a guessed epoch and a placeholder commit sequence;
 * the real values are only known under the lock (docs/design.md#lanes). A
 * full CRC-32C over a 4 KiB record under the lock would make the lock hold
 * proportional to page size; this patch costs the same for any record size.
 *
 * How: CRC-32C is linear over GF(2). For two messages of the same length,
 * `crc(M') = crc(M) ^ raw(M ^ M')`, where `raw` is the CRC register with zero
 * initial value and no final xor. `M ^ M'` is zero outside the patched field
 * bytes `[a, b)`, and leading zeros do not move a zero register, so
 * `raw(M ^ M') = raw(Δ[a, b)) · x^(8·n) mod P`, with `n` the number of bytes
 * after `b` that the CRC covers. `x^(8·n) mod P` is computed by squaring
 * (as zlib's `crc32_combine` does) and cached per `n`.
 */
import { crc32cJs } from '../format/crc32c.js';
import {
  RECORD_BEGIN_SEQ_OFFSET,
  RECORD_CHECKSUM_BYTES,
  RECORD_END_SEQ_OFFSET,
  RECORD_EPOCH_OFFSET,
  RECORD_HAS_END_SEQ_OFFSET,
  RECORD_LENGTH_PREFIX_BYTES,
} from '../format/record.js';

const POLY = 0x82f63b78;

/** Product of two polynomials modulo P, reflected bit order (bit 31 is x^0). */
function multModP(a: number, b: number): number {
  let m = 0x8000_0000;
  let p = 0;
  let bb = b >>> 0;
  for (;;) {
    if ((a & m) !== 0) {
      p ^= bb;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    if (m === 0) break;
    bb = bb & 1 ? (bb >>> 1) ^ POLY : bb >>> 1;
  }
  return p >>> 0;
}

/** `X2N[k] = x^(2^k) mod P`. */
const X2N: Uint32Array = (() => {
  const table = new Uint32Array(32);
  let p = 0x4000_0000; // x^1
  table[0] = p;
  for (let k = 1; k < 32; k++) {
    p = multModP(p, p);
    table[k] = p;
  }
  return table;
})();

/** `x^(8·n) mod P`: the operator that runs `n` zero bytes through a CRC register. */
function zeroBytesOperator(n: number): number {
  let p = 0x8000_0000; // x^0
  let k = 3; // 2^3 bits per byte
  let rest = n;
  while (rest > 0) {
    if (rest & 1) p = multModP(X2N[k & 31]!, p);
    rest = Math.floor(rest / 2);
    k++;
  }
  return p;
}

/** At most this many distinct shift operators are cached (record sizes seen). */
const shiftCacheEntriesMax = 256;
const shiftCache = new Map<number, number>();

function cachedZeroBytesOperator(n: number): number {
  const hit = shiftCache.get(n);
  if (hit !== undefined) return hit;
  const op = zeroBytesOperator(n);
  if (shiftCache.size >= shiftCacheEntriesMax) shiftCache.clear();
  shiftCache.set(n, op);
  return op;
}

/** First body byte the patch can change (the epoch field). */
const PATCH_FIRST = RECORD_EPOCH_OFFSET;
/** One past the last body byte the patch can change (the end of `endSeq`). */
const PATCH_END = RECORD_END_SEQ_OFFSET + 8;
const PATCH_BYTES = PATCH_END - PATCH_FIRST;

function xorU64Into(delta: Uint8Array, at: number, a: bigint, b: bigint): void {
  let x = a ^ b;
  for (let i = 0; i < 8; i++) {
    delta[at + i]! ^= Number(x & 0xffn);
    x >>= 8n;
  }
}

function writeU64(bytes: Uint8Array, at: number, value: bigint): void {
  let v = value;
  for (let i = 0; i < 8; i++) {
    bytes[at + i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

/**
 * A precomputed change of a record's epoch (and, optionally, its commit
 * sequence) that can be applied to any number of encoded records.
 */
export interface RecordPatch {
  readonly epoch: bigint;
  /** New `beginSeq` = `endSeq`, or `null` to keep the encoded ones. */
  readonly commitSeq: bigint | null;
  /** `raw(Δ[PATCH_FIRST, PATCH_END))`, before shifting. */
  readonly deltaRaw: number;
}

/**
 * Prepares a patch from the values the records were encoded with
 * (`fromEpoch`, `fromSeq`) to the values they must carry. Every record the
 * patch is applied to must have been encoded with those old values and with
 * `endSeq` present (committed records).
 */
export function prepareRecordPatch(
  fromEpoch: bigint,
  toEpoch: bigint,
  fromSeq: bigint,
  toSeq: bigint | null,
): RecordPatch {
  const delta = new Uint8Array(PATCH_BYTES);
  xorU64Into(delta, RECORD_EPOCH_OFFSET - PATCH_FIRST, fromEpoch, toEpoch);
  if (toSeq !== null) {
    xorU64Into(delta, RECORD_BEGIN_SEQ_OFFSET - PATCH_FIRST, fromSeq, toSeq);
    xorU64Into(delta, RECORD_END_SEQ_OFFSET - PATCH_FIRST, fromSeq, toSeq);
  }
  // crc32cJs(d, 0xffffffff) starts from a zero register; its result is ~raw.
  const deltaRaw = ~crc32cJs(delta, 0xffff_ffff) >>> 0;
  return { epoch: toEpoch, commitSeq: toSeq, deltaRaw };
}

/**
 * Applies `patch` to the committed record whose `u32 len` prefix starts at
 * `offset` in `wire`; returns the offset after the record. With
 * `hasChecksum` (format version 2) the trailing CRC-32C is updated so it
 * equals a fresh CRC over the patched body.
 */
export function applyRecordPatch(
  wire: Uint8Array,
  offset: number,
  patch: RecordPatch,
  hasChecksum: boolean,
): number {
  const bodyLength =
    (wire[offset]! |
      (wire[offset + 1]! << 8) |
      (wire[offset + 2]! << 16) |
      (wire[offset + 3]! << 24)) >>>
    0;
  const body = offset + RECORD_LENGTH_PREFIX_BYTES;
  if (wire[body + RECORD_HAS_END_SEQ_OFFSET] !== 1) {
    throw new RangeError('applyRecordPatch: only committed records (endSeq present) are patched');
  }
  writeU64(wire, body + RECORD_EPOCH_OFFSET, patch.epoch);
  if (patch.commitSeq !== null) {
    writeU64(wire, body + RECORD_BEGIN_SEQ_OFFSET, patch.commitSeq);
    writeU64(wire, body + RECORD_END_SEQ_OFFSET, patch.commitSeq);
  }
  const end = body + bodyLength;
  if (hasChecksum && patch.deltaRaw !== 0) {
    const crcAt = end - RECORD_CHECKSUM_BYTES;
    const shifted = multModP(cachedZeroBytesOperator(crcAt - (body + PATCH_END)), patch.deltaRaw);
    const old =
      (wire[crcAt]! |
        (wire[crcAt + 1]! << 8) |
        (wire[crcAt + 2]! << 16) |
        (wire[crcAt + 3]! << 24)) >>>
      0;
    const crc = (old ^ shifted) >>> 0;
    wire[crcAt] = crc & 0xff;
    wire[crcAt + 1] = (crc >>> 8) & 0xff;
    wire[crcAt + 2] = (crc >>> 16) & 0xff;
    wire[crcAt + 3] = (crc >>> 24) & 0xff;
  }
  return end;
}
