import * as fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SegmentCorruptError, WalIoError } from '../../src/storage/errors.js';
import {
  cleanupSegments,
  cleanupTemporaryFiles,
  deleteRecoveredSegments,
  maxDurableEpoch,
  recoverAndApplySegments,
  recoverSegments,
} from '../../src/storage/recovery.js';
import { listSegments, segmentPath, writeSegment } from '../../src/storage/segment-files.js';
import { makeTempDir, recordFor, rejection } from './helpers.js';

let tmp: ReturnType<typeof makeTempDir>;
let dbPath: string;

beforeEach(() => {
  tmp = makeTempDir();
  dbPath = path.join(tmp.dir, 'test.db');
});
afterEach(() => tmp.remove());

async function writeEpochs(epochs: bigint[], pageId?: (epoch: bigint) => number): Promise<void> {
  for (const epoch of epochs) {
    await writeSegment(
      dbPath,
      {
        epoch,
        records: [recordFor(epoch, { pageId: pageId?.(epoch) ?? 1, size: 32 })],
        recordsPerCore: [1],
      },
      { fsync: 'off' },
    );
  }
}

describe('recoverSegments', () => {
  it('recovers every segment in epoch order (seed: basic recovery)', async () => {
    await writeEpochs([3n, 1n, 2n], (e) => Number(e));
    const result = await recoverSegments(dbPath);
    expect(result.segmentsRecovered).toBe(3);
    expect(result.recordsApplied).toBe(3);
    expect(result.epochs).toEqual([1n, 2n, 3n]);
    expect(result.partialSegments).toEqual([]);
    expect(result.deletableSegments).toEqual([]);
    expect(result.stoppedAt).toBeNull();
    expect(result.records.map((r) => r.epoch)).toEqual([1n, 2n, 3n]);
    const sizes = [1n, 2n, 3n].map((e) => fs.statSync(segmentPath(dbPath, e)).size);
    expect(result.bytesRead).toBe(sizes.reduce((a, b) => a + b, 0));
    expect(await cleanupSegments(dbPath)).toBe(3);
  });

  it('returns an empty result for a directory without segments', async () => {
    const result = await recoverSegments(dbPath);
    expect(result).toMatchObject({
      segmentsRecovered: 0,
      records: [],
      epochs: [],
      partialSegments: [],
    });
  });

  it('fails closed when a header names another epoch than its file, and skips it with skipCorrupt (seed)', async () => {
    await writeEpochs([5n]);
    const renamed = segmentPath(dbPath, 3n);
    fs.renameSync(segmentPath(dbPath, 5n), renamed);
    const error = await rejection(recoverSegments(dbPath));
    expect(error).toBeInstanceOf(SegmentCorruptError);
    expect((error as SegmentCorruptError).code).toBe('ERR_SEGMENT_CORRUPT');
    expect((error as SegmentCorruptError).reason).toBe('ERR_SEGMENT_NAME_MISMATCH');
    expect((error as Error).message).toBe(
      `segment ${renamed} has mismatched epoch: header=5, filename=3`,
    );
    const result = await recoverSegments(dbPath, { skipCorrupt: true });
    expect(result.segmentsRecovered).toBe(0);
    expect(result.partialSegments).toEqual([renamed]);
    expect(result.records).toEqual([]);
    expect(result.stoppedAt).toMatchObject({
      path: renamed,
      epoch: 3n,
      code: 'ERR_SEGMENT_NAME_MISMATCH',
    });
  });

  it('fails closed on a corrupt segment, naming it and the cause', async () => {
    await writeEpochs([1n, 2n]);
    const bad = segmentPath(dbPath, 2n);
    const bytes = fs.readFileSync(bad);
    bytes[bytes.length - 1]! ^= 0x01;
    fs.writeFileSync(bad, bytes);
    const error = await rejection(recoverSegments(dbPath));
    expect(error).toBeInstanceOf(SegmentCorruptError);
    expect((error as SegmentCorruptError).reason).toBe('ERR_RECORD_CHECKSUM');
    expect((error as SegmentCorruptError).path).toBe(bad);
    expect((error as Error).message).toMatch(
      new RegExp(
        `^segment ${bad} is corrupt: record checksum mismatch: .* \\(ERR_RECORD_CHECKSUM\\)$`,
      ),
    );
  });

  it('treats two files for one epoch as corruption: fatal, or the end of the prefix', async () => {
    await writeEpochs([9n, 0xan, 0xbn]);
    const upper = path.join(tmp.dir, 'test.db-wal-seg-000000000000000A');
    fs.copyFileSync(segmentPath(dbPath, 0xan), upper);
    const error = await rejection(recoverSegments(dbPath));
    expect((error as SegmentCorruptError).reason).toBe('ERR_SEGMENT_DUPLICATE_EPOCH');
    const result = await recoverSegments(dbPath, { skipCorrupt: true });
    expect(result.epochs).toEqual([9n]);
    expect(result.partialSegments).toEqual([
      upper,
      segmentPath(dbPath, 0xan),
      segmentPath(dbPath, 0xbn),
    ]);
  });

  it('fails with a typed error when the directory is missing', async () => {
    const error = await rejection(
      recoverSegments(path.join(tmp.dir, 'nope', 'x.db'), { skipCorrupt: true }),
    );
    expect(error).toBeInstanceOf(WalIoError);
    expect((error as WalIoError).errno).toBe('ENOENT');
  });
});

