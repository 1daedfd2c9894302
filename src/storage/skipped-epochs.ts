/**
 * The durable record of epochs given up with `skipCorrupt`: `<db>-wal-skipped`.
 *
 * When a writer opens a damaged log with `skipCorrupt`, the unusable segment
 * and every later one are given up (prefix semantics). Before anything new is
 * written, the given-up range and the highest commit sequence it may hold are
 * recorded here, durably. From then on:
 * - numbering continues above the range (epochs) and above its ceiling
 *   (commit sequences), so no number an earlier segment or a replica may hold
 *   is ever reused;
 * - recovery does not replay segments inside a recorded range, does not stop
 *   at them again and does not report the range as a gap.
 *
 * Layout (little-endian, see docs/format.md): `u32 magic 'PWSK'`, `u16 version
 * (1)`, `u16 range count`, then per range `u64 firstEpoch | u64 lastEpoch |
 * u64 commitSeqCeiling`, then `u32 crc32c` of every preceding byte. The file
 * is replaced as a whole (temporary file, fdatasync, rename, directory fsync).
 */
import * as nodePath from 'node:path';
import { readU16, readU32, readU64, writeU16, writeU32, writeU64 } from '../format/bytes.js';
import { crc32c } from '../format/crc32c.js';
import { decodeSegment } from '../format/segment.js';
import { u64Max } from '../format/types.js';
import { SkippedEpochsCorruptError, toIoError } from './errors.js';
import { nodeFileSystem, type WalFileHandle } from './fs.js';
import { databaseDirectory, databaseName, type FsOptions, isNotFound } from './segment-files.js';
import { writeFileDurably } from './small-file.js';

/** The suffix of the record's file name after the database file name. */
export const SKIPPED_EPOCHS_SUFFIX = '-wal-skipped';
/** `PWSK` as the first four bytes on disk. */
export const SKIPPED_EPOCHS_MAGIC = 0x4b535750;
/** The only layout version written and read. */
export const SKIPPED_EPOCHS_VERSION = 1;
/**
 * Most ranges one record holds. Each is one operator decision to give up a
 * damaged tail; a log that needed this many has a disk to replace.
 */
export const skippedRangesMax = 1024;

const PREFIX_BYTES = 8;
const RANGE_BYTES = 24;
const CRC_BYTES = 4;
/** Largest valid record, in bytes: reads are bounded by it. */
export const skippedEpochsBytesMax = PREFIX_BYTES + skippedRangesMax * RANGE_BYTES + CRC_BYTES;

/** One given-up range of epochs. */
export interface SkippedEpochRange {
  /** The first unusable (corrupt or missing) epoch. */
  firstEpoch: bigint;
  /** The newest epoch on disk when it was given up (`>= firstEpoch`). */
  lastEpoch: bigint;
  /** No commit sequence above this was used in the range: new ones start higher. */
  commitSeqCeiling: bigint;
}

/** Path of the record of `dbPath`. */
export function skippedEpochsPath(dbPath: string): string {
  return nodePath.join(
    databaseDirectory(dbPath),
    `${databaseName(dbPath)}${SKIPPED_EPOCHS_SUFFIX}`,
  );
}

/** Encodes ranges (sorted by first epoch, non-overlapping) into the record's bytes. */
export function encodeSkippedEpochs(ranges: readonly SkippedEpochRange[]): Uint8Array {
  if (ranges.length > skippedRangesMax) {
    throw new RangeError(`at most ${skippedRangesMax} skipped ranges, got ${ranges.length}`);
  }
  const bytes = new Uint8Array(PREFIX_BYTES + ranges.length * RANGE_BYTES + CRC_BYTES);
  writeU32(bytes, 0, SKIPPED_EPOCHS_MAGIC);
  writeU16(bytes, 4, SKIPPED_EPOCHS_VERSION);
  writeU16(bytes, 6, ranges.length);
  ranges.forEach((range, i) => {
    const at = PREFIX_BYTES + i * RANGE_BYTES;
    writeU64(bytes, at, range.firstEpoch);
    writeU64(bytes, at + 8, range.lastEpoch);
    writeU64(bytes, at + 16, range.commitSeqCeiling);
  });
  const end = bytes.length - CRC_BYTES;
  writeU32(bytes, end, crc32c(bytes.subarray(0, end)));
  return bytes;
}

