import * as fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WalArgumentError } from '../../src/errors.js';
import { encodeSegment } from '../../src/format/segment.js';
import { RecoveryGapError, SkippedEpochsCorruptError } from '../../src/storage/errors.js';
import { recoverSegments } from '../../src/storage/recovery.js';
import { segmentPath, writeSegment, writeSegmentFile } from '../../src/storage/segment-files.js';
import {
  decodeSkippedEpochs,
  encodeSkippedEpochs,
  readSkippedEpochs,
  recordShippedJump,
  recordSkippedEpochs,
  skippedEpochsPath,
} from '../../src/storage/skipped-epochs.js';
import { makeTempDir, recordFor, rejection } from './helpers.js';

let tmp: ReturnType<typeof makeTempDir>;
let dbPath: string;

beforeEach(() => {
  tmp = makeTempDir();
  dbPath = path.join(tmp.dir, 'gaps.db');
});
afterEach(() => tmp.remove());

/** One committed record per epoch, page = epoch + 1, sequence = epoch + 1. */
async function writeEpochs(epochs: bigint[]): Promise<void> {
  for (const epoch of epochs) {
    await writeSegment(
      dbPath,
      {
        epoch,
        records: [recordFor(epoch, { pageId: Number(epoch) + 1, beginSeq: epoch + 1n })],
      },
      { fsync: 'off' },
    );
  }
}

describe('recovery of a log with a missing epoch', () => {
  it('fails closed with recovery_gap naming a lost middle segment', async () => {
    await writeEpochs([0n, 1n, 2n]);
    fs.unlinkSync(segmentPath(dbPath, 1n));
    const error = await rejection(recoverSegments(dbPath));
    expect(error).toBeInstanceOf(RecoveryGapError);
    const gap = error as RecoveryGapError;
    expect(gap.code).toBe('ERR_RECOVERY_GAP');
    expect(gap.reason).toBe('recoveryGap');
    expect(gap.missingEpoch).toBe(1n);
    expect(gap.nextPresentEpoch).toBe(2n);
    expect(gap.path).toBe(segmentPath(dbPath, 1n));
    expect(gap.message).toContain('recovery_gap: segment of epoch 1 is missing');
  });

  it('names the whole range of a hole of several epochs', async () => {
    await writeEpochs([3n, 7n]);
    const error = (await rejection(recoverSegments(dbPath))) as RecoveryGapError;
    expect(error.missingEpoch).toBe(4n);
    expect(error.missingThroughEpoch).toBe(6n);
    expect(error.message).toContain('epochs 4..6 are missing');
  });

  it('with skipCorrupt stops before the hole and replays only the prefix', async () => {
    await writeEpochs([0n, 1n, 2n, 3n]);
    fs.unlinkSync(segmentPath(dbPath, 2n));
    const result = await recoverSegments(dbPath, { skipCorrupt: true });
    expect(result.epochs).toEqual([0n, 1n]);
    expect(result.records.map((r) => r.epoch)).toEqual([0n, 1n]);
    expect(result.partialSegments).toEqual([segmentPath(dbPath, 3n)]);
    expect(result.stoppedAt).toMatchObject({ epoch: 2n, code: 'ERR_RECOVERY_GAP' });
    // What a writer must give up: the missing epoch through the newest, above every sequence.
    expect(result.rangeToSkip).toEqual({ firstEpoch: 2n, lastEpoch: 3n, commitSeqCeiling: 4n });
  });

  it('accepts numbers left unused only when told the writer leaves them (allowEpochGaps)', async () => {
    await writeEpochs([0n, 2n, 5n]);
    const result = await recoverSegments(dbPath, { allowEpochGaps: true });
    expect(result.epochs).toEqual([0n, 2n, 5n]);
    const bad = await rejection(
      recoverSegments(dbPath, { allowEpochGaps: 'yes' as unknown as boolean }),
    );
    expect(bad).toBeInstanceOf(WalArgumentError);
  });

  it('starts the log at its first segment: a deleted prefix is not a gap', async () => {
    await writeEpochs([4n, 5n, 6n]);
    expect((await recoverSegments(dbPath)).epochs).toEqual([4n, 5n, 6n]);
  });

  it('counts a hole between the first unapplied epoch and the first segment as a loss', async () => {
    await writeEpochs([1n, 2n, 4n, 5n]);
    // Folded through 3: segments 1 and 2 may stay (retained), 4 must be first above.
    expect((await recoverSegments(dbPath, { firstUnappliedEpoch: 4n })).epochs).toEqual([
      1n,
      2n,
      4n,
      5n,
    ]);
    const error = (await rejection(
      recoverSegments(dbPath, { firstUnappliedEpoch: 3n }),
    )) as RecoveryGapError;
    expect(error.code).toBe('ERR_RECOVERY_GAP');
    expect(error.missingEpoch).toBe(3n);
    const bad = await rejection(recoverSegments(dbPath, { firstUnappliedEpoch: -1n }));
    expect(bad).toBeInstanceOf(WalArgumentError);
  });
});

