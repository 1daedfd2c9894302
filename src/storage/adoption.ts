/**
 * Adoption of the log's temporary files: an epoch the `earlyAck` or `pool`
 * sink acknowledged may still sit under a temporary name when the process
 * died. Before any recovery that replays segments, each such file holding a
 * whole segment that is next in line is made durable and renamed to its
 * segment name; every other temporary file of the log is removed. The rule
 * is written in docs/durability.md ("Which temporary files recovery adopts").
 */
import { strict as assert } from 'node:assert';
import * as nodePath from 'node:path';
import { readU32 } from '../format/bytes.js';
import { decodeSegmentHeader } from '../format/segment.js';
import { recordMaxBytes, SEGMENT_HEADER_BYTES, type WalRecord } from '../format/types.js';
import { SegmentCorruptError, SegmentFileErrorReason, toIoError } from './errors.js';
import { nodeFileSystem, type WalFileHandle, type WalFileSystem } from './fs.js';
import {
  databaseDirectory,
  decodeFile,
  type FsOptions,
  isNotFound,
  scanSegments,
  segmentPath,
  syncSegmentDirectory,
} from './segment-files.js';
import { readSkippedEpochs } from './skipped-epochs.js';
import { adoptableShape, isOwnedTemporaryName } from './temp-names.js';

/** Options of `inspectTemporaryFiles` and `adoptOrRemoveTemporaryFiles` (temporary-file adoption). */
export interface AdoptionOptions extends FsOptions {
  /**
   * The lowest epoch the log may still need: every epoch below it is known
   * to be folded or superseded (a page store's header `nextEpoch`, a log's
   * explicit `firstEpoch`). A candidate below it is stale; with no segment
   * file at or above it, the chain of adoptable epochs starts exactly here.
   * Unset: the log knows no floor beyond its segment files.
   */
  floorEpoch?: bigint;
  /**
   * The highest commit sequence folded below `floorEpoch` (a store header's
   * checkpoint sequence): a candidate whose first commit sequence follows it
   * is next in line even when empty epochs (which write no file) lie between.
   */
  floorCommitSeq?: bigint;
}

/** What {@link inspectTemporaryFiles} decided about one temporary file of the log. */
export interface TemporaryFileVerdict {
  /** Full path. */
  path: string;
  /**
   * `adoptable`: the file starts with a complete, valid version-2 segment
   * (header CRC, every record CRC, every record of the header's epoch) whose
   * epoch is the next one after the segments (see {@link inspectTemporaryFiles}).
   * `remove`: anything else (empty or zero-filled pool file, torn or partial
   * write, version 1 or 3, an epoch below the floor or not next in line, a
   * duplicate of an existing segment).
   */
  verdict: 'adoptable' | 'remove';
  /** The header's epoch when the file starts with a whole segment, else `null`. */
  epoch: bigint | null;
  /** File size in bytes. */
  bytes: number;
  /** Length of the segment at the start of the file (the rest is stale and ignored); 0 when none. */
  segmentBytes: number;
  /** Why it is removed; `null` when adoptable. */
  reason: string | null;
}

/** What {@link adoptOrRemoveTemporaryFiles} did. */
export interface TemporaryFileCleanup {
  /** Temporary files renamed to their segment name, in epoch order. */
  adopted: { epoch: bigint; from: string; to: string }[];
  /** Temporary files unlinked. */
  removed: string[];
}

/**
 * The length of the segment at the start of `bytes`, found by walking the
 * header's record count over the length prefixes (a pool file holds stale
 * bytes after it), or `null` when the walk leaves the file or meets a length
 * no record can have. Checks nothing else: the caller decodes that prefix.
 */
export function segmentPrefixLength(bytes: Uint8Array): number | null {
  let header: { version: number; recordCount: number };
  try {
    header = decodeSegmentHeader(bytes);
  } catch {
    return null;
  }
  const maxBody = recordMaxBytes(header.version === 1 ? 1 : 2);
  let at = SEGMENT_HEADER_BYTES;
  for (let i = 0; i < header.recordCount; i++) {
    if (at + 4 > bytes.length) return null;
    const length = readU32(bytes, at);
    if (length > maxBody) return null;
    at += 4 + length;
    if (at > bytes.length) return null;
  }
  return at;
}

