import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  CERTIFICATE_BASE_BYTES,
  type CertificateLink,
  CommitCertificate,
  decodeCertificate,
  encodeCertificate,
} from '../../src/control/certificate.js';
import { verifyCertificateChain } from '../../src/control/certificate-chain.js';
import { buildCommitCertificate, certificatePayloadDigest } from '../../src/control/certify.js';
import { CertificateChainError, CertificateFormatError } from '../../src/control/errors.js';
import {
  appendCertificateTrailer,
  encodeV3SegmentHeader,
  splitCertificateTrailer,
  verifySegmentFilesChain,
} from '../../src/control/segment-v3.js';
import { fallbackReasonName } from '../../src/control/surface.js';
import { writeU32 } from '../../src/format/bytes.js';
import { crc32c } from '../../src/format/crc32c.js';
import { decodeSegment, encodeSegment } from '../../src/format/segment.js';
import { record, v3Segment } from './helpers.js';

/** Three chained epochs (1, 2, 4: epoch 3 was empty) with commit sequences 1..=6. */
function chain(): { certs: CommitCertificate[]; segments: Uint8Array[] } {
  const plan: [bigint, bigint[]][] = [
    [1n, [1n, 2n]],
    [2n, [3n]],
    [4n, [4n, 5n, 6n]],
  ];
  const certs: CommitCertificate[] = [];
  const segments: Uint8Array[] = [];
  let predecessor: CertificateLink | null = null;
  for (const [epoch, seqs] of plan) {
    const segment = v3Segment(
      epoch,
      seqs.map((seq) => record(epoch, seq, Number(seq))),
    );
    const cert = buildCommitCertificate({
      segment,
      laneCount: 2,
      laneRecordCounts: [seqs.length - 1, 1],
      dbSizePages: 10 + Number(epoch),
      fallbackActive: false,
      predecessor,
    });
    certs.push(cert);
    segments.push(segment);
    predecessor = cert.link();
  }
  return { certs, segments };
}

function chainError(run: () => unknown): CertificateChainError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(CertificateChainError);
    return error as CertificateChainError;
  }
  throw new Error('expected a CertificateChainError');
}

