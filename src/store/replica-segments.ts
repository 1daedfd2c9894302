/**
 * The segments a replica reads and writes besides the shipped ones: the
 * page size a shipped segment shows, and the journal segment of a flush
 * (`ReplicaStore.flush`).
 */
import { encodeSegment } from '../format/segment.js';
import type { WalRecord } from '../format/types.js';
import { encodeSizeMeta, STORE_META_PAGE_ID } from './commit-meta.js';

/** Length of the first committed page image (the primary's page size), if any. */
export function firstPageImageBytes(records: readonly WalRecord[]): number | null {
  for (const record of records) {
    if (record.endSeq !== null && record.pageId !== STORE_META_PAGE_ID) {
      return record.afterImage.length;
    }
  }
  return null;
}

/**
 * The journal of a flush: the fold of the applied epochs as one segment of
 * the last one. A first commit cuts the database to the smallest size
 * reached (so cut pages read as zeros), a second writes the surviving images
 * and sets the final size — replaying it gives exactly what the flush writes.
 */
export function encodeFoldSegment(
  epoch: bigint,
  fold: {
    pages: ReadonlyMap<number, Uint8Array>;
    sizePages: number;
    minSizePages: number;
    fromSizePages: number;
    seq: bigint;
  },
): Uint8Array {
  const records: WalRecord[] = [];
  const meta = (txn: bigint, sizePages: number): WalRecord => ({
    txnToken: { id: txn, epoch: 0 },
    epoch,
    pageId: STORE_META_PAGE_ID,
    beginSeq: fold.seq,
    endSeq: fold.seq,
    beforeImage: new Uint8Array(0),
    afterImage: encodeSizeMeta(sizePages),
  });
  if (fold.minSizePages < fold.fromSizePages) records.push(meta(1n, fold.minSizePages));
  for (const [pageId, image] of fold.pages) {
    records.push({
      txnToken: { id: 2n, epoch: 0 },
      epoch,
      pageId,
      beginSeq: fold.seq,
      endSeq: fold.seq,
      beforeImage: new Uint8Array(0),
      afterImage: image,
    });
  }
  records.push(meta(2n, fold.sizePages));
  return encodeSegment(epoch, records);
}