/**
 * Classifies the log's own temporary files ({@link isOwnedTemporaryName})
 * without changing anything. The rule (docs/durability.md, "Which temporary
 * files recovery adopts"):
 *
 * 1. only early-acknowledgement (`ack-`) and pool (`pool-`) files are
 *    candidates; every other shape is renamed before acknowledgement;
 * 2. the file must START with a complete version-2 segment: header CRC,
 *    every record's CRC, every record carrying the header's epoch (exactly
 *    the reader checks of docs/format.md section 4 over that prefix).
 *    Whatever follows it is stale and ignored. Version 1 (no record CRCs)
 *    and version 3 (acknowledged only once published) are never adopted;
 * 3. a pool file's segment below the floor in its name is stale; so is any
 *    segment below `options.floorEpoch`;
 * 4. two candidates for one epoch with different segment bytes fail closed
 *    (`ERR_SEGMENT_CORRUPT`, reason `ERR_SEGMENT_DUPLICATE_EPOCH`), as two
 *    segment files for one epoch do; identical ones are one candidate;
 * 5. a candidate is adoptable only as the next epoch in line after its
 *    predecessor (the nearest lower epoch with a segment file or an
 *    adoptable candidate): it is the predecessor's epoch + 1, or its first
 *    commit sequence is the predecessor's last + 1 (the epochs between were
 *    empty: they write no file). The last epoch of a recorded skipped range
 *    (`skipped-epochs.ts`) is a predecessor too, its ceiling the last
 *    sequence. Without such a predecessor it must be
 *    `floorEpoch` or follow `floorCommitSeq`; with no floor known and no
 *    segment file below it, only the lowest candidate starts the chain. So a
 *    temporary file for epoch 6 with only epoch 0 on disk (and a commit
 *    sequence that does not follow epoch 0's) is removed.
 *
 * Files that vanish while being read (a running writer renamed them) are skipped.
 * @throws {SegmentCorruptError} on two different candidates for one epoch.
 * @throws {WalIoError} when the directory or a temporary file cannot be read:
 * a file that cannot be judged is neither adopted nor removed.
 */
export async function inspectTemporaryFiles(
  dbPath: string,
  options?: AdoptionOptions,
): Promise<TemporaryFileVerdict[]> {
  const fs = options?.fs ?? nodeFileSystem;
  const dir = databaseDirectory(dbPath);
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (error) {
    throw toIoError(error, 'cannot list segment directory', 'readdir', dir);
  }
  const owned = names.filter((name) => isOwnedTemporaryName(dbPath, name)).sort();
  if (owned.length === 0) return [];
  const segmentEpochs = new Set((await scanSegments(dbPath, options)).map((e) => e.epoch));
  const verdicts: TemporaryFileVerdict[] = [];
  /** Candidates by epoch: the first file's verdict and its segment bytes. */
  const candidates = new Map<bigint, Candidate>();
  for (const name of owned) {
    const path = nodePath.join(dir, name);
    let bytes: Uint8Array;
    try {
      bytes = await fs.readFile(path);
    } catch (error) {
      if (isNotFound(error)) continue;
      throw toIoError(error, 'cannot read temporary file', 'read', path);
    }
    const judged = judgeTemporaryFile(
      dbPath,
      name,
      path,
      bytes,
      segmentEpochs,
      options?.floorEpoch,
    );
    verdicts.push('segment' in judged ? admitCandidate(candidates, judged, bytes) : judged);
  }
  // Only the next epoch in line is adopted (rule 5), then the one after it.
  const chained = await chainCandidates(dbPath, candidates, segmentEpochs, options, fs);
  for (const [epoch, { verdict }] of candidates) {
    if (chained.has(epoch)) continue;
    verdict.verdict = 'remove';
    verdict.reason = 'not the next epoch after the segments';
  }
  return verdicts;
}

