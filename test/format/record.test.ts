import { describe, expect, it } from 'vitest';
import { isWalError } from '../../src/errors.js';
import { crc32c } from '../../src/format/crc32c.js';
import { InvalidRecordError, SegmentFormatError } from '../../src/format/errors.js';
import { compareRecords, recoveryOrder } from '../../src/format/order.js';
import {
  decodeRecord,
  encodedRecordBytes,
  encodeRecord,
  encodeRecordInto,
  RECORD_BEGIN_SEQ_OFFSET,
  RECORD_END_SEQ_OFFSET,
  RECORD_EPOCH_OFFSET,
  RECORD_HAS_END_SEQ_OFFSET,
  RECORD_PAGE_ID_OFFSET,
  RECORD_TXN_EPOCH_OFFSET,
  RECORD_TXN_ID_OFFSET,
  validateRecord,
} from '../../src/format/record.js';
import {
  type FormatVersion,
  imageBytesMax,
  recordBytesMinV1,
  recordBytesMinV2,
  txnIdMax,
  u64Max,
  type WalRecord,
} from '../../src/format/types.js';
import { sampleRecord } from './helpers.js';

const VERSIONS: FormatVersion[] = [1, 2];

function expectFormatError(fn: () => unknown, code: string, message: string | RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(SegmentFormatError);
  expect((caught as SegmentFormatError).code).toBe(code);
  if (typeof message === 'string') expect((caught as Error).message).toBe(message);
  else expect((caught as Error).message).toMatch(message);
}

/** Re-seals a v2 body after a deliberate edit so only the edited check can fail. */
function refreshCrc(body: Uint8Array): void {
  const end = body.length - 4;
  new DataView(body.buffer, body.byteOffset).setUint32(end, crc32c(body.subarray(0, end)), true);
}

function edit(record = sampleRecord(), version: FormatVersion, change: (b: Uint8Array) => void) {
  const body = Uint8Array.from(encodeRecord(record, version));
  change(body);
  if (version === 2) refreshCrc(body);
  return body;
}

describe('record layout', () => {
  it('places every field at its documented offset, little-endian', () => {
    const record = sampleRecord({
      txnToken: { id: 0x0102030405060708n, epoch: 0x0a0b0c0d },
      epoch: 0x1112131415161718n,
      pageId: 0x21222324,
      beginSeq: 0x3132333435363738n,
      endSeq: 0x4142434445464748n,
      beforeImage: Uint8Array.of(0xb1, 0xb2),
      afterImage: Uint8Array.of(0xa1),
    });
    const body = encodeRecord(record, 1);
    const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
    expect(view.getBigUint64(RECORD_TXN_ID_OFFSET, true)).toBe(0x0102030405060708n);
    expect(view.getUint32(RECORD_TXN_EPOCH_OFFSET, true)).toBe(0x0a0b0c0d);
    expect(view.getBigUint64(RECORD_EPOCH_OFFSET, true)).toBe(0x1112131415161718n);
    expect(view.getUint32(RECORD_PAGE_ID_OFFSET, true)).toBe(0x21222324);
    expect(view.getBigUint64(RECORD_BEGIN_SEQ_OFFSET, true)).toBe(0x3132333435363738n);
    expect(body[RECORD_HAS_END_SEQ_OFFSET]).toBe(1);
    expect(view.getBigUint64(RECORD_END_SEQ_OFFSET, true)).toBe(0x4142434445464748n);
    expect(view.getUint32(41, true)).toBe(2);
    expect([...body.subarray(45, 47)]).toEqual([0xb1, 0xb2]);
    expect(view.getUint32(47, true)).toBe(1);
    expect(body[51]).toBe(0xa1);
    expect(body.length).toBe(52);
  });

  it('has minimum sizes 41 (v1) and 45 (v2) and appends a CRC-32C of the body in v2', () => {
    const record = sampleRecord({ endSeq: null, afterImage: new Uint8Array(0) });
    expect(encodeRecord(record, 1).length).toBe(recordBytesMinV1);
    expect(recordBytesMinV1).toBe(41);
    const v2 = encodeRecord(record, 2);
    expect(v2.length).toBe(recordBytesMinV2);
    expect(recordBytesMinV2).toBe(45);
    const view = new DataView(v2.buffer, v2.byteOffset, v2.byteLength);
    expect(view.getUint32(41, true)).toBe(crc32c(v2.subarray(0, 41)));
    expect([...v2.subarray(0, 41)]).toEqual([...encodeRecord(record, 1)]);
  });

  it('encodeRecordInto writes the u32 length prefix then the body and returns the end offset', () => {
    for (const version of VERSIONS) {
      const record = sampleRecord();
      const size = encodedRecordBytes(record, version);
      const target = new Uint8Array(3 + 4 + size + 2);
      const end = encodeRecordInto(record, version, target, 3);
      expect(end).toBe(3 + 4 + size);
      expect(new DataView(target.buffer).getUint32(3, true)).toBe(size);
      expect([...target.subarray(7, end)]).toEqual([...encodeRecord(record, version)]);
      expect(() => encodeRecordInto(record, version, new Uint8Array(size), 0)).toThrow(
        /target holds/,
      );
    }
  });
});

