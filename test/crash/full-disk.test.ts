/**
 * A real full disk: a 2 MiB tmpfs mounted for the test (needs root and a
 * kernel that allows it; where `mount` is not permitted the test is not run
 * and a note is logged — the simulated disk's capacity limit covers ENOSPC
 * there, see `simulated-fs.test.ts` and `wal-io-faults.test.ts`).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ParallelWal } from '../../src/engine/wal.js';
import { WalError } from '../../src/errors.js';
import { recoverSegments } from '../../src/storage/recovery.js';
import {
  type CommitAck,
  checkRecovered,
  commitPages,
  describeReport,
  reportIsClean,
} from '../support/commit-oracle.js';
import { batchFor, type WorkloadPlan } from '../support/wal-workload.js';

/** Size of the tmpfs, in bytes. */
const TMPFS_BYTES = 2 * 1024 * 1024;

function tryMountTmpfs(): { dir: string | null; why: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${TMPFS_BYTES}`, 'tmpfs', dir], {
      stdio: 'pipe',
      timeout: 10_000,
    });
    return { dir, why: '' };
  } catch (error) {
    fs.rmSync(dir, { recursive: true, force: true });
    return { dir: null, why: String((error as Error).message).split('\n')[0] ?? 'mount failed' };
  }
}

const mount = tryMountTmpfs();
if (mount.dir === null) {
  console.warn(
    `full-disk test not run: cannot mount a tmpfs here (${mount.why}); ENOSPC is covered by the simulated disk`,
  );
}

afterAll(() => {
  if (mount.dir === null) return;
  try {
    execFileSync('umount', [mount.dir], { stdio: 'pipe', timeout: 10_000 });
  } finally {
    fs.rmSync(mount.dir, { recursive: true, force: true });
  }
});

const PLAN: WorkloadPlan = {
  seed: 77,
  writers: 1,
  commitsPerWriter: 0,
  burstChance: 0,
  maxPageBytes: 4000,
};

describe('ParallelWal on a real full disk', () => {
  it.runIf(mount.dir !== null)(
    'rejects commits with ENOSPC as the cause, keeps every acknowledged one, reopens on the full disk',
    async () => {
      const db = path.join(mount.dir!, 'full.db');
      const wal = await ParallelWal.open(db);
      const acks: CommitAck[] = [];
      const rejected: unknown[] = [];
      let next = 1n;
      // Bursts of concurrent commits until the disk is full and the log fails.
      for (let round = 0; round < 2000 && rejected.length === 0; round++) {
        const burst = Array.from({ length: 8 }, () => {
          const id = next++;
          return wal.commit(batchFor(PLAN, id)).then(
            (r) => {
              acks.push({ txnId: id, epoch: r.epoch, commitSeq: r.commitSeq });
            },
            (error: unknown) => {
              rejected.push(error);
            },
          );
        });
        await Promise.all(burst);
      }
      expect(acks.length, 'nothing fitted before the disk was full').toBeGreaterThan(10);
      expect(rejected.length, 'the disk never filled up').toBeGreaterThan(0);
      for (const error of rejected) {
        expect(error).toBeInstanceOf(WalError);
        expect((error as WalError).code).toBe('ERR_WAL_FAILED');
        expect(String((error as Error).message)).toMatch(/ENOSPC|no space/);
      }
      await wal.close();
      // No temporary file is left to eat the space.
      expect(fs.readdirSync(mount.dir!).filter((n) => n.includes('-wal-tmp-'))).toEqual([]);
      const recovered = await recoverSegments(db);
      const report = checkRecovered(
        recovered.records,
        (id) => (id < next ? commitPages(PLAN.seed, id, PLAN.maxPageBytes) : undefined),
        acks,
        { contiguousFrom: 1n },
      );
      expect(reportIsClean(report), describeReport(report)).toBe(true);
      // Reopening on the full disk works (recovery only reads); a small commit may or may not fit.
      const again = await ParallelWal.open(db);
      await again.commit(batchFor({ ...PLAN, maxPageBytes: 8 }, next)).catch((error: unknown) => {
        expect((error as WalError).code).toBe('ERR_WAL_FAILED');
      });
      await again.close();
    },
  );
});