describe('the record of skipped epochs', () => {
  it('makes recovery skip a recorded range instead of stopping at it or calling it a gap', async () => {
    await writeEpochs([0n, 1n, 2n, 3n]);
    fs.writeFileSync(segmentPath(dbPath, 1n), Buffer.alloc(30, 0xee)); // corrupt
    await recordSkippedEpochs(dbPath, { firstEpoch: 1n, lastEpoch: 2n, commitSeqCeiling: 3n });
    const result = await recoverSegments(dbPath);
    expect(result.epochs).toEqual([0n, 3n]);
    expect(result.skippedSegments).toEqual([segmentPath(dbPath, 1n), segmentPath(dbPath, 2n)]);
    expect(result.stoppedAt).toBeNull();
    // The given-up segments may be gone (set aside): still no gap.
    fs.unlinkSync(segmentPath(dbPath, 1n));
    fs.unlinkSync(segmentPath(dbPath, 2n));
    expect((await recoverSegments(dbPath)).epochs).toEqual([0n, 3n]);
  });

  it('lets a copy written from a stream record the epochs the stream jumps over', async () => {
    await writeEpochs([0n]);
    const three = encodeSegment(3n, [recordFor(3n, { beginSeq: 9n })], 2);
    expect(await recordShippedJump(dbPath, null, 0n, three)).toBe(false);
    expect(await recordShippedJump(dbPath, 2n, 3n, three)).toBe(false);
    expect(await readSkippedEpochs(dbPath)).toEqual([]);
    expect(await recordShippedJump(dbPath, 0n, 3n, three)).toBe(true);
    await writeSegmentFile(dbPath, 3n, [three], { fsync: 'off' });
    expect(await readSkippedEpochs(dbPath)).toEqual([
      { firstEpoch: 1n, lastEpoch: 2n, commitSeqCeiling: 9n },
    ]);
    expect((await recoverSegments(dbPath)).epochs).toEqual([0n, 3n]);
  });

  it('replaces a leftover temporary record of an interrupted write instead of failing', async () => {
    const temp = `${skippedEpochsPath(dbPath)}.tmp`;
    fs.writeFileSync(temp, 'torn');
    await recordSkippedEpochs(dbPath, { firstEpoch: 2n, lastEpoch: 2n, commitSeqCeiling: 1n });
    expect(fs.existsSync(temp)).toBe(false);
    expect(await readSkippedEpochs(dbPath)).toEqual([
      { firstEpoch: 2n, lastEpoch: 2n, commitSeqCeiling: 1n },
    ]);
  });

  it('round-trips, merges overlapping ranges and rejects damaged bytes with a typed error', async () => {
    await recordSkippedEpochs(dbPath, { firstEpoch: 5n, lastEpoch: 7n, commitSeqCeiling: 10n });
    await recordSkippedEpochs(dbPath, { firstEpoch: 1n, lastEpoch: 2n, commitSeqCeiling: 4n });
    await recordSkippedEpochs(dbPath, { firstEpoch: 7n, lastEpoch: 9n, commitSeqCeiling: 12n });
    expect(await readSkippedEpochs(dbPath)).toEqual([
      { firstEpoch: 1n, lastEpoch: 2n, commitSeqCeiling: 4n },
      { firstEpoch: 5n, lastEpoch: 9n, commitSeqCeiling: 12n },
    ]);
    const file = skippedEpochsPath(dbPath);
    expect(path.basename(file)).toBe('gaps.db-wal-skipped');
    const bytes = fs.readFileSync(file);
    bytes[10] = (bytes[10] ?? 0) ^ 0xff;
    fs.writeFileSync(file, bytes);
    const error = await rejection(readSkippedEpochs(dbPath));
    expect(error).toBeInstanceOf(SkippedEpochsCorruptError);
    expect((error as SkippedEpochsCorruptError).code).toBe('ERR_SKIPPED_EPOCHS_CORRUPT');
    // Recovery refuses to guess which epochs were given up.
    await writeEpochs([0n]);
    expect(await rejection(recoverSegments(dbPath))).toBeInstanceOf(SkippedEpochsCorruptError);
    const encoded = encodeSkippedEpochs([{ firstEpoch: 3n, lastEpoch: 4n, commitSeqCeiling: 0n }]);
    expect(() => decodeSkippedEpochs('x', encoded.subarray(0, encoded.length - 1))).toThrow(
      SkippedEpochsCorruptError,
    );
  });
});
