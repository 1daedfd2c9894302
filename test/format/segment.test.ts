import { describe, expect, it } from 'vitest';
import { crc32c } from '../../src/format/crc32c.js';
import { InvalidRecordError, SegmentFormatError } from '../../src/format/errors.js';
import { encodeRecord } from '../../src/format/record.js';
import {
  decodeSegment,
  decodeSegmentHeader,
  encodeSegment,
  encodeSegmentHeader,
  maxPossibleRecords,
} from '../../src/format/segment.js';
import {
  type FormatVersion,
  imageBytesMax,
  SEGMENT_HEADER_BYTES,
  u64Max,
} from '../../src/format/types.js';
import { sampleRecord } from './helpers.js';

const VERSIONS: FormatVersion[] = [1, 2];

function formatError(fn: () => unknown): SegmentFormatError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(SegmentFormatError);
    return error as SegmentFormatError;
  }
  throw new Error('expected a SegmentFormatError');
}

function concat(...parts: Uint8Array[]): Uint8Array {
  return Uint8Array.from(Buffer.concat(parts));
}

function u32(value: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, value, true);
  return b;
}

describe('segment header', () => {
  it('round-trips epoch and record count (seed: header roundtrip)', () => {
    for (const version of VERSIONS) {
      const bytes = encodeSegmentHeader({ version, epoch: 42n, recordCount: 100 });
      expect(bytes.length).toBe(SEGMENT_HEADER_BYTES);
      expect(decodeSegmentHeader(bytes)).toEqual({ version, epoch: 42n, recordCount: 100 });
    }
    const max = { version: 2 as const, epoch: u64Max, recordCount: 0xffffffff };
    expect(decodeSegmentHeader(encodeSegmentHeader(max))).toEqual(max);
  });

  it('lays out magic LAWP, version, zero reserved, epoch, count and CRC', () => {
    const bytes = encodeSegmentHeader({ version: 2, epoch: 0x0102n, recordCount: 3 });
    expect(Buffer.from(bytes.subarray(0, 4)).toString('latin1')).toBe('LAWP');
    expect([...bytes.subarray(4, 8)]).toEqual([2, 0, 0, 0]);
    expect([...bytes.subarray(8, 16)]).toEqual([2, 1, 0, 0, 0, 0, 0, 0]);
    expect([...bytes.subarray(16, 20)]).toEqual([3, 0, 0, 0]);
    const view = new DataView(bytes.buffer);
    expect(view.getUint32(20, true)).toBe(crc32c(bytes.subarray(0, 20)));
  });

  it('rejects a bad magic (seed: invalid magic)', () => {
    const bytes = new Uint8Array(SEGMENT_HEADER_BYTES);
    bytes.set(u32(0xdeadbeef));
    const error = formatError(() => decodeSegmentHeader(bytes));
    expect(error.code).toBe('ERR_SEGMENT_MAGIC');
    expect(error.message).toBe('invalid segment magic: 0xdeadbeef');
  });

  it('rejects an unsupported version before the checksum', () => {
    const bytes = encodeSegmentHeader({ version: 2, epoch: 1n, recordCount: 0 });
    bytes[4] = 4;
    const error = formatError(() => decodeSegmentHeader(bytes));
    expect(error.code).toBe('ERR_SEGMENT_VERSION');
    expect(error.message).toBe('unsupported segment version: 4');
  });

  it('rejects a header whose checksum does not match (seed: checksum mismatch)', () => {
    for (const version of VERSIONS) {
      const bytes = encodeSegmentHeader({ version, epoch: 42n, recordCount: 100 });
      bytes[8]! ^= 0xff;
      const error = formatError(() => decodeSegmentHeader(bytes));
      expect(error.code).toBe('ERR_SEGMENT_HEADER_CHECKSUM');
      expect(error.message).toMatch(
        /^segment header checksum mismatch: stored=0x[0-9a-f]+, computed=0x[0-9a-f]+$/,
      );
    }
  });

  it('rejects input shorter than 24 bytes as truncation', () => {
    for (const length of [0, 8, 23]) {
      const error = formatError(() => decodeSegment(new Uint8Array(length).fill(0xff)));
      expect(error.code).toBe('ERR_SEGMENT_TRUNCATED');
      expect(error.message).toBe(`segment header truncated: ${length} bytes, need 24`);
    }
  });
});

