/**
 * A deterministic page-store workload shared by the SIGKILL child and the
 * parent that checks it: commit `i` (1-based) of run `seed` is always the
 * same pages, so the parent can rebuild the state after any number of
 * acknowledged commits without the child shipping page bytes.
 */

/** Page size of the workload, bytes. */
export const WORKLOAD_PAGE_BYTES = 512;
/** Highest page number the workload writes. */
export const WORKLOAD_PAGES_MAX = 40;

/** One commit of the workload. */
export interface WorkloadCommit {
  pages: Array<{ pageNumber: number; data: Uint8Array }>;
  dbSizePages?: number;
}

function mix(seed: number, i: number, salt: number): number {
  let x = (seed * 0x9e3779b1 + i * 0x85ebca6b + salt * 0xc2b2ae35) >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x ^= x >>> 15;
  return x >>> 0;
}

/** Commit `i` of run `seed`. */
export function workloadCommit(seed: number, i: number): WorkloadCommit {
  const count = 1 + (mix(seed, i, 1) % 4);
  const numbers = new Set<number>();
  for (let k = 0; k < count; k++) numbers.add(1 + (mix(seed, i, 10 + k) % WORKLOAD_PAGES_MAX));
  const pages = [...numbers].map((pageNumber) => {
    const data = new Uint8Array(WORKLOAD_PAGE_BYTES).fill((i * 7 + pageNumber) & 0xff);
    new DataView(data.buffer).setUint32(0, i, true);
    new DataView(data.buffer).setUint32(4, pageNumber, true);
    return { pageNumber, data };
  });
  // Every 13th commit also shrinks (or sets) the database size.
  if (i % 13 === 0) {
    const maxPage = Math.max(...numbers);
    return { pages, dbSizePages: Math.max(maxPage, 5 + (mix(seed, i, 99) % 20)) };
  }
  return { pages };
}

/** The database after the first `acked` commits: size and page bytes (zeros where never written or cut). */
export function workloadState(
  seed: number,
  acked: number,
): { size: number; pages: Map<number, Uint8Array> } {
  let size = 0;
  const content = new Map<number, Uint8Array>();
  for (let i = 1; i <= acked; i++) {
    const commit = workloadCommit(seed, i);
    let maxPage = 0;
    for (const p of commit.pages) {
      content.set(p.pageNumber, p.data);
      maxPage = Math.max(maxPage, p.pageNumber);
    }
    if (commit.dbSizePages !== undefined) {
      for (const p of [...content.keys()]) if (p > commit.dbSizePages) content.delete(p);
      size = commit.dbSizePages;
    } else {
      size = Math.max(size, maxPage);
    }
  }
  const pages = new Map<number, Uint8Array>();
  for (let p = 1; p <= size; p++) {
    pages.set(p, content.get(p) ?? new Uint8Array(WORKLOAD_PAGE_BYTES));
  }
  return { size, pages };
}