describe('recoverAndApplySegments', () => {
  it('stops at the first bad epoch with skipCorrupt and applies only the prefix (seed)', async () => {
    dbPath = path.join(tmp.dir, 'prefix.db');
    await writeEpochs([1n, 2n, 3n]);
    fs.writeFileSync(segmentPath(dbPath, 2n), Buffer.alloc(8, 0xff));
    const pages = new Map<number, Uint8Array>();
    const result = await recoverAndApplySegments(dbPath, pages, { skipCorrupt: true });
    expect(result.segmentsRecovered).toBe(1);
    expect(result.recordsApplied).toBe(1);
    expect(result.epochs).toEqual([1n]);
    expect(result.partialSegments).toEqual([segmentPath(dbPath, 2n), segmentPath(dbPath, 3n)]);
    expect(result.stoppedAt?.code).toBe('ERR_SEGMENT_TRUNCATED');
    expect([...pages.get(1)!].every((b) => b === 1)).toBe(true);
  });

  it('applies the last write per page, then deletes only when asked (seed: apply and deferred deletion)', async () => {
    await writeEpochs([1n, 2n, 3n]);
    const pages = new Map<number, Uint8Array>();
    const result = await recoverAndApplySegments(dbPath, pages, { deleteAfterRecovery: true });
    expect(result.segmentsRecovered).toBe(3);
    const page = pages.get(1)!;
    expect(page.length).toBe(32);
    expect(page.every((b) => b === 3)).toBe(true);
    // The page owns its bytes instead of pinning a whole segment buffer.
    expect(page.buffer.byteLength).toBe(32);
    // Recovery itself deletes nothing; it reports the deletable set.
    expect((await listSegments(dbPath)).length).toBe(3);
    expect(result.deletableSegments).toEqual([1n, 2n, 3n].map((e) => segmentPath(dbPath, e)));
    expect(await deleteRecoveredSegments(result)).toBe(3);
    expect(await listSegments(dbPath)).toEqual([]);
    // Idempotent: already deleted files are skipped.
    expect(await deleteRecoveredSegments(result)).toBe(0);
  });

  it('never reports partial segments as deletable', async () => {
    await writeEpochs([1n, 2n, 3n]);
    fs.writeFileSync(segmentPath(dbPath, 2n), Buffer.alloc(8, 0xff));
    const result = await recoverSegments(dbPath, { skipCorrupt: true, deleteAfterRecovery: true });
    expect(result.deletableSegments).toEqual([segmentPath(dbPath, 1n)]);
    await deleteRecoveredSegments(result);
    expect((await listSegments(dbPath)).map((s) => s.epoch)).toEqual([2n, 3n]);
  });

  it('replays the later commit last even when the batch arrived out of order (seed)', async () => {
    dbPath = path.join(tmp.dir, 'ordered.db');
    const later = recordFor(7n, { txnId: 2n, beginSeq: 200n, fill: 0x22, size: 8 });
    const earlier = recordFor(7n, { txnId: 1n, beginSeq: 100n, fill: 0x11, size: 8 });
    await writeSegment(
      dbPath,
      { epoch: 7n, records: [later, earlier], recordsPerCore: [1, 1] },
      { fsync: 'off' },
    );
    const pages = new Map<number, Uint8Array>();
    await recoverAndApplySegments(dbPath, pages);
    expect(pages.get(1)).toEqual(new Uint8Array(8).fill(0x22));
  });

  it('does not apply records that never committed', async () => {
    const committed = recordFor(1n, { txnId: 1n, beginSeq: 10n, fill: 0x01 });
    const aborted = recordFor(1n, { txnId: 2n, beginSeq: 20n, fill: 0x02, committed: false });
    const otherPage = recordFor(1n, { txnId: 3n, beginSeq: 30n, pageId: 2, committed: false });
    await writeSegment(dbPath, { epoch: 1n, records: [committed, aborted, otherPage] });
    const pages = new Map<number, Uint8Array>();
    const result = await recoverAndApplySegments(dbPath, pages);
    expect(result.recordsApplied).toBe(3);
    expect(pages.get(1)).toEqual(new Uint8Array(16).fill(0x01));
    expect(pages.has(2)).toBe(false);
  });
});

