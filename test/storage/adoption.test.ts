/**
 * Adopt-or-remove of the log's temporary files: only a complete version-2
 * segment under the early-acknowledgement temporary name, whose epoch has no
 * segment file, becomes a segment; every other owned temporary file is
 * removed; foreign files are never touched; read-only paths change nothing
 * but still see the adoptable epoch.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeSegment } from '../../src/format/segment.js';
import {
  adoptOrRemoveTemporaryFiles,
  cleanupTemporaryFiles,
  inspectTemporaryFiles,
} from '../../src/storage/adoption.js';
import { recoverSegments } from '../../src/storage/recovery.js';
import { listSegments, writeSegment } from '../../src/storage/segment-files.js';
import { recordFor } from './helpers.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function setup(): { dir: string; db: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
  dirs.push(dir);
  return { dir, db: path.join(dir, 'a.db') };
}

const ACK = (dir: string, hex: string) => path.join(dir, `a.db-wal-tmp-ack-${hex}`);
const segmentBytes = (epoch: bigint, version: 1 | 2 = 2) =>
  encodeSegment(
    epoch,
    [recordFor(epoch, { txnId: epoch + 1n, pageId: 3, fill: 7, size: 900 })],
    version,
  );

describe('adoption of early-acknowledged temporary files', () => {
  it('adopts a complete one as its segment, removes torn, empty and version-1 ones, never touches foreign files', async () => {
    const { dir, db } = setup();
    await writeSegment(db, {
      epoch: 1n,
      records: [recordFor(1n, { txnId: 1n, pageId: 1, fill: 1, size: 10 })],
    });
    fs.writeFileSync(ACK(dir, '000000000002'), segmentBytes(2n));
    const torn = segmentBytes(3n);
    fs.writeFileSync(ACK(dir, '000000000003'), torn.subarray(0, torn.length - 7));
    fs.writeFileSync(ACK(dir, '000000000004'), new Uint8Array(0));
    fs.writeFileSync(ACK(dir, '000000000005'), segmentBytes(5n, 1));
    const trailing = new Uint8Array(segmentBytes(6n).length + 1);
    trailing.set(segmentBytes(6n));
    fs.writeFileSync(ACK(dir, '000000000006'), trailing);
    // Complete, but under a name of a protocol that never acknowledges before its rename.
    fs.writeFileSync(
      path.join(dir, 'a.db-wal-tmp-0000000000000007-0123456789ab'),
      segmentBytes(7n),
    );
    fs.writeFileSync(path.join(dir, 'a.db-wal-tmp-next-0123456789ab'), segmentBytes(8n));
    const foreign = [
      'a.db-wal-tmp-ack-XYZ',
      'a.db-wal-tmp-ack-000000000009.bak',
      'b.db-wal-tmp-ack-000000000009',
    ];
    for (const name of foreign) fs.writeFileSync(path.join(dir, name), segmentBytes(9n));

    const verdicts = await inspectTemporaryFiles(db);
    expect(verdicts.filter((v) => v.verdict === 'adoptable').map((v) => v.epoch)).toEqual([2n]);
    expect(verdicts).toHaveLength(7);

    const result = await adoptOrRemoveTemporaryFiles(db);
    expect(result.adopted.map((a) => a.epoch)).toEqual([2n]);
    expect(result.removed).toHaveLength(6);
    expect(fs.readFileSync(path.join(dir, 'a.db-wal-seg-0000000000000002'))).toEqual(
      Buffer.from(segmentBytes(2n)),
    );
    expect(fs.readdirSync(dir).sort()).toEqual(
      ['a.db-wal-seg-0000000000000001', 'a.db-wal-seg-0000000000000002', ...foreign].sort(),
    );
    expect((await listSegments(db)).map((s) => s.epoch)).toEqual([1n, 2n]);
  });

  it('removes a complete file whose epoch already has a segment (duplicate), and keeps the segment', async () => {
    const { dir, db } = setup();
    await writeSegment(db, {
      epoch: 4n,
      records: [recordFor(4n, { txnId: 1n, pageId: 1, fill: 1, size: 10 })],
    });
    const before = fs.readFileSync(path.join(dir, 'a.db-wal-seg-0000000000000004'));
    fs.writeFileSync(ACK(dir, 'aaaaaaaaaaaa'), segmentBytes(4n));
    expect(await cleanupTemporaryFiles(db)).toBe(1);
    expect(fs.readFileSync(path.join(dir, 'a.db-wal-seg-0000000000000004'))).toEqual(before);
  });

  it('read-only recovery replays an adoptable file in epoch order without renaming it; cleanup recovery adopts it', async () => {
    const { dir, db } = setup();
    await writeSegment(db, {
      epoch: 1n,
      records: [recordFor(1n, { txnId: 1n, pageId: 1, fill: 1, size: 10 })],
    });
    fs.writeFileSync(ACK(dir, '0123456789ab'), segmentBytes(2n));
    const before = fs.readdirSync(dir).sort();
    const readOnly = await recoverSegments(db);
    expect(readOnly.epochs).toEqual([1n, 2n]);
    expect(readOnly.pendingAdoption).toEqual([ACK(dir, '0123456789ab')]);
    expect(fs.readdirSync(dir).sort()).toEqual(before);
    const cleaned = await recoverSegments(db, { cleanupTemporaryFiles: true });
    expect(cleaned.temporaryFilesAdopted).toBe(1);
    expect(cleaned.pendingAdoption).toEqual([]);
    expect(cleaned.epochs).toEqual([1n, 2n]);
    expect(cleaned.records.map((r) => r.epoch)).toEqual(readOnly.records.map((r) => r.epoch));
    expect(fs.readdirSync(dir).filter((n) => n.includes('-wal-tmp-'))).toEqual([]);
  });
});
