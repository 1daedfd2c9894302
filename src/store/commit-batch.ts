/**
 * Validating a store commit and turning it into log frames: shared by the
 * owner thread (`PageStore.commit`) and worker threads (`attachStoreWriter`).
 * Pure: no I/O, no engine.
 */
import { WalArgumentError } from '../errors.js';
import { encodeSizeMeta, STORE_META_PAGE_ID, storePageNumberMax } from './commit-meta.js';

/** Pages of one commit: a map, or a list (each page number at most once). */
export type PageWrites =
  | ReadonlyMap<number, Uint8Array>
  | ReadonlyArray<{ pageNumber: number; data: Uint8Array }>;

/** One frame as the log takes it. */
export interface StoreFrame {
  pageNumber: number;
  pageData: Uint8Array;
  dbSizeIfCommit: number;
}

/** A validated commit: its pages (copied, ascending), size effect and log frames. */
export interface PreparedCommit {
  pages: Array<readonly [number, Uint8Array]>;
  maxPage: number;
  /** Explicit size after the commit, or `null` (grow only). */
  setPages: number | null;
  frames: StoreFrame[];
}

/**
 * Validates a commit and builds its frames: one per page, plus the size
 * record when `dbSizePages` is given (see `commit-meta.ts`). `sizeHint` is
 * what the frames report as `dbSizeIfCommit` when no size is given.
 * @throws {WalArgumentError}
 */
export function prepareCommit(
  pages: PageWrites,
  dbSizePages: number | undefined,
  pageSize: number,
  sizeHint: number,
): PreparedCommit {
  const { list, maxPage } = normalizePages(pages, pageSize);
  const setPages = checkDbSize(dbSizePages, maxPage);
  const frames: StoreFrame[] = list.map(([pageNumber, data]) => ({
    pageNumber,
    pageData: data,
    dbSizeIfCommit: 0,
  }));
  if (setPages !== null) {
    frames.push({
      pageNumber: STORE_META_PAGE_ID,
      pageData: encodeSizeMeta(setPages),
      dbSizeIfCommit: setPages,
    });
  } else if (frames.length > 0) {
    frames[frames.length - 1]!.dbSizeIfCommit = Math.max(sizeHint, maxPage);
  } else {
    throw new WalArgumentError('a commit needs at least one page or a dbSizePages');
  }
  return { pages: list, maxPage, setPages, frames };
}

/** Validates a page number for reading or writing. */
export function checkPageNumber(pageNumber: number): void {
  if (!Number.isInteger(pageNumber) || pageNumber < 1 || pageNumber > storePageNumberMax) {
    throw new WalArgumentError(
      `page number must be an integer in 1..=${storePageNumberMax}, got ${String(pageNumber)}`,
    );
  }
}

/** Validates and copies a commit's pages; sorted by page number. */
export function normalizePages(
  pages: PageWrites,
  pageSize: number,
): { list: Array<readonly [number, Uint8Array]>; maxPage: number } {
  const entries: Array<readonly [number, Uint8Array]> =
    pages instanceof Map
      ? [...(pages as ReadonlyMap<number, Uint8Array>)]
      : Array.isArray(pages)
        ? (pages as ReadonlyArray<{ pageNumber: number; data: Uint8Array }>).map(
            (p) => [p?.pageNumber, p?.data] as const,
          )
        : (() => {
            throw new WalArgumentError('pages must be a Map or an array of { pageNumber, data }');
          })();
  const seen = new Set<number>();
  let maxPage = 0;
  const list: Array<readonly [number, Uint8Array]> = [];
  for (const [pageNumber, data] of entries) {
    checkPageNumber(pageNumber);
    if (!(data instanceof Uint8Array) || data.length !== pageSize) {
      throw new WalArgumentError(
        `page ${pageNumber}: data must be a Uint8Array of exactly ${pageSize} bytes, got ${
          data instanceof Uint8Array ? `${data.length} bytes` : typeof data
        }`,
      );
    }
    if (seen.has(pageNumber))
      throw new WalArgumentError(`page ${pageNumber} appears twice in one commit`);
    seen.add(pageNumber);
    maxPage = Math.max(maxPage, pageNumber);
    // A copy: the caller may reuse its buffer once commit() returns.
    list.push([pageNumber, data.slice()]);
  }
  list.sort((a, b) => a[0] - b[0]);
  return { list, maxPage };
}

export function checkDbSize(dbSizePages: number | undefined, maxPage: number): number | null {
  if (dbSizePages === undefined) return null;
  if (!Number.isInteger(dbSizePages) || dbSizePages < 0 || dbSizePages > storePageNumberMax) {
    throw new WalArgumentError(
      `dbSizePages must be an integer in 0..=${storePageNumberMax}, got ${String(dbSizePages)}`,
    );
  }
  if (dbSizePages < maxPage) {
    throw new WalArgumentError(
      `dbSizePages ${dbSizePages} is below page ${maxPage} of the same commit`,
    );
  }
  return dbSizePages;
}
