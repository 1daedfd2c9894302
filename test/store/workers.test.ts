import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { PageStore } from '../../src/store/page-store.js';
import { useTempDb } from '../support/temp-db.js';

const entry = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  'support/store-worker-entry.mjs',
);
const PAGE = 512;
let db: string;
useTempDb('db', (paths) => {
  db = paths.db;
});

/** Runs a store worker; `onAck` runs on the owner thread after each of its acknowledgements. */
function runWorker(
  store: PageStore,
  base: number,
  count: number,
  onAck: (i: number) => Promise<void>,
): Promise<string | null> {
  const handle = store.workerHandle();
  const worker = new Worker(entry, {
    workerData: { handle, base, count, pageSize: PAGE },
    transferList: [handle.lane.port],
  });
  return new Promise((resolve, reject) => {
    let chain = Promise.resolve();
    worker.on('message', (m: { ack?: number; done?: boolean; refused?: string | null }) => {
      if (m.ack !== undefined) {
        const i = m.ack;
        chain = chain.then(() => onAck(i));
      }
      if (m.done) chain.then(() => resolve(m.refused ?? null), reject);
    });
    worker.on('error', reject);
  });
}

describe('PageStore with worker-thread writers', () => {
  it('shows a worker commit to owner reads once the worker saw it durable, and keeps it across checkpoint and reopen', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE, autoCheckpoint: false, slotCount: 2 });
    const seen: number[] = [];
    const checks = async (i: number, base: number) => {
      // The worker's commit i is durable: the owner must read it (or something newer).
      const first = (await store.read(base + 1))[0]!;
      expect(first).toBeGreaterThanOrEqual(i);
      seen.push(first);
    };
    const owner = (async () => {
      for (let n = 1; n <= 30; n++) {
        await store.commit([{ pageNumber: 100, data: new Uint8Array(PAGE).fill(n) }]);
        if (n % 10 === 0) await store.checkpoint();
      }
    })();
    const [refusedA, refusedB] = await Promise.all([
      runWorker(store, 0, 40, (i) => checks(i, 0)),
      runWorker(store, 10, 40, (i) => checks(i, 10)),
      owner,
    ]);
    expect(refusedA).toBe('ERR_INVALID_ARGUMENT');
    expect(refusedB).toBe('ERR_INVALID_ARGUMENT');
    expect(seen.length).toBe(80);
    expect(store.stats().epochsIngested).toBeGreaterThan(0);
    const expectFinal = async (s: PageStore) => {
      for (const base of [0, 10]) {
        expect(await s.read(base + 1)).toEqual(new Uint8Array(PAGE).fill(40));
        expect(await s.read(base + 2)).toEqual(new Uint8Array(PAGE).fill(255 - 40));
      }
      expect(await s.read(100)).toEqual(new Uint8Array(PAGE).fill(30));
      expect(s.dbSizePages).toBe(100);
    };
    await expectFinal(store);
    await store.checkpoint();
    await expectFinal(store);
    await store.close();
    const again = await PageStore.open(db);
    await expectFinal(again);
    await again.close();
  });
});
