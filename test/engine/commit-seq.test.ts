/**
 * Caller-given commit sequences: recovery replays an epoch in sequence
 * order, so a sequence that does not increase in placement order would make
 * recovery disagree with what was acknowledged. The log refuses it, atomically
 * with every other writer's draws (in-process lanes, the serialized path,
 * worker lanes: one shared counter).
 */
import * as nodeFs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ParallelWal, type ParallelWalBatch } from '../../src/engine/wal.js';
import { attachWriter, type WorkerWriter } from '../../src/engine/worker.js';
import {
  claimCommitSeq,
  createCommitSeqCounter,
  releaseCommitSeqClaim,
  takeCommitSeq,
} from '../../src/engine/worker-layout.js';
import { isWalError } from '../../src/errors.js';
import { recoverSegments } from '../../src/storage/recovery.js';
import { FakeOwner } from '../fixtures/fake-owner.js';

const dirs: string[] = [];
const opened: ParallelWal[] = [];
const writers: WorkerWriter[] = [];
const owners: FakeOwner[] = [];

afterEach(async () => {
  for (const o of owners.splice(0)) o.pool.close();
  for (const w of writers.splice(0)) await w.close();
  for (const wal of opened.splice(0)) await wal.close();
  for (const dir of dirs.splice(0)) nodeFs.rmSync(dir, { recursive: true, force: true });
});

async function openWal(config: Parameters<typeof ParallelWal.open>[1] = {}) {
  const dir = nodeFs.mkdtempSync(path.join(os.tmpdir(), 'pwal-seq-'));
  dirs.push(dir);
  const wal = await ParallelWal.open(path.join(dir, 'test.db'), config);
  opened.push(wal);
  return wal;
}

function pageOne(txnId: number, fill: number, commitSeq?: bigint): ParallelWalBatch {
  return {
    txnToken: { id: BigInt(txnId), epoch: 0 },
    ...(commitSeq === undefined ? {} : { commitSeq }),
    frames: [{ pageNumber: 1, pageData: new Uint8Array(32).fill(fill), dbSizeIfCommit: 1 }],
  };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => null,
    (error: unknown) => error,
  );
}

describe('caller-given commit sequences', () => {
  it('rejects a lower sequence after a higher one in the same epoch, so recovery keeps the acknowledged image', async () => {
    const wal = await openWal({ slotCount: 1 });
    const a = wal.commit(pageOne(1, 0xaa, 100n));
    const b = wal.commit(pageOne(2, 0xbb, 50n));
    const error = await rejection(b);
    expect(isWalError(error, 'ERR_INVALID_ARGUMENT'), String(error)).toBe(true);
    expect((error as Error).message).toContain('batch.commitSeq 50 is not above');
    const acked = await a;
    expect(acked.commitSeq).toBe(100n);
    await wal.close();
    // Recovery's answer is the acknowledged one: A's image, and B is nowhere.
    const { records } = await recoverSegments(wal.dbPath);
    expect(records.map((r) => r.txnToken.id)).toEqual([1n]);
    expect(records[0]!.afterImage[0]).toBe(0xaa);
  });

  it('rejects a repeated sequence and one below an assigned sequence; the log carries on above them', async () => {
    const wal = await openWal({ slotCount: 2 });
    const first = await wal.commit(pageOne(1, 1));
    expect(first.commitSeq).toBe(1n);
    expect(isWalError(await rejection(wal.commit(pageOne(2, 2, 1n))), 'ERR_INVALID_ARGUMENT')).toBe(
      true,
    );
    expect((await wal.commit(pageOne(3, 3, 7n))).commitSeq).toBe(7n);
    expect(isWalError(await rejection(wal.commit(pageOne(4, 4, 7n))), 'ERR_INVALID_ARGUMENT')).toBe(
      true,
    );
    // The serialized path and another lane draw from the same order.
    expect(
      isWalError(await rejection(wal.commitSerialized(pageOne(5, 5, 6n))), 'ERR_INVALID_ARGUMENT'),
    ).toBe(true);
    const writer = wal.openWriter();
    expect(
      isWalError(await rejection(writer.commit(pageOne(6, 6, 3n))), 'ERR_INVALID_ARGUMENT'),
    ).toBe(true);
    await writer.close();
    // Nothing rejected consumed a number: the next assigned one follows 7.
    expect((await wal.commit(pageOne(7, 7))).commitSeq).toBe(8n);
    await wal.close();
    const { records } = await recoverSegments(wal.dbPath);
    expect(records.map((r) => r.beginSeq)).toEqual([1n, 7n, 8n]);
  });

  it('rejects the largest u64 (no sequence could follow it)', async () => {
    const wal = await openWal({ slotCount: 1 });
    const error = await rejection(wal.commit(pageOne(1, 1, (1n << 64n) - 1n)));
    expect(isWalError(error, 'ERR_INVALID_ARGUMENT')).toBe(true);
  });

  it('a worker lane refuses a sequence not above one placed by another writer on the shared counter', async () => {
    const owner = new FakeOwner({});
    owners.push(owner);
    const writer = attachWriter(owner.pool.createHandle());
    writers.push(writer);
    const placed = writer.commit({ ...pageOne(1, 1), commitSeq: 900n });
    owner.tick();
    expect((await placed).commitSeq).toBe(900n);
    const error = await rejection(writer.commit({ ...pageOne(2, 2), commitSeq: 900n }));
    expect(isWalError(error, 'ERR_INVALID_ARGUMENT'), String(error)).toBe(true);
    // The owner's draws continue above the worker's claim.
    expect(owner.pool.nextCommitSeq()).toBe(901n);
  });
});

describe('the shared counter', () => {
  it('claims only above every draw and claim, across views of the same memory (threads), and gives back unplaced claims', () => {
    const counter = createCommitSeqCounter(1n);
    const otherThread = new BigInt64Array(counter.buffer);
    expect(takeCommitSeq(counter)).toBe(1n);
    expect(claimCommitSeq(otherThread, 1n)).toBeNull();
    const previous = claimCommitSeq(otherThread, 10n);
    expect(previous).toBe(2n);
    expect(claimCommitSeq(counter, 10n)).toBeNull();
    releaseCommitSeqClaim(counter, 10n, previous!);
    expect(claimCommitSeq(counter, 5n)).toBe(2n);
    // A draw after a claim makes the claim's number a gap, never reusable.
    const again = claimCommitSeq(counter, 20n)!;
    expect(takeCommitSeq(otherThread)).toBe(21n);
    releaseCommitSeqClaim(counter, 20n, again);
    expect(claimCommitSeq(counter, 20n)).toBeNull();
    // Values above 2^63 compare as unsigned.
    expect(claimCommitSeq(counter, 1n << 63n)).toBe(22n);
    expect(claimCommitSeq(counter, 5n)).toBeNull();
  });
});
