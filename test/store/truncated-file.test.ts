import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isWalError } from '../../src/errors.js';
import { nodeFileSystem } from '../../src/storage/fs.js';
import { listSegments } from '../../src/storage/segment-files.js';
import { readStoreHeader } from '../../src/store/header.js';
import { PageStore } from '../../src/store/page-store.js';
import { runCliCaptured as cli } from '../support/cli.js';
import { useTempDb } from '../support/temp-db.js';

let db: string;
useTempDb('db', (paths) => {
  db = paths.db;
});

const PAGE = 512;
const page = (fill: number) => new Uint8Array(PAGE).fill(fill);

/** A database of three checkpointed pages (store closed, log empty). */
async function threeCheckpointedPages(): Promise<void> {
  const store = await PageStore.open(db, { pageSize: PAGE, autoCheckpoint: false });
  await store.commit([
    { pageNumber: 1, data: page(1) },
    { pageNumber: 2, data: page(2) },
    { pageNumber: 3, data: page(3) },
  ]);
  await store.close({ checkpoint: true });
  expect(fs.statSync(db).size).toBe(3 * PAGE);
  expect(await listSegments(db)).toEqual([]);
}

async function openError(): Promise<unknown> {
  return PageStore.open(db, { pageSize: PAGE }).then(
    async (store) => {
      await store.close();
      return null;
    },
    (error: unknown) => error,
  );
}

describe('a database file shorter than its store header', () => {
  it('fails closed at open with ERR_STORE_FILE_TRUNCATED naming the missing pages, and changes nothing', async () => {
    await threeCheckpointedPages();
    fs.truncateSync(db, PAGE);
    const error = await openError();
    expect(isWalError(error, 'ERR_STORE_FILE_TRUNCATED'), String(error)).toBe(true);
    expect((error as Error).message).toContain('pages 2..3 are missing');
    // Nothing was "repaired" into zeros: file and header as they were.
    expect(fs.statSync(db).size).toBe(PAGE);
    expect((await readStoreHeader(db, nodeFileSystem))?.dbSizePages).toBe(3);
    // Every open fails the same way; the lock was released each time.
    expect(isWalError(await openError(), 'ERR_STORE_FILE_TRUNCATED')).toBe(true);
  });

  it('counts a partial last page as missing', async () => {
    await threeCheckpointedPages();
    fs.truncateSync(db, 2 * PAGE + PAGE / 2);
    const error = await openError();
    expect(isWalError(error, 'ERR_STORE_FILE_TRUNCATED'), String(error)).toBe(true);
    expect((error as Error).message).toContain('pages 3..3 are missing');
  });

  it('opens the state a crash leaves mid-checkpoint: file cut by a shrink whose segments are still above the header', async () => {
    await threeCheckpointedPages();
    const store = await PageStore.open(db, { pageSize: PAGE, autoCheckpoint: false });
    await store.commit([{ pageNumber: 1, data: page(9) }], { dbSizePages: 1 });
    await store.close();
    // What a checkpoint folding that commit does first (cut the file to the
    // smallest size reached) before a power cut stops it ahead of the header.
    fs.truncateSync(db, PAGE);
    const again = await PageStore.open(db, { pageSize: PAGE });
    expect(again.dbSizePages).toBe(1);
    expect(await again.read(1)).toEqual(page(9));
    await again.close();
  });

  it('pwal verify exits 1 with the same code and message, and 0 for the crash state opening accepts', async () => {
    await threeCheckpointedPages();
    const healthy = await cli('verify', db);
    expect(healthy.code).toBe(0);
    fs.truncateSync(db, PAGE);
    const truncated = await cli('verify', db);
    expect(truncated.code).toBe(1);
    expect(truncated.out).toContain('ERR_STORE_FILE_TRUNCATED');
    expect(truncated.out).toContain('pages 2..3 are missing');

    fs.rmSync(db);
    fs.rmSync(`${db}-pwal-store`);
    await threeCheckpointedPages();
    const store = await PageStore.open(db, { pageSize: PAGE, autoCheckpoint: false });
    await store.commit([{ pageNumber: 1, data: page(9) }], { dbSizePages: 1 });
    await store.close();
    fs.truncateSync(db, PAGE);
    const midCheckpoint = await cli('verify', db);
    expect(midCheckpoint.out).not.toContain('ERR_STORE_FILE_TRUNCATED');
    expect(midCheckpoint.code).toBe(0);
  });
});
