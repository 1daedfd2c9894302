/**
 * Generators of valid WAL records for crash and fuzz tests: seeded (for loops
 * over many cut points) and fast-check arbitraries (for shrinking workloads).
 */
import fc from 'fast-check';
import type { WalRecord } from '../../src/format/types.js';
import { type Rng, randBytes, randInt } from './rng.js';

/** A committed record of `epoch` with small random images. */
export function randomRecord(rng: Rng, epoch: bigint, maxImageBytes = 700): WalRecord {
  const seq = BigInt(randInt(rng, 0, 1_000_000));
  return {
    txnToken: { id: BigInt(randInt(rng, 1, 2 ** 30)), epoch: randInt(rng, 0, 5) },
    epoch,
    pageId: randInt(rng, 1, 64),
    beginSeq: seq,
    endSeq: rng() < 0.9 ? seq : null,
    beforeImage: randBytes(rng, rng() < 0.5 ? 0 : randInt(rng, 0, maxImageBytes)),
    afterImage: randBytes(rng, randInt(rng, 0, maxImageBytes)),
  };
}

/** `count` random records of `epoch`. */
export function randomRecords(
  rng: Rng,
  epoch: bigint,
  count: number,
  maxImageBytes = 700,
): WalRecord[] {
  return Array.from({ length: count }, () => randomRecord(rng, epoch, maxImageBytes));
}

/** fast-check: a record of `epoch` (any valid field values, small images). */
export function recordArbitrary(epoch: bigint, maxImageBytes = 1500): fc.Arbitrary<WalRecord> {
  return fc
    .record({
      id: fc.bigInt({ min: 1n, max: (1n << 62n) - 1n }),
      txnEpoch: fc.nat({ max: 0xffffffff }),
      pageId: fc.integer({ min: 1, max: 0xffffffff }),
      beginSeq: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      committed: fc.boolean(),
      beforeImage: fc.uint8Array({ maxLength: maxImageBytes }),
      afterImage: fc.uint8Array({ maxLength: maxImageBytes }),
    })
    .map((r) => ({
      txnToken: { id: r.id, epoch: r.txnEpoch },
      epoch,
      pageId: r.pageId,
      beginSeq: r.beginSeq,
      endSeq: r.committed ? r.beginSeq : null,
      beforeImage: r.beforeImage,
      afterImage: r.afterImage,
    }));
}
