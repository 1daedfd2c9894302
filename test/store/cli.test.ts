import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { listSegments } from '../../src/storage/segment-files.js';
import { describeStore, formatStoreDescription } from '../../src/store/describe.js';
import { PageStore } from '../../src/store/page-store.js';
import { runCliCaptured as cli } from '../support/cli.js';
import { useTempDb } from '../support/temp-db.js';

let dir: string;
let db: string;
useTempDb('db', (paths) => {
  dir = paths.dir;
  db = paths.db;
});

const PAGE = 512;
const page = (fill: number) => new Uint8Array(PAGE).fill(fill);

/** A database whose log holds `commits` unapplied commits (closed without checkpoint). */
async function withLog(commits: number): Promise<void> {
  const store = await PageStore.open(db, { pageSize: PAGE, autoCheckpoint: false });
  for (let i = 1; i <= commits; i++) await store.commit([{ pageNumber: i, data: page(i) }]);
  await store.close();
}

describe('pwal checkpoint', () => {
  it('folds the log into the file and deletes the applied segments', async () => {
    await withLog(4);
    expect((await listSegments(db)).length).toBeGreaterThan(1);
    const { code, out } = await cli('checkpoint', db, '--json');
    expect(code).toBe(0);
    const summary = JSON.parse(out);
    expect(summary.dbSizePages).toBe(4);
    expect(summary.pagesWritten).toBe(4);
    expect((await listSegments(db)).length).toBe(0);
    const bytes = fs.readFileSync(db);
    expect(bytes.length).toBe(4 * PAGE);
    expect(bytes[3 * PAGE]).toBe(4);
  });

  it('fails with ERR_LOCKED while the database is open', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE });
    const { code, err } = await cli('checkpoint', db);
    expect(code).toBe(1);
    expect(err).toContain('ERR_LOCKED');
    expect(err).toContain(String(process.pid));
    await store.close();
  });
});

describe('pwal recover', () => {
  it('applies the log into the file', async () => {
    await withLog(3);
    const { code, out } = await cli('recover', db);
    expect(code).toBe(0);
    expect(out).toContain('3 page(s) written');
    expect(fs.readFileSync(db).length).toBe(3 * PAGE);
  });

  it('fails closed on a corrupt segment, and with --skip-corrupt applies the prefix and sets the rest aside', async () => {
    await withLog(3);
    const segments = await listSegments(db);
    expect(segments.length).toBe(3);
    const middle = segments[1]!.path;
    const bytes = fs.readFileSync(middle);
    bytes[bytes.length - 10] = (bytes[bytes.length - 10] ?? 0) ^ 0xff;
    fs.writeFileSync(middle, bytes);
    const closed = await cli('recover', db);
    expect(closed.code).toBe(1);
    expect(closed.err).toMatch(/ERR_/);
    expect(fs.readFileSync(db).length).toBe(0);
    const skipped = await cli('recover', db, '--skip-corrupt', '--json');
    expect(skipped.code).toBe(0);
    const report = JSON.parse(skipped.out);
    expect(report.dbSizePages).toBe(1);
    expect(report.quarantinedSegments).toHaveLength(2);
    expect(fs.readdirSync(dir).filter((n) => n.includes('-wal-corrupt-'))).toHaveLength(2);
    // Later opens neither fail nor replay the set-aside segments; new commits survive.
    const store = await PageStore.open(db);
    expect(store.dbSizePages).toBe(1);
    await store.commit([{ pageNumber: 2, data: page(22) }]);
    await store.close();
    const again = await PageStore.open(db);
    expect(await again.read(2)).toEqual(page(22));
    await again.close();
  });

  it('refuses a path with no database', async () => {
    const { code, err } = await cli('recover', db);
    expect(code).toBe(1);
    expect(err).toContain('no database');
    expect(fs.existsSync(db)).toBe(false);
  });
});

describe('describeStore (for pwal inspect)', () => {
  it('shows the header, the file length and the lock holder without taking the lock', async () => {
    expect((await describeStore(db)).header).toBeNull();
    const store = await PageStore.open(db, { pageSize: PAGE, autoCheckpoint: false });
    await store.commit([{ pageNumber: 2, data: page(2) }]);
    await store.checkpoint();
    const d = await describeStore(db);
    expect(d.header?.pageSize).toBe(PAGE);
    expect(d.header?.dbSizePages).toBe(2);
    expect(d.checkpointEpoch).toBe(store.checkpointEpoch);
    expect(d.fileBytes).toBe(2 * PAGE);
    expect(d.fileLengthMatches).toBe(true);
    expect(d.lock).toEqual({ pid: process.pid, alive: true });
    const text = formatStoreDescription(d);
    expect(text).toContain('page size 512, 2 pages, last checkpointed epoch');
    expect(text).toContain(`held by process ${process.pid}`);
    await store.close();
    expect((await describeStore(db)).lock).toBeNull();
  });

  it('reports a corrupt header instead of throwing', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE });
    await store.close();
    fs.writeFileSync(`${db}-pwal-store`, 'garbage');
    const d = await describeStore(db);
    expect(d.headerError?.code).toBe('ERR_STORE_HEADER_CORRUPT');
    expect(formatStoreDescription(d)).toContain('ERR_STORE_HEADER_CORRUPT');
  });
});
