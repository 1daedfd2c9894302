/**
 * The length of a file that may not exist yet (`storage/file-size.ts`): the
 * store asks it of its database file, a restore of its target. Only a
 * regular file has a length here; anything else is refused with a typed
 * error, and the store keeps reporting that as its own I/O error.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { isWalError } from '../../src/errors.js';
import { NotRegularFileError, WalIoError } from '../../src/storage/errors.js';
import { fileSize } from '../../src/storage/file-size.js';
import { nodeFileSystem, type WalFileSystem } from '../../src/storage/fs.js';
import { PageStore } from '../../src/store/page-store.js';
import { useTempDb } from '../support/temp-db.js';

let dir: string;
let db: string;
useTempDb('db', (paths) => {
  dir = paths.dir;
  db = paths.db;
});

describe('fileSize', () => {
  it('is null when nothing is there, and the length of a regular file', async () => {
    expect(await fileSize(db, nodeFileSystem)).toBeNull();
    fs.writeFileSync(db, new Uint8Array(1234));
    expect(await fileSize(db, nodeFileSystem)).toBe(1234);
    fs.writeFileSync(db, '');
    expect(await fileSize(db, nodeFileSystem)).toBe(0);
  });

  it('refuses a directory and a FIFO as not regular files, without opening them', async () => {
    const directory = await fileSize(dir, nodeFileSystem).catch((e: unknown) => e);
    expect(directory).toBeInstanceOf(NotRegularFileError);
    expect((directory as NotRegularFileError).fileType).toBe('directory');
    expect((directory as NotRegularFileError).path).toBe(dir);
    const fifo = path.join(dir, 'fifo');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    // A FIFO with no writer would block an open forever; stat does not open.
    const special = await fileSize(fifo, nodeFileSystem).catch((e: unknown) => e);
    expect(special).toBeInstanceOf(NotRegularFileError);
    expect((special as NotRegularFileError).fileType).toBe('special file');
  });

  it('reports a failed stat as ERR_IO naming the path and the system code', async () => {
    const denied = Object.assign(new Error('permission denied'), { code: 'EACCES' });
    const failing: WalFileSystem = {
      ...nodeFileSystem,
      stat: () => Promise.reject(denied),
    };
    const error = await fileSize(db, failing).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WalIoError);
    expect((error as WalIoError).errno).toBe('EACCES');
    expect((error as WalIoError).path).toBe(db);
    expect((error as WalIoError).cause).toBe(denied);
  });
});

describe('the store over fileSize', () => {
  it('keeps its own I/O code for a database path that is not a regular file', async () => {
    expect(spawnSync('mkfifo', [db]).status).toBe(0);
    const error = await PageStore.open(db, { pageSize: 512 }).catch((e: unknown) => e);
    expect(isWalError(error, 'ERR_STORE_IO'), String(error)).toBe(true);
    expect(String(error)).toContain('not a regular file');
    expect((error as Error).cause).toBeInstanceOf(NotRegularFileError);
  });
});