describe('segment encode and decode', () => {
  const records = [
    sampleRecord({
      txnToken: { id: 1n, epoch: 0 },
      epoch: 5n,
      pageId: 1,
      beginSeq: 100n,
      endSeq: 100n,
      beforeImage: new Uint8Array(32),
      afterImage: new Uint8Array(32).fill(1),
    }),
    sampleRecord({
      txnToken: { id: 2n, epoch: 1 },
      epoch: 5n,
      pageId: 2,
      beginSeq: 101n,
      endSeq: null,
      beforeImage: new Uint8Array(0),
      afterImage: new Uint8Array(64).fill(2),
    }),
  ];

  it('round-trips a segment in both versions (seed: write and read)', () => {
    for (const version of VERSIONS) {
      const bytes = encodeSegment(5n, records, version);
      const { header, records: decoded } = decodeSegment(bytes);
      expect(header).toEqual({ version, epoch: 5n, recordCount: 2 });
      expect(decoded).toEqual(records);
    }
  });

  it('writes version 2 by default', () => {
    expect(decodeSegmentHeader(encodeSegment(1n, [])).version).toBe(2);
  });

  it('stores records in canonical order whatever order they come in (seed: canonical order)', () => {
    const later = sampleRecord({ txnToken: { id: 2n, epoch: 0 }, epoch: 7n, beginSeq: 200n });
    const earlier = sampleRecord({ txnToken: { id: 1n, epoch: 0 }, epoch: 7n, beginSeq: 100n });
    for (const version of VERSIONS) {
      const bytes = encodeSegment(7n, [later, earlier], version);
      expect(bytes).toEqual(encodeSegment(7n, [earlier, later], version));
      const first = encodeRecord(earlier, version);
      expect([...bytes.subarray(28, 28 + first.length)]).toEqual([...first]);
      expect(decodeSegment(bytes).records.map((r) => r.beginSeq)).toEqual([100n, 200n]);
    }
  });

  it('rejects a record from another epoch before encoding anything', () => {
    const error = (() => {
      try {
        encodeSegment(5n, [sampleRecord({ epoch: 4n })]);
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(InvalidRecordError);
    expect((error as Error).message).toBe('segment epoch 5 contains record from epoch 4');
  });

  it('rejects an oversized image', () => {
    expect(() =>
      encodeSegment(5n, [sampleRecord({ afterImage: new Uint8Array(imageBytesMax + 1) })]),
    ).toThrow('after_image length 65537 exceeds maximum 65536');
  });

  it('decodes images that never alias the input unless asked to', () => {
    const bytes = Buffer.from(encodeSegment(5n, records, 2));
    const copied = decodeSegment(bytes);
    const viewed = decodeSegment(bytes, { copyImages: false });
    bytes.fill(0x77, SEGMENT_HEADER_BYTES);
    expect(copied.records[0]!.afterImage).toEqual(new Uint8Array(32).fill(1));
    expect(viewed.records[0]!.afterImage[0]).toBe(0x77);
  });
});

describe('segment reader rejects', () => {
  it('an impossible record count before allocating (seed)', () => {
    for (const version of VERSIONS) {
      const bytes = encodeSegmentHeader({ version, epoch: 1n, recordCount: 0xffffffff });
      const error = formatError(() => decodeSegment(bytes));
      expect(error.code).toBe('ERR_SEGMENT_RECORD_COUNT');
      expect(error.message).toBe(
        'segment record count 4294967295 exceeds maximum possible 0 for file length 24',
      );
    }
  });

  it('a record count without room for the minimum record payloads (seed)', () => {
    const bytes = concat(
      encodeSegmentHeader({ version: 1, epoch: 1n, recordCount: 2 }),
      u32(0),
      u32(0),
    );
    const error = formatError(() => decodeSegment(bytes));
    expect(error.code).toBe('ERR_SEGMENT_RECORD_COUNT');
    expect(error.message).toBe(
      'segment record count 2 exceeds maximum possible 0 for file length 32',
    );
    expect(maxPossibleRecords(24 + 45, 1)).toBe(1);
    expect(maxPossibleRecords(24 + 45, 2)).toBe(0);
    expect(maxPossibleRecords(24 + 49, 2)).toBe(1);
  });

  it('an oversized record length before allocating (seed)', () => {
    const v1 = concat(
      encodeSegmentHeader({ version: 1, epoch: 1n, recordCount: 1 }),
      u32(0xffffffff),
      new Uint8Array(41),
    );
    const error = formatError(() => decodeSegment(v1));
    expect(error.code).toBe('ERR_SEGMENT_RECORD_LENGTH');
    expect(error.message).toBe('segment record length 4294967295 exceeds maximum 131121');
    const v2 = concat(
      encodeSegmentHeader({ version: 2, epoch: 1n, recordCount: 1 }),
      u32(131126),
      new Uint8Array(45),
    );
    expect(formatError(() => decodeSegment(v2)).message).toBe(
      'segment record length 131126 exceeds maximum 131125',
    );
  });

  it('a record whose declared length runs past the end of the file', () => {
    for (const version of VERSIONS) {
      const whole = encodeSegment(
        1n,
        [sampleRecord({ epoch: 1n, afterImage: new Uint8Array(200) })],
        version,
      );
      const error = formatError(() => decodeSegment(whole.subarray(0, whole.length - 1)));
      expect(error.code).toBe('ERR_SEGMENT_TRUNCATED');
      expect(error.recordIndex).toBe(0);
    }
  });

  it('trailing bytes after the declared records (seed)', () => {
    for (const version of VERSIONS) {
      const bytes = concat(
        encodeSegment(
          1n,
          [sampleRecord({ epoch: 1n, afterImage: new Uint8Array(16).fill(0xcc) })],
          version,
        ),
        new TextEncoder().encode('junk'),
      );
      const error = formatError(() => decodeSegment(bytes));
      expect(error.code).toBe('ERR_SEGMENT_TRAILING_BYTES');
      expect(error.message).toBe('segment has 4 trailing bytes after declared records');
    }
  });

  it('a record from another epoch than the header', () => {
    for (const version of VERSIONS) {
      const header = encodeSegmentHeader({ version, epoch: 5n, recordCount: 1 });
      const body = encodeRecord(sampleRecord({ epoch: 4n }), version);
      const error = formatError(() => decodeSegment(concat(header, u32(body.length), body)));
      expect(error.code).toBe('ERR_SEGMENT_EPOCH_MISMATCH');
      expect(error.message).toBe('segment epoch 5 contains record from epoch 4');
    }
  });

  it('a corrupt record, reporting its index and offset', () => {
    for (const version of VERSIONS) {
      const recs = [1, 2, 3].map((i) =>
        sampleRecord({ epoch: 1n, beginSeq: BigInt(i), endSeq: null }),
      );
      const bytes = Uint8Array.from(encodeSegment(1n, recs, version));
      const size = 4 + encodeRecord(recs[0]!, version).length;
      const second = SEGMENT_HEADER_BYTES + size;
      bytes[second + 4 + 32] = 2; // end_seq flag of record 1
      const error = formatError(() => decodeSegment(bytes));
      expect(error.code).toBe(version === 1 ? 'ERR_RECORD_END_SEQ_FLAG' : 'ERR_RECORD_CHECKSUM');
      expect(error.recordIndex).toBe(1);
      expect(error.offset).toBe(second);
    }
  });
});

describe('the worked example in docs/format.md', () => {
  const record = sampleRecord({
    txnToken: { id: 3n, epoch: 1 },
    epoch: 7n,
    pageId: 2,
    beginSeq: 9n,
    endSeq: 9n,
    beforeImage: new Uint8Array(0),
    afterImage: new TextEncoder().encode('hi'),
  });

  it('encodes to the documented 83 bytes in version 2', () => {
    const hex =
      '4c41575002000000070000000000000001000000d21aecbc370000000300000000000000010000000700000000000000' +
      '02000000090000000000000001090000000000000000000000020000006869' +
      '37f3f0ae';
    expect(Buffer.from(encodeSegment(7n, [record], 2)).toString('hex')).toBe(hex);
  });

  it('encodes to 79 bytes with the documented header CRC and length in version 1', () => {
    const bytes = encodeSegment(7n, [record], 1);
    expect(bytes.length).toBe(79);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    expect(view.getUint32(20, true)).toBe(0xaf147a21);
    expect(view.getUint32(24, true)).toBe(51);
  });
});
