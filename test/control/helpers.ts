import { relabelAsVersion3 } from '../../src/control/segment-v3.js';
import { encodedRecordBytes, encodeRecordInto } from '../../src/format/record.js';
import { encodeSegment } from '../../src/format/segment.js';
import type { WalRecord } from '../../src/format/types.js';

/** A committed record of `epoch` at commit sequence `seq` writing `page`. */
export function record(
  epoch: bigint,
  seq: bigint,
  page: number,
  fill = page,
  size = 16,
): WalRecord {
  return {
    txnToken: { id: seq, epoch: 0 },
    epoch,
    pageId: page,
    beginSeq: seq,
    endSeq: seq,
    beforeImage: new Uint8Array(0),
    afterImage: new Uint8Array(size).fill(fill & 0xff),
  };
}

/** Version-3 header + records of `records` (canonical order, as the writer produces). */
export function v3Segment(epoch: bigint, records: readonly WalRecord[]): Uint8Array {
  return relabelAsVersion3(encodeSegment(epoch, records, 2));
}

/** Wire form (`u32 len` + v2 body) of records, back to back. */
export function wireRecords(records: readonly WalRecord[]): Uint8Array {
  const total = records.reduce((sum, r) => sum + 4 + encodedRecordBytes(r, 2), 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const r of records) at = encodeRecordInto(r, 2, out, at);
  return out;
}
