import { describe, expect, it } from 'vitest';
import { ParallelWal } from '../../src/engine/wal.js';
import { isWalError } from '../../src/errors.js';
import { PageStore } from '../../src/store/page-store.js';
import { runCliCaptured as cli } from '../support/cli.js';
import { useTempDb } from '../support/temp-db.js';
import { batchFor } from '../support/wal-workload.js';

let db: string;
useTempDb('db', (paths) => {
  db = paths.db;
});

async function settledAfterClose<T extends { close(): Promise<unknown> }>(
  holder: T,
  waiting: Promise<{ close(): Promise<unknown> }>,
): Promise<void> {
  let settled = false;
  void waiting.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  // Several event-loop turns: the waiter is still polling, not failed.
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setTimeout(resolve, 10));
  expect(settled).toBe(false);
  await holder.close();
  const opened = await waiting;
  await opened.close();
}

describe('lockTimeoutMs (open waits for the lock like SQLite busy_timeout)', () => {
  it('ParallelWal.open fails at once by default, naming the holder', async () => {
    const first = await ParallelWal.open(db);
    const error = await ParallelWal.open(db).catch((e: unknown) => e);
    expect(isWalError(error, 'ERR_LOCKED')).toBe(true);
    expect(String(error)).toContain(`this process (${process.pid}): it is already open here`);
    await first.close();
  });

  it('ParallelWal.open waits for the holder to close', async () => {
    const first = await ParallelWal.open(db);
    await settledAfterClose(first, ParallelWal.open(db, { lockTimeoutMs: 60_000 }));
  });

  it('PageStore.open waits for the holder to close, and gives up with ERR_LOCKED after the timeout', async () => {
    const first = await PageStore.open(db, { pageSize: 512 });
    const error = await PageStore.open(db, { lockTimeoutMs: 20 }).catch((e: unknown) => e);
    expect(isWalError(error, 'ERR_LOCKED')).toBe(true);
    await settledAfterClose(first, PageStore.open(db, { lockTimeoutMs: 60_000 }));
  });

  it('rejects a bad lockTimeoutMs before touching the lock', async () => {
    for (const bad of [-5, 0.5, Number.NaN]) {
      const wal = await ParallelWal.open(db, { lockTimeoutMs: bad }).catch((e: unknown) => e);
      expect(isWalError(wal, 'ERR_INVALID_ARGUMENT'), String(bad)).toBe(true);
      const store = await PageStore.open(db, { lockTimeoutMs: bad }).catch((e: unknown) => e);
      expect(isWalError(store, 'ERR_INVALID_ARGUMENT'), String(bad)).toBe(true);
    }
  });

  it('pwal verify reads under a shared lock: refused while a writer holds the log, fine after', async () => {
    const wal = await ParallelWal.open(db, { segmentSink: 'storage' });
    await wal.commit(
      batchFor({ seed: 1, writers: 1, commitsPerWriter: 1, burstChance: 0, maxPageBytes: 64 }, 1n),
    );
    const live = await cli('verify', db);
    expect(live.code).toBe(1);
    expect(live.err).toContain('ERR_LOCKED');
    expect(live.err).toContain(`(${process.pid})`);
    await wal.close();
    const quiet = await cli('verify', db);
    expect(quiet.code).toBe(0);
    // And a writer may open while no verify runs: the reader left no lock behind.
    const again = await ParallelWal.open(db);
    await again.close();
  });
});
