import * as nodeFs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ParallelWal, type ParallelWalBatch } from '../../src/engine/wal.js';
import { isWalError } from '../../src/errors.js';
import { listSegments, readSegment } from '../../src/storage/segment-files.js';
import { awaitPublished } from '../support/published.js';

const dirs: string[] = [];
const opened: ParallelWal[] = [];

function tempDb(): string {
  const dir = nodeFs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
  dirs.push(dir);
  return path.join(dir, 'floor.db');
}

async function open(dbPath: string, config: Parameters<typeof ParallelWal.open>[1] = {}) {
  const wal = await ParallelWal.open(dbPath, config);
  opened.push(wal);
  return wal;
}

afterEach(async () => {
  for (const wal of opened.splice(0)) await wal.close();
  for (const dir of dirs.splice(0)) nodeFs.rmSync(dir, { recursive: true, force: true });
});

function batch(txnId: number, fill: number): ParallelWalBatch {
  return {
    txnToken: { id: BigInt(txnId), epoch: 0 },
    frames: [{ pageNumber: 1, pageData: new Uint8Array(32).fill(fill), dbSizeIfCommit: 1 }],
  };
}

async function removeAllSegments(db: string): Promise<void> {
  for (const s of await listSegments(db)) nodeFs.unlinkSync(s.path);
}

describe('epoch and commit-sequence floors', () => {
  it('starts an empty log at firstEpoch and firstCommitSeq', async () => {
    const db = tempDb();
    const wal = await open(db, { firstEpoch: 100n, firstCommitSeq: 5000n });
    expect(wal.currentEpoch).toBe(100n);
    expect(wal.durableEpoch()).toBe(99n);
    const result = await wal.commit(batch(1, 1));
    expect(result.epoch).toBeGreaterThanOrEqual(100n);
    expect(result.commitSeq).toBe(5000n);
    expect(wal.acknowledgedEpoch()).toBe(result.epoch);
    await awaitPublished(wal);
    const segments = await listSegments(db);
    expect(segments.map((s) => s.epoch)).toEqual([result.epoch]);
    const decoded = await readSegment(segments[0]!.path);
    expect(decoded.records[0]!.endSeq).toBe(5000n);
  });

  it('keeps numbering increasing after every segment was deleted, when the floor says so', async () => {
    const db = tempDb();
    const first = await open(db);
    let last = { epoch: 0n, commitSeq: 0n };
    for (let i = 1; i <= 5; i++) last = await first.commit(batch(i, i));
    await first.close();
    await removeAllSegments(db);
    // Without a floor the numbering restarts (what the floor exists for).
    const bare = await open(db);
    expect(bare.currentEpoch).toBe(0n);
    await bare.close();
    const again = await open(db, {
      firstEpoch: last.epoch + 1n,
      firstCommitSeq: last.commitSeq + 1n,
    });
    const next = await again.commit(batch(6, 6));
    expect(next.epoch).toBeGreaterThan(last.epoch);
    expect(next.commitSeq).toBe(last.commitSeq + 1n);
  });

  it('numbers after the newest segment when that is above the floor', async () => {
    const db = tempDb();
    const first = await open(db, { firstEpoch: 10n });
    let last = { epoch: 0n, commitSeq: 0n };
    for (let i = 1; i <= 3; i++) last = await first.commit(batch(i, i));
    await first.close();
    const again = await open(db, { firstEpoch: 2n, firstCommitSeq: 1n });
    expect(again.currentEpoch).toBe(last.epoch + 1n);
    expect(again.durableEpoch()).toBe(last.epoch);
    const next = await again.commit(batch(4, 4));
    expect(next.epoch).toBeGreaterThan(last.epoch);
    expect(next.commitSeq).toBe(last.commitSeq + 1n);
  });

  it('treats the epochs below the floor as durable', async () => {
    const wal = await open(tempDb(), { firstEpoch: 7n });
    await wal.waitForEpochDurable(6n, 1000);
    expect(wal.stats().durableEpoch).toBe(6n);
  });

  it.each([
    ['firstEpoch', -1n],
    ['firstEpoch', 1n << 64n],
    ['firstEpoch', 3],
    ['firstCommitSeq', -5n],
    ['firstCommitSeq', 1n << 63n],
    ['firstCommitSeq', '12'],
  ])('rejects %s = %s with ERR_INVALID_ARGUMENT', async (name, value) => {
    const db = tempDb();
    const error = await ParallelWal.open(db, { [name]: value } as never).then(
      () => null,
      (e: unknown) => e,
    );
    expect(isWalError(error, 'ERR_INVALID_ARGUMENT')).toBe(true);
    // Nothing was created: the configuration is checked before the lock is taken.
    expect(nodeFs.readdirSync(path.dirname(db))).toEqual([]);
  });
});
