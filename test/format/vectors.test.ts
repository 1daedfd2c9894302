import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { crc32c } from '../../src/format/crc32c.js';
import { decodeSegment, encodeSegment } from '../../src/format/segment.js';
import type { FormatVersion, WalRecord } from '../../src/format/types.js';
import { hexToBytes } from './helpers.js';

const VECTORS_DIR = path.resolve(import.meta.dirname, '../fixtures/vectors');

interface ManifestRecord {
  txnId: number;
  txnEpoch: number;
  epoch: number;
  pageId: number;
  beginSeq: number;
  endSeq: number | null;
  beforeImage: string;
  afterImage: string;
}
interface Manifest {
  formatVersion: FormatVersion;
  db: string;
  segments: {
    file: string;
    epoch: number;
    bytes: number;
    crc32cOfFile: number;
    records: ManifestRecord[];
  }[];
}

function u64(value: number): bigint {
  // JSON numbers are only exact below 2^53; the manifests stay below it.
  expect(Number.isSafeInteger(value)).toBe(true);
  return BigInt(value);
}

function toRecord(r: ManifestRecord): WalRecord {
  return {
    txnToken: { id: u64(r.txnId), epoch: r.txnEpoch },
    epoch: u64(r.epoch),
    pageId: r.pageId,
    beginSeq: u64(r.beginSeq),
    endSeq: r.endSeq === null ? null : u64(r.endSeq),
    beforeImage: hexToBytes(r.beforeImage),
    afterImage: hexToBytes(r.afterImage),
  };
}

for (const version of ['v1', 'v2'] as const) {
  const dir = path.join(VECTORS_DIR, version);
  const manifest = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as Manifest;

  describe(`reference vectors ${version}`, () => {
    it('covers four segments of the declared version', () => {
      expect(manifest.formatVersion).toBe(version === 'v1' ? 1 : 2);
      expect(manifest.segments.length).toBe(4);
    });

    for (const segment of manifest.segments) {
      const bytes = new Uint8Array(readFileSync(path.join(dir, segment.file)));
      const expected = segment.records.map(toRecord);

      it(`${segment.file} has the manifest's size and CRC-32C`, () => {
        expect(bytes.length).toBe(segment.bytes);
        expect(crc32c(bytes)).toBe(segment.crc32cOfFile);
      });

      it(`${segment.file} decodes to exactly the manifest`, () => {
        const decoded = decodeSegment(bytes);
        expect(decoded.header).toEqual({
          version: manifest.formatVersion,
          epoch: u64(segment.epoch),
          recordCount: expected.length,
        });
        expect(decoded.records).toEqual(expected);
      });

      it(`${segment.file} is reproduced byte for byte from the manifest's records`, () => {
        const encoded = encodeSegment(u64(segment.epoch), expected, manifest.formatVersion);
        expect(Buffer.from(encoded).equals(Buffer.from(bytes))).toBe(true);
        // Input order must not matter: the writer canonicalises.
        const reversed = encodeSegment(
          u64(segment.epoch),
          expected.slice().reverse(),
          manifest.formatVersion,
        );
        expect(Buffer.from(reversed).equals(Buffer.from(bytes))).toBe(true);
      });
    }
  });
}
