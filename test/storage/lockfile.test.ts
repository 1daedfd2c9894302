import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isWalError } from '../../src/errors.js';
import { nodeFileSystem, type WalFileSystem } from '../../src/storage/fs.js';
import {
  acquireLock,
  decodeLockInfo,
  encodeLockInfo,
  type LockInfo,
  lockPath,
  readLock,
} from '../../src/storage/lockfile.js';
import { useTempDb } from '../support/temp-db.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const childScript = path.join(repoRoot, 'test/store/support/lock-child.ts');

let dir: string;
let db: string;
useTempDb('db', (paths) => {
  dir = paths.dir;
  db = paths.db;
});

interface ChildReport {
  acquired: boolean;
  pid?: number;
  code?: string;
  holderPid?: number;
}

/** Starts lock-child.ts; resolves with the child and its first line of output. */
function startChild(mode: 'hold' | 'once'): Promise<{ child: ChildProcess; report: ChildReport }> {
  const child = spawn(process.execPath, ['--import', 'tsx', childScript, db, mode], {
    cwd: repoRoot,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const line = out.split('\n')[0];
      if (out.includes('\n') && line !== undefined) resolve({ child, report: JSON.parse(line) });
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (!out.includes('\n')) reject(new Error(`child exited (${code}) without a report`));
    });
  });
}

function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.on('exit', () => resolve()));
}

function staleInfo(pid: number): LockInfo {
  return {
    pid,
    processStart: null,
    startedAtMs: Date.now() - 60_000,
    hostname: os.hostname(),
    nonce: 'stale-nonce',
  };
}

/** A pid that no process has (the kernel's pid_max is far below it). */
const DEAD_PID = 2 ** 30;

