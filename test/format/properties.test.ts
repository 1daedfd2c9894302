import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SegmentFormatError } from '../../src/format/errors.js';
import { recoveryOrder } from '../../src/format/order.js';
import { decodeRecord, encodeRecord } from '../../src/format/record.js';
import { decodeSegment, encodeSegment, encodeSegmentHeader } from '../../src/format/segment.js';
import {
  type FormatVersion,
  txnIdMax,
  u32Max,
  u64Max,
  type WalRecord,
} from '../../src/format/types.js';

const NUM_RUNS = 400;
const version = fc.constantFrom<FormatVersion>(1, 2);
const u64 = fc.bigInt({ min: 0n, max: u64Max });
const image = fc.oneof(
  { weight: 4, arbitrary: fc.uint8Array({ maxLength: 64 }) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1000, maxLength: 5000 }) },
);

function recordArb(epoch: fc.Arbitrary<bigint>): fc.Arbitrary<WalRecord> {
  return fc.record({
    txnToken: fc.record({
      id: fc.bigInt({ min: 1n, max: txnIdMax }),
      epoch: fc.integer({ min: 0, max: u32Max }),
    }),
    epoch,
    pageId: fc.integer({ min: 1, max: u32Max }),
    beginSeq: u64,
    endSeq: fc.option(u64, { nil: null }),
    beforeImage: image,
    afterImage: image,
  });
}

const segmentArb = fc
  .tuple(u64, version)
  .chain(([epoch, v]) =>
    fc.tuple(
      fc.constant(epoch),
      fc.constant(v),
      fc.array(recordArb(fc.constant(epoch)), { maxLength: 6 }),
    ),
  );

/** Decodes, allowing only success or a SegmentFormatError. */
function tryDecode(bytes: Uint8Array): ReturnType<typeof decodeSegment> | SegmentFormatError {
  try {
    return decodeSegment(bytes);
  } catch (error) {
    if (error instanceof SegmentFormatError) return error;
    throw error;
  }
}

describe('format properties', () => {
  it('random records round-trip through encodeRecord/decodeRecord in both versions', () => {
    fc.assert(
      fc.property(recordArb(u64), version, (record, v) => {
        expect(decodeRecord(encodeRecord(record, v), v)).toEqual(record);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('random segments round-trip, records coming back in recovery order', () => {
    fc.assert(
      fc.property(segmentArb, ([epoch, v, records]) => {
        const bytes = encodeSegment(epoch, records, v);
        const decoded = decodeSegment(bytes);
        expect(decoded.header).toEqual({ version: v, epoch, recordCount: records.length });
        expect(decoded.records).toEqual(recoveryOrder(records));
        // Canonical: re-encoding what was read reproduces the bytes.
        expect(encodeSegment(epoch, decoded.records, v)).toEqual(bytes);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('a flipped byte gives a typed error (always in v2), or in v1 a segment that re-encodes to the flipped bytes', () => {
    fc.assert(
      fc.property(
        segmentArb,
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        ([epoch, v, records], at, mask) => {
          const bytes = Uint8Array.from(encodeSegment(epoch, records, v));
          const position = at % bytes.length;
          bytes[position]! ^= mask;
          const result = tryDecode(bytes);
          if (result instanceof SegmentFormatError) return;
          // CRC-32C catches every burst of up to 32 bits: v2 cannot miss one byte.
          expect(v).toBe(1);
          // The format could not see it (v1 has no record CRC): the content may
          // differ but is well-formed, with the same shape as what was written.
          expect(result.records.length).toBe(records.length);
          expect(encodeSegment(result.header.epoch, result.records, 1).length).toBe(bytes.length);
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });

  it('several flipped bytes give a typed error, a v1 decode of the same shape, or the original if the flips cancel', () => {
    fc.assert(
      fc.property(
        segmentArb,
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), {
          minLength: 2,
          maxLength: 8,
        }),
        ([epoch, v, records], flips) => {
          const original = encodeSegment(epoch, records, v);
          const bytes = Uint8Array.from(original);
          for (const [at, mask] of flips) bytes[at % bytes.length]! ^= mask;
          const result = tryDecode(bytes);
          if (result instanceof SegmentFormatError) return;
          expect(result.records.length).toBe(records.length);
          if (v === 2) expect(bytes).toEqual(original);
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });

  it('every truncation gives a typed error', () => {
    fc.assert(
      fc.property(segmentArb, fc.nat(), ([epoch, v, records], cut) => {
        const bytes = encodeSegment(epoch, records, v);
        const result = tryDecode(bytes.subarray(0, cut % bytes.length));
        expect(result).toBeInstanceOf(SegmentFormatError);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('every extension gives a typed error', () => {
    fc.assert(
      fc.property(
        segmentArb,
        fc.uint8Array({ minLength: 1, maxLength: 200 }),
        ([epoch, v, records], extra) => {
          const bytes = encodeSegment(epoch, records, v);
          const extended = new Uint8Array(bytes.length + extra.length);
          extended.set(bytes);
          extended.set(extra, bytes.length);
          const result = tryDecode(extended);
          expect(result).toBeInstanceOf(SegmentFormatError);
          expect((result as SegmentFormatError).code).toBe('ERR_SEGMENT_TRAILING_BYTES');
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });

  it('arbitrary bytes after a valid header never throw anything but a typed error', () => {
    fc.assert(
      fc.property(segmentArb, fc.uint8Array({ maxLength: 400 }), ([epoch, v], tail) => {
        for (const recordCount of [1, 2, 1000, 0xffffffff]) {
          const bytes = new Uint8Array(24 + tail.length);
          bytes.set(encodeSegmentHeader({ version: v, epoch, recordCount }));
          bytes.set(tail, 24);
          const result = tryDecode(bytes);
          // Random tails almost never form a record; when they do, the count is tiny.
          if (!(result instanceof SegmentFormatError))
            expect(result.records.length).toBeLessThanOrEqual(2);
        }
      }),
      { numRuns: 200 },
    );
  });
});
