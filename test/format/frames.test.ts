import { describe, expect, it } from 'vitest';
import { SegmentFormatError } from '../../src/format/errors.js';
import {
  encodeRecordFrames,
  RECORD_FRAME_BOUNDS_ANY,
  recordFrameBounds,
  walkRecordFrames,
} from '../../src/format/frames.js';
import { decodeRecord, encodeRecord } from '../../src/format/record.js';
import {
  decodeSegment,
  decodeSegmentHeader,
  encodeSegment,
  encodeSegmentHeader,
  relabelSegment,
} from '../../src/format/segment.js';
import { frameCertificateTrailer, readCertificateTrailer } from '../../src/format/trailer.js';
import { SEGMENT_HEADER_BYTES, type WalRecord } from '../../src/format/types.js';
import { sampleRecord } from './helpers.js';

function records(): WalRecord[] {
  return [1, 2, 3].map((seq) => ({
    ...sampleRecord(),
    beginSeq: BigInt(seq),
    endSeq: BigInt(seq),
    pageId: seq,
    afterImage: new Uint8Array(seq * 10).fill(seq),
  }));
}

function frameError(fn: () => unknown): SegmentFormatError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(SegmentFormatError);
    return error as SegmentFormatError;
  }
  throw new Error('expected a SegmentFormatError');
}

describe('record frames', () => {
  it('walks every frame of a run and hands each body to the visitor, in order', () => {
    const input = records();
    const bytes = encodeRecordFrames(input, 2);
    const bodies: WalRecord[] = [];
    const end = walkRecordFrames(bytes, 0, recordFrameBounds(2), undefined, (start, stop) => {
      bodies.push(decodeRecord(bytes.subarray(start, stop), 2));
    });
    expect(end).toBe(bytes.length);
    expect(bodies).toEqual(input);
    // The run is exactly what encodeRecord gives per record, each behind its length.
    const lengths = input.map((r) => encodeRecord(r, 2).length);
    expect(bytes.length).toBe(lengths.reduce((sum, n) => sum + 4 + n, 0));
  });

  it('walks a counted number of frames and stops there, leaving what follows', () => {
    const bytes = encodeSegment(5n, records(), 2);
    const withTail = new Uint8Array(bytes.length + 7);
    withTail.set(bytes);
    const end = walkRecordFrames(withTail, SEGMENT_HEADER_BYTES, recordFrameBounds(2), 3);
    expect(end).toBe(bytes.length);
  });

  it('names the frame that does not fit, with its offset and index', () => {
    const bytes = encodeRecordFrames(records(), 2);
    const second = 4 + new DataView(bytes.buffer).getUint32(0, true);
    const cut = bytes.subarray(0, second + 2);
    const prefix = frameError(() => walkRecordFrames(cut, 0, RECORD_FRAME_BOUNDS_ANY, undefined));
    expect(prefix.code).toBe('ERR_SEGMENT_TRUNCATED');
    expect(prefix.offset).toBe(second);
    expect(prefix.recordIndex).toBe(1);
    const body = frameError(() =>
      walkRecordFrames(bytes.subarray(0, bytes.length - 1), 0, RECORD_FRAME_BOUNDS_ANY, undefined),
    );
    expect(body.code).toBe('ERR_SEGMENT_TRUNCATED');
    expect(body.recordIndex).toBe(2);
    const short = bytes.slice();
    new DataView(short.buffer).setUint32(0, 3, true);
    expect(
      frameError(() => walkRecordFrames(short, 0, RECORD_FRAME_BOUNDS_ANY, undefined)).code,
    ).toBe('ERR_RECORD_TOO_SHORT');
    const long = bytes.slice();
    new DataView(long.buffer).setUint32(0, 0xffff_ffff, true);
    expect(frameError(() => walkRecordFrames(long, 0, recordFrameBounds(1), 1)).code).toBe(
      'ERR_SEGMENT_RECORD_LENGTH',
    );
  });
});

describe('one header codec for versions 1, 2 and 3', () => {
  it('encodes and decodes a version-3 header like versions 1 and 2', () => {
    for (const version of [1, 2, 3] as const) {
      const header = { version, epoch: 77n, recordCount: 12 };
      expect(decodeSegmentHeader(encodeSegmentHeader(header))).toEqual(header);
    }
  });

  it('relabels a segment between versions 2 and 3 without touching its records', () => {
    const v2 = encodeSegment(5n, records(), 2);
    const v3 = relabelSegment(v2, 3);
    expect(decodeSegmentHeader(v3)).toEqual({ version: 3, epoch: 5n, recordCount: 3 });
    expect(Buffer.from(v3.subarray(SEGMENT_HEADER_BYTES))).toEqual(
      Buffer.from(v2.subarray(SEGMENT_HEADER_BYTES)),
    );
    expect(Buffer.from(relabelSegment(v3, 2))).toEqual(Buffer.from(v2));
    // With a trailer, version 3 decodes to the same records.
    const file = new Uint8Array([...v3, ...frameCertificateTrailer(new Uint8Array([1, 2, 3]))]);
    const decoded = decodeSegment(file);
    expect(decoded.records).toEqual(decodeSegment(v2).records);
    expect([...decoded.certificate!]).toEqual([1, 2, 3]);
  });

  it('leaves its input untouched, even a Buffer (whose slice is a view)', () => {
    const input = Buffer.from(encodeSegment(5n, records(), 2));
    const before = Buffer.from(input);
    relabelSegment(input, 3);
    expect(input).toEqual(before);
  });
});

describe('certificate trailer', () => {
  it('reports each fault with its own kind instead of throwing', () => {
    const trailer = frameCertificateTrailer(new Uint8Array(5));
    expect(readCertificateTrailer(trailer, 0)).toEqual({
      ok: true,
      certificate: new Uint8Array(5),
    });
    expect(readCertificateTrailer(trailer.subarray(0, 6), 0)).toMatchObject({
      ok: false,
      fault: 'truncated',
    });
    const magic = trailer.slice();
    magic[0]! ^= 1;
    expect(readCertificateTrailer(magic, 0)).toMatchObject({ ok: false, fault: 'magic' });
    expect(readCertificateTrailer(trailer.subarray(0, 12), 0)).toMatchObject({
      ok: false,
      fault: 'length',
      offset: 4,
    });
  });
});
