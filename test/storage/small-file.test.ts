import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { isWalError } from '../../src/errors.js';
import {
  type ReplicationState,
  readReplicationState,
  replicationStatePath,
  writeReplicationState,
} from '../../src/replication/state-file.js';
import { WalIoError } from '../../src/storage/errors.js';
import { nodeFileSystem, type WalFileSystem } from '../../src/storage/fs.js';
import { smallFileTempPath, writeFileDurably } from '../../src/storage/small-file.js';
import {
  readStoreHeader,
  type StoreHeader,
  storeHeaderPath,
  writeStoreHeader,
} from '../../src/store/header.js';
import { PageStore } from '../../src/store/page-store.js';
import { seededRng } from '../support/rng.js';
import { type CrashModel, SimulatedFileSystem } from '../support/simulated-fs.js';
import { useTempDb } from '../support/temp-db.js';

let dir: string;
let db: string;
useTempDb('db', (paths) => {
  dir = paths.dir;
  db = paths.db;
});

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (data: Uint8Array | null) => (data === null ? null : new TextDecoder().decode(data));

const HEADER: StoreHeader = {
  pageSize: 512,
  dbSizePages: 3,
  nextEpoch: 7n,
  checkpointCommitSeq: 9n,
};

/** Records the file-system calls (by kind and base name) of the real disk. */
function recordingFs(calls: string[]): WalFileSystem {
  const base = nodeFileSystem;
  return {
    ...base,
    async open(p, mode) {
      calls.push(`open ${path.basename(p)} ${mode}`);
      const h = await base.open(p, mode);
      return {
        path: h.path,
        write: async (d, pos) => {
          calls.push('write');
          await h.write(d, pos);
        },
        writev: (c, pos) => h.writev(c, pos),
        read: (i, pos, l) => h.read(i, pos, l),
        datasync: async () => {
          calls.push('datasync');
          await h.datasync();
        },
        sync: async () => {
          calls.push('sync');
          await h.sync();
        },
        truncate: (l) => h.truncate(l),
        size: () => h.size(),
        close: async () => {
          calls.push('close');
          await h.close();
        },
      };
    },
    async unlink(p) {
      calls.push(`unlink ${path.basename(p)}`);
      await base.unlink(p);
    },
    async rename(from, to) {
      calls.push(`rename ${path.basename(from)} ${path.basename(to)}`);
      await base.rename(from, to);
    },
    async syncDirectory(d) {
      calls.push(`syncDirectory ${d === dir ? 'dir' : d}`);
      await base.syncDirectory(d);
    },
  };
}

