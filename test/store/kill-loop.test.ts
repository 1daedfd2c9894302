/**
 * SIGKILL at random moments of a store workload with checkpoints running
 * (real processes, real disk): after each kill, reopening the database (which
 * takes over the dead child's lock and recovers) gives exactly the state
 * after the acknowledged commits — or after one more, the one in flight.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { isWalError } from '../../src/errors.js';
import { PageStore } from '../../src/store/page-store.js';
import { seededRng } from '../support/rng.js';
import { WORKLOAD_PAGES_MAX, workloadState } from './support/store-workload.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const childScript = path.join(repoRoot, 'test/store/support/store-child.ts');
const KILLS = Number(process.env.PWAL_STORE_KILLS ?? 12);

interface KillRun {
  acked: number;
  /** Checkpoints that wrote pages before the kill. */
  checkpoints: number;
}

/** Runs the child until `killAfterMs` after READY, SIGKILLs it, returns the last ack. */
async function runAndKill(
  db: string,
  seed: number,
  source: string,
  killAfterMs: number,
): Promise<KillRun> {
  const child: ChildProcess = spawn(
    process.execPath,
    ['--import', 'tsx', childScript, db, String(seed), source],
    {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  let err = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    out += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    err += chunk.toString();
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const poll = setInterval(() => {
      if (out.includes('READY\n')) {
        clearInterval(poll);
        resolve();
      }
    }, 5);
    void exited.then(() => {
      clearInterval(poll);
      if (!out.includes('READY\n')) reject(new Error(`child died before READY: ${err}`));
    });
  });
  await new Promise((r) => setTimeout(r, killAfterMs));
  child.kill('SIGKILL');
  await exited;
  expect(child.signalCode, `child must die by the kill, stderr: ${err}`).toBe('SIGKILL');
  let acked = 0;
  for (const line of out.split('\n')) {
    const m = /^ACK (\d+)$/.exec(line);
    if (m !== null) {
      const i = Number(m[1]);
      expect(i, 'acks are sequential').toBe(acked + 1);
      acked = i;
    }
  }
  const checkpoints = out.split('\n').filter((line) => line.startsWith('CKPT ')).length;
  return { acked, checkpoints };
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a).equals(Buffer.from(b));
}

describe('store under SIGKILL', () => {
  for (const source of ['memory', 'log'] as const) {
    it(`recovers exactly the acknowledged commits after each kill (checkpoints from ${source})`, {
      // A child start costs ~0.5 s; long campaigns set PWAL_STORE_KILLS.
      timeout: 60_000 + KILLS * 5_000,
    }, async () => {
      const rng = seededRng(source === 'memory' ? 11 : 12);
      let totalAcked = 0;
      let totalCheckpoints = 0;
      for (let kill = 0; kill < KILLS; kill++) {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
        try {
          const db = path.join(dir, 'db');
          const seed = 1000 + kill;
          const run = await runAndKill(db, seed, source, 50 + Math.floor(rng() * 400));
          totalAcked += run.acked;
          totalCheckpoints += run.checkpoints;
          const store = await PageStore.open(db, { autoCheckpoint: false });
          const size = store.dbSizePages;
          const seen = new Map<number, Uint8Array>();
          for (let p = 1; p <= size; p++) seen.set(p, await store.read(p));
          const beyond = await store.read(size + 1).then(
            () => null,
            (e: unknown) => e,
          );
          expect(isWalError(beyond, 'ERR_STORE_PAGE_OUT_OF_RANGE')).toBe(true);
          await store.close();
          const matches = (n: number) => {
            const want = workloadState(seed, n);
            if (want.size !== size) return false;
            for (let p = 1; p <= size; p++)
              if (!same(want.pages.get(p)!, seen.get(p)!)) return false;
            return true;
          };
          expect(
            matches(run.acked) || matches(run.acked + 1),
            `kill ${kill} (seed ${seed}): state after ${run.acked} acks does not match (size ${size}, pages max ${WORKLOAD_PAGES_MAX})`,
          ).toBe(true);
        } finally {
          fs.rmSync(dir, { recursive: true, force: true });
        }
      }
      console.log(
        `store kill loop (${source}): ${KILLS} kills, ${totalAcked} commits acknowledged, ${totalCheckpoints} checkpoints, 0 lost, 0 partial`,
      );
      expect(totalAcked).toBeGreaterThan(KILLS);
      expect(totalCheckpoints, 'the kills land among running checkpoints').toBeGreaterThan(0);
    });
  }
});
