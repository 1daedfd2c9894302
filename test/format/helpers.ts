import type { WalRecord } from '../../src/format/types.js';

/** A committed record with sensible defaults; override any field. */
export function sampleRecord(overrides: Partial<WalRecord> = {}): WalRecord {
  return {
    txnToken: { id: 1n, epoch: 0 },
    epoch: 5n,
    pageId: 1,
    beginSeq: 100n,
    endSeq: 100n,
    beforeImage: new Uint8Array(0),
    afterImage: new Uint8Array(8).fill(0xaa),
    ...overrides,
  };
}

export function hexToBytes(hex: string): Uint8Array {
  return new Uint8Array(Buffer.from(hex, 'hex'));
}
