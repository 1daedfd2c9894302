/**
 * `pwal inspect` and `pwal verify` on real databases: a page store with a
 * replication state file, and a log whose segments carry commit certificates
 * (format version 3, written by the engine with the control plane).
 */
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ControlPlane } from '../../src/control/plane.js';
import { ParallelWal } from '../../src/engine/wal.js';
import { writeReplicationState } from '../../src/replication/state-file.js';
import { listSegments, readSegment, writeSegment } from '../../src/storage/segment-files.js';
import { PageStore } from '../../src/store/page-store.js';
import { runCliCaptured as run } from '../support/cli.js';
import { useTempDb } from '../support/temp-db.js';

let db: string;
useTempDb('app.db', (paths) => {
  db = paths.db;
});

/** A certified log: `commits` commits through the engine with certificates on. */
async function certifiedLog(commits: number): Promise<void> {
  const plane = new ControlPlane({ env: {}, trace: null, certificates: true, controller: false });
  const wal = await ParallelWal.open(db, {
    controlPlane: plane,
    slotCount: plane.laneCount(),
    fsync: 'off',
  });
  try {
    for (let i = 1; i <= commits; i++) {
      await wal.commit({
        txnToken: { id: BigInt(i), epoch: 0 },
        frames: [{ pageNumber: i, pageData: new Uint8Array(64).fill(i), dbSizeIfCommit: i }],
      });
    }
  } finally {
    await wal.close();
    plane.close();
  }
}

describe('pwal inspect of a page store', () => {
  it('shows the store header and the replication state above the segment table', async () => {
    const store = await PageStore.open(db, { pageSize: 512, autoCheckpoint: false });
    for (let i = 1; i <= 3; i++) await store.commit([{ pageNumber: i, data: new Uint8Array(512) }]);
    await store.checkpoint();
    await store.commit([{ pageNumber: 4, data: new Uint8Array(512).fill(4) }]);
    await store.close();
    await writeReplicationState(db, {
      databaseId: 'abcdef0123456789',
      stream: 'PWAL_abcdef0123456789',
      subject: 'pwal.abcdef0123456789.epochs',
      replicatedEpoch: 2n,
      streamSeq: 2,
      updatedAt: '2026-01-01T00:00:00.000Z',
    });
    const text = await run('inspect', db);
    expect(text.code).toBe(0);
    const lines = text.out.trim().split('\n');
    expect(lines[0]).toMatch(/^store header: page size 512, 3 pages, last checkpointed epoch \d+/);
    expect(text.out).toContain(
      'replication: database abcdef0123456789, stream PWAL_abcdef0123456789 (subject pwal.abcdef0123456789.epochs), replicated through epoch 2',
    );
    const table = lines.findIndex((l) => l.startsWith('EPOCH'));
    expect(table).toBeGreaterThan(lines.findIndex((l) => l.startsWith('replication:')));
    expect(lines[table + 1]).toMatch(/\s2\s+1\s+ok$/);

    const json = await run('inspect', db, '--json');
    const doc = JSON.parse(json.out);
    expect(doc.store.header).toMatchObject({ pageSize: 512, dbSizePages: 3 });
    expect(doc.store.lock).toBeNull();
    expect(doc.replication).toMatchObject({ databaseId: 'abcdef0123456789', replicatedEpoch: '2' });
    expect(doc.segments).toHaveLength(1);
  });

  it('says when a database is neither a store nor replicated, and reports an unreadable state file', async () => {
    await writeSegment(db, { epoch: 1n, records: [] }, { fsync: 'off' });
    const none = await run('inspect', db);
    expect(none.code).toBe(0);
    expect(none.out).toContain('store header: none (not a page store database)');
    expect(none.out).toContain('replication: none');
    fs.writeFileSync(`${db}-pwal-replication.json`, '{ not json');
    const json = JSON.parse((await run('inspect', db, '--json')).out);
    expect(json.store.header).toBeNull();
    expect(json.replication).toBeNull();
    expect(json.replicationError.code).toMatch(/^ERR_/);
  });
});

describe('pwal checkpoint of a replicated database', () => {
  it('keeps the segments above the saved replicated epoch', async () => {
    const store = await PageStore.open(db, { pageSize: 512, autoCheckpoint: false });
    for (let i = 1; i <= 4; i++) {
      await store.commit([{ pageNumber: i, data: new Uint8Array(512).fill(i) }]);
    }
    await store.close();
    const epochs = (await listSegments(db)).map((s) => s.epoch);
    expect(epochs.length).toBe(4);
    await writeReplicationState(db, {
      databaseId: 'abcdef0123456789',
      stream: 'S',
      subject: 's.epochs',
      replicatedEpoch: epochs[1]!,
      streamSeq: 2,
      updatedAt: '2026-01-01T00:00:00.000Z',
    });
    const result = await run('checkpoint', db, '--json');
    expect(result.code).toBe(0);
    expect(JSON.parse(result.out)).toMatchObject({ pagesWritten: 4, segmentsDeleted: 2 });
    expect((await listSegments(db)).map((s) => s.epoch)).toEqual(epochs.slice(2));
    const again = await PageStore.open(db);
    for (let i = 1; i <= 4; i++) expect(await again.read(i)).toEqual(new Uint8Array(512).fill(i));
    await again.close();
  });
});

describe('certified segments (format version 3)', () => {
  it('are listed with version 3 and status ok, and reopen and recover like any other', async () => {
    await certifiedLog(5);
    const segments = await listSegments(db);
    expect(segments.length).toBeGreaterThan(0);
    const doc = JSON.parse((await run('inspect', db, '--json')).out);
    for (const row of doc.segments) {
      expect(row).toMatchObject({ version: 3, status: 'ok', error: null });
    }
    const text = await run('inspect', db);
    expect(text.out).toMatch(/-wal-seg-[0-9a-f]{16}\s+\d+\s+3\s+1\s+ok/);
    const first = await readSegment(segments[0]!.path);
    expect(first.header.version).toBe(3);
    expect(first.certificate?.length).toBeGreaterThan(0);
    // The engine reads them at open and continues after them.
    const wal = await ParallelWal.open(db);
    expect(wal.currentEpoch).toBe(segments.at(-1)!.epoch + 1n);
    const next = await wal.commit({
      txnToken: { id: 99n, epoch: 0 },
      frames: [{ pageNumber: 1, pageData: new Uint8Array(8), dbSizeIfCommit: 1 }],
    });
    expect(next.commitSeq).toBe(6n);
    await wal.close();
  });

  it('pwal verify reports the certificate chain, and a missing middle segment is a recovery gap', async () => {
    await certifiedLog(4);
    const ok = await run('verify', db);
    expect(ok.code).toBe(0);
    expect(ok.out).toMatch(/^ok: 4 segment\(s\)/);
    expect(ok.out).toMatch(
      /\ncertificates: 4 certified segment\(s\), chain ok through epoch \d+\n$/,
    );
    const segments = await listSegments(db);
    fs.unlinkSync(segments[1]!.path);
    const broken = await run('verify', db);
    expect(broken.code).toBe(1);
    // Caught without the certificates: the log never leaves an epoch number unused.
    expect(broken.out).toMatch(/^FAIL recovery_gap: segment of epoch \d+ is missing/);
  });
});
