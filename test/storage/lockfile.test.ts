import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
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

/** `unshare -p -f --mount-proc` needs root (or user namespaces); probed once. */
const unshareWorks =
  spawnSync('unshare', ['-p', '-f', '--mount-proc', 'true'], { stdio: 'ignore' }).status === 0;

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
  message?: string;
}

type ChildMode = 'hold' | 'once' | 'shared' | 'stall';

/**
 * Starts lock-child.ts (in a PID namespace of its own with `namespace`);
 * resolves with the child and its first line of output.
 */
function startChild(
  mode: ChildMode,
  options: { namespace?: boolean } = {},
): Promise<{ child: ChildProcess; report: ChildReport }> {
  const node = [process.execPath, '--import', 'tsx', childScript, db, mode];
  const [command, ...args] = options.namespace
    ? ['unshare', '-p', '-f', '--mount-proc', '--kill-child', ...node]
    : node;
  const child = spawn(command as string, args, {
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

async function endChild(child: ChildProcess): Promise<void> {
  child.stdin?.end();
  await waitExit(child);
}

/** A pid no process has (above Linux's pid_max): a dead writer's description. */
const STALE_PID = 2 ** 30;

function description(pid: number): LockInfo {
  return {
    pid,
    startedAtMs: Date.now() - 60_000,
    hostname: os.hostname(),
    nonce: 'someone-else',
  };
}

async function lockedError(promise: Promise<unknown>): Promise<Error & { holderPid?: number }> {
  const error = await promise.then(
    async (lock) => {
      await (lock as { release(): Promise<void> }).release();
      return new Error('the lock was granted');
    },
    (e: unknown) => e as Error,
  );
  expect(isWalError(error, 'ERR_LOCKED'), String(error)).toBe(true);
  return error as Error & { holderPid?: number };
}

describe('the database lock (kernel advisory lock on <db>.lock)', () => {
  it('describes its holder in the file, and removes the file on release', async () => {
    const lock = await acquireLock(db);
    const info = decodeLockInfo(fs.readFileSync(lockPath(db)));
    expect(info?.pid).toBe(process.pid);
    expect(info?.hostname).toBe(os.hostname());
    expect(info?.nonce).toBe(lock.info?.nonce);
    await lock.release();
    expect(fs.existsSync(lockPath(db))).toBe(false);
  });

  it('refuses a second open in the same process, and allows it after release', async () => {
    const lock = await acquireLock(db);
    const error = await lockedError(acquireLock(db));
    expect(error.holderPid).toBe(process.pid);
    expect(error.message).toContain('already open here');
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
    const error = await lockedError(acquireLock(db));
    expect(error.holderPid).toBe(child.pid);
    expect(error.message).toContain(`process ${child.pid} on ${os.hostname()}`);
    await endChild(child);
    expect(child.exitCode).toBe(0);
    const lock = await acquireLock(db);
    await lock.release();
  });

  it('is free at once when its holder is SIGKILLed, though the file still names the dead holder', async () => {
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

  it('lets exactly one of several real processes take a free lock', async () => {
    fs.writeFileSync(lockPath(db), encodeLockInfo(description(STALE_PID)));
    const children = await Promise.all([1, 2, 3, 4].map(() => startChild('hold')));
    const winners = children.filter((c) => c.report.acquired);
    expect(winners).toHaveLength(1);
    for (const c of children) {
      if (!c.report.acquired) {
        expect(c.report.code).toBe('ERR_LOCKED');
        // The winner describes itself just after it takes the lock. A loser
        // that reads the file in between sees no holder (the file is being
        // rewritten) or the stale description written above: the documented
        // out-of-date window (docs/durability.md). It never names a loser.
        const named = c.report.holderPid;
        if (named !== undefined && named !== STALE_PID) {
          expect(named).toBe(winners[0]?.child.pid);
        }
      }
    }
    await Promise.all(children.map((c) => endChild(c.child)));
  });

  it('refuses while another process holds a lock whose file names our own pid', async () => {
    // In two containers both writers are pid 1: a lock naming "our" pid
    // belongs to someone else. The file says so; only the kernel decides.
    const { child, report } = await startChild('hold');
    expect(report.acquired).toBe(true);
    fs.writeFileSync(lockPath(db), encodeLockInfo(description(process.pid)));
    const error = await lockedError(acquireLock(db));
    expect(error.holderPid).toBe(process.pid);
    expect(error.message).not.toContain('already open here');
    await endChild(child);
  });

  it('refuses while a writer that stalled between creating the file and describing itself holds it', async () => {
    const { child, report } = await startChild('stall');
    expect(report.acquired).toBe(true);
    expect(fs.readFileSync(lockPath(db)).length).toBe(0);
    // Longer than any grace period a content-based lock would give the creator.
    const error = await lockedError(acquireLock(db, { lockTimeoutMs: 1500 }));
    expect(error.message).toContain('names no holder yet');
    await endChild(child);
    const lock = await acquireLock(db);
    await lock.release();
  });

  it('takes a leftover lock file of any content when nobody holds it (no pid is consulted)', async () => {
    for (const content of [
      encodeLockInfo(description(process.pid)),
      encodeLockInfo(description(1)),
      new Uint8Array(0),
      new TextEncoder().encode('garbage'),
    ]) {
      fs.writeFileSync(lockPath(db), content);
      const lock = await acquireLock(db);
      expect(decodeLockInfo(fs.readFileSync(lockPath(db)))?.nonce).toBe(lock.info?.nonce);
      await lock.release();
    }
  });

  describe.skipIf(!unshareWorks)(
    'across PID namespaces (skipped: `unshare -p -f --mount-proc` is not permitted here)',
    () => {
      it('refuses a writer in another PID namespace while one holds the lock (both are pid 1)', async () => {
        const first = await startChild('hold', { namespace: true });
        expect(first.report).toMatchObject({ acquired: true, pid: 1 });
        const second = await startChild('once', { namespace: true });
        await waitExit(second.child);
        expect(second.report).toMatchObject({
          acquired: false,
          code: 'ERR_LOCKED',
          holderPid: 1,
        });
        // And from the root namespace, where pid 1 is init (alive, not the holder).
        const error = await lockedError(acquireLock(db));
        expect(error.holderPid).toBe(1);
        await endChild(first.child);
        const again = await startChild('once', { namespace: true });
        await waitExit(again.child);
        expect(again.report.acquired).toBe(true);
      });

      it('frees the lock of a namespaced holder killed with its namespace', async () => {
        const first = await startChild('hold', { namespace: true });
        expect(first.report.acquired).toBe(true);
        first.child.kill('SIGKILL'); // --kill-child: the namespace's pid 1 dies with it
        await waitExit(first.child);
        const lock = await acquireLock(db, { lockTimeoutMs: 30_000 });
        await lock.release();
      });
    },
  );

  it('waits up to lockTimeoutMs for a holder to let go', async () => {
    const { child, report } = await startChild('hold');
    expect(report.acquired).toBe(true);
    const waiting = acquireLock(db, { lockTimeoutMs: 60_000 });
    let settled = false;
    void waiting.then(
      () => {
        settled = true;
      },
      () => {
        settled = true;
      },
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(settled).toBe(false);
    await endChild(child);
    const lock = await waiting;
    expect(lock.info?.pid).toBe(process.pid);
    await lock.release();
  });

  it('fails with ERR_LOCKED naming the holder once lockTimeoutMs has passed', async () => {
    const { child } = await startChild('hold');
    const error = await lockedError(acquireLock(db, { lockTimeoutMs: 30 }));
    expect(error.holderPid).toBe(child.pid);
    await endChild(child);
  });

  it('rejects a lockTimeoutMs that is not a non-negative integer', async () => {
    for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '10', 2 ** 40]) {
      const error = await acquireLock(db, { lockTimeoutMs: bad as number }).catch(
        (e: unknown) => e,
      );
      expect(isWalError(error, 'ERR_INVALID_ARGUMENT'), String(bad)).toBe(true);
    }
    expect(fs.existsSync(lockPath(db))).toBe(false);
  });

  it('lets readers share the lock, keeps the writer out while they read, and readers out while it writes', async () => {
    const reader = await startChild('shared');
    expect(reader.report.acquired).toBe(true);
    const second = await acquireLock(db, { kind: 'shared' });
    const writer = await lockedError(acquireLock(db));
    expect(writer.message).toContain('locked for reading');
    await second.release();
    await endChild(reader.child);
    const lock = await acquireLock(db);
    const refusedReader = await startChild('shared');
    await endChild(refusedReader.child);
    expect(refusedReader.report).toMatchObject({
      acquired: false,
      code: 'ERR_LOCKED',
      holderPid: process.pid,
    });
    await lock.release();
    expect(fs.existsSync(lockPath(db))).toBe(false);
  });

  it('leaves no lock file behind after a reader, and none where none can be created', async () => {
    const lock = await acquireLock(db, { kind: 'shared' });
    expect(lock.guarded).toBe(true);
    await lock.release();
    expect(fs.readdirSync(dir)).toEqual([]);
    const nowhere = await acquireLock(path.join(dir, 'missing', 'db'), { kind: 'shared' });
    expect(nowhere.guarded).toBe(false);
    await nowhere.release();
  });

  it('refuses a lock file that is a symlink, without touching its target', async () => {
    const target = path.join(dir, 'precious');
    fs.writeFileSync(target, 'keep me');
    fs.symlinkSync(target, lockPath(db));
    const error = await acquireLock(db).catch((e: unknown) => e);
    expect(isWalError(error, 'ERR_LOCK_IO')).toBe(true);
    expect(fs.readFileSync(target, 'utf8')).toBe('keep me');
    expect(fs.lstatSync(lockPath(db)).isSymbolicLink()).toBe(true);
  });

  it('refuses a lock file that is a FIFO instead of hanging', async () => {
    const made = spawnSync('mkfifo', [lockPath(db)]);
    expect(made.status).toBe(0);
    const error = await acquireLock(db).catch((e: unknown) => e);
    expect(isWalError(error, 'ERR_LOCK_IO')).toBe(true);
    const shared = await acquireLock(db, { kind: 'shared' }).catch((e: unknown) => e);
    expect(isWalError(shared, 'ERR_LOCK_IO')).toBe(true);
  });

  it('fails with ERR_LOCK_IO when the directory does not exist', async () => {
    const error = await acquireLock(path.join(dir, 'missing', 'db')).catch((e: unknown) => e);
    expect(isWalError(error, 'ERR_LOCK_IO')).toBe(true);
  });

  it('releases idempotently', async () => {
    const lock = await acquireLock(db);
    await lock.release();
    await lock.release();
    expect(lock.released).toBe(true);
    expect(fs.existsSync(lockPath(db))).toBe(false);
  });

  it('reads the holder without taking the lock, and tells a held lock from a leftover file', async () => {
    expect(await readLock(db)).toBeNull();
    const lock = await acquireLock(db);
    const seen = await readLock(db);
    expect(seen?.info?.pid).toBe(process.pid);
    expect(seen?.alive).toBe(true);
    await lock.release();
    const leftover = description(process.pid);
    fs.writeFileSync(lockPath(db), encodeLockInfo(leftover));
    expect(await readLock(db)).toEqual({ info: leftover, alive: false });
  });

  it('keeps a lock table of its own for a file system without kernel locks', async () => {
    const { tryLock: _none, ...withoutLocks } = nodeFileSystem;
    const plain: WalFileSystem = withoutLocks;
    const lock = await acquireLock(db, { fs: plain });
    const error = await lockedError(acquireLock(db, { fs: plain }));
    expect(error.message).toContain('already open here');
    await lockedError(acquireLock(db, { fs: plain, kind: 'shared' }));
    // Another (simulated) machine's disk has locks of its own.
    const other: WalFileSystem = { ...withoutLocks };
    const elsewhere = await acquireLock(db, { fs: other, kind: 'shared' });
    await elsewhere.release();
    await lock.release();
    expect(fs.existsSync(lockPath(db))).toBe(false);
    const again = await acquireLock(db, { fs: plain });
    await again.release();
  });

  it('decodes a description it encoded, and nothing else, without throwing', () => {
    const info = description(123);
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
