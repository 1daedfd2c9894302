import * as fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WalArgumentError } from '../../src/errors.js';
import { InvalidRecordError, SegmentFormatError } from '../../src/format/errors.js';
import { recoveryOrder } from '../../src/format/order.js';
import { encodeSegment, encodeSegmentHeader } from '../../src/format/segment.js';
import { type FormatVersion, imageBytesMax, SEGMENT_HEADER_BYTES } from '../../src/format/types.js';
import { SegmentCorruptError, WalIoError } from '../../src/storage/errors.js';
import { nodeFileSystem, type WalFileSystem } from '../../src/storage/fs.js';
import {
  deleteSegment,
  listSegments,
  readSegment,
  segmentPath,
  writeSegment,
  writeSegmentFile,
} from '../../src/storage/segment-files.js';
import { makeTempDir, recordFor, rejection } from './helpers.js';

const VERSIONS: FormatVersion[] = [1, 2];
let tmp: ReturnType<typeof makeTempDir>;
let dbPath: string;

beforeEach(() => {
  tmp = makeTempDir();
  dbPath = path.join(tmp.dir, 'test.db');
});
afterEach(() => tmp.remove());

describe('segment naming', () => {
  it('names segments <db>-wal-seg-<16 lowercase hex digits> beside the database (seed)', () => {
    expect(path.basename(segmentPath('/tmp/mydb.sqlite', 0x123456789abcdef0n))).toBe(
      'mydb.sqlite-wal-seg-123456789abcdef0',
    );
    expect(segmentPath('/tmp/mydb.sqlite', 1n)).toBe('/tmp/mydb.sqlite-wal-seg-0000000000000001');
    expect(segmentPath('rel.db', 0n)).toBe('rel.db-wal-seg-0000000000000000');
    expect(path.basename(segmentPath('/data/x.db', (1n << 64n) - 1n))).toBe(
      'x.db-wal-seg-ffffffffffffffff',
    );
  });

  it('rejects epochs outside u64 and non-bigint epochs', () => {
    expect(() => segmentPath('/tmp/a.db', -1n)).toThrow(WalArgumentError);
    expect(() => segmentPath('/tmp/a.db', 1n << 64n)).toThrow(WalArgumentError);
    expect(() => segmentPath('/tmp/a.db', 1 as unknown as bigint)).toThrow(WalArgumentError);
  });
});