describe('maxDurableEpoch and cleanup', () => {
  it('reports the newest epoch with a segment, or null (seed)', async () => {
    expect(await maxDurableEpoch(dbPath)).toBeNull();
    for (const epoch of [5n, 10n, 3n])
      await writeSegment(dbPath, { epoch, records: [] }, { fsync: 'off' });
    expect(await maxDurableEpoch(dbPath)).toBe(10n);
    await cleanupSegments(dbPath);
    expect(await maxDurableEpoch(dbPath)).toBeNull();
  });

  it('deletes every segment and counts them (seed: cleanup)', async () => {
    for (let epoch = 1n; epoch <= 5n; epoch++)
      await writeSegment(dbPath, { epoch, records: [] }, { fsync: 'off' });
    fs.writeFileSync(path.join(tmp.dir, 'unrelated.txt'), 'keep me');
    expect((await listSegments(dbPath)).length).toBe(5);
    expect(await cleanupSegments(dbPath)).toBe(5);
    expect(await listSegments(dbPath)).toEqual([]);
    expect(fs.readdirSync(tmp.dir)).toEqual(['unrelated.txt']);
  });

  it('removes leftover temporary files only when asked', async () => {
    await writeEpochs([1n]);
    const leftover = path.join(tmp.dir, 'test.db-wal-tmp-0000000000000002-0123456789ab');
    fs.writeFileSync(leftover, 'half a segment');
    fs.writeFileSync(path.join(tmp.dir, 'other.db-wal-tmp-0000000000000002-0123456789ab'), 'x');
    const plain = await recoverSegments(dbPath);
    expect(plain.temporaryFilesRemoved).toBe(0);
    expect(fs.existsSync(leftover)).toBe(true);
    const cleaned = await recoverSegments(dbPath, { cleanupTemporaryFiles: true });
    expect(cleaned.temporaryFilesRemoved).toBe(1);
    expect(cleaned.epochs).toEqual([1n]);
    expect(fs.existsSync(leftover)).toBe(false);
    expect(await cleanupTemporaryFiles(dbPath)).toBe(0);
    expect(fs.readdirSync(tmp.dir).sort()).toEqual([
      'other.db-wal-tmp-0000000000000002-0123456789ab',
      'test.db-wal-seg-0000000000000001',
    ]);
  });

  it('never deletes a file that merely starts with the temporary infix', async () => {
    const owned = [
      'test.db-wal-tmp-00000000000000a2-0123456789ab',
      'test.db-wal-tmp-next-abcdef012345',
    ];
    const foreign = [
      'test.db-wal-tmp-notes.txt',
      'test.db-wal-tmp-0000000000000002-0123456789ab.bak',
      'test.db-wal-tmp-NEXT-abcdef012345',
      'test.db-wal-tmp-0000000000000002',
    ];
    for (const name of [...owned, ...foreign]) fs.writeFileSync(path.join(tmp.dir, name), 'x');
    expect(await cleanupTemporaryFiles(dbPath)).toBe(owned.length);
    expect(fs.readdirSync(tmp.dir).sort()).toEqual([...foreign].sort());
  });
});
