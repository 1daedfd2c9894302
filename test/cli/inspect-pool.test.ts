/**
 * `pwal inspect` shows the segment pool (the `pool` sink's reusable files) and
 * lists a pool file holding an acknowledged, unpublished epoch as pending
 * adoption, reading only its segment (the stale bytes after it ignored).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeSegment } from '../../src/format/segment.js';
import { writeSegment } from '../../src/storage/segment-files.js';
import { recordFor } from '../storage/helpers.js';
import { runCliCaptured } from '../support/cli.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

describe('pwal inspect and the segment pool', () => {
  it('counts pool files and lists a pending one whose segment is followed by stale bytes', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
    dirs.push(dir);
    const db = path.join(dir, 'a.db');
    await writeSegment(db, { epoch: 0n, records: [recordFor(0n, { txnId: 1n, beginSeq: 1n })] });
    const next = encodeSegment(1n, [recordFor(1n, { txnId: 2n, beginSeq: 2n, size: 40 })], 2);
    const file = new Uint8Array(8192);
    file.set(next, 0);
    file.fill(0x77, next.length);
    fs.writeFileSync(path.join(dir, 'a.db-wal-tmp-pool-0000000000000001-aaaaaaaaaaaa'), file);
    fs.writeFileSync(
      path.join(dir, 'a.db-wal-tmp-pool-0000000000000001-bbbbbbbbbbbb'),
      new Uint8Array(4096),
    );
    const table = await runCliCaptured('inspect', db);
    expect(table.code).toBe(0);
    expect(table.out).toContain('segment pool: 2 file(s), 12288 bytes');
    expect(table.out).toMatch(
      /a\.db-wal-tmp-pool-0000000000000001-aaaaaaaaaaaa\s+\d+\s+2\s+1\s+pending-adoption/,
    );
    const json = await runCliCaptured('inspect', db, '--json');
    const doc = JSON.parse(json.out) as { segmentPool: { files: number; bytes: number } };
    expect(doc.segmentPool).toEqual({ files: 2, bytes: 12288 });
    const verify = await runCliCaptured('verify', db);
    expect(verify.code).toBe(0);
  });
});
