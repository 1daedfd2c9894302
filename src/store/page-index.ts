/**
 * The in-memory index of pages committed since the last checkpoint.
 *
 * It holds only durable commits: the store adds a commit after the log
 * acknowledged it (or after reading it back from a durable segment), so a
 * reader never sees a commit before it is durable.
 *
 * Acknowledgements of one epoch may be processed in any order, so every entry
 * carries its *stamp* `(epoch, commitSeq)` — the order recovery replays in —
 * and the index keeps, per page, the entry with the highest stamp. A commit
 * that shrinks the database is kept as a *shrink event*: a page above the new
 * size reads as zeros unless a later-stamped write brought it back. So the
 * content of a page is the latest, by stamp, of its writes and the shrinks
 * that cut it off — whatever order the acknowledgements arrived in.
 */

/** The order of commits: epoch first, then commit sequence (docs/design.md#recovery-order). */
export interface Stamp {
  epoch: bigint;
  commitSeq: bigint;
}

/** -1, 0, 1 as `a` is before, equal to, after `b`. */
export function compareStamps(a: Stamp, b: Stamp): number {
  if (a.epoch !== b.epoch) return a.epoch < b.epoch ? -1 : 1;
  if (a.commitSeq !== b.commitSeq) return a.commitSeq < b.commitSeq ? -1 : 1;
  return 0;
}

interface PageEntry {
  stamp: Stamp;
  data: Uint8Array;
}

/**
 * A commit's effect on the database size: `setPages` set it exactly (may
 * shrink), else it grew to at least `growToPages` (its highest page).
 */
interface SizeEvent {
  stamp: Stamp;
  setPages: number | null;
  growToPages: number;
}

/** What {@link PageIndex.lookup} found. */
export type IndexLookup =
  /** The latest image of the page (from a commit since the last checkpoint). */
  | { kind: 'page'; data: Uint8Array }
  /** The page was cut off by a shrink since its last write: it reads as zeros. */
  | { kind: 'zeros' }
  /** Nothing since the last checkpoint: read the database file. */
  | { kind: 'file' };

/**
 * How a commit changes the database size: `dbSizePages` given (the caller's
 * `dbSizeIfCommit`) sets it exactly, which may shrink the database; absent
 * (`0` in the log) it only grows it to cover the commit's highest page.
 */
export interface CommitSize {
  /** Explicit size after the commit, or `null` (grow only). */
  setPages: number | null;
  /** Highest page number the commit writes (0 for none). */
  maxPage: number;
}

/** Size after applying `commit` to a database of `before` pages. */
export function sizeAfter(before: number, commit: CommitSize): number {
  return commit.setPages ?? Math.max(before, commit.maxPage);
}

/** Pages and size changes of durable commits since the last checkpoint. */
export class PageIndex {
  private readonly pages = new Map<number, PageEntry>();
  /** Size effects of the commits since the last checkpoint, sorted by stamp. */
  private events: SizeEvent[] = [];
  /** Smallest explicit size among {@link events}: pages up to it are never cut off. */
  private minSetPages = Number.POSITIVE_INFINITY;
  /** Stamp of the latest (by stamp) event with an explicit size, if any. */
  private lastSet: Stamp | null = null;
  private sizePages: number;
  private bytes = 0;

  /**
   * @param checkpointSizePages the database size the file holds.
   * @param foldedThroughEpoch the last epoch already in the file (`-1n`: none);
   * commits of such epochs are ignored (the file has them, or something newer).
   */
  constructor(
    private checkpointSizePages: number,
    private foldedThroughEpoch = -1n,
  ) {
    this.sizePages = checkpointSizePages;
  }

  /** Database size in pages after the latest durable commit. */
  get dbSizePages(): number {
    return this.sizePages;
  }

  /** Pages held. */
  get pageCount(): number {
    return this.pages.size;
  }

  /** Bytes of page images held. */
  get byteCount(): number {
    return this.bytes;
  }

  /** Size events held (one per commit since the last checkpoint). */
  get eventCount(): number {
    return this.events.length;
  }

  /**
   * Adds a durable commit: its pages and its size effect. A page whose entry
   * has a later stamp keeps it. Idempotent for a given stamp.
   */
  apply(stamp: Stamp, pages: Iterable<readonly [number, Uint8Array]>, size: CommitSize): void {
    // A late acknowledgement of an epoch a checkpoint already folded: the
    // file holds this commit or a newer image; an entry here could hide it.
    if (stamp.epoch <= this.foldedThroughEpoch) return;
    for (const [pageNumber, data] of pages) {
      const old = this.pages.get(pageNumber);
      if (old !== undefined && compareStamps(old.stamp, stamp) >= 0) continue;
      this.bytes += data.length - (old?.data.length ?? 0);
      this.pages.set(pageNumber, { stamp, data });
    }
    this.insertEvent({ stamp, setPages: size.setPages, growToPages: size.maxPage });
  }