/** A temporary file that passed rules 1 to 3: a whole version-2 segment at or above every floor. */
interface Candidate {
  verdict: TemporaryFileVerdict;
  /** The segment at the start of the file. */
  segment: Uint8Array;
  seqs: CommitSeqRange | null;
}

/** Rules 1 to 3 of {@link inspectTemporaryFiles} for one file: a candidate, or a removal. */
function judgeTemporaryFile(
  dbPath: string,
  name: string,
  path: string,
  bytes: Uint8Array,
  segmentEpochs: ReadonlySet<bigint>,
  floor: bigint | undefined,
): TemporaryFileVerdict | Candidate {
  const shape = adoptableShape(dbPath, name);
  if (shape === null) return removal(path, bytes, null, 'never acknowledged before its rename');
  const judged = judgeTemporaryBytes(path, bytes);
  if (!('segment' in judged)) return judged;
  const epoch = judged.verdict.epoch!;
  if (shape.floor !== null && epoch < shape.floor) {
    return removal(path, bytes, epoch, 'stale: below the pool file floor');
  }
  if (floor !== undefined && epoch < floor) {
    return removal(path, bytes, epoch, 'stale: below the floor epoch');
  }
  if (segmentEpochs.has(epoch)) return removal(path, bytes, epoch, 'duplicate of a segment file');
  return judged;
}

/**
 * Rule 4: the first candidate of an epoch is kept; an identical second one
 * is a duplicate to remove; a different one fails closed.
 * @returns the verdict to report for `candidate`.
 */
function admitCandidate(
  candidates: Map<bigint, Candidate>,
  candidate: Candidate,
  bytes: Uint8Array,
): TemporaryFileVerdict {
  const { path } = candidate.verdict;
  const epoch = candidate.verdict.epoch!;
  const first = candidates.get(epoch);
  if (first === undefined) {
    candidates.set(epoch, candidate);
    return candidate.verdict;
  }
  if (sameBytes(first.segment, candidate.segment)) return removal(path, bytes, epoch, 'duplicate');
  throw new SegmentCorruptError(
    first.verdict.path,
    epoch,
    SegmentFileErrorReason.duplicateEpoch,
    `segment epoch ${epoch} has 2 different candidate temporary files: ${first.verdict.path}, ${path}`,
  );
}

const ascending = (a: bigint, b: bigint): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Rule 5 of {@link inspectTemporaryFiles}: walks the candidates in epoch
 * order and keeps each one that is next in line after its predecessor.
 * @returns the adoptable epochs, each with its last commit sequence.
 */
async function chainCandidates(
  dbPath: string,
  candidates: ReadonlyMap<bigint, Candidate>,
  segmentEpochs: ReadonlySet<bigint>,
  options: AdoptionOptions | undefined,
  fs: WalFileSystem,
): Promise<Map<bigint, bigint | null>> {
  const chained = new Map<bigint, bigint | null>();
  const segmentLastSeq = new Map<bigint, bigint | null>();
  // A recorded skipped range (given up after corruption) counts as present:
  // its last epoch is a predecessor whose last sequence is the range's ceiling.
  const skippedLast = new Map<bigint, bigint>();
  for (const range of await readSkippedEpochs(dbPath, { fs })) {
    skippedLast.set(range.lastEpoch, range.commitSeqCeiling);
  }
  const lastSeqOf = async (epoch: bigint): Promise<bigint | null> => {
    if (chained.has(epoch)) return chained.get(epoch)!;
    if (skippedLast.has(epoch) && !segmentEpochs.has(epoch)) return skippedLast.get(epoch)!;
    if (!segmentLastSeq.has(epoch)) {
      segmentLastSeq.set(epoch, await lastCommitSeqOf(segmentPath(dbPath, epoch), fs));
    }
    return segmentLastSeq.get(epoch)!;
  };
  const present = [...segmentEpochs].sort(ascending);
  for (const epoch of [...candidates.keys()].sort(ascending)) {
    const { seqs } = candidates.get(epoch)!;
    let predecessor: bigint | null = null;
    for (const e of [...present, ...chained.keys(), ...skippedLast.keys()]) {
      if (e < epoch && (predecessor === null || e > predecessor)) predecessor = e;
    }
    const last = predecessor === null ? null : await lastSeqOf(predecessor);
    let next = predecessor !== null && followsPredecessor(epoch, seqs, predecessor, last);
    if (!next && options?.floorEpoch !== undefined) {
      next = followsFloor(epoch, seqs, options.floorEpoch, options.floorCommitSeq);
    }
    if (!next && options?.floorEpoch === undefined && predecessor === null) {
      next = chained.size === 0;
    }
    if (next) chained.set(epoch, seqs?.hi ?? last);
  }
  return chained;
}

