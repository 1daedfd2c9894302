/**
 * Files that are not regular files, planted where the log looks: they are
 * refused with `ERR_NOT_REGULAR_FILE` — never followed, never read whole,
 * never waited on. Each test would hang, exhaust memory or follow a link
 * without the checks in the file-system seam.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ParallelWal } from '../../src/engine/wal.js';
import { isWalError } from '../../src/errors.js';
import type { NotRegularFileError, SegmentCorruptError } from '../../src/storage/errors.js';
import { nodeFileSystem } from '../../src/storage/fs.js';
import { recoverSegments } from '../../src/storage/recovery.js';
import { segmentPath, TEMP_NAME_INFIX } from '../../src/storage/segment-files.js';
import { PageStore } from '../../src/store/page-store.js';
import { runCliCaptured as cli } from '../support/cli.js';
import { useTempDb } from '../support/temp-db.js';
import { batchFor, type WorkloadPlan } from '../support/wal-workload.js';

let dir: string;
let db: string;
useTempDb('db', (paths) => {
  dir = paths.dir;
  db = paths.db;
});

const PLAN: WorkloadPlan = {
  seed: 7,
  writers: 1,
  commitsPerWriter: 1,
  burstChance: 0,
  maxPageBytes: 64,
};
/** A hang guard: on the unprotected code these opens never settle. */
const HANG_GUARD_MS = 20_000;

function mkfifo(at: string): void {
  expect(spawnSync('mkfifo', [at]).status).toBe(0);
}

/** A log with segments for epochs 0..n-1 (one commit each). */
async function logWithEpochs(n: number): Promise<void> {
  const wal = await ParallelWal.open(db, { segmentSink: 'storage' });
  for (let i = 0; i < n; i++) {
    await wal.commit(batchFor(PLAN, BigInt(i + 1)));
  }
  await wal.close();
}

/** The error itself or the first error in its cause chain with `code`. */
function withCode(error: unknown, code: string): unknown {
  for (let e = error; e !== undefined && e !== null; e = (e as { cause?: unknown }).cause) {
    if (isWalError(e, code)) return e;
  }
  return error;
}

function expectNotRegular(thrown: unknown, fileType: string, at: string): void {
  const error = withCode(thrown, 'ERR_NOT_REGULAR_FILE');
  expect(isWalError(error, 'ERR_NOT_REGULAR_FILE'), String(thrown)).toBe(true);
  expect((error as NotRegularFileError).fileType).toBe(fileType);
  expect((error as NotRegularFileError).path).toBe(at);
}

/** A segment name that is not a regular file is a corrupt segment, for recovery's rules. */
function expectSegmentNotRegular(thrown: unknown, fileType: string, at: string): void {
  expect(isWalError(thrown, 'ERR_SEGMENT_CORRUPT'), String(thrown)).toBe(true);
  expect((thrown as SegmentCorruptError).reason).toBe('ERR_SEGMENT_NOT_REGULAR');
  expectNotRegular(thrown, fileType, at);
}

