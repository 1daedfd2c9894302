/**
 * rocksdb@5 (the `rocksdb` leveldown binding), one `batch(ops, { sync: true }, cb)` per commit.
 *
 * Like classic-level: batches run on libuv's thread pool, RocksDB groups concurrent writers
 * into one WAL write + sync, and one process holds the database's LOCK (no worker threads).
 */

import path from 'node:path';
import { promisify } from 'node:util';
import { pageImage } from '../lib/common.js';
import { loadPeer, packageVersion, type SystemDef, VerifyTally } from '../lib/system.js';
import { binaryKey, threadPoolSize } from './level.js';

type Callback<T = void> = (err: Error | null | undefined, value?: T) => void;
interface RocksDb {
  open(options: { createIfMissing: boolean; compression: boolean }, cb: Callback): void;
  batch(
    ops: { type: 'put'; key: Buffer; value: Buffer }[],
    options: { sync: boolean },
    cb: Callback,
  ): void;
  get(key: Buffer, options: { asBuffer: boolean }, cb: Callback<Buffer>): void;
  close(cb: Callback): void;
}
type RocksFactory = (location: string) => RocksDb;

async function openDb(dir: string): Promise<RocksDb> {
  const { default: rocks } = await loadPeer<{ default: RocksFactory }>('rocksdb');
  const db = rocks(path.join(dir, 'bench.rocksdb'));
  await promisify(db.open.bind(db))({ createIfMissing: true, compression: false });
  return db;
}

export const rocksdb: SystemDef = {
  name: 'rocksdb',
  label: 'rocksdb@5',
  settings: 'batch({ sync: true })',
  supportsWorkers: false,
  async versions() {
    return { rocksdb: packageVersion('rocksdb') };
  },
  effectiveConcurrency(committers) {
    const pool = threadPoolSize();
    if (committers <= pool) return { n: committers };
    return { n: pool, note: `batches run on libuv's pool of ${pool} threads` };
  },
  async open(dir) {
    const db = await openDb(dir);
    const batch = promisify(db.batch.bind(db));
    return {
      commit: async (id, pages) => {
        const ops = pages.map((value, i) => ({
          type: 'put' as const,
          key: binaryKey(id, i),
          value,
        }));
        await batch(ops, { sync: true });
      },
      close: () => promisify(db.close.bind(db))(),
    };
  },
  async verify(dir, acked, pages) {
    const db = await openDb(dir);
    const get = promisify(db.get.bind(db)) as (
      key: Buffer,
      options: { asBuffer: boolean },
    ) => Promise<Buffer | undefined>;
    const tally = new VerifyTally();
    for (const id of acked) {
      let ok = true;
      for (let i = 0; i < pages && ok; i++) {
        const v = await get(binaryKey(id, i), { asBuffer: true }).catch(() => undefined);
        ok = v !== undefined && Buffer.compare(v, pageImage(id, i)) === 0;
      }
      tally.check(ok, () => `commit ${id} missing or different`);
    }
    await promisify(db.close.bind(db))();
    return tally;
  },
};