/**
 * Decodes the record's bytes, checking magic, version, exact length, the
 * checksum and that the ranges are ordered and disjoint.
 * @throws {SkippedEpochsCorruptError}
 */
export function decodeSkippedEpochs(path: string, bytes: Uint8Array): SkippedEpochRange[] {
  const fail = (why: string): never => {
    throw new SkippedEpochsCorruptError(path, why);
  };
  if (bytes.length < PREFIX_BYTES + CRC_BYTES) fail(`${bytes.length} bytes is too short`);
  if (readU32(bytes, 0) !== SKIPPED_EPOCHS_MAGIC) fail('bad magic');
  const version = readU16(bytes, 4);
  if (version !== SKIPPED_EPOCHS_VERSION) fail(`unsupported version ${version}`);
  const count = readU16(bytes, 6);
  if (count > skippedRangesMax) fail(`${count} ranges exceed the maximum ${skippedRangesMax}`);
  const expected = PREFIX_BYTES + count * RANGE_BYTES + CRC_BYTES;
  if (bytes.length !== expected) fail(`${bytes.length} bytes, ${count} ranges need ${expected}`);
  const end = bytes.length - CRC_BYTES;
  const stored = readU32(bytes, end);
  const computed = crc32c(bytes.subarray(0, end));
  if (stored !== computed) fail(`checksum mismatch: stored=${stored}, computed=${computed}`);
  const ranges: SkippedEpochRange[] = [];
  for (let i = 0; i < count; i++) {
    const at = PREFIX_BYTES + i * RANGE_BYTES;
    const range = {
      firstEpoch: readU64(bytes, at),
      lastEpoch: readU64(bytes, at + 8),
      commitSeqCeiling: readU64(bytes, at + 16),
    };
    if (range.lastEpoch < range.firstEpoch) {
      fail(`range ${i} ends (${range.lastEpoch}) before it starts (${range.firstEpoch})`);
    }
    const previous = ranges[ranges.length - 1];
    if (previous !== undefined && range.firstEpoch <= previous.lastEpoch) {
      fail(`range ${i} (from ${range.firstEpoch}) overlaps or precedes range ${i - 1}`);
    }
    ranges.push(range);
  }
  return ranges;
}

/**
 * The recorded ranges of `dbPath`, oldest first; none when there is no record.
 * @throws {SkippedEpochsCorruptError} for a malformed record (recovery must
 * not guess which epochs were given up); {@link WalIoError} when it cannot be read.
 */
