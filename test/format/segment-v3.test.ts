import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { crc32c } from '../../src/format/crc32c.js';
import { SegmentFormatError } from '../../src/format/errors.js';
import { decodeSegment, encodeSegment } from '../../src/format/segment.js';
import type { WalRecord } from '../../src/format/types.js';
import { readSegment, writeSegmentFile } from '../../src/storage/segment-files.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function rec(seq: bigint, page: number): WalRecord {
  return {
    txnToken: { id: seq, epoch: 0 },
    epoch: 9n,
    pageId: page,
    beginSeq: seq,
    endSeq: seq,
    beforeImage: new Uint8Array(0),
    afterImage: new Uint8Array(40).fill(page),
  };
}

/** A version-2 segment relabelled 3, followed by a trailer around `certificate`. */
function v3(records: WalRecord[], certificate: Uint8Array, tweak?: (trailer: DataView) => void) {
  const body = encodeSegment(9n, records, 2);
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  view.setUint16(4, 3, true);
  view.setUint32(20, crc32c(body.subarray(0, 20)), true);
  const trailer = new Uint8Array(8 + certificate.length);
  const tv = new DataView(trailer.buffer);
  tv.setUint32(0, 0x54435750, true);
  tv.setUint32(4, certificate.length, true);
  trailer.set(certificate, 8);
  tweak?.(tv);
  const out = new Uint8Array(body.length + trailer.length);
  out.set(body);
  out.set(trailer, body.length);
  return out;
}

function trailerError(bytes: Uint8Array): SegmentFormatError {
  try {
    decodeSegment(bytes);
  } catch (error) {
    if (error instanceof SegmentFormatError) return error;
    throw error;
  }
  throw new Error('decoded');
}

describe('segment format version 3 (certificate trailer)', () => {
  const records = [rec(2n, 5), rec(1n, 3)];
  const certificate = Uint8Array.from({ length: 33 }, (_, i) => i * 7);

  it('reads the version-2 records and hands back the certificate bytes', () => {
    const decoded = decodeSegment(v3(records, certificate));
    expect(decoded.header).toEqual({ version: 3, epoch: 9n, recordCount: 2 });
    expect(decoded.records).toEqual(decodeSegment(encodeSegment(9n, records, 2)).records);
    expect(decoded.certificate).toEqual(certificate);
  });

  it('versions 1 and 2 carry no certificate', () => {
    for (const version of [1, 2] as const) {
      expect(decodeSegment(encodeSegment(9n, records, version)).certificate).toBeUndefined();
    }
  });

  it('rejects a missing trailer, a bad trailer magic and a trailer length that does not match', () => {
    const whole = v3(records, certificate);
    const noTrailer = whole.subarray(0, whole.length - certificate.length - 8);
    expect(trailerError(noTrailer).code).toBe('ERR_SEGMENT_CERTIFICATE_TRAILER');
    const badMagic = v3(records, certificate, (t) => t.setUint32(0, 0x12345678, true));
    expect(trailerError(badMagic).message).toBe('invalid certificate trailer magic: 0x12345678');
    const long = v3(records, certificate, (t) => t.setUint32(4, certificate.length + 1, true));
    expect(trailerError(long).code).toBe('ERR_SEGMENT_CERTIFICATE_TRAILER');
    const withExtra = new Uint8Array(whole.length + 1);
    withExtra.set(whole);
    expect(trailerError(withExtra).code).toBe('ERR_SEGMENT_CERTIFICATE_TRAILER');
  });

  it('is written and read back by the storage layer, beside versions 1 and 2', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
    dirs.push(dir);
    const db = path.join(dir, 'db');
    await writeSegmentFile(db, 9n, [v3(records, certificate)], { fsync: 'off' });
    const read = await readSegment(path.join(dir, 'db-wal-seg-0000000000000009'));
    expect(read.header.version).toBe(3);
    expect(read.records.map((r) => r.pageId)).toEqual([3, 5]);
    expect(read.certificate).toEqual(certificate);
  });
});
