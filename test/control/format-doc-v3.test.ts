import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { decodeCertificate } from '../../src/control/certificate.js';
import { buildCommitCertificate, certificatePayloadDigest } from '../../src/control/certify.js';
import {
  appendCertificateTrailer,
  relabelAsVersion3,
  verifySegmentFilesChain,
} from '../../src/control/segment-v3.js';
import { decodeSegment, encodeSegment } from '../../src/format/segment.js';
import type { WalRecord } from '../../src/format/types.js';

const DOC = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../docs/format.md');

/** The bytes of the hex dump under `heading` in docs/format.md (offset, bytes, comment per line). */
function documentedDump(heading: string): Uint8Array {
  const text = fs.readFileSync(DOC, 'utf8');
  const at = text.indexOf(heading);
  expect(at).toBeGreaterThanOrEqual(0);
  const open = text.indexOf('```\n', at) + 4;
  const block = text.slice(open, text.indexOf('```', open));
  const bytes: number[] = [];
  for (const line of block.split('\n').filter((l) => l.trim() !== '')) {
    const match = /^([0-9a-f]+) {2}((?:[0-9a-f]{2} ?)+)/.exec(line);
    if (match === null) throw new Error(`not a dump line: ${line}`);
    expect(Number.parseInt(match[1]!, 16)).toBe(bytes.length);
    for (const byte of match[2]!.trim().split(' ')) bytes.push(Number.parseInt(byte, 16));
  }
  return Uint8Array.from(bytes);
}

function record(epoch: bigint, seq: bigint): WalRecord {
  return {
    txnToken: { id: 3n, epoch: 1 },
    epoch,
    pageId: 2,
    beginSeq: seq,
    endSeq: seq,
    beforeImage: new Uint8Array(0),
    afterImage: new TextEncoder().encode('hi'),
  };
}

function certify(
  epoch: bigint,
  seq: bigint,
  predecessor: Parameters<typeof buildCommitCertificate>[0]['predecessor'],
) {
  const segment = relabelAsVersion3(encodeSegment(epoch, [record(epoch, seq)], 2));
  const certificate = buildCommitCertificate({
    segment,
    laneCount: 1,
    laneRecordCounts: [1],
    dbSizePages: 4,
    fallbackActive: false,
    predecessor,
  });
  return { segment, certificate, file: appendCertificateTrailer(segment, certificate) };
}

describe('the version-3 worked example in docs/format.md', () => {
  const first = certify(7n, 9n, null);

  it('is the 198 bytes the control plane writes for it', () => {
    const documented = documentedDump('### 7.6 Worked example (version 3)');
    expect(documented.length).toBe(198);
    expect(Buffer.from(first.file).toString('hex')).toBe(Buffer.from(documented).toString('hex'));
  });

  it('has the documented checksums, digest coverage and canonical-byte span', () => {
    const { certificate, file } = first;
    expect(certificate.certificateCrc32c).toBe(0xb98ecebf);
    expect(certificate.linkCrc32c).toBe(0xdaeda3e9);
    expect(certificate.payloadDigest).toEqual(certificatePayloadDigest(file.subarray(0, 0x53)));
    expect(Buffer.from(certificate.canonicalBytes())).toEqual(
      Buffer.from(file.subarray(0x5b, 0xb1)),
    );
  });

  it('reads through the format layer, decodes, and chains to the documented successor', () => {
    const decoded = decodeSegment(first.file);
    expect(decoded.header).toEqual({ version: 3, epoch: 7n, recordCount: 1 });
    expect(decoded.records).toEqual([record(7n, 9n)]);
    const certificate = decodeCertificate(decoded.certificate!);
    expect(certificate.checksumIsValid()).toBe(true);
    const next = certify(8n, 10n, certificate.link());
    expect(next.certificate).toMatchObject({
      commitSeqLo: 10n,
      commitSeqHi: 10n,
      predecessor: { epoch: 7n, certificateCrc32c: 0xb98ecebf },
    });
    const report = verifySegmentFilesChain([
      { epoch: 7n, bytes: first.file },
      { epoch: 8n, bytes: next.file },
    ]);
    expect(report).toMatchObject({ certifiedSegments: 2, lastGoodEpoch: 8n, failure: null });
  });
});