/** Next after `predecessor`: the following epoch, or (empty epochs between) the following commit sequence. */
function followsPredecessor(
  epoch: bigint,
  seqs: CommitSeqRange | null,
  predecessor: bigint,
  predecessorLastSeq: bigint | null,
): boolean {
  if (predecessor === epoch - 1n) return true;
  return seqs !== null && predecessorLastSeq !== null && seqs.lo === predecessorLastSeq + 1n;
}

/** Next after the floor: the floor epoch itself, or the commit sequence after the floor's. */
function followsFloor(
  epoch: bigint,
  seqs: CommitSeqRange | null,
  floor: bigint,
  floorCommitSeq: bigint | undefined,
): boolean {
  if (epoch === floor) return true;
  return floorCommitSeq !== undefined && seqs !== null && seqs.lo === floorCommitSeq + 1n;
}

function removal(
  path: string,
  bytes: Uint8Array,
  epoch: bigint | null,
  reason: string,
): TemporaryFileVerdict {
  return { path, verdict: 'remove', epoch, bytes: bytes.length, segmentBytes: 0, reason };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The commit sequences of a segment's committed records. */
interface CommitSeqRange {
  lo: bigint;
  hi: bigint;
}

function commitSeqRange(records: readonly WalRecord[]): CommitSeqRange | null {
  let range: CommitSeqRange | null = null;
  for (const r of records) {
    if (r.endSeq === null) continue;
    if (range === null) range = { lo: r.endSeq, hi: r.endSeq };
    else {
      if (r.endSeq < range.lo) range.lo = r.endSeq;
      if (r.endSeq > range.hi) range.hi = r.endSeq;
    }
  }
  return range;
}

/** The last commit sequence in the segment file at `path`, `null` when none or unreadable. */
async function lastCommitSeqOf(path: string, fs: WalFileSystem): Promise<bigint | null> {
  try {
    return commitSeqRange(decodeFile(path, await fs.readFile(path)).records)?.hi ?? null;
  } catch {
    // Not judged here (recovery reports a bad segment itself); it shows no continuity.
    return null;
  }
}

/** Rule 2 of {@link inspectTemporaryFiles}: a whole version-2 segment at the start, or a removal. */
function judgeTemporaryBytes(
  path: string,
  bytes: Uint8Array,
):
  | TemporaryFileVerdict
  | { verdict: TemporaryFileVerdict; segment: Uint8Array; seqs: CommitSeqRange | null } {
  if (bytes.length === 0) return removal(path, bytes, null, 'empty');
  const length = segmentPrefixLength(bytes);
  if (length === null) return removal(path, bytes, null, 'no whole segment at the start');
  const segment = bytes.subarray(0, length);
  let header: { epoch: bigint; version: number };
  let records: WalRecord[];
  try {
    // Every reader check of docs/format.md#4-reading-validation-order-and-error-codes
    // over the prefix: header, every record CRC, every record of the header's epoch.
    ({ header, records } = decodeFile(path, segment));
  } catch (error) {
    return removal(path, bytes, null, error instanceof Error ? error.message : String(error));
  }
  if (header.version === 1) return removal(path, bytes, header.epoch, 'version 1 (no record CRCs)');
  if (header.version !== 2) {
    return removal(
      path,
      bytes,
      header.epoch,
      `version ${header.version} (acknowledged only once published)`,
    );
  }
  return {
    verdict: {
      path,
      verdict: 'adoptable',
      epoch: header.epoch,
      bytes: bytes.length,
      segmentBytes: length,
      reason: null,
    },
    segment,
    seqs: commitSeqRange(records),
  };
}

/**
 * Adopt-or-remove for the log's temporary files, run before any recovery
 * that replays segments (only while no writer is running: hold the lock).
 * Each adoptable file ({@link inspectTemporaryFiles}) is cut to its
 * segment's length (a pool file's stale tail), fsynced (its bytes reach
 * stable storage before a segment name points at them) and renamed to its
 * segment name; every other owned temporary file is unlinked; then one
 * directory fsync makes the renames and unlinks durable. Foreign files that
 * merely start with the infix are never touched.
 * @throws {WalIoError}
 */
export async function adoptOrRemoveTemporaryFiles(
  dbPath: string,
  options?: AdoptionOptions,
): Promise<TemporaryFileCleanup> {
  const fs = options?.fs ?? nodeFileSystem;
  const result: TemporaryFileCleanup = { adopted: [], removed: [] };
  const verdicts = await inspectTemporaryFiles(dbPath, options);
  for (const v of verdicts.filter((x) => x.verdict === 'adoptable')) {
    const epoch = v.epoch!;
    assert.ok(
      options?.floorEpoch === undefined || epoch >= options.floorEpoch,
      `temporary file ${v.path} of epoch ${epoch} was judged adoptable below the floor epoch ${options?.floorEpoch}`,
    );
    const to = segmentPath(dbPath, epoch);
    await adoptTemporaryFile(fs, v, to);
    result.adopted.push({ epoch, from: v.path, to });
  }
  result.adopted.sort((a, b) => ascending(a.epoch, b.epoch));
  for (const v of verdicts.filter((x) => x.verdict === 'remove')) {
    try {
      await fs.unlink(v.path);
      result.removed.push(v.path);
    } catch (error) {
      if (!isNotFound(error))
        throw toIoError(error, 'cannot delete temporary file', 'unlink', v.path);
    }
  }
  if (result.adopted.length > 0 || result.removed.length > 0) {
    await syncSegmentDirectory(dbPath, options);
  }
  return result;
}

/**
 * Cuts an adoptable file to its segment, fsyncs it and renames it to `to`.
 * The rename is durable only after the caller's directory fsync.
 * @throws {WalIoError} naming the step that failed.
 */
async function adoptTemporaryFile(
  fs: WalFileSystem,
  v: TemporaryFileVerdict,
  to: string,
): Promise<void> {
  let handle: WalFileHandle | null = null;
  let step = 'open';
  try {
    // The writer may have died before its fdatasync (a process crash keeps
    // the page cache): make the bytes durable before a name points at them.
    // A pool file holds stale bytes after the segment: cut them first, so
    // the segment name points at exactly one segment (docs/format.md).
    const cut = v.segmentBytes < v.bytes;
    handle = await fs.open(v.path, cut ? 'readWrite' : 'read');
    if (cut) {
      step = 'truncate';
      await handle.truncate(v.segmentBytes);
    }
    step = 'fsync';
    await handle.sync();
    step = 'close';
    await handle.close();
    handle = null;
    step = 'rename';
    await fs.rename(v.path, to); // atomic; made durable by the directory fsync
  } catch (error) {
    await handle?.close().catch(() => undefined);
    throw toIoError(error, `cannot adopt temporary file ${v.path}`, step, to);
  }
}

/**
 * `adoptOrRemoveTemporaryFiles`, returning only how many files were
 * removed (adopted files become segments and are counted by recovery).
 * Only safe while no writer is running.
 */
export async function cleanupTemporaryFiles(
  dbPath: string,
  options?: AdoptionOptions,
): Promise<number> {
  return (await adoptOrRemoveTemporaryFiles(dbPath, options)).removed.length;
}
