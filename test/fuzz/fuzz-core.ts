/**
 * The hostile-input fuzzer shared by the CI tests (`test/fuzz/*.test.ts`, a
 * few thousand cases) and the long run (`npm run fuzz`, 100k+ cases).
 *
 * Inputs: valid segments (v1 and v2, random records) put through
 * structure-aware mutations (bit flips, interesting u32/u64 values at field
 * offsets, truncation, insertion, deletion, duplication, splicing), with the
 * header and record checksums recomputed most of the time so that mutations
 * get past the CRC checks and reach the deeper ones; and plain random bytes.
 *
 * Oracle: the reader returns or throws a typed error, nothing else; a
 * successful decode is self-consistent (counts, epochs, image bytes within
 * the input's size, the same records after a re-encode).
 */
import { WalError } from '../../src/errors.js';
import { crc32c } from '../../src/format/crc32c.js';
import { SegmentErrorCode, SegmentFormatError } from '../../src/format/errors.js';
import { decodeRecord } from '../../src/format/record.js';
import { decodeSegment, encodeSegment } from '../../src/format/segment.js';
import {
  CERTIFICATE_TRAILER_PREFIX_BYTES,
  type FormatVersion,
  recordVersionOf,
  type WalRecord,
} from '../../src/format/types.js';
import { randomRecords } from '../support/records.js';
import { pick, type Rng, randBytes, randInt } from '../support/rng.js';

const FORMAT_CODES = new Set<string>(Object.values(SegmentErrorCode));

/** A valid segment: random epoch, 0–6 records, version 1 or 2. */
export function validSegment(rng: Rng): {
  bytes: Uint8Array;
  epoch: bigint;
  version: FormatVersion;
} {
  const epoch =
    rng() < 0.2 ? (1n << 64n) - 1n - BigInt(randInt(rng, 0, 3)) : BigInt(randInt(rng, 0, 1 << 20));
  const version: FormatVersion = rng() < 0.5 ? 1 : 2;
  const records = randomRecords(rng, epoch, randInt(rng, 0, 6), rng() < 0.1 ? 3000 : 120);
  return { bytes: encodeSegment(epoch, records, version), epoch, version };
}

const U32_VALUES = [
  0, 1, 2, 3, 4, 24, 40, 41, 44, 45, 49, 53, 65535, 65536, 65537, 0x7fffffff, 0x80000000,
  0xfffffffe, 0xffffffff,
];
const U64_VALUES = [
  0n,
  1n,
  (1n << 62n) - 1n,
  1n << 62n,
  (1n << 63n) - 1n,
  1n << 63n,
  (1n << 64n) - 1n,
];

function putU32(bytes: Uint8Array, at: number, value: number): void {
  if (at < 0 || at + 4 > bytes.length) return;
  new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).setUint32(at, value >>> 0, true);
}

function putU64(bytes: Uint8Array, at: number, value: bigint): void {
  if (at < 0 || at + 8 > bytes.length) return;
  new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).setBigUint64(at, value, true);
}

function getU32(bytes: Uint8Array, at: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(at, true);
}

/** Offsets where records (their u32 length prefixes) start, as far as they can be walked. */
export function recordOffsets(bytes: Uint8Array): number[] {
  const offsets: number[] = [];
  let at = 24;
  while (at + 4 <= bytes.length && offsets.length < 10_000) {
    offsets.push(at);
    const length = getU32(bytes, at);
    if (length > bytes.length) break;
    at += 4 + length;
  }
  return offsets;
}

/** Recomputes the header CRC (if there is a header). */
export function fixHeaderCrc(bytes: Uint8Array): void {
  if (bytes.length >= 24) putU32(bytes, 20, crc32c(bytes.subarray(0, 20)));
}

/** Recomputes the v2 CRC of every record that can be walked. */
export function fixRecordCrcs(bytes: Uint8Array): void {
  for (const at of recordOffsets(bytes)) {
    const length = getU32(bytes, at);
    const end = at + 4 + length;
    if (length < 4 || end > bytes.length) break;
    putU32(bytes, end - 4, crc32c(bytes.subarray(at + 4, end - 4)));
  }
}

