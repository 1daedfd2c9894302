/**
 * better-sqlite3@12, `journal_mode=WAL`, `synchronous=FULL`, one transaction per commit.
 *
 * SQLite's WAL default `synchronous=NORMAL` does not sync the WAL at commit: a power loss can drop
 * acknowledged commits. FULL syncs the WAL on every commit, which is the durable setting.
 * The API is synchronous: one commit at a time per connection, so N async committers on one
 * thread run one after another (effective concurrency 1). Worker threads each open their own
 * connection; SQLite then serialises them on its write lock (busy handler with `busy_timeout`).
 */
import path from 'node:path';
import { keyOf, pageImage } from '../lib/common.js';
import {
  loadPeer,
  packageVersion,
  type SystemDef,
  VerifyTally,
  type WorkerStore,
} from '../lib/system.js';

interface Statement {
  run(...params: unknown[]): unknown;
  get(...params: unknown[]): unknown;
}
interface Database {
  pragma(source: string, options?: { simple?: boolean }): unknown;
  exec(source: string): void;
  prepare(source: string): Statement;
  transaction<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void;
  close(): void;
}
type DatabaseCtor = new (file: string, options?: { timeout?: number }) => Database;

const dbFile = (dir: string): string => path.join(dir, 'bench.sqlite');

async function connect(dir: string): Promise<Database> {
  const { default: Sqlite } = await loadPeer<{ default: DatabaseCtor }>('better-sqlite3');
  const db = new Sqlite(dbFile(dir), { timeout: 120_000 });
  const mode = db.pragma('journal_mode = WAL', { simple: true });
  db.pragma('synchronous = FULL');
  const sync = db.pragma('synchronous', { simple: true });
  if (mode !== 'wal' || sync !== 2) {
    throw new Error(`sqlite not durable as configured: journal_mode=${mode} synchronous=${sync}`);
  }
  db.exec('CREATE TABLE IF NOT EXISTS pages (k INTEGER PRIMARY KEY, v BLOB NOT NULL)');
  return db;
}

function writer(db: Database): WorkerStore {
  const insert = db.prepare('INSERT INTO pages (k, v) VALUES (?, ?)');
  const txn = db.transaction((id: number, pages: Buffer[]) => {
    for (let i = 0; i < pages.length; i++) insert.run(keyOf(id, i), pages[i]);
  });
  return {
    commit: (id, pages) => {
      txn(id, pages);
    },
    close: async () => db.close(),
  };
}

export const sqlite: SystemDef = {
  name: 'sqlite',
  label: 'better-sqlite3',
  settings: 'WAL, synchronous=FULL, 1 txn/commit',
  supportsWorkers: true,
  async versions() {
    const { default: Sqlite } = await loadPeer<{ default: DatabaseCtor }>('better-sqlite3');
    const db = new Sqlite(':memory:');
    const v = (db.prepare('SELECT sqlite_version() AS v').get() as { v: string }).v;
    db.close();
    return { 'better-sqlite3': packageVersion('better-sqlite3'), sqlite: v };
  },
  effectiveConcurrency(committers, workers) {
    if (committers <= 1 && workers <= 1) return { n: 1 };
    return {
      n: 1,
      note: 'synchronous API: one commit at a time per connection; connections serialise on the write lock',
    };
  },
  async open(dir) {
    return writer(await connect(dir));
  },
  async openWorker(dir) {
    return writer(await connect(dir));
  },
  async verify(dir, acked, pages) {
    const db = await connect(dir);
    const select = db.prepare('SELECT v FROM pages WHERE k = ?');
    const tally = new VerifyTally();
    for (const id of acked) {
      let ok = true;
      for (let i = 0; i < pages && ok; i++) {
        const row = select.get(keyOf(id, i)) as { v: Buffer } | undefined;
        ok = row !== undefined && Buffer.compare(row.v, pageImage(id, i)) === 0;
      }
      tally.check(ok, () => `commit ${id} missing or different`);
    }
    db.close();
    return tally;
  },
};
