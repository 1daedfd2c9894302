/**
 * The command line never reports success where it should not, never creates
 * a database nobody asked for, never leaves files behind after a failure,
 * never hangs on an unreachable server, and ends quietly when its reader goes
 * away. Each case runs the built `pwal` as a child process, as a shell would.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { segmentPath, writeSegment } from '../../src/storage/segment-files.js';
import { PageStore } from '../../src/store/page-store.js';
import { recordFor } from '../storage/helpers.js';
import { runBuiltCli, runBuiltCliIntoClosedPipe } from '../support/built-cli.js';
import { useTempDb } from '../support/temp-db.js';

let dir: string;
let db: string;
useTempDb('app.db', (paths) => {
  dir = paths.dir;
  db = paths.db;
});

/** Everything in the test directory, with sizes, to compare before and after. */
function listing(): string[] {
  return fs
    .readdirSync(dir)
    .sort()
    .map((n) => `${n}:${fs.statSync(path.join(dir, n)).size}`);
}

/** A raw log (no database file, no store header) whose middle segment is corrupt. */
async function logWithCorruptMiddle(): Promise<void> {
  // A page store's log starts at epoch 0 (a later first epoch is a gap).
  for (const epoch of [0n, 1n, 2n]) {
    await writeSegment(
      db,
      {
        epoch,
        records: [recordFor(epoch, { pageId: Number(epoch) + 1, beginSeq: epoch + 1n, size: 512 })],
      },
      { fsync: 'off' },
    );
  }
  const middle = segmentPath(db, 1n);
  const bytes = fs.readFileSync(middle);
  bytes[bytes.length - 10] = (bytes[bytes.length - 10] ?? 0) ^ 0xff;
  fs.writeFileSync(middle, bytes);
}

describe('pwal verify and inspect of a path that holds no database', () => {
  for (const command of ['verify', 'inspect']) {
    it(`${command}: a path that does not exist is exit 1 with a message, not "ok"`, () => {
      const run = runBuiltCli([command, path.join(dir, 'typo.db')]);
      expect(run.status).toBe(1);
      expect(run.stdout).toBe('');
      expect(run.stderr).toBe(
        `pwal: no database at ${path.join(dir, 'typo.db')}: no database file, store header or segment files (ERR_DATABASE_NOT_FOUND)\n`,
      );
      expect(fs.readdirSync(dir)).toEqual([]);
    });

    it(`${command}: a directory is exit 1 with a message, not "ok"`, () => {
      const run = runBuiltCli([command, dir]);
      expect(run.status).toBe(1);
      expect(run.stdout).toBe('');
      expect(run.stderr).toBe(
        `pwal: ${dir} is a directory: give the path of the database file (its segments live beside it) (ERR_NOT_A_DATABASE)\n`,
      );
    });
  }
});

describe('pwal checkpoint creates nothing unless asked', () => {
  it('a missing database is exit 1 with a message, and no file appears', () => {
    const run = runBuiltCli(['checkpoint', 'typo.db'], dir);
    expect(run.status).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toBe(
      'pwal: no database at typo.db: no database file, store header or segment files (pass --create to create one) (ERR_DATABASE_NOT_FOUND)\n',
    );
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('--create makes a new empty database of the given page size', async () => {
    const run = runBuiltCli(
      ['checkpoint', 'new.db', '--create', '--page-size', '512', '--json'],
      dir,
    );
    expect(run.status).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ db: 'new.db', pageSize: 512, dbSizePages: 0 });
    const store = await PageStore.open(path.join(dir, 'new.db'));
    expect(store.pageSize).toBe(512);
    await store.close();
  });

  it('--page-size without --create is a usage error', () => {
    const run = runBuiltCli(['checkpoint', 'typo.db', '--page-size', '512'], dir);
    expect(run.status).toBe(2);
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});

describe('a failed checkpoint or recover leaves the directory as it found it', () => {
  for (const command of ['recover', 'checkpoint']) {
    it(`${command} of a log with a corrupt segment fails closed and removes the files it created`, async () => {
      await logWithCorruptMiddle();
      const before = listing();
      const run = runBuiltCli([command, db]);
      expect(run.status).toBe(1);
      expect(run.stderr).toMatch(/^pwal: .* \(ERR_SEGMENT_[A-Z_]+\)\n$/);
      expect(listing()).toEqual(before);
      // And a later run with --skip-corrupt still works from the untouched log.
      if (command === 'recover') {
        const skipped = runBuiltCli([
          'recover',
          db,
          '--skip-corrupt',
          '--page-size',
          '512',
          '--json',
        ]);
        expect(skipped.status).toBe(0);
        expect(JSON.parse(skipped.stdout)).toMatchObject({ dbSizePages: 1 });
      }
    });
  }

  it('recover that fails later, at a page of the wrong size, removes its files too', async () => {
    await logWithCorruptMiddle();
    const before = listing();
    // Default page size 4096, but the log holds 512-byte pages.
    const run = runBuiltCli(['recover', db, '--skip-corrupt']);
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/\(ERR_STORE_RECOVERY_FAILED\)\n$/);
    expect(listing()).toEqual(before);
  });

  it('keeps a database file and header that existed before the failure', async () => {
    const store = await PageStore.open(db, { pageSize: 512, autoCheckpoint: false });
    await store.commit([{ pageNumber: 1, data: new Uint8Array(512).fill(1) }]);
    await store.checkpoint();
    await store.close();
    // A later epoch arrives as a corrupt segment.
    await writeSegment(
      db,
      { epoch: 40n, records: [recordFor(40n, { size: 512 })] },
      { fsync: 'off' },
    );
    fs.appendFileSync(segmentPath(db, 40n), 'xx');
    const before = listing();
    const run = runBuiltCli(['recover', db]);
    expect(run.status).toBe(1);
    expect(listing()).toEqual(before);
  });
});

describe('pwal follow of an unreachable server', () => {
  it('fails at once with the typed connection error and creates no replica', () => {
    const run = runBuiltCli(
      ['follow', '--once', '--from', 'nats://127.0.0.1:1', '--stream', 'S', 'replica.db'],
      dir,
    );
    expect(run.status).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toBe(
      'pwal: cannot connect to NATS at nats://127.0.0.1:1: connection refused (ERR_REPLICATION_UNAVAILABLE)\n',
    );
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('says so as a JSON error with --json', () => {
    const run = runBuiltCli([
      'follow',
      '--from',
      'nats://127.0.0.1:1',
      '--stream',
      'S',
      path.join(dir, 'replica.db'),
      '--json',
    ]);
    expect(run.status).toBe(1);
    expect(JSON.parse(run.stderr)).toEqual({
      error: {
        code: 'ERR_REPLICATION_UNAVAILABLE',
        message: 'cannot connect to NATS at nats://127.0.0.1:1: connection refused',
      },
    });
  });
});

describe('pwal dump into a pipe that closes early', () => {
  it('ends quietly with exit 0 when the reader goes away (| head)', async () => {
    // 200 records of 4 KiB: several MiB of hex, far more than a pipe holds.
    const records = Array.from({ length: 200 }, (_, i) =>
      recordFor(7n, { pageId: i + 1, beginSeq: BigInt(700 + i), size: 4096 }),
    );
    await writeSegment(db, { epoch: 7n, records }, { fsync: 'off' });
    const run = await runBuiltCliIntoClosedPipe(['dump', segmentPath(db, 7n), '--images', 'hex']);
    expect(run.stdout.startsWith(`segment ${segmentPath(db, 7n)}: version 2, epoch 7`)).toBe(true);
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
  });
});
