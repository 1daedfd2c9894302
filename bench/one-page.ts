/**
 * The commit the engine benches make: one 4 KiB page of incompressible bytes
 * per transaction, over a database of 1,000 pages.
 */
import { randomBytes } from 'node:crypto';
import type { ParallelWalBatch } from '../src/engine/wal.js';

export const PAGE_BYTES = 4096;
/** Pages of the database the commits write to. */
const DATABASE_PAGES = 1000;

/** `count` distinct pages of random bytes (a virtual disk makes constant bytes look faster). */
export function randomPages(count: number): Uint8Array[] {
  const bytes = randomBytes(count * PAGE_BYTES);
  return Array.from(
    { length: count },
    (_, i) => new Uint8Array(bytes.buffer, bytes.byteOffset + i * PAGE_BYTES, PAGE_BYTES),
  );
}

/** Transaction `txn`: one page, its image the `txn`-th of `pages` (in turn). */
export function onePageBatch(txn: bigint, pages: readonly Uint8Array[]): ParallelWalBatch {
  return {
    txnToken: { id: txn, epoch: 0 },
    frames: [
      {
        pageNumber: 1 + Number(txn % BigInt(DATABASE_PAGES)),
        pageData: pages[Number(txn % BigInt(pages.length))]!,
        dbSizeIfCommit: DATABASE_PAGES,
      },
    ],
  };
}