/** One structure-aware mutation of `input` (may return a new array). */
export function mutateOnce(input: Uint8Array, rng: Rng, donor?: Uint8Array): Uint8Array {
  let bytes = input;
  const n = bytes.length;
  const anywhere = () => randInt(rng, 0, Math.max(0, n - 1));
  const fieldOffset = (): number => {
    const records = recordOffsets(bytes);
    const base = records.length > 0 && rng() < 0.8 ? pick(rng, records) + 4 : 0;
    // Header fields, or the fixed fields and image length words of a record.
    return base === 0
      ? pick(rng, [4, 6, 8, 16, 20])
      : base + pick(rng, [0, 8, 12, 20, 24, 32, 33, 41, 45, -4]);
  };
  switch (randInt(rng, 0, 11)) {
    case 0: {
      if (n === 0) return randBytes(rng, randInt(rng, 1, 64));
      const at = anywhere();
      bytes[at]! ^= 1 << randInt(rng, 0, 7);
      return bytes;
    }
    case 1: {
      if (n === 0) return bytes;
      bytes[anywhere()] = pick(rng, [0, 1, 2, 0x7f, 0x80, 0xfe, 0xff, randInt(rng, 0, 255)]);
      return bytes;
    }
    case 2:
      putU32(bytes, fieldOffset(), rng() < 0.3 ? randInt(rng, 0, n + 64) : pick(rng, U32_VALUES));
      return bytes;
    case 3:
      putU64(bytes, fieldOffset(), pick(rng, U64_VALUES));
      return bytes;
    case 4:
      return bytes.slice(0, randInt(rng, 0, n));
    case 5: {
      const extra = randBytes(rng, randInt(rng, 1, 80));
      const out = new Uint8Array(n + extra.length);
      out.set(bytes);
      out.set(extra, n);
      return out;
    }
    case 6: {
      const at = randInt(rng, 0, n);
      const extra = randBytes(rng, randInt(rng, 1, 16));
      const out = new Uint8Array(n + extra.length);
      out.set(bytes.subarray(0, at));
      out.set(extra, at);
      out.set(bytes.subarray(at), at + extra.length);
      return out;
    }
    case 7: {
      const at = randInt(rng, 0, n);
      const count = randInt(rng, 0, Math.min(64, n - at));
      const out = new Uint8Array(n - count);
      out.set(bytes.subarray(0, at));
      out.set(bytes.subarray(at + count), at);
      return out;
    }
    case 8: {
      // Duplicate a range (often a whole record) somewhere else.
      const records = recordOffsets(bytes);
      const from = records.length > 0 ? pick(rng, records) : anywhere();
      const length = Math.min(n - from, from + 4 <= n ? 4 + Math.min(getU32(bytes, from), n) : 8);
      const at = randInt(rng, 0, n);
      const piece = bytes.slice(from, from + Math.max(0, length));
      const out = new Uint8Array(n + piece.length);
      out.set(bytes.subarray(0, at));
      out.set(piece, at);
      out.set(bytes.subarray(at), at + piece.length);
      return out;
    }
    case 9: {
      if (donor === undefined) return bytes;
      const cut = randInt(rng, 0, n);
      const from = randInt(rng, 0, donor.length);
      const out = new Uint8Array(cut + donor.length - from);
      out.set(bytes.subarray(0, cut));
      out.set(donor.subarray(from), cut);
      return out;
    }
    case 10:
      // Record count or version: the header fields that steer the reader.
      if (rng() < 0.5) putU32(bytes, 16, pick(rng, U32_VALUES));
      else if (n >= 6) {
        bytes[4] = pick(rng, [0, 1, 2, 3, 0xff]);
        bytes[5] = rng() < 0.8 ? 0 : 0xff;
      }
      return bytes;
    default: {
      // End-seq flag of a record.
      const records = recordOffsets(bytes);
      if (records.length > 0) {
        const at = pick(rng, records) + 4 + 32;
        if (at < n) bytes[at] = pick(rng, [0, 1, 2, 0xff]);
      }
      bytes = bytes.slice();
      return bytes;
    }
  }
}

/** A hostile input: mostly mutated valid segments, sometimes random bytes. */
export function hostileSegment(rng: Rng): Uint8Array {
  const r = rng();
  if (r < 0.08) return randBytes(rng, randInt(rng, 0, rng() < 0.5 ? 40 : 2000));
  if (r < 0.14) {
    // A valid header in front of random bytes.
    const { bytes } = validSegment(rng);
    const body = randBytes(rng, randInt(rng, 0, 400));
    const out = new Uint8Array(24 + body.length);
    out.set(bytes.subarray(0, 24));
    out.set(body, 24);
    if (rng() < 0.5) putU32(out, 16, randInt(rng, 0, 20));
    fixHeaderCrc(out);
    return out;
  }
  let bytes: Uint8Array = validSegment(rng).bytes.slice();
  const donor = validSegment(rng).bytes;
  const rounds = randInt(rng, 1, 4);
  for (let i = 0; i < rounds; i++) bytes = mutateOnce(bytes, rng, donor);
  if (rng() < 0.7) fixRecordCrcs(bytes);
  if (rng() < 0.8) fixHeaderCrc(bytes);
  return bytes;
}

/** What one decode did. */
export type DecodeOutcome = { ok: true; records: number } | { ok: false; code: string };