describe('writing and reading segments', () => {
  it('writes and reads back both versions, default version 2 (seed: write and read)', async () => {
    const records = [
      {
        ...recordFor(5n, { txnId: 1n, pageId: 1, beginSeq: 100n }),
        beforeImage: new Uint8Array(32),
        afterImage: new Uint8Array(32).fill(1),
      },
      {
        ...recordFor(5n, { txnId: 2n, pageId: 2, beginSeq: 101n, committed: false, size: 64 }),
        txnToken: { id: 2n, epoch: 1 },
      },
    ];
    for (const version of [undefined, ...VERSIONS]) {
      const written = await writeSegment(
        dbPath,
        { epoch: 5n, records, recordsPerCore: [1, 1] },
        { fsync: 'off', formatVersion: version },
      );
      expect(written).toBeGreaterThan(SEGMENT_HEADER_BYTES);
      const file = segmentPath(dbPath, 5n);
      expect(fs.statSync(file).size).toBe(written);
      const { header, records: read } = await readSegment(file);
      expect(header).toEqual({ version: version ?? 2, epoch: 5n, recordCount: 2 });
      expect(read).toEqual(records);
      expect(read[1]!.endSeq).toBeNull();
      await deleteSegment(file);
      expect(fs.existsSync(file)).toBe(false);
    }
  });

  it('writes exactly the bytes encodeSegment produces, with every fsync policy', async () => {
    const records = [recordFor(3n), recordFor(3n, { txnId: 9n, pageId: 2 })];
    for (const fsync of ['full', 'normal', 'off'] as const) {
      await writeSegment(dbPath, { epoch: 3n, records }, { fsync });
      expect(new Uint8Array(fs.readFileSync(segmentPath(dbPath, 3n)))).toEqual(
        encodeSegment(3n, records),
      );
    }
  });

  it('leaves no temporary file behind', async () => {
    await writeSegment(dbPath, { epoch: 1n, records: [recordFor(1n)] });
    expect(fs.readdirSync(tmp.dir)).toEqual(['test.db-wal-seg-0000000000000001']);
  });

  it('replaces an existing segment of the same epoch atomically', async () => {
    await writeSegment(dbPath, { epoch: 1n, records: [recordFor(1n, { fill: 1 })] });
    await writeSegment(dbPath, { epoch: 1n, records: [recordFor(1n, { fill: 2 })] });
    const { records } = await readSegment(segmentPath(dbPath, 1n));
    expect(records[0]!.afterImage[0]).toBe(2);
  });

  it('stores and returns records in canonical order (seed: canonical order on write)', async () => {
    const later = recordFor(7n, { txnId: 2n, beginSeq: 200n, fill: 0x22, size: 8 });
    const earlier = recordFor(7n, { txnId: 1n, beginSeq: 100n, fill: 0x11, size: 8 });
    await writeSegment(
      dbPath,
      { epoch: 7n, records: [later, earlier], recordsPerCore: [1, 1] },
      { fsync: 'off' },
    );
    const { records } = await readSegment(segmentPath(dbPath, 7n));
    expect(records.map((r) => r.beginSeq)).toEqual([100n, 200n]);
  });

  it('rejects a record from another epoch without creating a file (seed)', async () => {
    const error = await rejection(
      writeSegment(
        dbPath,
        { epoch: 5n, records: [recordFor(4n)], recordsPerCore: [1] },
        { fsync: 'off' },
      ),
    );
    expect(error).toBeInstanceOf(InvalidRecordError);
    expect((error as Error).message).toBe('segment epoch 5 contains record from epoch 4');
    expect(fs.readdirSync(tmp.dir)).toEqual([]);
  });

  it('rejects an oversized page image without creating or truncating a file (seed)', async () => {
    await writeSegment(dbPath, { epoch: 5n, records: [recordFor(5n, { fill: 9 })] });
    const before = fs.readFileSync(segmentPath(dbPath, 5n));
    const huge = recordFor(5n, { size: imageBytesMax + 1 });
    const error = await rejection(
      writeSegment(dbPath, { epoch: 5n, records: [huge] }, { fsync: 'off' }),
    );
    expect(error).toBeInstanceOf(InvalidRecordError);
    expect((error as Error).message).toBe('after_image length 65537 exceeds maximum 65536');
    expect(fs.readFileSync(segmentPath(dbPath, 5n))).toEqual(before);
    expect(fs.readdirSync(tmp.dir)).toEqual(['test.db-wal-seg-0000000000000005']);
  });

  it('rejects bad arguments before touching the disk', async () => {
    expect(
      await rejection(
        writeSegment(dbPath, { epoch: 1n, records: [] }, { fsync: 'sometimes' as 'full' }),
      ),
    ).toBeInstanceOf(WalArgumentError);
    expect(await rejection(writeSegment(dbPath, { epoch: -1n, records: [] }))).toBeInstanceOf(
      WalArgumentError,
    );
    expect(
      await rejection(
        writeSegment(dbPath, { epoch: 1n, records: [] }, { formatVersion: 3 as FormatVersion }),
      ),
    ).toBeInstanceOf(WalArgumentError);
    expect(fs.readdirSync(tmp.dir)).toEqual([]);
  });
});

