import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { segmentPath, writeSegment } from '../../src/storage/segment-files.js';
import { makeTempDir, recordFor } from '../storage/helpers.js';
import { runCliCaptured as run } from '../support/cli.js';

const VECTORS = path.resolve(import.meta.dirname, '../fixtures/vectors');
const REPO = path.resolve(import.meta.dirname, '../..');

let tmp: ReturnType<typeof makeTempDir>;
let dbPath: string;
beforeEach(() => {
  tmp = makeTempDir();
  dbPath = path.join(tmp.dir, 'app.db');
});
afterEach(() => tmp.remove());

async function writeThree(): Promise<void> {
  for (const epoch of [1n, 2n, 3n]) {
    await writeSegment(
      dbPath,
      { epoch, records: [recordFor(epoch), recordFor(epoch, { txnId: 50n, pageId: 2 })] },
      { fsync: 'off' },
    );
  }
}

describe('pwal verify', () => {
  it('exits 0 with a one-line summary when every segment is clean', async () => {
    await writeThree();
    const { code, out, err } = await run('verify', dbPath);
    expect(code).toBe(0);
    expect(err).toBe('');
    expect(out.trim().split('\n')).toHaveLength(1);
    expect(out).toMatch(/^ok: 3 segment\(s\), 6 record\(s\), \d+ bytes, epochs 1\.\.3\n$/);
  });

  it('treats a database without segments (all checkpointed) as valid', async () => {
    fs.writeFileSync(dbPath, '');
    expect(await run('verify', dbPath)).toEqual({ code: 0, out: 'ok: no segments\n', err: '' });
  });

  it('verifies the reference vectors of both versions (the seed left epoch numbers unused)', async () => {
    for (const v of ['v1', 'v2']) {
      const golden = path.join(VECTORS, v, 'golden.db');
      const gapped = await run('verify', golden);
      expect(gapped.code).toBe(1);
      expect(gapped.out).toMatch(/^FAIL recovery_gap: segments of epochs 3\.\.7 are missing/);
      const { code, out } = await run('verify', '--allow-epoch-gaps', golden);
      expect(code).toBe(0);
      expect(out).toMatch(/^ok: 4 segment\(s\), 10 record\(s\)/);
    }
  });

  it('exits 1 naming the first bad segment and why', async () => {
    await writeThree();
    const bad = segmentPath(dbPath, 2n);
    const bytes = fs.readFileSync(bad);
    bytes[0] = 0;
    fs.writeFileSync(bad, bytes);
    fs.writeFileSync(segmentPath(dbPath, 3n), Buffer.alloc(3));
    const { code, out } = await run('verify', dbPath);
    expect(code).toBe(1);
    expect(out.split('\n')[0]).toBe(
      `FAIL ${bad}: ERR_SEGMENT_MAGIC: invalid segment magic: 0x50574100`,
    );
    expect(out).toMatch(/1 later segment\(s\) would not be replayed/);
  });

  it('reports a header/file-name epoch mismatch', async () => {
    await writeThree();
    fs.renameSync(segmentPath(dbPath, 3n), segmentPath(dbPath, 9n));
    const mismatch = await run('verify', dbPath);
    expect(mismatch.code).toBe(1);
    expect(mismatch.out).toContain('ERR_SEGMENT_NAME_MISMATCH');
    expect(mismatch.out).toContain(
      `FAIL ${segmentPath(dbPath, 9n)}: ERR_SEGMENT_NAME_MISMATCH: segment ${segmentPath(dbPath, 9n)} has mismatched epoch: header=3, filename=9`,
    );
  });

  it('reports two files for one epoch', async () => {
    await writeThree();
    fs.copyFileSync(segmentPath(dbPath, 2n), path.join(tmp.dir, 'app.db-wal-seg-000000000000000B'));
    fs.copyFileSync(segmentPath(dbPath, 2n), path.join(tmp.dir, 'app.db-wal-seg-000000000000000b'));
    // Both files of epoch 11 decode to epoch 2: the name mismatch comes first…
    const mismatch = await run('verify', dbPath);
    expect(mismatch.out).toContain('ERR_SEGMENT_NAME_MISMATCH');
    // …so give them the right header: copies of a real epoch-11 segment.
    await writeSegment(dbPath, { epoch: 11n, records: [] }, { fsync: 'off' });
    fs.copyFileSync(
      segmentPath(dbPath, 11n),
      path.join(tmp.dir, 'app.db-wal-seg-000000000000000B'),
    );
    const { code, out } = await run('verify', dbPath);
    expect(code).toBe(1);
    expect(out).toMatch(/ERR_SEGMENT_DUPLICATE_EPOCH: segment epoch 11 has 2 files/);
  });

  it('gives one clear line and exit 1 for a missing directory or a file in its place', async () => {
    const missing = await run('verify', path.join(tmp.dir, 'nope', 'x.db'));
    expect(missing.code).toBe(1);
    expect(missing.out).toBe('');
    expect(missing.err).toBe(
      `pwal: no database at ${path.join(tmp.dir, 'nope', 'x.db')}: no database file, store header or segment files (ERR_DATABASE_NOT_FOUND)\n`,
    );
    fs.writeFileSync(path.join(tmp.dir, 'file'), 'x');
    const notDir = await run('verify', path.join(tmp.dir, 'file', 'x.db'));
    expect(notDir.code).toBe(1);
    expect(notDir.err).toMatch(/^pwal: .*not a directory \(ENOTDIR, readdir\) \(ERR_IO\)\n$/);
  });
});

