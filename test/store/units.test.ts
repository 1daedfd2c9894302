import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isWalError } from '../../src/errors.js';
import type { WalRecord } from '../../src/format/types.js';
import { decodeSizeMeta, encodeSizeMeta, STORE_META_PAGE_ID } from '../../src/store/commit-meta.js';
import {
  decodeStoreHeader,
  encodeStoreHeader,
  STORE_HEADER_BYTES,
  type StoreHeader,
  validatePageSize,
} from '../../src/store/header.js';
import { PageIndex } from '../../src/store/page-index.js';
import { foldRecords, startReplay } from '../../src/store/replay.js';

const header: StoreHeader = {
  pageSize: 4096,
  dbSizePages: 123,
  nextEpoch: (1n << 63n) + 5n,
  checkpointCommitSeq: (1n << 64n) - 1n,
};

describe('store header', () => {
  it('round-trips every field, u64s as bigint without rounding', () => {
    const bytes = encodeStoreHeader(header);
    expect(bytes.length).toBe(STORE_HEADER_BYTES);
    expect(Buffer.from(bytes.subarray(0, 8)).toString('ascii')).toBe('PWALSTOR');
    expect(decodeStoreHeader(bytes)).toEqual(header);
  });

  it('rejects any single flipped bit with ERR_STORE_HEADER_CORRUPT', () => {
    const bytes = encodeStoreHeader(header);
    for (let bit = 0; bit < bytes.length * 8; bit++) {
      const mutated = bytes.slice();
      mutated[bit >> 3] = (mutated[bit >> 3] ?? 0) ^ (1 << (bit & 7));
      expect(() => decodeStoreHeader(mutated)).toThrow(
        expect.objectContaining({ code: 'ERR_STORE_HEADER_CORRUPT' }),
      );
    }
  });

  it('never throws anything but its typed error on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
        try {
          decodeStoreHeader(bytes);
        } catch (error) {
          expect(isWalError(error, 'ERR_STORE_HEADER_CORRUPT')).toBe(true);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('accepts exactly the power-of-two page sizes 512..=65536', () => {
    for (let size = 512; size <= 65536; size *= 2)
      expect(() => validatePageSize(size)).not.toThrow();
    for (const size of [0, 1, 256, 511, 513, 3000, 131072, Number.NaN, 4096.5]) {
      expect(() => validatePageSize(size)).toThrow(
        expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }),
      );
    }
  });
});

describe('size records', () => {
  it('round-trip and refuse a foreign image', () => {
    expect(decodeSizeMeta(encodeSizeMeta(77), 'x')).toBe(77);
    expect(() => decodeSizeMeta(new Uint8Array(12), 'x')).toThrow(
      expect.objectContaining({ code: 'ERR_STORE_RECOVERY_FAILED' }),
    );
    expect(() => decodeSizeMeta(new Uint8Array(3), 'x')).toThrow(
      expect.objectContaining({ code: 'ERR_STORE_RECOVERY_FAILED' }),
    );
  });
});

const img = (fill: number, size = 8) => new Uint8Array(size).fill(fill);
const stamp = (epoch: number, seq: number) => ({ epoch: BigInt(epoch), commitSeq: BigInt(seq) });

