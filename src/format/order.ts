/**
 * Recovery order (docs/design.md#recovery-order): records sort by (epoch, beginSeq, txnId,
 * pageId); applying them in that order, the last write to a page wins.
 */
import type { WalRecord } from './types.js';

/** Total order of records for replay: epoch, then beginSeq, then txnId, then pageId. */
export function compareRecords(a: WalRecord, b: WalRecord): number {
  if (a.epoch !== b.epoch) return a.epoch < b.epoch ? -1 : 1;
  if (a.beginSeq !== b.beginSeq) return a.beginSeq < b.beginSeq ? -1 : 1;
  if (a.txnToken.id !== b.txnToken.id) return a.txnToken.id < b.txnToken.id ? -1 : 1;
  return a.pageId - b.pageId;
}

/**
 * Returns a new array with `records` in recovery order. The sort is stable:
 * records equal under {@link compareRecords} keep their input order.
 */
export function recoveryOrder(records: readonly WalRecord[]): WalRecord[] {
  return records.slice().sort(compareRecords);
}

/** True when `records` is already in recovery order. */
export function isInRecoveryOrder(records: readonly WalRecord[]): boolean {
  for (let i = 1; i < records.length; i++) {
    if (compareRecords(records[i - 1]!, records[i]!) > 0) return false;
  }
  return true;
}
