/**
 * Concurrency: two processes opening the same database must not both write
 * (the second gets a typed error naming the holder; a lock left by a killed
 * process is taken over safely), and many writers hammering while `close()`
 * runs leave no commit hanging: each is acknowledged and durable, or rejected.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ParallelWal } from '../../src/engine/wal.js';
import { WalError } from '../../src/errors.js';
import { recoverSegments } from '../../src/storage/recovery.js';
import {
  type CommitAck,
  checkRecovered,
  describeReport,
  reportIsClean,
} from '../support/commit-oracle.js';
import { SimulatedFileSystem } from '../support/simulated-fs.js';
import { batchFor, settleWithin, type WorkloadPlan } from '../support/wal-workload.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

const PLAN: WorkloadPlan = {
  seed: 11,
  writers: 1,
  commitsPerWriter: 0,
  burstChance: 0,
  maxPageBytes: 400,
};

describe('concurrency', () => {
  it('refuses a second process while the first holds the log, and takes over after it is killed', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
    dirs.push(dir);
    const db = path.join(dir, 'shared.db');
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        path.join(import.meta.dirname, 'child-writer.ts'),
        db,
        '5',
        '1000000',
        '2',
        '0',
      ],
      { cwd: path.resolve(import.meta.dirname, '../..'), stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const closed = new Promise<void>((resolve) => child.on('close', () => resolve()));
    await settleWithin(
      new Promise<void>((resolve) => {
        child.stdout!.setEncoding('utf8');
        child.stdout!.on('data', (chunk: string) => {
          if (chunk.includes('READY')) resolve();
        });
      }),
      30_000,
      'child start',
    );
    try {
      const error = await ParallelWal.open(db).then(
        async (wal) => {
          await wal.close();
          return null;
        },
        (e: unknown) => e,
      );
      expect(error, 'a second process opened a log another process writes').toBeInstanceOf(
        WalError,
      );
      expect((error as WalError).code).toBe('ERR_LOCKED');
      expect((error as { holderPid?: number }).holderPid).toBe(child.pid);
      expect(String((error as Error).message)).toContain(String(child.pid));
    } finally {
      child.kill('SIGKILL');
      await closed;
    }
    // The holder is dead: its stale lock is taken over and the log works.
    const wal = await ParallelWal.open(db);
    const r = await wal.commit(batchFor(PLAN, 1n << 45n));
    await wal.close();
    const recovered = await recoverSegments(db);
    expect(
      recovered.records.some(
        (rec) => rec.txnToken.id === 1n << 45n && rec.beginSeq === r.commitSeq,
      ),
    ).toBe(true);
  }, 60_000);

  for (const where of ['simulated', 'real'] as const) {
    it(`leaves no commit hanging when close() races with many writers (${where} disk)`, async () => {
      let fsOption: { fs?: SimulatedFileSystem } = {};
      let db: string;
      if (where === 'simulated') {
        const sim = new SimulatedFileSystem({ settle: 'macrotask' });
        sim.mkdirSync('/data');
        fsOption = { fs: sim };
        db = '/data/race.db';
      } else {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
        dirs.push(dir);
        db = path.join(dir, 'race.db');
      }
      const wal = await ParallelWal.open(db, { ...fsOption, slotCount: 4 });
      const acks: CommitAck[] = [];
      const rejected: unknown[] = [];
      let next = 1n;
      let closing: Promise<void> | null = null;
      const writer = async (w: number): Promise<void> => {
        const lane = wal.openWriter();
        for (let i = 0; i < 60; i++) {
          const id = next++;
          try {
            const r = await lane.commit(batchFor(PLAN, id));
            acks.push({ txnId: id, epoch: r.epoch, commitSeq: r.commitSeq });
          } catch (error) {
            rejected.push(error);
            if (closing !== null) break;
          }
          if (w === 0 && i === 10) closing = wal.close();
        }
      };
      await settleWithin(
        Promise.all(Array.from({ length: 6 }, (_, w) => writer(w))),
        30_000,
        'writers racing close',
      );
      await settleWithin(closing ?? wal.close(), 30_000, 'close');
      expect(acks.length).toBeGreaterThan(0);
      expect(rejected.length).toBeGreaterThan(0);
      for (const error of rejected) {
        expect(error).toBeInstanceOf(WalError);
        expect(['ERR_WAL_CLOSED', 'ERR_WAL_FAILED']).toContain((error as WalError).code);
      }
      const recovered = await recoverSegments(db, fsOption);
      const report = checkRecovered(
        recovered.records,
        (id) =>
          id < next
            ? batchFor(PLAN, id).frames.map((f) => ({ pageId: f.pageNumber, data: f.pageData }))
            : undefined,
        acks,
        { contiguousFrom: 1n },
      );
      expect(reportIsClean(report), describeReport(report)).toBe(true);
    });
  }
});