describe('the database lock file', () => {
  it('records the holder pid durably: file synced, then its directory', async () => {
    const calls: string[] = [];
    const recording: WalFileSystem = {
      ...nodeFileSystem,
      async open(p, mode) {
        calls.push(`open ${path.basename(p)} ${mode}`);
        const h = await nodeFileSystem.open(p, mode);
        return {
          path: h.path,
          write: (d, pos) => h.write(d, pos),
          writev: (c, pos) => h.writev(c, pos),
          read: (i, pos, l) => h.read(i, pos, l),
          datasync: () => h.datasync(),
          sync: async () => {
            calls.push('sync');
            await h.sync();
          },
          truncate: (l) => h.truncate(l),
          size: () => h.size(),
          close: () => h.close(),
        };
      },
      async syncDirectory(d) {
        calls.push(`syncDirectory ${d === dir ? 'dir' : d}`);
        await nodeFileSystem.syncDirectory(d);
      },
    };
    const lock = await acquireLock(db, { fs: recording });
    expect(calls.slice(0, 3)).toEqual([
      'open db.lock createExclusive',
      'sync',
      'syncDirectory dir',
    ]);
    const info = decodeLockInfo(fs.readFileSync(lockPath(db)));
    expect(info?.pid).toBe(process.pid);
    expect(info?.nonce).toBe(lock.info.nonce);
    await lock.release();
    expect(fs.existsSync(lockPath(db))).toBe(false);
  });

  it('refuses a second open in the same process, and allows it after release', async () => {
    const lock = await acquireLock(db);
    const error = await acquireLock(db).catch((e: unknown) => e);
    expect(isWalError(error, 'ERR_LOCKED')).toBe(true);
    expect((error as { holderPid?: number }).holderPid).toBe(process.pid);
    await lock.release();
    const again = await acquireLock(db);
    await again.release();
  });

  it('refuses two concurrent opens in the same process: exactly one wins', async () => {
    const results = await Promise.allSettled([acquireLock(db), acquireLock(db), acquireLock(db)]);
    const won = results.filter((r) => r.status === 'fulfilled');
    expect(won).toHaveLength(1);
    for (const r of results) {
      if (r.status === 'rejected') expect(isWalError(r.reason, 'ERR_LOCKED')).toBe(true);
    }
    await (
      won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof acquireLock>>>
    ).value.release();
  });

  it('gives a real second process ERR_LOCKED naming this process', async () => {
    const lock = await acquireLock(db);
    const { child, report } = await startChild('once');
    await waitExit(child);
    expect(report).toMatchObject({ acquired: false, code: 'ERR_LOCKED', holderPid: process.pid });
    await lock.release();
  });

  it('names a live holder in another process, and opens once it released', async () => {
    const { child, report } = await startChild('hold');
    expect(report.acquired).toBe(true);
    const error = await acquireLock(db).catch((e: unknown) => e);
    expect(isWalError(error, 'ERR_LOCKED')).toBe(true);
    expect((error as { holderPid?: number }).holderPid).toBe(child.pid);
    expect((error as Error).message).toContain(`process ${child.pid}`);
    child.stdin?.end();
    await waitExit(child);
    expect(child.exitCode).toBe(0);
    const lock = await acquireLock(db);
    await lock.release();
  });

  it('takes over the stale lock of a process killed with SIGKILL', async () => {
    const { child, report } = await startChild('hold');
    expect(report.acquired).toBe(true);
    child.kill('SIGKILL');
    await waitExit(child);
    expect(decodeLockInfo(fs.readFileSync(lockPath(db)))?.pid).toBe(child.pid);
    const lock = await acquireLock(db);
    expect(decodeLockInfo(fs.readFileSync(lockPath(db)))?.pid).toBe(process.pid);
    expect(fs.readdirSync(dir).sort()).toEqual(['db.lock']);
    await lock.release();
  });

  it('lets exactly one of several real processes take over a stale lock', async () => {
    fs.writeFileSync(lockPath(db), encodeLockInfo(staleInfo(DEAD_PID)));
    const children = await Promise.all([1, 2, 3, 4].map(() => startChild('hold')));
    const winners = children.filter((c) => c.report.acquired);
    expect(winners).toHaveLength(1);
    for (const c of children) {
      if (!c.report.acquired) {
        expect(c.report.code).toBe('ERR_LOCKED');
        expect(c.report.holderPid).toBe(winners[0]?.child.pid);
      }
    }
    for (const c of children) c.child.stdin?.end();
    await Promise.all(children.map((c) => waitExit(c.child)));
  });

  it('lets exactly one of many concurrent takers win (simulated processes)', async () => {
    fs.writeFileSync(lockPath(db), encodeLockInfo(staleInfo(DEAD_PID)));
    const takers = Array.from({ length: 12 }, (_, i) => 50_000 + i);
    const alive = new Set(takers);
    const isAlive = (info: LockInfo) => alive.has(info.pid);
    const results = await Promise.allSettled(
      takers.map((pid) => acquireLock(db, { pid, isAlive, takeoverTimeoutMs: 10_000 })),
    );
    const won = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    expect(won).toHaveLength(1);
    for (const r of results) {
      if (r.status === 'rejected') {
        expect(isWalError(r.reason, 'ERR_LOCKED')).toBe(true);
        expect((r.reason as { holderPid?: number }).holderPid).toBe(won[0]?.info.pid);
      }
    }
    expect(decodeLockInfo(fs.readFileSync(lockPath(db)))?.nonce).toBe(won[0]?.info.nonce);
    await won[0]?.release();
  });

  it('treats a lock carrying our own pid that this process does not hold as stale (pid reuse)', async () => {
    fs.writeFileSync(lockPath(db), encodeLockInfo(staleInfo(process.pid)));
    const lock = await acquireLock(db);
    expect(decodeLockInfo(fs.readFileSync(lockPath(db)))?.nonce).toBe(lock.info.nonce);
    await lock.release();
  });

  it('treats a live pid whose process started at another time as stale (recycled pid)', async () => {
    const { child, report } = await startChild('hold');
    expect(report.acquired).toBe(true);
    // Replace the child's lock by one that names its pid with a wrong start time.
    fs.writeFileSync(
      lockPath(db),
      encodeLockInfo({ ...staleInfo(child.pid ?? 0), processStart: '1' }),
    );
    const lock = await acquireLock(db);
    expect(decodeLockInfo(fs.readFileSync(lockPath(db)))?.pid).toBe(process.pid);
    await lock.release();
    child.kill('SIGKILL');
    await waitExit(child);
  });

  it('waits out an empty lock file (creator between open and write), then takes it over', async () => {
    fs.writeFileSync(lockPath(db), '');
    const started = Date.now();
    const lock = await acquireLock(db, { unreadableGraceMs: 100 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(90);
    expect(decodeLockInfo(fs.readFileSync(lockPath(db)))?.pid).toBe(process.pid);
    await lock.release();
  });

  it('sees the content of a lock written during the grace period and refuses', async () => {
    fs.writeFileSync(lockPath(db), '');
    const live = { ...staleInfo(4242), nonce: 'live' };
    setTimeout(() => fs.writeFileSync(lockPath(db), encodeLockInfo(live)), 30);
    // The grace only bounds the wait (the lock is polled); it is generous so a
    // loaded machine that runs the 30 ms timer late still writes inside it.
    const error = await acquireLock(db, {
      unreadableGraceMs: 10_000,
      isAlive: (info) => info.pid === 4242,
    }).catch((e: unknown) => e);
    expect(isWalError(error, 'ERR_LOCKED')).toBe(true);
    expect((error as { holderPid?: number }).holderPid).toBe(4242);
  });

  it('removes a takeover guard left by a dead taker and completes the takeover', async () => {
    fs.writeFileSync(lockPath(db), encodeLockInfo(staleInfo(DEAD_PID)));
    fs.writeFileSync(`${lockPath(db)}.takeover`, encodeLockInfo(staleInfo(DEAD_PID - 1)));
    const lock = await acquireLock(db);
    expect(fs.readdirSync(dir).sort()).toEqual(['db.lock']);
    await lock.release();
  });

  it('waits for a live taker holding the guard and gives up with ERR_LOCKED', async () => {
    fs.writeFileSync(lockPath(db), encodeLockInfo(staleInfo(DEAD_PID)));
    fs.writeFileSync(`${lockPath(db)}.takeover`, encodeLockInfo(staleInfo(7777)));
    const error = await acquireLock(db, {
      pid: 8888,
      takeoverTimeoutMs: 100,
      unreadableGraceMs: 0,
      isAlive: (info) => info.pid === 7777,
    }).catch((e: unknown) => e);
    expect(isWalError(error, 'ERR_LOCKED')).toBe(true);
    expect(fs.existsSync(`${lockPath(db)}.takeover`)).toBe(true);
  });

  it('reports ERR_LOCK_LOST when releasing a lock someone replaced', async () => {
    const lock = await acquireLock(db);
    fs.writeFileSync(lockPath(db), encodeLockInfo(staleInfo(DEAD_PID)));
    const error = await lock.release().catch((e: unknown) => e);
    expect(isWalError(error, 'ERR_LOCK_LOST')).toBe(true);
    expect(fs.existsSync(lockPath(db))).toBe(true);
    expect(lock.released).toBe(true);
  });

  it('releases idempotently', async () => {
    const lock = await acquireLock(db);
    await lock.release();
    await lock.release();
    expect(fs.existsSync(lockPath(db))).toBe(false);
  });

  it('fails with ERR_LOCK_IO when the directory does not exist', async () => {
    const error = await acquireLock(path.join(dir, 'missing', 'db')).catch((e: unknown) => e);
    expect(isWalError(error, 'ERR_LOCK_IO')).toBe(true);
  });

  it('reads the holder without taking the lock (for inspect)', async () => {
    expect(await readLock(db)).toBeNull();
    const lock = await acquireLock(db);
    const seen = await readLock(db);
    expect(seen?.info?.pid).toBe(process.pid);
    expect(seen?.alive).toBe(true);
    await lock.release();
  });

  it('decodes a lock it encoded, and nothing else, without throwing', () => {
    const info = staleInfo(123);
    expect(decodeLockInfo(encodeLockInfo(info))).toEqual(info);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        expect(decodeLockInfo(bytes)).toBeNull();
      }),
      { numRuns: 2000 },
    );
    const valid = encodeLockInfo(info);
    fc.assert(
      fc.property(fc.nat(valid.length - 1), fc.integer({ min: 1, max: 255 }), (at, flip) => {
        const mutated = valid.slice();
        mutated[at] = (mutated[at] ?? 0) ^ flip;
        const decoded = decodeLockInfo(mutated);
        if (decoded !== null) expect(decoded.pid).toBeGreaterThan(0);
      }),
      { numRuns: 2000 },
    );
    expect(decodeLockInfo(new Uint8Array(5000).fill(0x20))).toBeNull();
  });
});
