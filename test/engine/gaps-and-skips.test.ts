import * as nodeFs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ParallelWal, type ParallelWalBatch } from '../../src/engine/wal.js';
import { isWalError } from '../../src/errors.js';
import { recoverSegments } from '../../src/storage/recovery.js';
import { listSegments, segmentPath } from '../../src/storage/segment-files.js';
import { readSkippedEpochs } from '../../src/storage/skipped-epochs.js';
import { useTempDb } from '../support/temp-db.js';

let db: string;
useTempDb('gaps.db', (paths) => {
  db = paths.db;
});

function pageBatch(txnId: number, pageNumber: number, fill: number): ParallelWalBatch {
  return {
    txnToken: { id: BigInt(txnId), epoch: 0 },
    frames: [{ pageNumber, pageData: new Uint8Array(64).fill(fill), dbSizeIfCommit: pageNumber }],
  };
}

/** Three commits in epochs 0, 1, 2 (sequences 1, 2, 3), closed. */
async function threeEpochs(): Promise<void> {
  const wal = await ParallelWal.open(db);
  for (let i = 1; i <= 3; i++) {
    const result = await wal.commit(pageBatch(i, i, i));
    expect(result).toMatchObject({ epoch: BigInt(i - 1), commitSeq: BigInt(i) });
  }
  await wal.close();
  expect((await listSegments(db)).map((s) => s.epoch)).toEqual([0n, 1n, 2n]);
}

async function failure(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => null,
    (e: unknown) => e,
  );
}

describe('ParallelWal.open and a missing epoch', () => {
  it('fails closed with ERR_RECOVERY_GAP when a middle segment is lost', async () => {
    await threeEpochs();
    nodeFs.unlinkSync(segmentPath(db, 1n));
    const error = await failure(ParallelWal.open(db));
    expect(isWalError(error, 'ERR_RECOVERY_GAP')).toBe(true);
    expect((error as Error).message).toContain('segment of epoch 1 is missing');
    // Nothing was written or given up by the refused open.
    expect(nodeFs.existsSync(`${db}-wal-skipped`)).toBe(false);
    const allowed = await ParallelWal.open(db, { allowEpochGaps: true });
    expect(allowed.currentEpoch).toBe(3n);
    await allowed.close();
    expect(
      isWalError(
        await failure(ParallelWal.open(db, { allowEpochGaps: 1 as never })),
        'ERR_INVALID_ARGUMENT',
      ),
    ).toBe(true);
  });

  it('ignores holes below firstEpoch (durable elsewhere), not at or above it', async () => {
    await threeEpochs();
    nodeFs.unlinkSync(segmentPath(db, 1n));
    const error = await failure(ParallelWal.open(db, { firstEpoch: 1n }));
    expect(isWalError(error, 'ERR_RECOVERY_GAP')).toBe(true);
    const floored = await ParallelWal.open(db, { firstEpoch: 2n });
    expect(floored.currentEpoch).toBe(3n);
    await floored.close();
  });

  it('with skipCorrupt gives the hole and everything after it up, and numbers above them', async () => {
    await threeEpochs();
    nodeFs.unlinkSync(segmentPath(db, 1n));
    const wal = await ParallelWal.open(db, { skipCorrupt: true });
    const next = await wal.commit(pageBatch(9, 9, 9));
    expect(next.epoch).toBe(3n);
    expect(next.commitSeq).toBe(4n);
    await wal.close();
    expect(await readSkippedEpochs(db)).toEqual([
      { firstEpoch: 1n, lastEpoch: 2n, commitSeqCeiling: 3n },
    ]);
    const recovered = await recoverSegments(db);
    expect(recovered.epochs).toEqual([0n, 3n]);
    expect(recovered.records.map((r) => r.beginSeq)).toEqual([1n, 4n]);
  });
});

describe('ParallelWal.open with skipCorrupt', () => {
  it('never reuses an epoch or a commit sequence of a skipped segment, and the next commit stays reachable', async () => {
    await threeEpochs();
    nodeFs.writeFileSync(segmentPath(db, 1n), Buffer.alloc(40, 0xee));
    const skipping = await ParallelWal.open(db, { skipCorrupt: true });
    const acknowledged = await skipping.commit(pageBatch(4, 4, 4));
    expect(acknowledged.epoch).toBe(3n);
    // Epoch 1 used sequence 2 and epoch 2 sequence 3: the new one is above both.
    expect(acknowledged.commitSeq).toBeGreaterThan(3n);
    await skipping.close();

    // Later recoveries skip the recorded range instead of stopping at it.
    const plain = await recoverSegments(db);
    expect(plain.stoppedAt).toBeNull();
    expect(plain.epochs).toEqual([0n, 3n]);
    expect(plain.skippedSegments).toEqual([segmentPath(db, 1n), segmentPath(db, 2n)]);
    const skipped = await recoverSegments(db, { skipCorrupt: true });
    expect(skipped.records.map((r) => r.beginSeq)).toContain(acknowledged.commitSeq);

    // A plain reopen works and numbers after everything.
    const reopened = await ParallelWal.open(db);
    const later = await reopened.commit(pageBatch(5, 5, 5));
    expect(later.epoch).toBe(4n);
    expect(later.commitSeq).toBe(acknowledged.commitSeq + 1n);
    await reopened.close();
  });
});