describe('pwal usage errors', () => {
  it('exits 2 on unknown flags, unknown commands, missing or extra arguments', async () => {
    for (const argv of [
      ['verify', '--bogus', dbPath],
      ['inspect', dbPath, '--images', 'hex'],
      ['frobnicate'],
      ['verify'],
      ['verify', dbPath, 'extra'],
      ['dump', 'x', '--images', 'octal'],
      [],
    ]) {
      const { code, err } = await run(...argv);
      expect(code, argv.join(' ')).toBe(2);
      expect(err.length, argv.join(' ')).toBeGreaterThan(0);
      expect(err).not.toMatch(/\n\s+at /);
    }
  });

  it('prints help for each command with exit 0', async () => {
    for (const command of ['inspect', 'dump', 'verify']) {
      const { code, out } = await run(command, '--help');
      expect(code).toBe(0);
      expect(out).toContain(`Usage: pwal ${command}`);
    }
    const top = await run('--help');
    expect(top.code).toBe(0);
    expect(top.out).toMatch(/inspect[\s\S]*dump[\s\S]*verify/);
  });
});

describe('pwal inspect', () => {
  it('prints one row per segment with epoch, file, bytes, version, records and status', async () => {
    await writeThree();
    fs.writeFileSync(segmentPath(dbPath, 3n), Buffer.alloc(30));
    const { code, out } = await run('inspect', dbPath);
    expect(code).toBe(0);
    // The store header and replication lines come first (neither exists here).
    const all = out.trim().split('\n');
    expect(all.slice(0, 2)).toEqual([
      'store header: none (not a page store database)',
      'replication: none (no replicator ran here)',
    ]);
    const lines = all.slice(2);
    expect(lines[0]).toMatch(/^EPOCH\s+FILE\s+BYTES\s+VERSION\s+RECORDS\s+STATUS$/);
    const size = fs.statSync(segmentPath(dbPath, 1n)).size;
    expect(lines[1]).toMatch(
      new RegExp(`^1\\s+app\\.db-wal-seg-0000000000000001\\s+${size}\\s+2\\s+2\\s+ok$`),
    );
    expect(lines[3]).toMatch(
      /^3\s+app\.db-wal-seg-0000000000000003\s+30\s+-\s+-\s+ERR_SEGMENT_MAGIC: invalid segment magic: 0x0$/,
    );
  });

  it('prints a JSON document with --json, u64 epochs as decimal strings', async () => {
    const { code, out } = await run('inspect', path.join(VECTORS, 'v2', 'golden.db'), '--json');
    expect(code).toBe(0);
    const doc = JSON.parse(out) as {
      segments: Record<string, unknown>[];
      temporaryFiles: string[];
    };
    expect(doc.segments).toHaveLength(4);
    expect(doc.segments[3]).toEqual({
      epoch: '20015998343869',
      file: 'golden.db-wal-seg-0000123456789abd',
      bytes: 8782,
      version: 2,
      recordCount: 1,
      status: 'ok',
      error: null,
    });
    expect(doc.temporaryFiles).toEqual([]);
  });

  it('says so when there are no segments and mentions leftover temporary files', async () => {
    fs.writeFileSync(path.join(tmp.dir, 'app.db-wal-tmp-0000000000000001-abc'), 'x');
    const { code, out } = await run('inspect', dbPath);
    expect(code).toBe(0);
    expect(out).toContain(`no segments for ${dbPath}`);
    expect(out).toContain('1 leftover temporary file(s)');
  });
});