describe('record round trip', () => {
  it('decodes what it encodes, in both versions, with full-range u64 fields', () => {
    for (const version of VERSIONS) {
      for (const record of [
        sampleRecord(),
        sampleRecord({ endSeq: null, beforeImage: Uint8Array.of(1, 2, 3) }),
        sampleRecord({
          txnToken: { id: txnIdMax, epoch: 0xffffffff },
          epoch: u64Max,
          pageId: 0xffffffff,
          beginSeq: u64Max,
          endSeq: (1n << 53n) + 1n,
          beforeImage: new Uint8Array(imageBytesMax).fill(7),
          afterImage: new Uint8Array(imageBytesMax).fill(9),
        }),
      ]) {
        expect(decodeRecord(encodeRecord(record, version), version)).toEqual(record);
      }
    }
  });

  it('returns images that do not alias the input bytes', () => {
    for (const version of VERSIONS) {
      const body = Buffer.from(encodeRecord(sampleRecord(), version));
      const decoded = decodeRecord(body, version);
      body.fill(0);
      expect(decoded.afterImage).toEqual(new Uint8Array(8).fill(0xaa));
    }
  });
});

describe('record decoding rejects', () => {
  it('an invalid end_seq flag (seed test)', () => {
    for (const version of VERSIONS) {
      const body = edit(sampleRecord({ endSeq: null }), version, (b) => {
        b[RECORD_HAS_END_SEQ_OFFSET] = 2;
      });
      expectFormatError(
        () => decodeRecord(body, version),
        'ERR_RECORD_END_SEQ_FLAG',
        'invalid end_seq flag: 2',
      );
    }
  });

  it('trailing bytes inside a record (seed test)', () => {
    const v1 = Uint8Array.from([
      ...encodeRecord(sampleRecord({ endSeq: null }), 1),
      0x6a,
      0x75,
      0x6e,
      0x6b,
    ]);
    expectFormatError(
      () => decodeRecord(v1, 1),
      'ERR_RECORD_TRAILING_BYTES',
      'trailing bytes after WAL record: 4',
    );
    const plain = encodeRecord(sampleRecord({ endSeq: null }), 2);
    const v2 = new Uint8Array(plain.length + 4);
    v2.set(plain.subarray(0, plain.length - 4));
    v2.set([0x6a, 0x75, 0x6e, 0x6b], plain.length - 4);
    refreshCrc(v2);
    expectFormatError(
      () => decodeRecord(v2, 2),
      'ERR_RECORD_TRAILING_BYTES',
      'trailing bytes after WAL record: 4',
    );
  });

  it('a body shorter than the minimum record', () => {
    for (const version of VERSIONS) {
      const body = encodeRecord(
        sampleRecord({ endSeq: null, afterImage: new Uint8Array(0) }),
        version,
      );
      expectFormatError(
        () => decodeRecord(body.subarray(0, body.length - 1), version),
        'ERR_RECORD_TOO_SHORT',
        'record too short',
      );
    }
  });

  it('a v2 record whose checksum does not match, before looking at any field', () => {
    const body = Uint8Array.from(encodeRecord(sampleRecord(), 2));
    body[RECORD_HAS_END_SEQ_OFFSET] = 9;
    expectFormatError(
      () => decodeRecord(body, 2),
      'ERR_RECORD_CHECKSUM',
      /^record checksum mismatch: stored=0x[0-9a-f]+, computed=0x[0-9a-f]+$/,
    );
  });

  it('truncated fields, naming the field', () => {
    for (const version of VERSIONS) {
      // end_seq flag says 1 in a minimum-size body: end_seq eats the length fields.
      const minimal = edit(
        sampleRecord({ endSeq: null, afterImage: new Uint8Array(0) }),
        version,
        (b) => {
          b[RECORD_HAS_END_SEQ_OFFSET] = 1;
        },
      );
      expectFormatError(
        () => decodeRecord(minimal, version),
        'ERR_RECORD_TRUNCATED',
        'before_image length truncated',
      );
      const longBefore = edit(sampleRecord({ endSeq: null }), version, (b) => {
        new DataView(b.buffer, b.byteOffset).setUint32(33, 100, true);
      });
      expectFormatError(
        () => decodeRecord(longBefore, version),
        'ERR_RECORD_TRUNCATED',
        'before_image truncated',
      );
      const longAfter = edit(sampleRecord({ endSeq: null }), version, (b) => {
        new DataView(b.buffer, b.byteOffset).setUint32(37, 9, true);
      });
      expectFormatError(
        () => decodeRecord(longAfter, version),
        'ERR_RECORD_TRUNCATED',
        'after_image truncated',
      );
    }
  });

  it('image lengths over 65536 before reading the image', () => {
    for (const version of VERSIONS) {
      const body = edit(sampleRecord({ endSeq: null }), version, (b) => {
        new DataView(b.buffer, b.byteOffset).setUint32(37, 0xffffffff, true);
      });
      expectFormatError(
        () => decodeRecord(body, version),
        'ERR_RECORD_IMAGE_TOO_LARGE',
        'after_image length 4294967295 exceeds maximum 65536',
      );
      const before = edit(sampleRecord({ endSeq: null }), version, (b) => {
        new DataView(b.buffer, b.byteOffset).setUint32(33, 65537, true);
      });
      expectFormatError(
        () => decodeRecord(before, version),
        'ERR_RECORD_IMAGE_TOO_LARGE',
        'before_image length 65537 exceeds maximum 65536',
      );
    }
  });

  it('a zero txn id and a zero page id', () => {
    for (const version of VERSIONS) {
      const txn = edit(sampleRecord(), version, (b) => b.fill(0, 0, 8));
      expectFormatError(
        () => decodeRecord(txn, version),
        'ERR_RECORD_TXN_ID',
        'invalid txn_id (zero)',
      );
      const page = edit(sampleRecord(), version, (b) => b.fill(0, 20, 24));
      expectFormatError(
        () => decodeRecord(page, version),
        'ERR_RECORD_PAGE_ID',
        'invalid page_id (zero)',
      );
      const huge = edit(sampleRecord(), version, (b) => b.fill(0xff, 0, 8));
      expectFormatError(() => decodeRecord(huge, version), 'ERR_RECORD_TXN_ID', /exceeds maximum/);
    }
  });
});