describe('the page index', () => {
  it('keeps the highest stamp per page whatever order acknowledgements arrive in', () => {
    const index = new PageIndex(0);
    index.apply(stamp(2, 5), [[1, img(5)]], { setPages: null, maxPage: 1 });
    index.apply(stamp(2, 4), [[1, img(4)]], { setPages: null, maxPage: 1 });
    index.apply(stamp(1, 9), [[1, img(9)]], { setPages: null, maxPage: 1 });
    expect(index.lookup(1)).toEqual({ kind: 'page', data: img(5) });
    expect(index.lookup(2)).toEqual({ kind: 'file' });
  });

  it('cuts off pages above a shrink, even when the shrink is acknowledged last', () => {
    const inOrder = new PageIndex(10);
    const outOfOrder = new PageIndex(10);
    const commits: Array<
      [ReturnType<typeof stamp>, Array<[number, Uint8Array]>, number | null, number]
    > = [
      [stamp(1, 1), [[8, img(8)]], null, 8],
      [stamp(1, 2), [], 4, 0],
      [stamp(2, 3), [[6, img(6)]], null, 6],
    ];
    for (const [s, pages, setPages, maxPage] of commits)
      inOrder.apply(s, pages, { setPages, maxPage });
    for (const [s, pages, setPages, maxPage] of [...commits].reverse()) {
      outOfOrder.apply(s, pages, { setPages, maxPage });
    }
    for (const index of [inOrder, outOfOrder]) {
      expect(index.dbSizePages).toBe(6);
      expect(index.lookup(8)).toEqual({ kind: 'zeros' });
      expect(index.lookup(5)).toEqual({ kind: 'zeros' });
      expect(index.lookup(6)).toEqual({ kind: 'page', data: img(6) });
      expect(index.lookup(3)).toEqual({ kind: 'file' });
    }
  });

  it('agrees with replaying commits in stamp order, after every arrival, in any arrival order (property)', () => {
    const commitArb = fc.record({
      pages: fc.uniqueArray(fc.integer({ min: 1, max: 12 }), { maxLength: 3 }),
      setPages: fc.option(fc.integer({ min: 0, max: 12 }), { nil: null }),
    });
    fc.assert(
      fc.property(
        fc.array(commitArb, { minLength: 1, maxLength: 12 }),
        fc.nat(),
        (commits, seed) => {
          const valid = commits.map((c, i) => {
            const maxPage = Math.max(0, ...c.pages);
            const setPages = c.setPages === null ? null : Math.max(c.setPages, maxPage);
            return {
              s: stamp(1 + (i >> 2), i + 1),
              pages: c.pages,
              setPages,
              maxPage,
              fill: i + 1,
            };
          });
          // Reference: apply in order.
          let size = 5;
          const content = new Map<number, number>();
          for (const c of valid) {
            for (const p of c.pages) content.set(p, c.fill);
            if (c.setPages !== null) {
              for (const p of [...content.keys()]) if (p > c.setPages) content.delete(p);
              size = c.setPages;
            } else {
              size = Math.max(size, c.maxPage);
            }
          }
          const shuffled = [...valid];
          let r = seed;
          for (let i = shuffled.length - 1; i > 0; i--) {
            r = (r * 1103515245 + 12345) >>> 0;
            const j = r % (i + 1);
            [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
          }
          const index = new PageIndex(5);
          const arrived = new Set<number>();
          for (const c of shuffled) {
            index.apply(
              c.s,
              c.pages.map((p) => [p, img(c.fill)] as const),
              { setPages: c.setPages, maxPage: c.maxPage },
            );
            // After every arrival, the size of the commits arrived so far,
            // replayed in stamp order (the index keeps it without a replay).
            arrived.add(c.fill);
            let sizeSoFar = 5;
            for (const a of valid) {
              if (!arrived.has(a.fill)) continue;
              sizeSoFar = a.setPages ?? Math.max(sizeSoFar, a.maxPage);
            }
            expect(index.dbSizePages).toBe(sizeSoFar);
          }
          expect(index.dbSizePages).toBe(size);
          // Exact reference per page: the latest (in commit order) of its
          // writes and of the shrinks below it decides; neither means "file".
          for (let p = 1; p <= size; p++) {
            let last: 'file' | 'zeros' | number = 'file';
            for (const c of valid) {
              if (c.pages.includes(p)) last = c.fill;
              if (c.setPages !== null && c.setPages < p) last = 'zeros';
            }
            const expected =
              typeof last === 'number' ? { kind: 'page', data: img(last) } : { kind: last };
            expect(index.lookup(p)).toEqual(expected);
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it('forgets what a checkpoint folded and ignores late acknowledgements of folded epochs', () => {
    const index = new PageIndex(0);
    index.apply(stamp(1, 1), [[1, img(1)]], { setPages: null, maxPage: 1 });
    index.apply(stamp(3, 3), [[2, img(3)]], { setPages: null, maxPage: 2 });
    index.pruneThrough(2n, 1);
    expect(index.lookup(1)).toEqual({ kind: 'file' });
    expect(index.lookup(2)).toEqual({ kind: 'page', data: img(3) });
    // A commit of epoch 2 acknowledged after the checkpoint folded epoch 2:
    // the file already holds it (or newer), the index must not shadow the file.
    index.apply(stamp(2, 2), [[1, img(2)]], { setPages: null, maxPage: 1 });
    expect(index.lookup(1)).toEqual({ kind: 'file' });
    expect(index.pageCount).toBe(1);
    expect(index.byteCount).toBe(8);
    expect(index.dbSizePages).toBe(2);
  });
});

function rec(
  epoch: number,
  seq: number,
  pageId: number,
  image: Uint8Array,
  committed = true,
): WalRecord {
  return {
    txnToken: { id: BigInt(seq), epoch: 0 },
    epoch: BigInt(epoch),
    pageId,
    beginSeq: BigInt(seq),
    endSeq: committed ? BigInt(seq) : null,
    beforeImage: new Uint8Array(0),
    afterImage: image,
  };
}

describe('folding the log', () => {
  it('skips applied epochs and uncommitted records, last write wins, size records cut', () => {
    const state = startReplay(10);
    foldRecords(
      state,
      [
        rec(3, 1, 9, img(1)), // epoch below nextEpoch: already in the file
        rec(4, 2, 1, img(2)),
        rec(4, 3, 2, img(3), false), // never committed
        rec(5, 4, 1, img(4)),
        rec(5, 4, 7, img(4)),
        rec(6, 5, 2, img(5)),
        rec(6, 5, STORE_META_PAGE_ID, encodeSizeMeta(3)),
        rec(7, 6, 5, img(6)),
      ],
      4n,
      8,
      'test',
    );
    expect([...state.pages.keys()].sort()).toEqual([1, 2, 5]);
    expect(state.pages.get(1)).toEqual(img(4));
    expect(state.minSizePages).toBe(3);
    expect(state.sizePages).toBe(5);
    expect(state.commits).toBe(4);
    expect(state.lastStamp).toEqual(stamp(7, 6));
  });

  it('refuses an image of another page size with ERR_STORE_RECOVERY_FAILED', () => {
    expect(() => foldRecords(startReplay(0), [rec(1, 1, 1, img(1, 16))], 0n, 8, 'seg')).toThrow(
      expect.objectContaining({ code: 'ERR_STORE_RECOVERY_FAILED' }),
    );
  });
});