describe('non-regular files where the log looks', () => {
  it(
    'refuses a FIFO named like a segment at open instead of hanging',
    async () => {
      await logWithEpochs(1);
      const fifo = segmentPath(db, 1n);
      mkfifo(fifo);
      const error = await ParallelWal.open(db).then(
        async (w) => {
          await w.close();
          return null;
        },
        (e: unknown) => e,
      );
      expectSegmentNotRegular(error, 'FIFO', fifo);
      const recovered = await recoverSegments(db).catch((e: unknown) => e);
      expectSegmentNotRegular(recovered, 'FIFO', fifo);
      // skipCorrupt stops before it, and numbering continues above it.
      const lenient = await recoverSegments(db, { skipCorrupt: true });
      expect(lenient.partialSegments).toEqual([fifo]);
      const wal = await ParallelWal.open(db, { skipCorrupt: true, segmentSink: 'storage' });
      const r = await wal.commit(batchFor(PLAN, 99n));
      await wal.close();
      expect(r.epoch).toBe(2n);
    },
    HANG_GUARD_MS,
  );

  it(
    'refuses a FIFO named like a temporary file at open instead of hanging',
    async () => {
      await logWithEpochs(1);
      const fifo = path.join(dir, `db${TEMP_NAME_INFIX}ack-0123456789ab`);
      mkfifo(fifo);
      const error = await ParallelWal.open(db).catch((e: unknown) => e);
      expectNotRegular(error, 'FIFO', fifo);
    },
    HANG_GUARD_MS,
  );

  it(
    'pwal verify names a FIFO segment and exits 1; pwal inspect reports it and settles',
    async () => {
      await logWithEpochs(2);
      const fifo = segmentPath(db, 2n);
      mkfifo(fifo);
      const verify = await cli('verify', db);
      expect(verify.code).toBe(1);
      expect(verify.out).toContain(`FAIL ${fifo}: ERR_SEGMENT_NOT_REGULAR`);
      const inspect = await cli('inspect', db);
      expect(inspect.out).toContain('ERR_SEGMENT_NOT_REGULAR');
    },
    HANG_GUARD_MS,
  );

  it(
    'refuses a segment-named symlink to /dev/zero without reading it',
    async () => {
      await logWithEpochs(1);
      const link = segmentPath(db, 1n);
      fs.symlinkSync('/dev/zero', link);
      const before = process.memoryUsage().rss;
      const error = await ParallelWal.open(db).catch((e: unknown) => e);
      expectSegmentNotRegular(error, 'symbolic link', link);
      // Nothing of /dev/zero was read (the unprotected read grew past 1.6 GiB).
      expect(process.memoryUsage().rss - before).toBeLessThan(256 * 1024 * 1024);
    },
    HANG_GUARD_MS,
  );

  it('refuses a segment-named symlink even to a valid segment (links are never followed)', async () => {
    await logWithEpochs(2);
    const elsewhere = path.join(dir, 'moved-away');
    fs.renameSync(segmentPath(db, 1n), elsewhere);
    fs.symlinkSync(elsewhere, segmentPath(db, 1n));
    const error = await recoverSegments(db).catch((e: unknown) => e);
    expectSegmentNotRegular(error, 'symbolic link', segmentPath(db, 1n));
  });

  it(
    'refuses a database file that is a FIFO or a symlink',
    async () => {
      mkfifo(db);
      // The store's own probe refuses it first (with its I/O code).
      const fifo = await PageStore.open(db, { pageSize: 512 }).catch((e: unknown) => e);
      expect(isWalError(fifo), String(fifo)).toBe(true);
      expect(String(fifo)).toContain('not a regular file');
      fs.unlinkSync(db);
      const target = path.join(dir, 'target');
      fs.writeFileSync(target, ''); // empty: the store would take it for a new database
      fs.symlinkSync(target, db);
      const link = await PageStore.open(db, { pageSize: 512 }).catch((e: unknown) => e);
      expectNotRegular(link, 'symbolic link', db);
      expect(fs.statSync(target).size).toBe(0);
    },
    HANG_GUARD_MS,
  );

  it('reads a regular file whole, and refuses devices, FIFOs and directories (EISDIR)', async () => {
    const file = path.join(dir, 'plain');
    fs.writeFileSync(file, new Uint8Array(100_000).fill(7));
    const bytes = await nodeFileSystem.readFile(file);
    expect(bytes.length).toBe(100_000);
    expect(bytes.every((b) => b === 7)).toBe(true);
    expectNotRegular(
      await nodeFileSystem.readFile('/dev/zero').catch((e: unknown) => e),
      'character device',
      '/dev/zero',
    );
    expectNotRegular(
      await nodeFileSystem.open('/dev/null', 'createOrTruncate').catch((e: unknown) => e),
      'character device',
      '/dev/null',
    );
    const directory = await nodeFileSystem.open(dir, 'read').catch((e: unknown) => e);
    expect((directory as { code?: string }).code).toBe('EISDIR');
    const fifo = path.join(dir, 'fifo');
    mkfifo(fifo);
    for (const mode of ['read', 'readWrite', 'createOrTruncate'] as const) {
      expectNotRegular(
        await nodeFileSystem.open(fifo, mode).catch((e: unknown) => e),
        'FIFO',
        fifo,
      );
    }
  });

  it('creates no file through a planted symlink (createOrTruncate does not follow)', async () => {
    const target = path.join(dir, 'precious');
    fs.writeFileSync(target, 'keep me');
    const link = path.join(dir, 'link');
    fs.symlinkSync(target, link);
    const error = await nodeFileSystem.open(link, 'createOrTruncate').catch((e: unknown) => e);
    expectNotRegular(error, 'symbolic link', link);
    expect(fs.readFileSync(target, 'utf8')).toBe('keep me');
  });
});