  private insertEvent(event: SizeEvent): void {
    // Acknowledgements arrive nearly in order: search from the end.
    let at = this.events.length;
    while (at > 0) {
      const order = compareStamps(this.events[at - 1]!.stamp, event.stamp);
      if (order === 0) return; // the same commit again
      if (order < 0) break;
      at--;
    }
    this.events.splice(at, 0, event);
    if (event.setPages !== null) this.minSetPages = Math.min(this.minSetPages, event.setPages);
    // The size changes only if no explicit size comes after the event, and
    // then without a pass over every event since the checkpoint (which made
    // each commit cost as much as the commits before it).
    if (this.lastSet !== null && compareStamps(event.stamp, this.lastSet) < 0) return;
    if (event.setPages === null) {
      this.sizePages = Math.max(this.sizePages, event.growToPages);
      return;
    }
    // The latest explicit size now: it and the (grow-only) events after it.
    this.lastSet = event.stamp;
    let size = event.setPages;
    for (let i = at + 1; i < this.events.length; i++) {
      size = Math.max(size, this.events[i]!.growToPages);
    }
    this.sizePages = size;
  }

  /**
   * Size after every event, in stamp order, from the last explicit size (or
   * the checkpoint); sets {@link lastSet}. A pass over the events: only
   * after a checkpoint pruned them.
   */
  private foldSize(): number {
    let from = this.events.length - 1;
    while (from >= 0 && this.events[from]!.setPages === null) from--;
    this.lastSet = from >= 0 ? this.events[from]!.stamp : null;
    let size = from >= 0 ? this.events[from]!.setPages! : this.checkpointSizePages;
    for (let i = from + 1; i < this.events.length; i++) {
      size = Math.max(size, this.events[i]!.growToPages);
    }
    return size;
  }

  /**
   * Every page whose latest state is an image in the index (not cut off by a
   * later shrink), with that image.
   */
  visiblePages(): Map<number, Uint8Array> {
    const out = new Map<number, Uint8Array>();
    for (const [pageNumber, entry] of this.pages) {
      const cut = pageNumber > this.minSetPages ? this.latestCut(pageNumber) : null;
      if (cut === null || compareStamps(entry.stamp, cut) > 0) out.set(pageNumber, entry.data);
    }
    return out;
  }

  /**
   * The size after the commits of epochs `<= epoch` (folded from the size the
   * file holds), the smallest size reached on the way, and the last stamp.
   */
  sizeThrough(epoch: bigint): { sizePages: number; minSizePages: number; lastStamp: Stamp | null } {
    let size = this.checkpointSizePages;
    let min = size;
    let lastStamp: Stamp | null = null;
    for (const e of this.events) {
      if (e.stamp.epoch > epoch) break;
      size = e.setPages ?? Math.max(size, e.growToPages);
      min = Math.min(min, size);
      lastStamp = e.stamp;
    }
    return { sizePages: size, minSizePages: min, lastStamp };
  }

  /** The latest committed state of a page, as far as the index knows. */
  lookup(pageNumber: number): IndexLookup {
    const entry = this.pages.get(pageNumber);
    const cut = pageNumber > this.minSetPages ? this.latestCut(pageNumber) : null;
    if (entry !== undefined && (cut === null || compareStamps(entry.stamp, cut) > 0)) {
      return { kind: 'page', data: entry.data };
    }
    return cut === null ? { kind: 'file' } : { kind: 'zeros' };
  }

  /** Stamp of the latest commit that set the size below `pageNumber`, if any. */
  private latestCut(pageNumber: number): Stamp | null {
    for (let i = this.events.length - 1; i >= 0; i--) {
      const e = this.events[i]!;
      if (e.setPages !== null && e.setPages < pageNumber) return e.stamp;
    }
    return null;
  }

  /**
   * Forgets what a checkpoint folded into the database file: entries and size
   * events stamped in an epoch `<= epoch`; `sizePages` is the database size
   * the checkpoint wrote (the size after that epoch).
   */
  pruneThrough(epoch: bigint, sizePages: number): void {
    for (const [pageNumber, entry] of this.pages) {
      if (entry.stamp.epoch <= epoch) {
        this.pages.delete(pageNumber);
        this.bytes -= entry.data.length;
      }
    }
    this.events = this.events.filter((e) => e.stamp.epoch > epoch);
    this.minSetPages = Number.POSITIVE_INFINITY;
    for (const e of this.events) {
      if (e.setPages !== null) this.minSetPages = Math.min(this.minSetPages, e.setPages);
    }
    this.checkpointSizePages = sizePages;
    if (epoch > this.foldedThroughEpoch) this.foldedThroughEpoch = epoch;
    this.sizePages = this.foldSize();
  }
}
