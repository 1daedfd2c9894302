import { describe, expect, it } from 'vitest';
import type { WalRecord } from '../../src/format/types.js';
import { checkRecovered, commitPages, reportIsClean } from '../support/commit-oracle.js';

const SEED = 3;

function recordsOf(txnId: bigint, epoch: bigint, seq: bigint): WalRecord[] {
  return commitPages(SEED, txnId).map((p) => ({
    txnToken: { id: txnId, epoch: 0 },
    epoch,
    pageId: p.pageId,
    beginSeq: seq,
    endSeq: seq,
    beforeImage: new Uint8Array(0),
    afterImage: p.data,
  }));
}

const expected = (id: bigint) => (id < 100n ? commitPages(SEED, id) : undefined);

describe('commit oracle', () => {
  it('accepts a log holding every acknowledged commit whole', () => {
    const records = [...recordsOf(1n, 0n, 1n), ...recordsOf(2n, 1n, 2n), ...recordsOf(3n, 1n, 3n)];
    const acks = [
      { txnId: 1n, epoch: 0n, commitSeq: 1n },
      { txnId: 2n, epoch: 1n, commitSeq: 2n },
    ];
    const report = checkRecovered(records, expected, acks, { contiguousFrom: 1n });
    expect(reportIsClean(report)).toBe(true);
    expect(report.presentTxns).toBe(3);
  });

  it('reports a lost acknowledged commit, a sequence hole, and a wrong epoch', () => {
    const records = [...recordsOf(1n, 0n, 1n), ...recordsOf(3n, 2n, 3n)];
    const acks = [
      { txnId: 2n, epoch: 1n, commitSeq: 2n },
      { txnId: 3n, epoch: 1n, commitSeq: 3n },
    ];
    const report = checkRecovered(records, expected, acks, { contiguousFrom: 1n });
    expect(report.lost.some((l) => l.includes('txn 2'))).toBe(true);
    expect(report.lost.some((l) => l.includes('commit seq 2'))).toBe(true);
    expect(report.lost.some((l) => l.includes('txn 3'))).toBe(true);
  });

  it('reports a partly present commit, changed bytes and an unknown transaction', () => {
    const torn = recordsOf(5n, 0n, 1n);
    const changed = recordsOf(6n, 0n, 2n);
    changed[0] = { ...changed[0]!, afterImage: new Uint8Array([1, 2, 3]) };
    const records = [
      ...torn.slice(0, torn.length - 1),
      ...recordsOf(5n, 0n, 1n)
        .slice(-1)
        .map((r) => ({ ...r, epoch: 9n })),
      ...changed,
      ...recordsOf(500n, 0n, 3n),
    ];
    const report = checkRecovered(
      records,
      (id) => (id === 500n ? undefined : commitPages(SEED, id)),
      [],
    );
    expect(report.partial.length).toBe(2);
    expect(report.unknown.length).toBe(1);
  });

  it('reports commit sequences that go backwards across epochs', () => {
    const records = [...recordsOf(1n, 0n, 2n), ...recordsOf(2n, 1n, 1n)];
    const report = checkRecovered(records, expected, []);
    expect(report.misordered.length).toBe(1);
  });
});