describe('writeSegmentFile', () => {
  it('writes pre-encoded chunks (header + records) under the segment name', async () => {
    const records = [recordFor(9n), recordFor(9n, { txnId: 3n, pageId: 4 })];
    const whole = encodeSegment(9n, records);
    const chunks = [whole.subarray(0, 10), whole.subarray(10, 30), whole.subarray(30)];
    const written = await writeSegmentFile(dbPath, 9n, chunks, { fsync: 'normal' });
    expect(written).toBe(whole.length);
    expect((await readSegment(segmentPath(dbPath, 9n))).records).toEqual(recoveryOrder(records));
  });

  it('refuses bytes whose header is invalid or names another epoch, creating nothing', async () => {
    const header = encodeSegmentHeader({ version: 2, epoch: 8n, recordCount: 0 });
    expect(await rejection(writeSegmentFile(dbPath, 9n, [header]))).toBeInstanceOf(
      WalArgumentError,
    );
    expect(await rejection(writeSegmentFile(dbPath, 8n, [header.subarray(0, 20)]))).toBeInstanceOf(
      WalArgumentError,
    );
    expect(await rejection(writeSegmentFile(dbPath, 8n, [new Uint8Array(24)]))).toBeInstanceOf(
      WalArgumentError,
    );
    expect(fs.readdirSync(tmp.dir)).toEqual([]);
  });
});

describe('listing segments', () => {
  it('lists segments sorted by epoch (seed: list segments)', async () => {
    for (const epoch of [1n, 5n, 10n, 2n]) {
      await writeSegment(dbPath, { epoch, records: [], recordsPerCore: [] }, { fsync: 'off' });
    }
    const segments = await listSegments(dbPath);
    expect(segments.map((s) => s.epoch)).toEqual([1n, 2n, 5n, 10n]);
    expect(segments[3]!.path).toBe(segmentPath(dbPath, 10n));
    for (const s of segments) await deleteSegment(s.path);
    expect(await listSegments(dbPath)).toEqual([]);
  });

  it('ignores other databases, temporary files and malformed suffixes', async () => {
    await writeSegment(dbPath, { epoch: 1n, records: [] });
    for (const name of [
      'test.db',
      'other.db-wal-seg-0000000000000002',
      'test.db-wal-seg-000000000000003',
      'test.db-wal-seg-00000000000000003',
      'test.db-wal-seg-000000000000000g',
      'test.db-wal-seg-0000000000000004.bak',
      'test.db-wal-tmp-0000000000000005-abcdef',
      'xtest.db-wal-seg-0000000000000006',
    ]) {
      fs.writeFileSync(path.join(tmp.dir, name), 'x');
    }
    expect((await listSegments(dbPath)).map((s) => s.epoch)).toEqual([1n]);
  });

  it('reports two files for one epoch as corruption', async () => {
    await writeSegment(dbPath, { epoch: 0xabn, records: [] });
    fs.copyFileSync(
      segmentPath(dbPath, 0xabn),
      path.join(tmp.dir, 'test.db-wal-seg-00000000000000AB'),
    );
    const error = await rejection(listSegments(dbPath));
    expect(error).toBeInstanceOf(SegmentCorruptError);
    expect((error as SegmentCorruptError).reason).toBe('ERR_SEGMENT_DUPLICATE_EPOCH');
    expect((error as Error).message).toMatch(/^segment epoch 171 has 2 files: /);
  });
});

