/**
 * Folding log records into the database file: the one code path shared by
 * recovery on open, `checkpoint()` and `pwal recover`.
 *
 * Records are taken in recovery order (docs/design.md#recovery-order: epoch, beginSeq, txnId,
 * pageId); those of epochs already in the file (`< nextEpoch`) and those that
 * never committed are skipped. Per page the last image wins; a commit with an
 * explicit size (its size record, see `commit-meta.ts`) cuts off every page
 * above it, so those pages read as zeros if the database grows again.
 *
 * Applying is idempotent and restartable: it only touches pages the replayed
 * range writes or cuts, and the range of a later attempt always contains the
 * range of an interrupted one (segments are deleted only after the header
 * moved past them), so a crash anywhere in between leaves a file the next
 * replay turns into the same result.
 */
import type { WalRecord } from '../format/types.js';
import { decodeSizeMeta, STORE_META_PAGE_ID } from './commit-meta.js';
import type { DatabaseFile } from './db-file.js';
import { StoreError, StoreErrorCode } from './errors.js';
import { type PageIndex, type Stamp, sizeAfter } from './page-index.js';

/** The outcome of folding a range of the log, before it is written. */
export interface ReplayState {
  /** Newest image of every page written after its last cut. */
  pages: Map<number, Uint8Array>;
  /** Database size in pages after the last folded commit. */
  sizePages: number;
  /** Smallest size reached: pages above it are cut (zeroed) in the file. */
  minSizePages: number;
  /** Highest epoch seen among folded records (`null`: none). */
  lastEpoch: bigint | null;
  /** Stamp of the last folded commit (`null`: none). */
  lastStamp: Stamp | null;
  /** Commits folded. */
  commits: number;
  /** Committed page records folded. */
  pageRecords: number;
}

/** A fresh fold over a database of `sizePages` pages. */
export function startReplay(sizePages: number): ReplayState {
  return {
    pages: new Map(),
    sizePages,
    minSizePages: sizePages,
    lastEpoch: null,
    lastStamp: null,
    commits: 0,
    pageRecords: 0,
  };
}

/**
 * The fold of epochs `<= through` from an index of the commits since the
 * database file's last fold: every page's newest image in the index (which
 * may be of a later commit, see `PageStore`'s checkpoint), and the sizes
 * after `through`.
 */
export function foldFromIndex(index: PageIndex, through: bigint): ReplayState {
  const { sizePages, minSizePages, lastStamp } = index.sizeThrough(through);
  return {
    pages: index.visiblePages(),
    sizePages,
    minSizePages,
    lastEpoch: lastStamp?.epoch ?? null,
    lastStamp,
    commits: 0,
    pageRecords: 0,
  };
}

/** One committed transaction, as read back from the log. */
export interface LoggedCommit {
  stamp: Stamp;
  /** `[pageNumber, image]`, ascending page numbers. */
  pages: Array<readonly [number, Uint8Array]>;
  /** Explicit size after the commit (its size record), or `null`: grow only. */
  setPages: number | null;
  /** Highest page written (0 for none). */
  maxPage: number;
}

/**
 * Calls `fn` for every committed transaction of `records` (in recovery order)
 * in an epoch `>= nextEpoch`, in order. Throws `ERR_STORE_RECOVERY_FAILED` for a
 * page image whose length is not the page size (a log of another page size)
 * or a malformed size record.
 */
export function forEachCommit(
  records: readonly WalRecord[],
  nextEpoch: bigint,
  pageSize: number,
  where: string,
  fn: (commit: LoggedCommit) => void,
): void {
  let i = 0;
  while (i < records.length) {
    const first = records[i]!;
    // One commit = the run of records of one transaction at one sequence.
    let end = i + 1;
    while (end < records.length && sameCommit(records[end]!, first)) end++;
    if (first.epoch >= nextEpoch && first.endSeq !== null) {
      fn(readCommit(records, i, end, pageSize, where));
    }
    i = end;
  }
}

/** Folds `records` (in recovery order) into `state`, skipping epochs below `nextEpoch`. */
export function foldRecords(
  state: ReplayState,
  records: readonly WalRecord[],
  nextEpoch: bigint,
  pageSize: number,
  where: string,
): void {
  forEachCommit(records, nextEpoch, pageSize, where, (commit) => foldCommit(state, commit));
}

function sameCommit(a: WalRecord, b: WalRecord): boolean {
  return (
    a.epoch === b.epoch &&
    a.beginSeq === b.beginSeq &&
    a.txnToken.id === b.txnToken.id &&
    a.txnToken.epoch === b.txnToken.epoch
  );
}

function readCommit(
  records: readonly WalRecord[],
  from: number,
  to: number,
  pageSize: number,
  where: string,
): LoggedCommit {
  const first = records[from]!;
  const commit: LoggedCommit = {
    stamp: { epoch: first.epoch, commitSeq: first.beginSeq },
    pages: [],
    setPages: null,
    maxPage: 0,
  };
  for (let i = from; i < to; i++) {
    const record = records[i]!;
    if (record.endSeq === null) continue;
    if (record.pageId === STORE_META_PAGE_ID) {
      commit.setPages = decodeSizeMeta(record.afterImage, where);
      continue;
    }
    if (record.afterImage.length !== pageSize) {
      throw new StoreError(
        StoreErrorCode.recoveryFailed,
        `${where}: page ${record.pageId} of epoch ${record.epoch} has ${record.afterImage.length} bytes, the page size is ${pageSize}`,
      );
    }
    commit.pages.push([record.pageId, record.afterImage]);
    commit.maxPage = Math.max(commit.maxPage, record.pageId);
  }
  return commit;
}

function foldCommit(state: ReplayState, commit: LoggedCommit): void {
  for (const [pageNumber, image] of commit.pages) state.pages.set(pageNumber, image);
  state.pageRecords += commit.pages.length;
  const { setPages } = commit;
  if (setPages !== null && setPages < state.sizePages) {
    // The commit declared every page above its size gone.
    for (const pageNumber of state.pages.keys()) {
      if (pageNumber > setPages) state.pages.delete(pageNumber);
    }
  }
  state.sizePages = sizeAfter(state.sizePages, commit);
  state.minSizePages = Math.min(state.minSizePages, state.sizePages);
  state.lastEpoch = commit.stamp.epoch;
  state.lastStamp = commit.stamp;
  state.commits++;
}

/**
 * Writes a fold into the database file and fsyncs it: cut to the smallest
 * size reached (so cut pages read as zeros), write the surviving images, set
 * the final length, fsync (data and length). Durable when this returns.
 */
export async function applyReplay(file: DatabaseFile, state: ReplayState): Promise<number> {
  const filePages = Math.ceil((await file.size()) / file.pageSize);
  if (state.minSizePages < filePages) await file.setSizePages(state.minSizePages);
  const writes = [...state.pages].map(([pageNumber, data]) => ({ pageNumber, data }));
  await file.writePages(writes);
  await file.setSizePages(state.sizePages);
  // fsync, not fdatasync alone: the length changed, and the header that
  // follows must never describe a file whose length is not durable.
  await file.sync();
  return writes.length;
}
