import { describe, expect, it } from 'vitest';
import { SegmentErrorCode } from '../../src/format/errors.js';
import { decodeSegment } from '../../src/format/segment.js';
import { seededRng } from '../support/rng.js';
import {
  checkSegmentDecode,
  FuzzViolation,
  fixHeaderCrc,
  fuzzDecoder,
  hostileSegment,
  validSegment,
} from './fuzz-core.js';

describe('segment decoder under hostile input', () => {
  it('answers thousands of mutated and random segments with a result or a typed error', () => {
    const stats = fuzzDecoder(20240601, 4000, seededRng);
    expect(stats.cases).toBe(4000);
    // The mutations reach deep checks, not just the header CRC.
    const reached = [...stats.rejected.keys()];
    for (const code of [
      SegmentErrorCode.magic,
      SegmentErrorCode.headerChecksum,
      SegmentErrorCode.recordCount,
      SegmentErrorCode.recordLength,
      SegmentErrorCode.recordChecksum,
      SegmentErrorCode.trailingBytes,
      SegmentErrorCode.truncated,
    ]) {
      expect(reached, `no case reached ${code}`).toContain(code);
    }
    expect(stats.accepted).toBeGreaterThan(0);
  });

  it('decodes every unmutated generated segment', () => {
    const rng = seededRng(7);
    for (let i = 0; i < 300; i++) expect(checkSegmentDecode(validSegment(rng).bytes).ok).toBe(true);
  });

  it('rejects a header declaring 2^32-1 records or a record of 4 GiB in a tiny file without allocating', () => {
    const { bytes } = validSegment(seededRng(3));
    const huge = bytes.slice(0, 24);
    new DataView(huge.buffer).setUint32(16, 0xffffffff, true);
    fixHeaderCrc(huge);
    expect(() => decodeSegment(huge)).toThrow(
      expect.objectContaining({ code: SegmentErrorCode.recordCount }),
    );
    const long = new Uint8Array(24 + 4 + 45);
    long.set(bytes.subarray(0, 24));
    new DataView(long.buffer).setUint32(16, 1, true);
    new DataView(long.buffer).setUint32(24, 0xffffffff, true);
    fixHeaderCrc(long);
    expect(() => decodeSegment(long)).toThrow(
      expect.objectContaining({ code: SegmentErrorCode.recordLength }),
    );
  });

  it('flags an inconsistent success as a violation (the oracle can fail)', () => {
    // A decoder that accepted trailing bytes would be caught by the re-encode check:
    // emulate it by checking a valid segment against a longer input.
    const { bytes } = validSegment(seededRng(9));
    const padded = new Uint8Array(bytes.length + 3);
    padded.set(bytes);
    expect(checkSegmentDecode(padded)).toEqual({ ok: false, code: SegmentErrorCode.trailingBytes });
    expect(new FuzzViolation('x', padded).input).toBe(padded);
    // Inputs are produced deterministically from the seed.
    expect(hostileSegment(seededRng(1))).toEqual(hostileSegment(seededRng(1)));
  });
});