describe('writing a small file durably', () => {
  it('a planted <db>-pwal-store.tmp symlink neither redirects the header write nor becomes the header', async () => {
    const target = path.join(dir, 'victim');
    fs.writeFileSync(target, 'precious');
    fs.symlinkSync(target, `${storeHeaderPath(db)}.tmp`);
    const store = await PageStore.open(db, { pageSize: 512 });
    await store.commit([{ pageNumber: 1, data: new Uint8Array(512).fill(1) }]);
    await store.checkpoint(); // writes the header
    await store.close();
    expect(fs.readFileSync(target, 'utf8')).toBe('precious');
    expect(fs.lstatSync(storeHeaderPath(db)).isFile()).toBe(true);
    expect(fs.existsSync(`${storeHeaderPath(db)}.tmp`)).toBe(false);
    expect((await readStoreHeader(db, nodeFileSystem))?.dbSizePages).toBe(1);
  });

  it('replaces a header that is itself a symlink by a regular file, leaving the target alone', async () => {
    const target = path.join(dir, 'elsewhere');
    fs.writeFileSync(target, 'not a header');
    fs.symlinkSync(target, storeHeaderPath(db));
    await writeStoreHeader(db, HEADER, nodeFileSystem);
    expect(fs.readFileSync(target, 'utf8')).toBe('not a header');
    expect(fs.lstatSync(storeHeaderPath(db)).isFile()).toBe(true);
    expect(await readStoreHeader(db, nodeFileSystem)).toEqual(HEADER);
  });

  it('takes the steps in order: remove stale temp, create exclusively, write, fdatasync, rename, fsync the directory', async () => {
    const calls: string[] = [];
    const file = path.join(dir, 'state');
    fs.writeFileSync(smallFileTempPath(file), 'left by a crash');
    await writeFileDurably(file, bytes('new'), recordingFs(calls));
    expect(calls).toEqual([
      'unlink state.tmp',
      'open state.tmp createExclusive',
      'write',
      'datasync',
      'close',
      'rename state.tmp state',
      'syncDirectory dir',
    ]);
    expect(fs.readFileSync(file, 'utf8')).toBe('new');
    expect(fs.readdirSync(dir)).toEqual(['state']);
  });

  it('removes a FIFO planted under the temporary name instead of blocking on it', async () => {
    const file = path.join(dir, 'state');
    expect(spawnSync('mkfifo', [smallFileTempPath(file)]).status).toBe(0);
    await writeFileDurably(file, bytes('new'));
    expect(fs.readFileSync(file, 'utf8')).toBe('new');
    expect(fs.readdirSync(dir)).toEqual(['state']);
  });

  it('keeps the old contents and no temporary file when fdatasync fails, with a typed error', async () => {
    const file = path.join(dir, 'state');
    fs.writeFileSync(file, 'old');
    const failing: WalFileSystem = {
      ...nodeFileSystem,
      async open(p, mode) {
        const h = await nodeFileSystem.open(p, mode);
        return {
          ...h,
          path: h.path,
          write: (d, pos) => h.write(d, pos),
          writev: (c, pos) => h.writev(c, pos),
          read: (i, pos, l) => h.read(i, pos, l),
          sync: () => h.sync(),
          truncate: (l) => h.truncate(l),
          size: () => h.size(),
          close: () => h.close(),
          datasync: async () => {
            throw Object.assign(new Error('EIO'), { code: 'EIO' });
          },
        };
      },
    };
    const error = await writeFileDurably(file, bytes('new'), failing).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WalIoError);
    expect((error as WalIoError).errno).toBe('EIO');
    expect((error as WalIoError).syscall).toBe('datasync');
    expect(fs.readFileSync(file, 'utf8')).toBe('old');
    expect(fs.readdirSync(dir)).toEqual(['state']);
  });

  it('serializes overlapping replacements of one file: both finish, the later one wins', async () => {
    const file = path.join(dir, 'state');
    await Promise.all([
      writeFileDurably(file, bytes('first')),
      writeFileDurably(file, bytes('second')),
      writeFileDurably(file, bytes('third')),
    ]);
    expect(fs.readFileSync(file, 'utf8')).toBe('third');
    expect(fs.readdirSync(dir)).toEqual(['state']);
  });

  it('refuses a file beyond the small-file limit', async () => {
    const error = await writeFileDurably(
      path.join(dir, 'big'),
      new Uint8Array(2 * 1024 * 1024),
    ).catch((e: unknown) => e);
    expect(isWalError(error, 'ERR_INVALID_ARGUMENT')).toBe(true);
  });

  it('shows the old or the new contents after a power cut at every step, and the new once it returned', async () => {
    const models: CrashModel[] = [{}, { dirOps: 'prefix' }, { data: 'dropAll', dirOps: 'dropAll' }];
    let steps = 0;
    {
      const probe = new SimulatedFileSystem();
      probe.mkdirSync('/d');
      probe.writeFileSync('/d/f', bytes('old'), { durable: true });
      const before = probe.stepCount;
      await writeFileDurably('/d/f', bytes('new'), probe);
      steps = probe.stepCount - before;
    }
    expect(steps).toBeGreaterThan(5);
    let cuts = 0;
    for (const model of models) {
      for (let cut = 1; cut <= steps + 1; cut++) {
        for (let seed = 0; seed < 4; seed++) {
          const disk = new SimulatedFileSystem();
          disk.mkdirSync('/d');
          disk.writeFileSync('/d/f', bytes('old'), { durable: true });
          disk.writeFileSync('/d/f.tmp', bytes('stale'), { durable: true });
          disk.armPowerCut(disk.stepCount + cut, seededRng(seed), model);
          const returned = await writeFileDurably('/d/f', bytes('new'), disk).then(
            () => !disk.dead,
            () => false,
          );
          const after = disk.crashedDisk ?? disk.powerCut(seededRng(seed), model);
          const seen = text(after.readFileSync('/d/f'));
          if (returned) expect(seen, `cut ${cut} seed ${seed}`).toBe('new');
          else expect(['old', 'new'], `cut ${cut} seed ${seed}`).toContain(seen);
          cuts++;
        }
      }
    }
    expect(cuts).toBe(models.length * (steps + 1) * 4);
  });

  it('writes the replication state through the same protection', async () => {
    const statePath = replicationStatePath(db);
    const target = path.join(dir, 'victim');
    fs.writeFileSync(target, 'precious');
    fs.symlinkSync(target, smallFileTempPath(statePath));
    const state: ReplicationState = {
      databaseId: 'db-1',
      stream: 's',
      subject: 's.x',
      replicatedEpoch: 4n,
      streamSeq: 11,
      updatedAt: new Date(0).toISOString(),
    };
    await writeReplicationState(db, state);
    expect(fs.readFileSync(target, 'utf8')).toBe('precious');
    expect(fs.lstatSync(statePath).isFile()).toBe(true);
    expect((await readReplicationState(db))?.streamSeq).toBe(11);
  });
});