function sameRecord(a: WalRecord, b: WalRecord): boolean {
  const eq = (x: Uint8Array, y: Uint8Array) =>
    x.length === y.length && x.every((v, i) => v === y[i]);
  return (
    a.txnToken.id === b.txnToken.id &&
    a.txnToken.epoch === b.txnToken.epoch &&
    a.epoch === b.epoch &&
    a.pageId === b.pageId &&
    a.beginSeq === b.beginSeq &&
    a.endSeq === b.endSeq &&
    eq(a.beforeImage, b.beforeImage) &&
    eq(a.afterImage, b.afterImage)
  );
}

/** A contract violation found by the fuzzer: not a typed error, or an inconsistent success. */
export class FuzzViolation extends Error {
  constructor(
    message: string,
    readonly input: Uint8Array,
  ) {
    super(message);
  }
}

/**
 * Decodes `bytes` as a segment and checks the outcome against the contract.
 * @throws {FuzzViolation} when the reader misbehaves.
 */
export function checkSegmentDecode(bytes: Uint8Array): DecodeOutcome {
  let decoded: ReturnType<typeof decodeSegment>;
  const input = bytes.slice();
  try {
    decoded = decodeSegment(bytes);
  } catch (error) {
    if (!(error instanceof SegmentFormatError) || !FORMAT_CODES.has(error.code)) {
      throw new FuzzViolation(`decodeSegment threw an untyped error: ${String(error)}`, input);
    }
    if (error.message.length === 0) throw new FuzzViolation('typed error without a message', input);
    return { ok: false, code: error.code };
  }
  const { header, records } = decoded;
  if (records.length !== header.recordCount) {
    throw new FuzzViolation(
      `decoded ${records.length} records, header says ${header.recordCount}`,
      input,
    );
  }
  let imageBytes = 0;
  for (const record of records) {
    if (record.epoch !== header.epoch)
      throw new FuzzViolation('record from another epoch accepted', input);
    if (record.txnToken.id === 0n || record.pageId === 0)
      throw new FuzzViolation('zero id accepted', input);
    imageBytes += record.beforeImage.length + record.afterImage.length;
  }
  if (imageBytes > bytes.length)
    throw new FuzzViolation('decoded more image bytes than the input has', input);
  // Version 3 = version-2 records + a certificate trailer (handed back as is).
  const again = encodeSegment(header.epoch, records, recordVersionOf(header.version));
  const trailerBytes =
    decoded.certificate === undefined
      ? 0
      : CERTIFICATE_TRAILER_PREFIX_BYTES + decoded.certificate.length;
  if (again.length + trailerBytes !== bytes.length) {
    throw new FuzzViolation(
      `accepted ${bytes.length} bytes but they re-encode to ${again.length}`,
      input,
    );
  }
  const twice = decodeSegment(again).records;
  if (twice.length !== records.length || twice.some((r, i) => !sameRecord(r, records[i]!))) {
    throw new FuzzViolation('re-encoding the decoded records changes them', input);
  }
  return { ok: true, records: records.length };
}

/** Decodes `bytes` as a single record body; typed errors only. */
export function checkRecordDecode(bytes: Uint8Array, version: FormatVersion): DecodeOutcome {
  try {
    decodeRecord(bytes, version);
    return { ok: true, records: 1 };
  } catch (error) {
    if (!(error instanceof WalError)) {
      throw new FuzzViolation(
        `decodeRecord threw an untyped error: ${String(error)}`,
        bytes.slice(),
      );
    }
    return { ok: false, code: error.code };
  }
}

/** Totals of a fuzz run. */
export interface FuzzStats {
  cases: number;
  accepted: number;
  rejected: Map<string, number>;
  /** Slowest case, in milliseconds (reported, never asserted in tests). */
  slowestMs: number;
}

/** Runs `cases` decoder cases from `seed`; throws the first violation. */
export function fuzzDecoder(
  seed: number,
  cases: number,
  rngFactory: (s: number) => Rng,
): FuzzStats {
  const rng = rngFactory(seed);
  const stats: FuzzStats = { cases: 0, accepted: 0, rejected: new Map(), slowestMs: 0 };
  for (let i = 0; i < cases; i++) {
    const input = hostileSegment(rng);
    const started = performance.now();
    let outcome: DecodeOutcome;
    try {
      outcome = checkSegmentDecode(input);
      if (input.length > 24 && rng() < 0.2) {
        const version: FormatVersion = rng() < 0.5 ? 1 : 2;
        checkRecordDecode(input.subarray(28), version);
      }
    } catch (error) {
      if (error instanceof FuzzViolation) {
        error.message = `${error.message} (seed ${seed}, case ${i}, input ${Buffer.from(error.input).toString('hex')})`;
      }
      throw error;
    }
    stats.slowestMs = Math.max(stats.slowestMs, performance.now() - started);
    stats.cases += 1;
    if (outcome.ok) stats.accepted += 1;
    else stats.rejected.set(outcome.code, (stats.rejected.get(outcome.code) ?? 0) + 1);
  }
  return stats;
}
