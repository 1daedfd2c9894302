import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyRecordPatch, prepareRecordPatch } from '../../src/engine/worker-crc.js';
import { encodedRecordBytes, encodeRecordInto } from '../../src/format/record.js';
import type { FormatVersion, WalRecord } from '../../src/format/types.js';

const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });

function wire(record: WalRecord, version: FormatVersion): Uint8Array {
  const out = new Uint8Array(4 + encodedRecordBytes(record, version));
  encodeRecordInto(record, version, out, 0);
  return out;
}

describe('record patch under the lane lock', () => {
  it('produces exactly the bytes of a fresh encode with the new epoch and sequence (CRC included)', () => {
    fc.assert(
      fc.property(
        u64,
        u64,
        u64,
        fc.option(u64, { nil: null }),
        fc.uint8Array({ maxLength: 9000 }),
        fc.constantFrom<FormatVersion>(1, 2),
        (fromEpoch, toEpoch, fromSeq, toSeq, image, version) => {
          const base = (epoch: bigint, seq: bigint): WalRecord => ({
            txnToken: { id: 42n, epoch: 7 },
            epoch,
            pageId: 3,
            beginSeq: seq,
            endSeq: seq,
            beforeImage: new Uint8Array(0),
            afterImage: image,
          });
          const patched = wire(base(fromEpoch, fromSeq), version);
          const end = applyRecordPatch(
            patched,
            0,
            prepareRecordPatch(fromEpoch, toEpoch, fromSeq, toSeq),
            version === 2,
          );
          expect(end).toBe(patched.length);
          expect(Buffer.from(patched)).toEqual(
            Buffer.from(wire(base(toEpoch, toSeq ?? fromSeq), version)),
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  it('refuses to patch a record that never committed', () => {
    const bytes = wire(
      {
        txnToken: { id: 1n, epoch: 0 },
        epoch: 1n,
        pageId: 1,
        beginSeq: 1n,
        endSeq: null,
        beforeImage: new Uint8Array(0),
        afterImage: new Uint8Array(4),
      },
      2,
    );
    expect(() => applyRecordPatch(bytes, 0, prepareRecordPatch(1n, 2n, 1n, 5n), true)).toThrow(
      RangeError,
    );
  });
});