describe('commit certificate bytes', () => {
  it('lays the canonical bytes out exactly as docs/format.md section 7 lists them', () => {
    const digest = new Uint8Array(32).map((_, i) => i + 1);
    const cert = CommitCertificate.create({
      formatVersion: 1,
      residue: 'commitCertificateThenPublish',
      certificateEpoch: 0x0102030405060708n,
      commitSeqLo: 5n,
      commitSeqHi: 9n,
      durableSegmentEpoch: 0x0102030405060708n,
      laneCount: 3,
      laneRecordCounts: [2, 0, 7],
      dbSizePages: 0x11223344,
      pageSetSize: 6,
      payloadDigest: digest,
      fallbackActive: true,
      predecessor: null,
    });
    const expected = Buffer.concat([
      Buffer.from([1, 0]), // u16 formatVersion
      Buffer.from([1]), // u8 residue
      Buffer.from([8, 7, 6, 5, 4, 3, 2, 1]), // u64 certificateEpoch
      Buffer.from([5, 0, 0, 0, 0, 0, 0, 0]),
      Buffer.from([9, 0, 0, 0, 0, 0, 0, 0]),
      Buffer.from([8, 7, 6, 5, 4, 3, 2, 1]), // u64 durableSegmentEpoch
      Buffer.from([3, 0]), // u16 laneCount
      Buffer.from([3, 0, 0, 0]), // u32 count
      Buffer.from([2, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0]),
      Buffer.from([0x44, 0x33, 0x22, 0x11]), // u32 dbSizePages
      Buffer.from([6, 0, 0, 0]),
      Buffer.from(digest),
      Buffer.from([1]), // u8 fallbackActive
    ]);
    expect(Buffer.from(cert.canonicalBytes())).toEqual(expected);
    expect(cert.certificateCrc32c).toBe(crc32c(expected));
    const encoded = encodeCertificate(cert);
    expect(encoded.length).toBe(CERTIFICATE_BASE_BYTES + 12);
    expect(Buffer.from(encoded.subarray(0, expected.length))).toEqual(expected);
    expect(cert.checksumIsValid()).toBe(true);
  });

  it('round-trips every field through encode and decode', () => {
    fc.assert(
      fc.property(
        fc.record({
          epoch: fc.bigInt({ min: 1n, max: (1n << 64n) - 1n }),
          lo: fc.bigInt({ min: 0n, max: (1n << 63n) - 1n }),
          span: fc.bigInt({ min: 0n, max: 1000n }),
          laneRecordCounts: fc.array(fc.nat({ max: 0xffffffff }), { maxLength: 8 }),
          dbSizePages: fc.nat({ max: 0xffffffff }),
          fallbackActive: fc.boolean(),
          pred: fc.option(fc.record({ epoch: fc.bigInt({ min: 0n, max: 99n }), crc: fc.nat() })),
        }),
        (v) => {
          const cert = CommitCertificate.create({
            formatVersion: 1,
            residue: 'commitCertificateThenPublish',
            certificateEpoch: v.epoch,
            commitSeqLo: v.lo,
            commitSeqHi: v.lo + v.span,
            durableSegmentEpoch: v.epoch,
            laneCount: v.laneRecordCounts.length,
            laneRecordCounts: v.laneRecordCounts,
            dbSizePages: v.dbSizePages,
            pageSetSize: 3,
            payloadDigest: new Uint8Array(32).fill(9),
            fallbackActive: v.fallbackActive,
            predecessor:
              v.pred === null ? null : { epoch: v.pred.epoch, certificateCrc32c: v.pred.crc },
          });
          const decoded = decodeCertificate(cert.encode());
          expect(decoded).toEqual(cert);
          expect(decoded.checksumIsValid()).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('detects every single-bit change through checksumIsValid or a typed decode error', () => {
    const cert = chain().certs[1]!;
    const encoded = cert.encode();
    for (let bit = 0; bit < encoded.length * 8; bit++) {
      const mutated = encoded.slice();
      mutated[bit >> 3]! ^= 1 << (bit & 7);
      try {
        expect(decodeCertificate(mutated).checksumIsValid()).toBe(false);
      } catch (error) {
        expect(error).toBeInstanceOf(CertificateFormatError);
      }
    }
  });

  it('rejects malformed certificates with typed errors, in order', () => {
    const encoded = chain().certs[0]!.encode();
    const codeOf = (bytes: Uint8Array): string => {
      try {
        decodeCertificate(bytes);
        return 'ok';
      } catch (error) {
        expect(error).toBeInstanceOf(CertificateFormatError);
        return (error as CertificateFormatError).code;
      }
    };
    expect(codeOf(encoded)).toBe('ok');
    expect(codeOf(encoded.subarray(0, 40))).toBe('ERR_CERTIFICATE_TRUNCATED');
    expect(codeOf(encoded.subarray(0, CERTIFICATE_BASE_BYTES - 1))).toBe(
      'ERR_CERTIFICATE_TRUNCATED',
    );
    const version = encoded.slice();
    version[0] = 2;
    expect(codeOf(version)).toBe('ERR_CERTIFICATE_VERSION');
    const residue = encoded.slice();
    residue[2] = 0;
    expect(codeOf(residue)).toBe('ERR_CERTIFICATE_RESIDUE');
    const huge = encoded.slice();
    writeU32(huge, 37, 0xffffffff);
    expect(codeOf(huge)).toBe('ERR_CERTIFICATE_LANE_COUNTS');
    expect(codeOf(Buffer.concat([encoded, Buffer.from([0, 0, 0])]))).toBe(
      'ERR_CERTIFICATE_TRAILING_BYTES',
    );
    const flag = encoded.slice();
    flag[CERTIFICATE_BASE_BYTES + 8 - 22] = 2; // fallbackActive (2 lane counts)
    expect(codeOf(flag)).toBe('ERR_CERTIFICATE_FLAG');
  });

  it('never throws anything but a typed error on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        try {
          decodeCertificate(bytes);
        } catch (error) {
          expect(error).toBeInstanceOf(CertificateFormatError);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('refuses to create a certificate with out-of-range fields', () => {
    const base = chain().certs[0]!;
    expect(() => CommitCertificate.create({ ...base, laneCount: 70000 })).toThrow(/laneCount/);
    expect(() => CommitCertificate.create({ ...base, payloadDigest: new Uint8Array(31) })).toThrow(
      /digest/,
    );
    expect(() => CommitCertificate.create({ ...base, commitSeqHi: -1n })).toThrow(/commitSeqHi/);
  });
});

describe('building certificates from segments', () => {
  it('derives epoch, interval, page set and digest from the segment bytes', () => {
    const { certs, segments } = chain();
    const [first, second, third] = certs as [
      CommitCertificate,
      CommitCertificate,
      CommitCertificate,
    ];
    expect(first.certificateEpoch).toBe(1n);
    expect([first.commitSeqLo, first.commitSeqHi]).toEqual([1n, 2n]);
    expect(first.predecessor).toBeNull();
    expect([second.commitSeqLo, second.commitSeqHi]).toEqual([3n, 3n]);
    expect(second.predecessor).toEqual({ epoch: 1n, certificateCrc32c: first.certificateCrc32c });
    expect(third.predecessor?.epoch).toBe(2n);
    expect(third.pageSetSize).toBe(3);
    expect(third.recordCount()).toBe(3);
    expect(Buffer.from(third.payloadDigest)).toEqual(
      Buffer.from(certificatePayloadDigest(segments[2]!)),
    );
  });

  it('digests chunked segments the same as one buffer', () => {
    const segment = chain().segments[2]!;
    const chunks = [segment.subarray(0, 24), segment.subarray(24)];
    expect(certificatePayloadDigest(chunks)).toEqual(certificatePayloadDigest(segment));
    const fromChunks = buildCommitCertificate({
      segment: chunks,
      laneCount: 1,
      laneRecordCounts: [3],
      dbSizePages: 0,
      fallbackActive: false,
      predecessor: null,
    });
    expect(fromChunks.pageSetSize).toBe(3);
  });

  it('lets the interval cover sequence holes since the predecessor', () => {
    const pred: CertificateLink = {
      epoch: 1n,
      certificateCrc32c: 7,
      commitSeqHi: 10n,
      dbSizePages: 0,
    };
    const cert = buildCommitCertificate({
      segment: v3Segment(2n, [record(2n, 15n, 1)]),
      laneCount: 1,
      laneRecordCounts: [1],
      dbSizePages: 0,
      fallbackActive: false,
      predecessor: pred,
    });
    expect([cert.commitSeqLo, cert.commitSeqHi]).toEqual([11n, 15n]);
  });

  it('refuses a segment that commits a sequence inside the predecessor interval', () => {
    const pred: CertificateLink = {
      epoch: 1n,
      certificateCrc32c: 7,
      commitSeqHi: 10n,
      dbSizePages: 0,
    };
    const error = chainError(() =>
      buildCommitCertificate({
        segment: v3Segment(2n, [record(2n, 10n, 1)]),
        laneCount: 1,
        laneRecordCounts: [1],
        dbSizePages: 0,
        fallbackActive: false,
        predecessor: pred,
      }),
    );
    expect(error.reason).toBe('certificateGap');
  });

  it('refuses lane counts that do not add up to the records', () => {
    expect(() =>
      buildCommitCertificate({
        segment: v3Segment(2n, [record(2n, 1n, 1)]),
        laneCount: 1,
        laneRecordCounts: [2],
        dbSizePages: 0,
        fallbackActive: false,
        predecessor: null,
      }),
    ).toThrow(/add up/);
  });
});

describe('verifyCertificateChain', () => {
  it('accepts an intact chain and reports the last good link', () => {
    const { certs, segments } = chain();
    const report = verifyCertificateChain(certs, segments);
    expect(report.verified).toBe(3);
    expect(report.lastGoodEpoch).toBe(4n);
    expect(report.lastGood).toEqual(certs[2]!.link());
    expect(report.failure).toBeNull();
  });

  it('reports a missing middle segment as recovery_gap', () => {
    const { certs, segments } = chain();
    const error = chainError(() =>
      verifyCertificateChain([certs[0]!, certs[2]!], [segments[0]!, segments[2]!]),
    );
    expect(error.code).toBe('ERR_RECOVERY_GAP');
    expect(fallbackReasonName(error.reason)).toBe('recovery_gap');
    expect(error.epoch).toBe(4n);
    expect(error.lastGoodEpoch).toBe(1n);
  });

  it('reports a broken commit interval as certificate_gap', () => {
    const { certs, segments } = chain();
    // Epoch 2 rebuilt claiming its own fresh chain: the link to epoch 1 is broken.
    const rogue = buildCommitCertificate({
      segment: segments[1]!,
      laneCount: 2,
      laneRecordCounts: [0, 1],
      dbSizePages: 0,
      fallbackActive: false,
      predecessor: { ...certs[0]!.link(), commitSeqHi: 1n },
    });
    const error = chainError(() =>
      verifyCertificateChain([certs[0]!, rogue], segments.slice(0, 2)),
    );
    expect(error.code).toBe('ERR_CERTIFICATE_GAP');
    expect(fallbackReasonName(error.reason)).toBe('certificate_gap');
  });

  it('reports a wrong predecessor checksum and a restarted chain as certificate_gap', () => {
    const { certs, segments } = chain();
    const wrongLink = CommitCertificate.create({
      ...certs[1]!,
      predecessor: { epoch: 1n, certificateCrc32c: certs[0]!.certificateCrc32c ^ 1 },
    });
    expect(
      chainError(() => verifyCertificateChain([certs[0]!, wrongLink], segments.slice(0, 2))).reason,
    ).toBe('certificateGap');
    const restarted = CommitCertificate.create({ ...certs[1]!, predecessor: null });
    expect(
      chainError(() => verifyCertificateChain([certs[0]!, restarted], segments.slice(0, 2))).reason,
    ).toBe('certificateGap');
  });

  it('reports altered segment bytes as certificate_checksum_mismatch', () => {
    const { certs, segments } = chain();
    const altered = segments.map((s) => s.slice());
    altered[1]![altered[1]!.length - 3]! ^= 0x40;
    const error = chainError(() => verifyCertificateChain(certs, altered));
    expect(error.code).toBe('ERR_CERTIFICATE_CHECKSUM_MISMATCH');
    expect(fallbackReasonName(error.reason)).toBe('certificate_checksum_mismatch');
    expect(error.epoch).toBe(2n);
  });

  it('reports altered certificate bytes as certificate_checksum_mismatch', () => {
    const { certs, segments } = chain();
    const bytes = certs[2]!.encode();
    bytes[45]! ^= 1; // inside laneRecordCounts
    const error = chainError(() =>
      verifyCertificateChain([certs[0]!, certs[1]!, decodeCertificate(bytes)], segments),
    );
    expect(error.reason).toBe('certificateChecksumMismatch');
  });

  it('stops at the last good epoch under skipCorrupt', () => {
    const { certs, segments } = chain();
    const report = verifyCertificateChain([certs[0]!, certs[2]!], [segments[0]!, segments[2]!], {
      skipCorrupt: true,
    });
    expect(report.verified).toBe(1);
    expect(report.lastGoodEpoch).toBe(1n);
    expect(report.lastGood).toEqual(certs[0]!.link());
    expect(report.failure?.reason).toBe('recoveryGap');
  });

  it('checks the first certificate against an anchor when one is given', () => {
    const { certs, segments } = chain();
    expect(
      verifyCertificateChain(certs.slice(1), segments.slice(1), { anchor: certs[0]!.link() })
        .verified,
    ).toBe(2);
    const error = chainError(() =>
      verifyCertificateChain(certs.slice(2), segments.slice(2), { anchor: certs[0]!.link() }),
    );
    expect(error.reason).toBe('recoveryGap');
  });
});

describe('segment version 3 trailer', () => {
  it('appends and splits a trailer, leaving the version-2 records intact', () => {
    const records = [record(7n, 1n, 3), record(7n, 2n, 4)];
    const v2 = encodeSegment(7n, records, 2);
    const v3 = v3Segment(7n, records);
    expect(Buffer.from(v3.subarray(24))).toEqual(Buffer.from(v2.subarray(24)));
    const cert = buildCommitCertificate({
      segment: v3,
      laneCount: 1,
      laneRecordCounts: [2],
      dbSizePages: 4,
      fallbackActive: false,
      predecessor: null,
    });
    const file = appendCertificateTrailer(v3, cert);
    const split = splitCertificateTrailer(file);
    expect(split.version).toBe(3);
    expect(split.epoch).toBe(7n);
    expect(Buffer.from(split.segment)).toEqual(Buffer.from(v3));
    expect(split.certificate).toEqual(cert);
    // The records are readable by the v2 decoder once relabelled.
    const relabelled = encodeSegment(7n, records, 2);
    expect(decodeSegment(relabelled).records).toHaveLength(2);
  });

  it('passes versions 1 and 2 through without a certificate', () => {
    for (const version of [1, 2] as const) {
      const bytes = encodeSegment(3n, [record(3n, 1n, 1)], version);
      const split = splitCertificateTrailer(bytes);
      expect(split.certificate).toBeNull();
      expect(split.segment).toBe(bytes);
    }
  });

  it('rejects a trailer on anything but a version-3 segment of the same epoch', () => {
    const { certs } = chain();
    const v2 = encodeSegment(1n, [record(1n, 1n, 1), record(1n, 2n, 2)], 2);
    expect(() => appendCertificateTrailer(v2, certs[0]!)).toThrow(/version-3/);
    expect(() => appendCertificateTrailer(encodeV3SegmentHeader(9n, 0), certs[0]!)).toThrow(
      /differs/,
    );
  });

  it('gives typed errors for every malformed trailer and never another exception', () => {
    const { certs, segments } = chain();
    const file = appendCertificateTrailer(segments[0]!, certs[0]!);
    const codeOf = (bytes: Uint8Array): string => {
      try {
        splitCertificateTrailer(bytes);
        return 'ok';
      } catch (error) {
        expect(error).toBeInstanceOf(CertificateFormatError);
        return (error as CertificateFormatError).code;
      }
    };
    expect(codeOf(segments[0]!)).toBe('ERR_CERTIFICATE_TRUNCATED');
    const magic = file.slice();
    magic[segments[0]!.length]! ^= 1;
    expect(codeOf(magic)).toBe('ERR_CERTIFICATE_TRAILER_MAGIC');
    expect(codeOf(file.subarray(0, file.length - 1))).toBe('ERR_CERTIFICATE_TRAILER_LENGTH');
    const header = file.slice();
    header[17]! ^= 1;
    expect(codeOf(header)).toBe('ERR_CERTIFICATE_SEGMENT');
    fc.assert(
      fc.property(fc.nat({ max: file.length - 1 }), fc.nat({ max: 255 }), (at, value) => {
        const mutated = file.slice();
        mutated[at] = value;
        codeOf(mutated);
      }),
      { numRuns: 1000 },
    );
  });

  it('verifies the chain over segment files, restarting after uncertified segments', () => {
    const { certs, segments } = chain();
    const files = certs.map((cert, i) => ({
      epoch: cert.certificateEpoch,
      bytes: appendCertificateTrailer(segments[i]!, cert),
    }));
    expect(verifySegmentFilesChain(files).certifiedSegments).toBe(3);
    const legacy = { epoch: 3n, bytes: encodeSegment(3n, [record(3n, 9n, 1)], 2) };
    const mixed = verifySegmentFilesChain([files[0]!, files[1]!, legacy, files[2]!]);
    expect(mixed.uncertifiedEpochs).toEqual([3n]);
    expect(mixed.certifiedSegments).toBe(3);
    const gap = verifySegmentFilesChain([files[0]!, files[2]!], { skipCorrupt: true });
    expect(gap.failure?.reason).toBe('recoveryGap');
    expect(gap.lastGoodEpoch).toBe(1n);
    const torn = files[1]!.bytes.subarray(0, files[1]!.bytes.length - 5);
    const error = chainError(() =>
      verifySegmentFilesChain([files[0]!, { epoch: 2n, bytes: torn }]),
    );
    expect(error.reason).toBe('certificateChecksumMismatch');
  });
});