export async function readSkippedEpochs(
  dbPath: string,
  options?: FsOptions,
): Promise<SkippedEpochRange[]> {
  const fs = options?.fs ?? nodeFileSystem;
  const path = skippedEpochsPath(dbPath);
  let handle: WalFileHandle;
  try {
    handle = await fs.open(path, 'read');
  } catch (error) {
    if (isNotFound(error)) return [];
    throw toIoError(error, 'cannot open skipped-epochs record', 'open', path);
  }
  try {
    // Bounded read: never more than the largest valid record (+1 to see excess).
    const into = new Uint8Array(skippedEpochsBytesMax + 1);
    let filled = 0;
    for (;;) {
      const n = await handle.read(into.subarray(filled), filled, into.length - filled);
      if (n === 0) break;
      filled += n;
      if (filled === into.length) break;
    }
    if (filled > skippedEpochsBytesMax) {
      throw new SkippedEpochsCorruptError(path, `larger than ${skippedEpochsBytesMax} bytes`);
    }
    return decodeSkippedEpochs(path, into.subarray(0, filled));
  } catch (error) {
    if (error instanceof SkippedEpochsCorruptError) throw error;
    throw toIoError(error, 'cannot read skipped-epochs record', 'read', path);
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/**
 * Adds `range` to the record of `dbPath`, durably, before the caller writes
 * any epoch above it: the new record goes to a fresh temporary file, is
 * fdatasynced, renamed over the old one (atomic: a crash leaves the old or the
 * new record, never a mix) and the directory is fsynced (the rename survives
 * power loss). A range overlapping recorded ones is merged with them.
 * @returns every recorded range afterwards.
 * @throws {SkippedEpochsCorruptError} when the existing record is malformed or
 * the record is full; {@link WalIoError} for file-system failures.
 */
export async function recordSkippedEpochs(
  dbPath: string,
  range: SkippedEpochRange,
  options?: FsOptions,
): Promise<SkippedEpochRange[]> {
  if (
    range.firstEpoch < 0n ||
    range.lastEpoch < range.firstEpoch ||
    range.lastEpoch > u64Max ||
    range.commitSeqCeiling < 0n ||
    range.commitSeqCeiling > u64Max
  ) {
    throw new RangeError(`invalid skipped range ${range.firstEpoch}..${range.lastEpoch}`);
  }
  const fs = options?.fs ?? nodeFileSystem;
  const path = skippedEpochsPath(dbPath);
  const ranges = mergeRange(await readSkippedEpochs(dbPath, options), range);
  if (ranges.length > skippedRangesMax) {
    throw new SkippedEpochsCorruptError(path, `full: ${skippedRangesMax} ranges recorded`);
  }
  // Replaced as a whole, durably (the temporary file `<record>.tmp`, a
  // leftover of an interrupted write removed first and never followed).
  await writeFileDurably(path, encodeSkippedEpochs(ranges), fs);
  return ranges;
}

/** `ranges` plus `range`, merged where they overlap, sorted by first epoch. */
function mergeRange(
  ranges: readonly SkippedEpochRange[],
  range: SkippedEpochRange,
): SkippedEpochRange[] {
  const merged = { ...range };
  const out: SkippedEpochRange[] = [];
  for (const r of ranges) {
    if (r.lastEpoch < merged.firstEpoch || r.firstEpoch > merged.lastEpoch) {
      out.push(r);
      continue;
    }
    if (r.firstEpoch < merged.firstEpoch) merged.firstEpoch = r.firstEpoch;
    if (r.lastEpoch > merged.lastEpoch) merged.lastEpoch = r.lastEpoch;
    if (r.commitSeqCeiling > merged.commitSeqCeiling) merged.commitSeqCeiling = r.commitSeqCeiling;
  }
  out.push(merged);
  out.sort((a, b) => (a.firstEpoch < b.firstEpoch ? -1 : 1));
  return out;
}

/** The recorded range holding `epoch`, or `undefined`. */
export function skippedRangeOf(
  ranges: readonly SkippedEpochRange[],
  epoch: bigint,
): SkippedEpochRange | undefined {
  return ranges.find((r) => r.firstEpoch <= epoch && epoch <= r.lastEpoch);
}

/** Floors for new numbering: the epoch after every recorded range, and the commit sequence after every ceiling. */
export function floorsAfterSkipped(ranges: readonly SkippedEpochRange[]): {
  epoch: bigint | null;
  commitSeq: bigint | null;
} {
  let epoch: bigint | null = null;
  let commitSeq: bigint | null = null;
  for (const r of ranges) {
    if (epoch === null || r.lastEpoch + 1n > epoch) epoch = r.lastEpoch + 1n;
    if (commitSeq === null || r.commitSeqCeiling + 1n > commitSeq)
      commitSeq = r.commitSeqCeiling + 1n;
  }
  return { epoch, commitSeq };
}

/**
 * For a copy of a log written from its replication stream (a follower in log
 * mode, a restore): when epoch `epoch` names a predecessor `prevEpoch` more
 * than one below it, the epochs in between were given up on the primary (or
 * left unused by an older primary) and will never arrive. Records them as
 * skipped in the copy, durably, before its segment is written, so the copy
 * recovers and numbers like the primary. The ceiling is the highest commit
 * sequence of `segment` (the primary's sequences increase with epochs).
 * @returns true when a range was recorded.
 * @throws {SkippedEpochsCorruptError} / {@link WalIoError} as {@link recordSkippedEpochs}.
 */
export async function recordShippedJump(
  dbPath: string,
  prevEpoch: bigint | null,
  epoch: bigint,
  segment: Uint8Array,
  options?: FsOptions,
): Promise<boolean> {
  if (prevEpoch === null || prevEpoch + 1n >= epoch) return false;
  let ceiling = 0n;
  for (const record of decodeSegment(segment, { copyImages: false }).records) {
    const seq = record.endSeq ?? record.beginSeq;
    if (seq > ceiling) ceiling = seq;
  }
  await recordSkippedEpochs(
    dbPath,
    { firstEpoch: prevEpoch + 1n, lastEpoch: epoch - 1n, commitSeqCeiling: ceiling },
    options,
  );
  return true;
}