describe('record validation before encoding', () => {
  const cases: [string, Partial<WalRecord>, RegExp][] = [
    ['zero txn id', { txnToken: { id: 0n, epoch: 0 } }, /^invalid txn_id \(zero\)$/],
    ['txn id above 2^62-1', { txnToken: { id: txnIdMax + 1n, epoch: 0 } }, /txn_id/],
    ['txn epoch above u32', { txnToken: { id: 1n, epoch: 2 ** 32 } }, /txn_epoch/],
    ['negative epoch', { epoch: -1n }, /epoch/],
    ['epoch above u64', { epoch: u64Max + 1n }, /epoch/],
    ['zero page id', { pageId: 0 }, /^invalid page_id \(zero\)$/],
    ['fractional page id', { pageId: 1.5 }, /page_id/],
    ['begin seq above u64', { beginSeq: u64Max + 1n }, /begin_seq/],
    ['negative end seq', { endSeq: -1n }, /end_seq/],
    [
      'oversized after image',
      { afterImage: new Uint8Array(imageBytesMax + 1) },
      /^after_image length 65537 exceeds maximum 65536$/,
    ],
    [
      'oversized before image',
      { beforeImage: new Uint8Array(imageBytesMax + 1) },
      /^before_image length 65537 exceeds maximum 65536$/,
    ],
  ];
  for (const [name, overrides, message] of cases) {
    it(`rejects a record with a ${name}`, () => {
      const record = sampleRecord(overrides);
      expect(() => validateRecord(record)).toThrow(InvalidRecordError);
      expect(() => validateRecord(record)).toThrow(message);
      expect(() => encodeRecord(record, 2)).toThrow(message);
      const target = new Uint8Array(200_000);
      expect(() => encodeRecordInto(record, 1, target, 0)).toThrow(message);
      expect(target.every((b) => b === 0)).toBe(true);
      try {
        validateRecord(record);
      } catch (error) {
        expect(isWalError(error, 'ERR_INVALID_RECORD')).toBe(true);
      }
    });
  }

  it('rejects a format version other than 1 or 2', () => {
    expect(() => encodeRecord(sampleRecord(), 3 as FormatVersion)).toThrow(
      'unsupported segment version: 3',
    );
  });
});

describe('recovery order', () => {
  it('sorts by epoch, beginSeq, txnId, pageId and is stable', () => {
    const r = (epoch: bigint, beginSeq: bigint, id: bigint, pageId: number, tag: number) =>
      sampleRecord({ epoch, beginSeq, txnToken: { id, epoch: tag }, pageId });
    const input = [
      r(2n, 1n, 1n, 1, 0),
      r(1n, 9n, 1n, 1, 1),
      r(1n, 5n, 3n, 1, 2),
      r(1n, 5n, 2n, 7, 3),
      r(1n, 5n, 2n, 4, 4),
      r(1n, 5n, 2n, 4, 5),
    ];
    const ordered = recoveryOrder(input);
    expect(ordered.map((x) => x.txnToken.epoch)).toEqual([4, 5, 3, 2, 1, 0]);
    expect(input.map((x) => x.txnToken.epoch)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(compareRecords(input[4]!, input[5]!)).toBe(0);
    expect(compareRecords(input[0]!, input[1]!)).toBeGreaterThan(0);
  });

  it('compares u64 fields above 2^53 exactly', () => {
    const a = sampleRecord({ beginSeq: (1n << 60n) + 1n });
    const b = sampleRecord({ beginSeq: (1n << 60n) + 2n });
    expect(compareRecords(a, b)).toBeLessThan(0);
    expect(recoveryOrder([b, a])).toEqual([a, b]);
  });
});
