/**
 * classic-level (LevelDB), one `batch(ops, { sync: true })` per commit.
 *
 * Each batch runs on libuv's thread pool (4 threads unless UV_THREADPOOL_SIZE says otherwise);
 * LevelDB groups the writers queued at the same moment into one log write + one sync, so the
 * concurrency it sees is bounded by the pool size. One process holds the database's LOCK:
 * worker threads of one process cannot open it a second time.
 */
import path from 'node:path';
import { keyOf, pageImage } from '../lib/common.js';
import { loadPeer, packageVersion, type SystemDef, VerifyTally } from '../lib/system.js';

interface BatchOp {
  type: 'put';
  key: Buffer;
  value: Buffer;
}
interface ClassicLevelDb {
  open(): Promise<void>;
  batch(ops: BatchOp[], options: { sync: boolean }): Promise<void>;
  get(key: Buffer): Promise<Buffer | undefined>;
  close(): Promise<void>;
}
type ClassicLevelCtor = new (
  location: string,
  options: { keyEncoding: 'buffer'; valueEncoding: 'buffer' },
) => ClassicLevelDb;

/** An 8-byte big-endian key, so keys sort in commit order. */
export function binaryKey(id: number, index: number): Buffer {
  const k = Buffer.allocUnsafe(8);
  k.writeDoubleBE(keyOf(id, index), 0);
  return k;
}

export function threadPoolSize(): number {
  return Number(process.env.UV_THREADPOOL_SIZE ?? 4);
}

async function openDb(dir: string): Promise<ClassicLevelDb> {
  const { ClassicLevel } = await loadPeer<{ ClassicLevel: ClassicLevelCtor }>('classic-level');
  const db = new ClassicLevel(path.join(dir, 'bench.leveldb'), {
    keyEncoding: 'buffer',
    valueEncoding: 'buffer',
  });
  await db.open();
  return db;
}

export const level: SystemDef = {
  name: 'level',
  label: 'classic-level',
  settings: 'batch({ sync: true })',
  supportsWorkers: false,
  async versions() {
    return { 'classic-level': packageVersion('classic-level') };
  },
  effectiveConcurrency(committers) {
    const pool = threadPoolSize();
    if (committers <= pool) return { n: committers };
    return { n: pool, note: `batches run on libuv's pool of ${pool} threads` };
  },
  async open(dir) {
    const db = await openDb(dir);
    return {
      commit: async (id, pages) => {
        const ops: BatchOp[] = pages.map((value, i) => ({
          type: 'put',
          key: binaryKey(id, i),
          value,
        }));
        await db.batch(ops, { sync: true });
      },
      close: () => db.close(),
    };
  },
  async verify(dir, acked, pages) {
    const db = await openDb(dir);
    const tally = new VerifyTally();
    for (const id of acked) {
      let ok = true;
      for (let i = 0; i < pages && ok; i++) {
        const v = await db.get(binaryKey(id, i));
        ok = v !== undefined && Buffer.compare(v, pageImage(id, i)) === 0;
      }
      tally.check(ok, () => `commit ${id} missing or different`);
    }
    await db.close();
    return tally;
  },
};
