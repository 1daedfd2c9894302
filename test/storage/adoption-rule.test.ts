/**
 * The adoption rule for temporary and pool files (docs/durability.md, "Which
 * temporary files recovery adopts"): only a whole version-2 segment at the
 * start of an early-acknowledgement or pool file, every record CRC-checked
 * and of the header's epoch, whose epoch is the next one after the segments
 * (or the floor the caller knows), is adopted; stale bytes after it are cut
 * away; everything else is removed; two different candidates for one epoch
 * fail closed.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { relabelAsVersion3 } from '../../src/control/segment-v3.js';
import { ParallelWal } from '../../src/engine/wal.js';
import { isWalError } from '../../src/errors.js';
import { encodeSegment } from '../../src/format/segment.js';
import { adoptOrRemoveTemporaryFiles, inspectTemporaryFiles } from '../../src/storage/adoption.js';
import { SegmentCorruptError } from '../../src/storage/errors.js';
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
const POOL = (dir: string, floor: bigint, hex: string) =>
  path.join(dir, `a.db-wal-tmp-pool-${floor.toString(16).padStart(16, '0')}-${hex}`);

function segmentOf(epoch: bigint, fill = 7, size = 900, records = 1): Uint8Array {
  return encodeSegment(
    epoch,
    Array.from({ length: records }, (_, i) =>
      recordFor(epoch, {
        txnId: epoch + 1n + BigInt(i),
        beginSeq: epoch * 100n + BigInt(i),
        pageId: 3 + i,
        fill,
        size,
      }),
    ),
    2,
  );
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

async function segmentAt(db: string, epoch: bigint): Promise<void> {
  await writeSegment(db, {
    epoch,
    records: [recordFor(epoch, { txnId: epoch + 1n, pageId: 1, fill: 1, size: 10 })],
  });
}

const tempNames = (dir: string) => fs.readdirSync(dir).filter((n) => n.includes('-wal-tmp-'));

describe('which temporary files recovery adopts', () => {
  it('does not adopt a version-3 segment under an early-acknowledgement name (v3 is acknowledged only once published)', async () => {
    const { dir, db } = setup();
    await segmentAt(db, 0n);
    // A framed certificate trailer: magic "PWCT", length, bytes.
    const trailer = new Uint8Array(8 + 12);
    new DataView(trailer.buffer).setUint32(0, 0x54435750, true);
    new DataView(trailer.buffer).setUint32(4, 12, true);
    fs.writeFileSync(ACK(dir, '000000000001'), concat(relabelAsVersion3(segmentOf(1n)), trailer));
    const verdicts = await inspectTemporaryFiles(db);
    expect(verdicts.map((v) => v.verdict)).toEqual(['remove']);
    const result = await adoptOrRemoveTemporaryFiles(db);
    expect(result.adopted).toEqual([]);
    expect((await listSegments(db)).map((s) => s.epoch)).toEqual([0n]);
  });

  it('does not adopt a temporary file for epoch 6 when only epoch 0 is on disk; the log continues at 1', async () => {
    const { dir, db } = setup();
    await segmentAt(db, 0n);
    fs.writeFileSync(ACK(dir, '000000000006'), segmentOf(6n));
    const readOnly = await recoverSegments(db);
    expect(readOnly.epochs).toEqual([0n]);
    expect(readOnly.pendingAdoption).toEqual([]);
    const wal = await ParallelWal.open(db, { slotCount: 1 });
    try {
      expect(wal.appendEpoch).toBe(1n);
      expect(wal.stats().adoptedTemporaryFiles).toBe(0);
    } finally {
      await wal.close();
    }
    expect((await listSegments(db)).map((s) => s.epoch)).toEqual([0n]);
    expect(tempNames(dir)).toEqual([]);
  });

  it('adopts a chain of consecutive epochs after the last segment, and fills a lost rename below it', async () => {
    const { dir, db } = setup();
    await segmentAt(db, 0n);
    await segmentAt(db, 2n); // epoch 1's rename was lost, epoch 2's kept
    fs.writeFileSync(ACK(dir, '000000000001'), segmentOf(1n));
    fs.writeFileSync(ACK(dir, '000000000003'), segmentOf(3n));
    fs.writeFileSync(ACK(dir, '000000000004'), segmentOf(4n));
    fs.writeFileSync(ACK(dir, '000000000009'), segmentOf(9n));
    const result = await adoptOrRemoveTemporaryFiles(db);
    expect(result.adopted.map((a) => a.epoch)).toEqual([1n, 3n, 4n]);
    expect(result.removed).toEqual([ACK(dir, '000000000009')]);
    expect((await listSegments(db)).map((s) => s.epoch)).toEqual([0n, 1n, 2n, 3n, 4n]);
  });

  it('fails closed on two complete candidates for one epoch with different content, and leaves both in place', async () => {
    const { dir, db } = setup();
    await segmentAt(db, 0n);
    fs.writeFileSync(ACK(dir, '000000000001'), segmentOf(1n, 7));
    fs.writeFileSync(ACK(dir, '000000000002'), segmentOf(1n, 8));
    const error = await adoptOrRemoveTemporaryFiles(db).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(SegmentCorruptError);
    expect((error as SegmentCorruptError).reason).toBe('ERR_SEGMENT_DUPLICATE_EPOCH');
    expect(isWalError(error, 'ERR_SEGMENT_CORRUPT')).toBe(true);
    expect(tempNames(dir).sort()).toEqual([
      'a.db-wal-tmp-ack-000000000001',
      'a.db-wal-tmp-ack-000000000002',
    ]);
    const opened = await ParallelWal.open(db, { slotCount: 1 }).then(
      (w) => w.close().then(() => null),
      (e: unknown) => e,
    );
    expect(opened).toBeInstanceOf(SegmentCorruptError);
    expect(tempNames(dir)).toHaveLength(2);
  });

  it('treats two identical candidates for one epoch as one', async () => {
    const { dir, db } = setup();
    await segmentAt(db, 0n);
    fs.writeFileSync(ACK(dir, '000000000001'), segmentOf(1n));
    fs.writeFileSync(ACK(dir, '000000000002'), segmentOf(1n));
    const result = await adoptOrRemoveTemporaryFiles(db);
    expect(result.adopted.map((a) => a.epoch)).toEqual([1n]);
    expect(result.removed).toHaveLength(1);
  });

  it('never adopts an epoch below the floor the caller knows (all segments checkpointed away)', async () => {
    const { dir, db } = setup();
    // A store folded everything through epoch 9 and deleted the segments; an
    // old epoch's complete bytes are still in a temporary file.
    fs.writeFileSync(ACK(dir, '000000000003'), segmentOf(3n));
    const result = await adoptOrRemoveTemporaryFiles(db, { floorEpoch: 10n });
    expect(result.adopted).toEqual([]);
    expect(result.removed).toEqual([ACK(dir, '000000000003')]);
    // The epoch at the floor is the next one in line.
    fs.writeFileSync(ACK(dir, '000000000010'), segmentOf(10n));
    const next = await adoptOrRemoveTemporaryFiles(db, { floorEpoch: 10n });
    expect(next.adopted.map((a) => a.epoch)).toEqual([10n]);
  });

  it('ParallelWal.open with firstEpoch never adopts an older epoch', async () => {
    const { dir, db } = setup();
    fs.writeFileSync(ACK(dir, '000000000003'), segmentOf(3n));
    const wal = await ParallelWal.open(db, { slotCount: 1, firstEpoch: 10n });
    try {
      expect(wal.stats().adoptedTemporaryFiles).toBe(0);
      expect(wal.appendEpoch).toBe(10n);
    } finally {
      await wal.close();
    }
    expect(await listSegments(db)).toEqual([]);
  });
});

describe('pool files (reused segment files)', () => {
  it('adopts a new segment written over an older, longer one, ignoring and then cutting the stale tail', async () => {
    const { dir, db } = setup();
    await segmentAt(db, 4n);
    const stale = segmentOf(1n, 9, 4000, 3);
    const fresh = segmentOf(5n, 5, 300);
    const file = stale.slice();
    file.set(fresh, 0);
    fs.writeFileSync(POOL(dir, 2n, 'aaaaaaaaaaaa'), file);
    const readOnly = await recoverSegments(db);
    expect(readOnly.epochs).toEqual([4n, 5n]);
    const result = await adoptOrRemoveTemporaryFiles(db);
    expect(result.adopted.map((a) => a.epoch)).toEqual([5n]);
    expect(
      new Uint8Array(fs.readFileSync(path.join(dir, 'a.db-wal-seg-0000000000000005'))),
    ).toEqual(fresh);
  });

  it('removes a pool file whose whole segment is below the floor in its name (a stale, recycled file)', async () => {
    const { dir, db } = setup();
    fs.writeFileSync(POOL(dir, 8n, 'bbbbbbbbbbbb'), segmentOf(3n));
    const verdicts = await inspectTemporaryFiles(db);
    expect(verdicts.map((v) => [v.verdict, v.reason])).toEqual([
      ['remove', 'stale: below the pool file floor'],
    ]);
    expect((await adoptOrRemoveTemporaryFiles(db)).adopted).toEqual([]);
    expect(tempNames(dir)).toEqual([]);
  });

  it('removes a torn overwrite: the new header in front of the old records (records of another epoch)', async () => {
    const { dir, db } = setup();
    await segmentAt(db, 6n);
    const old = segmentOf(2n, 9, 400);
    const next = segmentOf(7n, 5, 400);
    // The first sector reached the disk (new header), the rest did not.
    const torn = old.slice();
    torn.set(next.subarray(0, 24), 0);
    fs.writeFileSync(POOL(dir, 1n, 'cccccccccccc'), torn);
    const verdicts = await inspectTemporaryFiles(db);
    expect(verdicts.map((v) => v.verdict)).toEqual(['remove']);
    expect((await adoptOrRemoveTemporaryFiles(db)).adopted).toEqual([]);
  });

  it('removes a zero-filled pool file', async () => {
    const { dir, db } = setup();
    fs.writeFileSync(POOL(dir, 0n, 'dddddddddddd'), new Uint8Array(8192));
    const result = await adoptOrRemoveTemporaryFiles(db);
    expect(result.removed).toHaveLength(1);
  });
});
