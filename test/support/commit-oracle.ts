/**
 * The durability oracle: given the records a recovery returned, what each
 * transaction wrote, and which commits were acknowledged, say what went
 * wrong. Shared by the in-process power-cut tests, the SIGKILL tests and the
 * long crash campaign.
 *
 * A transaction's pages are a pure function of (run seed, txn id), so a
 * parent process can check data written by a child it only heard ids and
 * hashes from.
 */
import { createHash } from 'node:crypto';
import type { WalRecord } from '../../src/format/types.js';
import { seededRng } from './rng.js';

/** One page a transaction writes. */
export interface CommitPage {
  pageId: number;
  data: Uint8Array;
}

/** An acknowledgement: the commit resolved with this epoch and sequence. */
export interface CommitAck {
  txnId: bigint;
  epoch: bigint;
  commitSeq: bigint;
}

/** Largest page image the workloads write, in bytes. */
export const WORKLOAD_PAGE_BYTES_MAX = 2048;

/**
 * The pages transaction `txnId` of run `runSeed` writes: 1–4 distinct page
 * ids in 1..256 with 0..`maxBytes` bytes each, all derived from the two numbers.
 */
export function commitPages(runSeed: number, txnId: bigint, maxBytes = 600): CommitPage[] {
  const rng = seededRng((runSeed * 0x9e3779b1) ^ Number(txnId % 0xffffffffn));
  const count = 1 + Math.floor(rng() * 4);
  const ids = new Set<number>();
  while (ids.size < count) ids.add(1 + Math.floor(rng() * 256));
  return [...ids].map((pageId) => {
    const data = new Uint8Array(Math.floor(rng() * (maxBytes + 1)));
    for (let i = 0; i < data.length; i++) data[i] = Math.floor(rng() * 256);
    // Stamp the txn id into the data when there is room, so mixed-up pages show.
    if (data.length >= 8) new DataView(data.buffer).setBigUint64(0, txnId, true);
    return { pageId, data };
  });
}

/** SHA-256 (hex, 16 chars) over a transaction's pages, as a child reports it. */
export function pagesDigest(pages: readonly CommitPage[]): string {
  const hash = createHash('sha256');
  for (const page of [...pages].sort((a, b) => a.pageId - b.pageId)) {
    hash.update(`${page.pageId}:${page.data.length}:`);
    hash.update(page.data);
  }
  return hash.digest('hex').slice(0, 16);
}

/** What the oracle found. Every list must be empty. */
export interface OracleReport {
  /** Acknowledged commits missing or changed after recovery. */
  lost: string[];
  /** Transactions present with only some of their pages, or wrong bytes. */
  partial: string[];
  /** Records of transactions nobody submitted. */
  unknown: string[];
  /** Sequence/epoch order violations. */
  misordered: string[];
  /** Transactions present in the recovered log. */
  presentTxns: number;
}

/** True when the report shows no violation. */
export function reportIsClean(report: OracleReport): boolean {
  return (
    report.lost.length === 0 &&
    report.partial.length === 0 &&
    report.unknown.length === 0 &&
    report.misordered.length === 0
  );
}

/** One line summing a report up (for failure messages). */
export function describeReport(report: OracleReport): string {
  const head = (list: string[]) => list.slice(0, 5).join('; ');
  return [
    `lost ${report.lost.length}: ${head(report.lost)}`,
    `partial ${report.partial.length}: ${head(report.partial)}`,
    `unknown ${report.unknown.length}: ${head(report.unknown)}`,
    `misordered ${report.misordered.length}: ${head(report.misordered)}`,
  ].join(' | ');
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Checks recovered `records` against what was submitted (`expected`, by txn
 * id; `undefined` = never submitted) and the acknowledgements `acks`.
 */
export function checkRecovered(
  records: readonly WalRecord[],
  expected: (txnId: bigint) => readonly CommitPage[] | undefined,
  acks: readonly CommitAck[],
  options: { contiguousFrom?: bigint } = {},
): OracleReport {
  const report: OracleReport = {
    lost: [],
    partial: [],
    unknown: [],
    misordered: [],
    presentTxns: 0,
  };
  const byTxn = new Map<bigint, WalRecord[]>();
  for (const record of records) {
    const list = byTxn.get(record.txnToken.id);
    if (list === undefined) byTxn.set(record.txnToken.id, [record]);
    else list.push(record);
  }
  const seqOwner = new Map<bigint, bigint>();
  const present: { txnId: bigint; epoch: bigint; seq: bigint }[] = [];
  for (const [txnId, list] of byTxn) {
    const pages = expected(txnId);
    if (pages === undefined) {
      report.unknown.push(`txn ${txnId} (${list.length} records)`);
      continue;
    }
    const first = list[0]!;
    const consistent = list.every(
      (r) =>
        r.epoch === first.epoch && r.beginSeq === first.beginSeq && r.endSeq === first.beginSeq,
    );
    const want = new Map(pages.map((p) => [p.pageId, p.data]));
    const seen = new Set<number>();
    let whole = consistent && list.length === pages.length;
    for (const r of list) {
      const data = want.get(r.pageId);
      if (data === undefined || seen.has(r.pageId) || !sameBytes(data, r.afterImage)) whole = false;
      seen.add(r.pageId);
    }
    if (!whole) {
      report.partial.push(
        `txn ${txnId}: ${list.length}/${pages.length} pages, consistent=${consistent}`,
      );
      continue;
    }
    report.presentTxns += 1;
    present.push({ txnId, epoch: first.epoch, seq: first.beginSeq });
    const other = seqOwner.get(first.beginSeq);
    if (other !== undefined)
      report.misordered.push(`txns ${other} and ${txnId} share commit seq ${first.beginSeq}`);
    seqOwner.set(first.beginSeq, txnId);
  }
  for (const ack of acks) {
    const list = byTxn.get(ack.txnId);
    if (list === undefined) {
      report.lost.push(`txn ${ack.txnId} (epoch ${ack.epoch}, seq ${ack.commitSeq}) missing`);
      continue;
    }
    const r = list[0]!;
    if (r.epoch !== ack.epoch || r.beginSeq !== ack.commitSeq) {
      report.lost.push(
        `txn ${ack.txnId}: acked epoch ${ack.epoch} seq ${ack.commitSeq}, recovered epoch ${r.epoch} seq ${r.beginSeq}`,
      );
    }
  }
  // The log assigns sequences contiguously: below the highest acknowledged one
  // every sequence must be present (a hole is a durable commit that vanished).
  if (options.contiguousFrom !== undefined && acks.length > 0) {
    let top = acks[0]!.commitSeq;
    for (const ack of acks) if (ack.commitSeq > top) top = ack.commitSeq;
    for (let seq = options.contiguousFrom; seq <= top; seq++) {
      if (!seqOwner.has(seq))
        report.lost.push(`commit seq ${seq} (below acked seq ${top}) missing`);
    }
  }
  // Commit sequence order agrees with epoch order.
  present.sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0));
  for (let i = 1; i < present.length; i++) {
    if (present[i]!.epoch < present[i - 1]!.epoch) {
      report.misordered.push(
        `seq ${present[i]!.seq} in epoch ${present[i]!.epoch} after seq ${present[i - 1]!.seq} in epoch ${present[i - 1]!.epoch}`,
      );
    }
  }
  return report;
}