describe('pwal dump', () => {
  it('prints the header then one line per record', async () => {
    const file = path.join(VECTORS, 'v1', 'golden.db-wal-seg-0000000000000008');
    const { code, out } = await run('dump', file);
    expect(code).toBe(0);
    const lines = out.trim().split('\n');
    expect(lines[0]).toBe(`segment ${file}: version 1, epoch 8, 3 records, 5384 bytes`);
    expect(lines).toHaveLength(4);
    expect(lines[1]).toBe('#0 txn=4/1 epoch=8 page=40 begin=2986 end=none before=341B after=4096B');
  });

  it('prints JSON lines with --json and images in hex with --images hex', async () => {
    const file = path.join(VECTORS, 'v2', 'golden.db-wal-seg-0000000000000001');
    const manifest = JSON.parse(fs.readFileSync(path.join(VECTORS, 'v2', 'manifest.json'), 'utf8'));
    const { code, out } = await run('dump', file, '--json', '--images', 'hex');
    expect(code).toBe(0);
    const [header, record, ...rest] = out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(rest).toEqual([]);
    expect(header).toEqual({
      type: 'header',
      path: file,
      bytes: 600,
      version: 2,
      epoch: '1',
      recordCount: 1,
    });
    const expected = manifest.segments[0].records[0];
    expect(record).toMatchObject({
      type: 'record',
      index: 0,
      txnId: String(expected.txnId),
      beginSeq: String(expected.beginSeq),
      endSeq: String(expected.endSeq),
      beforeImage: expected.beforeImage,
      afterImage: expected.afterImage,
    });
  });

  it('exits 1 on a damaged segment after showing its header', async () => {
    await writeSegment(dbPath, { epoch: 4n, records: [recordFor(4n)] });
    const file = segmentPath(dbPath, 4n);
    fs.appendFileSync(file, 'xx');
    const { code, out, err } = await run('dump', file);
    expect(code).toBe(1);
    expect(out).toMatch(/^segment .*: version 2, epoch 4, 1 records/);
    expect(err).toBe(
      'pwal: segment has 2 trailing bytes after declared records (ERR_SEGMENT_TRAILING_BYTES)\n',
    );
  });

  it('exits 1 with one line for a missing file', async () => {
    const { code, err } = await run('dump', path.join(tmp.dir, 'none'));
    expect(code).toBe(1);
    expect(err).toMatch(
      /^pwal: cannot read segment file .*none: does not exist \(ENOENT, read\) \(ERR_IO\)\n$/,
    );
  });
});

describe('the pwal executable', () => {
  it('runs as a script with a shebang and exits with the CLI status', () => {
    const entry = path.join(REPO, 'src', 'cli', 'pwal.ts');
    expect(fs.readFileSync(entry, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
    const tsx = path.join(REPO, 'node_modules', '.bin', 'tsx');
    const golden = path.join(VECTORS, 'v1', 'golden.db');
    const ok = spawnSync(tsx, [entry, 'verify', '--allow-epoch-gaps', golden], {
      encoding: 'utf8',
    });
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(/^ok: 4 segment/);
    const missing = spawnSync(tsx, [entry, 'verify', path.join(tmp.dir, 'no', 'x.db')], {
      encoding: 'utf8',
    });
    expect(missing.status).toBe(1);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    const usage = spawnSync(tsx, [entry, 'verify', '--nope'], { encoding: 'utf8' });
    expect(usage.status).toBe(2);
  });
});
