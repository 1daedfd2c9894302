import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ParallelWal } from '../../src/engine/wal.js';
import { isWalError } from '../../src/errors.js';
import { recoverSegments } from '../../src/storage/recovery.js';
import { decodeSizeMeta, encodeSizeMeta, STORE_META_PAGE_ID } from '../../src/store/commit-meta.js';
import { PageStore } from '../../src/store/page-store.js';
import { useTempDb } from '../support/temp-db.js';

let db: string;
useTempDb('db', (paths) => {
  db = paths.db;
});

const PAGE = 512;
const page = (fill: number) => new Uint8Array(PAGE).fill(fill);
const DOC = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../docs/format.md');
/** The fields of a recovered record: nothing else (no database size). */
const RECORD_FIELDS = [
  'afterImage',
  'beforeImage',
  'beginSeq',
  'endSeq',
  'epoch',
  'pageId',
  'txnToken',
];

/** The bytes of the first hex dump after `heading` in docs/format.md. */
function documentedDump(heading: string): Uint8Array {
  const text = fs.readFileSync(DOC, 'utf8');
  const at = text.indexOf(heading);
  expect(at, `docs/format.md has "${heading}"`).toBeGreaterThanOrEqual(0);
  const open = text.indexOf('```\n', at) + 4;
  const block = text.slice(open, text.indexOf('```', open));
  const bytes: number[] = [];
  for (const line of block.split('\n').filter((l) => l.trim() !== '')) {
    const match = /^([0-9a-f]+) {2}((?:[0-9a-f]{2} ?)+)/.exec(line);
    if (match === null) throw new Error(`not a dump line: ${line}`);
    for (const byte of match[2]!.trim().split(' ')) bytes.push(Number.parseInt(byte, 16));
  }
  return Uint8Array.from(bytes);
}

describe('who owns dbSizeIfCommit', () => {
  it('docs/format.md documents the page store size record byte for byte', () => {
    const documented = documentedDump('### 5.2 The database size belongs to the layer above');
    expect(documented).toEqual(encodeSizeMeta(3));
    expect(decodeSizeMeta(documented, 'doc')).toBe(3);
    expect(STORE_META_PAGE_ID).toBe(0xffffffff);
    const text = fs.readFileSync(DOC, 'utf8');
    expect(text).toContain('the log does not persist it');
  });

  it('the raw log reports dbSizeIfCommit from memory only: recovered records carry no size', async () => {
    const wal = await ParallelWal.open(db, { slotCount: 1 });
    const frame = (dbSizeIfCommit: number) => ({
      pageNumber: 1,
      pageData: page(1),
      dbSizeIfCommit,
    });
    await wal.commit({ txnToken: { id: 1n, epoch: 0 }, frames: [frame(5)] });
    const shrink = await wal.commit({ txnToken: { id: 2n, epoch: 0 }, frames: [frame(1)] });
    expect(shrink.dbSizePages).toBe(1);
    await wal.close();
    const recovered = await recoverSegments(db);
    expect(recovered.records).toHaveLength(2);
    for (const record of recovered.records)
      expect(Object.keys(record).sort()).toEqual(RECORD_FIELDS);
  });

  it('the page store persists a shrink as its size record, recovered without a checkpoint', async () => {
    const store = await PageStore.open(db, { pageSize: PAGE, autoCheckpoint: false });
    await store.commit([1, 2, 3].map((n) => ({ pageNumber: n, data: page(n) })));
    await store.commit([{ pageNumber: 1, data: page(9) }], { dbSizePages: 1 });
    await store.close();
    const sizes = (await recoverSegments(db)).records
      .filter((r) => r.pageId === STORE_META_PAGE_ID)
      .map((r) => decodeSizeMeta(r.afterImage, 'test'));
    expect(sizes).toEqual([1]);
    const again = await PageStore.open(db, { pageSize: PAGE });
    expect(again.dbSizePages).toBe(1);
    expect(await again.read(1)).toEqual(page(9));
    const beyond = await again.read(2).catch((e: unknown) => e);
    expect(isWalError(beyond, 'ERR_STORE_PAGE_OUT_OF_RANGE')).toBe(true);
    await again.close();
    expect(fs.statSync(db).size).toBe(PAGE);
  });
});
