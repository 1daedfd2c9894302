import * as nodeFs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { type CommitResult, ParallelWal, type ParallelWalBatch } from '../../src/engine/wal.js';
import type { WalRecord } from '../../src/format/types.js';
import { recoverSegments } from '../../src/storage/recovery.js';
import type { WriterPlan, WriterReport } from '../fixtures/worker-writer.js';
import { randInt, seededRng } from '../support/rng.js';

const WORKER_ENTRY = new URL('../fixtures/worker-entry.mjs', import.meta.url);

/** The page a fixture worker writes for `txnId` (see test/fixtures/worker-writer.ts). */
function workerPage(txnId: number, pageBytes: number): Uint8Array {
  const data = new Uint8Array(pageBytes);
  for (let i = 0; i < pageBytes; i++) data[i] = (txnId * 31 + i) & 0xff;
  return data;
}

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) nodeFs.rmSync(dir, { recursive: true, force: true });
});

interface Expected {
  epoch: bigint;
  frames: { pageNumber: number; pageData: Uint8Array }[];
}

describe('ParallelWal under concurrent writers', () => {
  it('recovers every acknowledged commit exactly once, in commit order', async () => {
    const dir = nodeFs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
    dirs.push(dir);
    const db = path.join(dir, 'concurrent.db');
    const seed = 0x5eed;
    const rng = seededRng(seed);
    // Small buffers so that overflow, the fallback latch, the serialized path
    // and early seals all happen during the run.
    const wal = await ParallelWal.open(db, {
      slotCount: 4,
      bufferCapacityBytes: 16 * 1024,
      overflowFallbackBytes: 16 * 1024,
      maxEpochBytes: 24 * 1024,
      epochIntervalMs: 1,
      fsync: 'normal',
    });
    wal.start();
    const acknowledged = new Map<bigint, Expected>();
    let txn = 0;
    const writersPerKind = 8;
    const commitsPerWriter = 150;

    const makeBatch = (): ParallelWalBatch => {
      txn += 1;
      const frameCount = randInt(rng, 1, 3);
      const pages = new Set<number>();
      while (pages.size < frameCount) pages.add(randInt(rng, 1, 64));
      return {
        txnToken: { id: BigInt(txn), epoch: txn % 3 },
        frames: [...pages].map((pageNumber) => {
          const pageData = new Uint8Array(randInt(rng, 16, 2048));
          for (let i = 0; i < pageData.length; i += 97) pageData[i] = randInt(rng, 0, 255);
          return { pageNumber, pageData, dbSizeIfCommit: 64 };
        }),
      };
    };

    const record = (batch: ParallelWalBatch, result: CommitResult): void => {
      expect(acknowledged.has(result.commitSeq)).toBe(false);
      acknowledged.set(result.commitSeq, {
        epoch: result.epoch,
        frames: batch.frames.map((f) => ({ pageNumber: f.pageNumber, pageData: f.pageData })),
      });
    };

    const runWriter = async (kind: 'writer' | 'default' | 'serialized'): Promise<void> => {
      const writer = kind === 'writer' ? wal.openWriter() : null;
      for (let i = 0; i < commitsPerWriter; i++) {
        const batch = makeBatch();
        const pending =
          writer !== null
            ? writer.commit(batch)
            : kind === 'serialized'
              ? wal.commitSerialized(batch)
              : wal.commit(batch);
        // Interleave: sometimes wait for the ack, sometimes run ahead one turn.
        if (rng() < 0.7) {
          record(batch, await pending);
        } else {
          await new Promise((resolve) => setImmediate(resolve));
          record(batch, await pending);
        }
      }
      await writer?.close();
    };

    const writers: Promise<void>[] = [];
    for (let w = 0; w < writersPerKind; w++) {
      writers.push(runWriter('writer'), runWriter('default'), runWriter('serialized'));
    }
    await Promise.all(writers);
    const stats = wal.stats();
    await wal.close();

    expect(acknowledged.size).toBe(writersPerKind * 3 * commitsPerWriter);
    expect(stats.commits).toBe(acknowledged.size);
    // The run exercised the paths it claims to.
    expect(stats.overflowAppends + stats.fallbacks).toBeGreaterThan(0);

    const recovered = await recoverSegments(db);
    const bySeq = new Map<bigint, WalRecord[]>();
    let previous: WalRecord | null = null;
    for (const r of recovered.records) {
      if (previous !== null) {
        // Commit order: sequences never go backwards across epochs.
        expect(r.beginSeq >= previous.beginSeq).toBe(true);
      }
      previous = r;
      const group = bySeq.get(r.beginSeq) ?? [];
      group.push(r);
      bySeq.set(r.beginSeq, group);
    }
    expect([...bySeq.keys()].sort((a, b) => (a < b ? -1 : 1))).toEqual(
      [...acknowledged.keys()].sort((a, b) => (a < b ? -1 : 1)),
    );
    for (const [seq, expected] of acknowledged) {
      const records = bySeq.get(seq)!;
      expect(records.length).toBe(expected.frames.length);
      for (const r of records) {
        expect(r.epoch).toBe(expected.epoch);
        expect(r.endSeq).toBe(seq);
        const frame = expected.frames.find((f) => f.pageNumber === r.pageId);
        expect(frame).toBeDefined();
        expect(Buffer.from(r.afterImage).equals(Buffer.from(frame!.pageData))).toBe(true);
      }
    }

    // A reopened log continues after the last commit sequence.
    const reopened = await ParallelWal.open(db);
    const next = await reopened.commit(makeBatch());
    expect(next.commitSeq).toBe(BigInt(acknowledged.size + 1));
    await reopened.close();
  });

  it('interleaves async committers with 2 worker writers; every ack recovered once, in commit order', async () => {
    const dir = nodeFs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
    dirs.push(dir);
    const db = path.join(dir, 'mixed.db');
    const wal = await ParallelWal.open(db, { slotCount: 2, fsync: 'normal' });
    const acknowledged = new Map<bigint, Expected & { txnId: bigint }>();
    const pageBytes = 256;
    const workers = [0, 1].map((w) => {
      const plan: WriterPlan = {
        mode: 'commits',
        handle: wal.workerHandle(),
        count: 300,
        concurrency: 8,
        pageBytes,
        txnBase: 1_000_000 * (w + 1),
        close: true,
      };
      const worker = new Worker(WORKER_ENTRY, {
        workerData: plan,
        transferList: [plan.handle.port],
      });
      const reports: WriterReport[] = [];
      worker.on('message', (r: WriterReport) => reports.push(r));
      const exited = new Promise<void>((resolve, reject) => {
        worker.on('exit', () => resolve());
        worker.on('error', reject);
      });
      return { reports, exited };
    });
    const rng = seededRng(0xabc);
    let txn = 0;
    const asyncWriter = async (): Promise<void> => {
      for (let i = 0; i < 150; i++) {
        txn += 1;
        const txnId = BigInt(txn);
        const pageData = new Uint8Array(randInt(rng, 16, 512)).fill(txn & 0xff);
        const result = await wal.commit({
          txnToken: { id: txnId, epoch: 0 },
          frames: [{ pageNumber: 1, pageData, dbSizeIfCommit: 1 }],
        });
        acknowledged.set(result.commitSeq, {
          txnId,
          epoch: result.epoch,
          frames: [{ pageNumber: 1, pageData }],
        });
      }
    };
    await Promise.all([...Array.from({ length: 8 }, asyncWriter), ...workers.map((w) => w.exited)]);
    await wal.close();
    for (const { reports } of workers) {
      expect(reports.filter((r) => r.kind === 'rejected')).toEqual([]);
      for (const r of reports) {
        if (r.kind !== 'ack') continue;
        expect(acknowledged.has(r.commitSeq)).toBe(false);
        acknowledged.set(r.commitSeq, {
          txnId: r.txnId,
          epoch: r.epoch,
          frames: [{ pageNumber: 1, pageData: workerPage(Number(r.txnId), pageBytes) }],
        });
      }
    }
    expect(acknowledged.size).toBe(8 * 150 + 2 * 300);

    const { records } = await recoverSegments(db);
    expect(records).toHaveLength(acknowledged.size);
    let previous = 0n;
    const seen = new Set<bigint>();
    for (const r of records) {
      expect(r.beginSeq > previous).toBe(true);
      previous = r.beginSeq;
      const expected = acknowledged.get(r.beginSeq);
      expect(expected).toBeDefined();
      expect(seen.has(r.beginSeq)).toBe(false);
      seen.add(r.beginSeq);
      expect(r.txnToken.id).toBe(expected!.txnId);
      expect(r.epoch).toBe(expected!.epoch);
      expect(Buffer.from(r.afterImage).equals(Buffer.from(expected!.frames[0]!.pageData))).toBe(
        true,
      );
    }
  });
});