describe('file-system errors are typed', () => {
  it('a missing database directory', async () => {
    const error = await rejection(listSegments(path.join(tmp.dir, 'missing', 'x.db')));
    expect(error).toBeInstanceOf(WalIoError);
    expect((error as WalIoError).code).toBe('ERR_IO');
    expect((error as WalIoError).errno).toBe('ENOENT');
    expect((error as Error).message).toBe(
      `cannot list segment directory ${path.join(tmp.dir, 'missing')}: does not exist (ENOENT, readdir)`,
    );
    const write = await rejection(
      writeSegment(path.join(tmp.dir, 'missing', 'x.db'), { epoch: 1n, records: [] }),
    );
    expect(write).toBeInstanceOf(WalIoError);
    expect((write as WalIoError).errno).toBe('ENOENT');
    expect((write as WalIoError).syscall).toBe('open');
  });

  it('a file where the directory should be', async () => {
    fs.writeFileSync(path.join(tmp.dir, 'plain'), 'x');
    const error = await rejection(listSegments(path.join(tmp.dir, 'plain', 'x.db')));
    expect(error).toBeInstanceOf(WalIoError);
    expect((error as WalIoError).errno).toBe('ENOTDIR');
    expect((error as Error).message).toMatch(/not a directory \(ENOTDIR, readdir\)$/);
  });

  it('a directory without permission', async () => {
    // Tests may run as root, where chmod does not deny anything: inject the
    // error the kernel would give through the file-system layer instead.
    const denied: WalFileSystem = {
      ...nodeFileSystem,
      readdir: async (dir) => {
        throw Object.assign(new Error(`EACCES: permission denied, scandir '${dir}'`), {
          code: 'EACCES',
        });
      },
    };
    const error = await rejection(listSegments(path.join(tmp.dir, 'x.db'), { fs: denied }));
    expect(error).toBeInstanceOf(WalIoError);
    expect((error as WalIoError).errno).toBe('EACCES');
    expect((error as Error).message).toBe(
      `cannot list segment directory ${tmp.dir}: permission denied (EACCES, readdir)`,
    );
  });

  it('a missing segment file, and a segment name that is a directory', async () => {
    const missing = await rejection(readSegment(segmentPath(dbPath, 1n)));
    expect(missing).toBeInstanceOf(WalIoError);
    expect((missing as WalIoError).errno).toBe('ENOENT');
    fs.mkdirSync(segmentPath(dbPath, 2n));
    const dir = await rejection(readSegment(segmentPath(dbPath, 2n)));
    expect(dir).toBeInstanceOf(WalIoError);
    expect((dir as WalIoError).errno).toBe('EISDIR');
    const del = await rejection(deleteSegment(segmentPath(dbPath, 3n)));
    expect((del as WalIoError).errno).toBe('ENOENT');
  });

  it('corrupt bytes give the format error with the path attached', async () => {
    fs.writeFileSync(
      segmentPath(dbPath, 1n),
      Buffer.from([0xef, 0xbe, 0xad, 0xde, ...new Array(20).fill(0)]),
    );
    const error = await rejection(readSegment(segmentPath(dbPath, 1n)));
    expect(error).toBeInstanceOf(SegmentFormatError);
    expect((error as SegmentFormatError).code).toBe('ERR_SEGMENT_MAGIC');
    expect((error as Error).message).toBe('invalid segment magic: 0xdeadbeef');
    expect((error as SegmentFormatError).path).toBe(segmentPath(dbPath, 1n));
  });
});

describe('reader limits on files (seed ports)', () => {
  it('rejects an impossible record count before allocation', async () => {
    const file = segmentPath(path.join(tmp.dir, 'impossible-count.db'), 1n);
    fs.writeFileSync(file, encodeSegmentHeader({ version: 1, epoch: 1n, recordCount: 0xffffffff }));
    const error = await rejection(readSegment(file));
    expect((error as Error).message).toBe(
      'segment record count 4294967295 exceeds maximum possible 0 for file length 24',
    );
  });

  it('rejects trailing bytes after the declared records', async () => {
    for (const version of VERSIONS) {
      await writeSegment(
        dbPath,
        { epoch: 1n, records: [recordFor(1n, { fill: 0xcc })] },
        { fsync: 'off', formatVersion: version },
      );
      fs.appendFileSync(segmentPath(dbPath, 1n), 'junk');
      const error = await rejection(readSegment(segmentPath(dbPath, 1n)));
      expect((error as SegmentFormatError).code).toBe('ERR_SEGMENT_TRAILING_BYTES');
      expect((error as Error).message).toBe('segment has 4 trailing bytes after declared records');
    }
  });

  it('rejects an oversized record length before allocation', async () => {
    const file = segmentPath(dbPath, 1n);
    fs.writeFileSync(
      file,
      Buffer.concat([
        encodeSegmentHeader({ version: 1, epoch: 1n, recordCount: 1 }),
        Buffer.from([0xff, 0xff, 0xff, 0xff]),
        Buffer.alloc(41),
      ]),
    );
    const error = await rejection(readSegment(file));
    expect((error as SegmentFormatError).code).toBe('ERR_SEGMENT_RECORD_LENGTH');
  });
});
