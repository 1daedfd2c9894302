/**
 * lmdb (lmdb-js), durable: each commit awaits its write promise and then `db.flushed`.
 *
 * lmdb-js batches every write issued in one event turn into one LMDB transaction and, with
 * `overlappingSync` (its Linux default), syncs after the commit; `flushed` resolves once that
 * sync is done. A commit of several pages issues its puts in one turn, so they share one
 * transaction (atomic). LMDB has one writer per environment: worker threads open the same
 * environment and take turns on its write lock.
 */
import path from 'node:path';
import { keyOf, pageImage } from '../lib/common.js';
import {
  loadPeer,
  type OpenStore,
  packageVersion,
  type SystemDef,
  VerifyTally,
  type WorkerStore,
} from '../lib/system.js';

interface LmdbDatabase {
  put(key: number, value: Buffer): Promise<boolean>;
  get(key: number): Buffer | undefined;
  readonly flushed: Promise<unknown>;
  close(): Promise<void>;
}
interface LmdbModule {
  open(options: { path: string; encoding: 'binary'; compression: boolean }): LmdbDatabase;
}

async function openDb(dir: string): Promise<LmdbDatabase> {
  const lmdb = await loadPeer<LmdbModule>('lmdb');
  return lmdb.open({ path: path.join(dir, 'bench.lmdb'), encoding: 'binary', compression: false });
}

function writer(db: LmdbDatabase): WorkerStore & OpenStore {
  return {
    commit: async (id, pages) => {
      // All puts issued in this synchronous loop land in one transaction (event-turn batching).
      const puts: Promise<boolean>[] = [];
      for (let i = 0; i < pages.length; i++) puts.push(db.put(keyOf(id, i), pages[i]!));
      await Promise.all(puts);
      await db.flushed;
    },
    close: () => db.close(),
  };
}

export const lmdb: SystemDef = {
  name: 'lmdb',
  label: 'lmdb',
  settings: 'await put + db.flushed (overlappingSync)',
  supportsWorkers: true,
  async versions() {
    return { lmdb: packageVersion('lmdb') };
  },
  effectiveConcurrency(committers, workers) {
    if (workers > 1) {
      return {
        n: committers * workers,
        note: 'one writer per environment: threads take turns on the write lock; each turn batches',
      };
    }
    return { n: committers, note: 'writes of one event turn share one transaction + sync' };
  },
  async open(dir) {
    return writer(await openDb(dir));
  },
  async openWorker(dir) {
    return writer(await openDb(dir));
  },
  async verify(dir, acked, pages) {
    const db = await openDb(dir);
    const tally = new VerifyTally();
    for (const id of acked) {
      let ok = true;
      for (let i = 0; i < pages && ok; i++) {
        const v = db.get(keyOf(id, i));
        ok = v !== undefined && Buffer.compare(v, pageImage(id, i)) === 0;
      }
      tally.check(ok, () => `commit ${id} missing or different`);
    }
    await db.close();
    return tally;
  },
};
