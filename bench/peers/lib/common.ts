/**
 * Shared pieces of the peer benchmark: cell and result shapes, deterministic page payloads
 * (so a reader can recompute what a writer wrote), the committer loop and percentiles.
 *
 * Nothing here imports a peer library: peers are loaded by name at run time
 * (see `systems.ts`), so the root project's type-check never depends on
 * `bench/peers/node_modules` being installed.
 */

/** Size of one page, in bytes. */
export const PAGE_BYTES = 4096;
/** Size of the random pool pages are cut from, in bytes (a power of two). */
const POOL_BYTES = 1 << 20;
/** Id space of one worker thread: worker w uses ids `(w + 1) * WORKER_ID_STRIDE + n`. */
export const WORKER_ID_STRIDE = 1_000_000_000_000;

/** One measured cell: one system, one workload, one repetition, in a fresh process. */
export interface CellSpec {
  system: string;
  /** Pages (4 KiB each) per commit. */
  pages: number;
  /** Concurrent committers per writer thread (the main thread when `workers` is 0). */
  committers: number;
  /** Worker threads that commit; 0 = async committers on the main thread. */
  workers: number;
  /** Measured window, ms. */
  durationMs: number;
  /** Warm-up before the window, ms (commits in it are verified but not counted). */
  warmupMs: number;
  /** Directory the system may create its files in (empty, on the benchmark disk). */
  dir: string;
  rep: number;
  /**
   * Run under strace only to count fsync-family calls: its timings are not used (strace stops
   * the traced threads at every counted call, which slows some systems far more than others).
   */
  syncCount?: boolean;
}

/** What a writer (main thread or worker) measured. */
export interface WriterResult {
  /** Commits acknowledged inside the measured window. */
  windowCommits: number;
  /** Latency of each commit acknowledged inside the window, ms. */
  latenciesMs: number[];
  /** Every acknowledged commit id (window or not), in acknowledgement order. */
  acked: number[];
}

/** What a child process prints (one JSON line, prefixed by {@link RESULT_PREFIX}). */
export interface CellResult {
  spec: CellSpec;
  ok: boolean;
  error?: string;
  /** Concurrency the system's API actually gives the workload (e.g. 1 for a synchronous API). */
  effectiveConcurrency: number;
  concurrencyNote?: string;
  commitsPerSec: number;
  pagesPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** All acknowledged commits (warm-up, window and drain). */
  totalCommits: number;
  /** Commits read back and compared after close and reopen. */
  verifiedCommits: number;
  verifyFailures: number;
  /** fsync-family calls counted by the library itself (undefined when it has no counter). */
  libraryFsyncs?: number;
  /** fsync-family calls counted by strace for the whole child (filled by the parent). */
  straceSyncCalls?: number;
  straceBreakdown?: Record<string, number>;
  /** 1-minute load average when the cell started (filled by the parent): others using the machine. */
  loadAvg1?: number;
  /**
   * CPU µs per empty file created in the cell's directory right after the cell, among the files
   * it left there (filled by the parent): about what a log that writes a file per epoch paid
   * for each new file by the end of the cell.
   */
  fileCreationUs?: number;
  versions: Record<string, string>;
}

export const RESULT_PREFIX = 'PEERS-RESULT ';

/** Wall-clock milliseconds, comparable across worker threads of one process. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

let pool: Buffer | undefined;

/** Deterministic pseudo-random bytes (xorshift32), identical in every process and thread. */
function randomPool(): Buffer {
  if (pool) return pool;
  const buf = Buffer.allocUnsafe(POOL_BYTES + PAGE_BYTES);
  let x = 0x9e3779b9;
  for (let i = 0; i < buf.length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf.writeUInt32LE(x >>> 0, i);
  }
  pool = buf;
  return buf;
}

/**
 * The 4 KiB image of page `index` of commit `id`: random (incompressible) bytes from a pool,
 * stamped with the id and index so that no two pages of a run are alike.
 */
export function pageImage(id: number, index: number): Buffer {
  const p = randomPool();
  const offset = ((id * 16 + index) * 64) & (POOL_BYTES - 1);
  const page = Buffer.allocUnsafe(PAGE_BYTES);
  p.copy(page, 0, offset, offset + PAGE_BYTES);
  page.writeDoubleLE(id, 0);
  page.writeUInt32LE(index, 8);
  return page;
}

/** The page images of one commit. */
export function commitPages(id: number, pages: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < pages; i++) out.push(pageImage(id, i));
  return out;
}

/** A page number (u32, >= 1) unique to (commit id, index) within a run. */
export function pageNumberOf(id: number, index: number): number {
  const local = id % WORKER_ID_STRIDE;
  const worker = Math.floor(id / WORKER_ID_STRIDE);
  return 1 + ((worker * 0x10000000 + local * 16 + index) % 0xfffffffe);
}

/** A numeric key unique to (commit id, index), safe as a JS number. */
export function keyOf(id: number, index: number): number {
  return id * 16 + index;
}

/** The durable-commit function a system gives one writer. */
export type CommitFn = (id: number, pages: Buffer[]) => Promise<void> | void;

/** Window of one cell, in {@link nowMs} time. */
export interface Window {
  measureFrom: number;
  measureTo: number;
}

/**
 * Runs `committers` concurrent committer loops until the window closes. Each loop builds a commit,
 * awaits its durable acknowledgement, records it, and starts the next. Time is read on every
 * iteration (no timers), so a synchronous API that never yields still stops on time.
 */
export async function runCommitters(
  commit: CommitFn,
  committers: number,
  pages: number,
  window: Window,
  nextId: () => number,
): Promise<WriterResult> {
  const result: WriterResult = { windowCommits: 0, latenciesMs: [], acked: [] };
  const loop = async (): Promise<void> => {
    while (nowMs() < window.measureTo) {
      const id = nextId();
      const data = commitPages(id, pages);
      const t0 = nowMs();
      await commit(id, data);
      const t1 = nowMs();
      result.acked.push(id);
      if (t1 >= window.measureFrom && t1 < window.measureTo) {
        result.windowCommits += 1;
        result.latenciesMs.push(t1 - t0);
      }
    }
  };
  const loops: Promise<void>[] = [];
  for (let i = 0; i < committers; i++) loops.push(loop());
  await Promise.all(loops);
  return result;
}

/** The q-quantile (0..1) of unsorted samples; NaN when empty. */
export function quantile(samples: readonly number[], q: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = Float64Array.from(samples).sort();
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[idx] ?? Number.NaN;
}

/** Median of numbers, ignoring NaN; NaN when none. */
export function median(values: readonly number[]): number {
  const v = values.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (v.length === 0) return Number.NaN;
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

/** Tiny deferred (Node 20 has no Promise.withResolvers). */
export function deferred<T>(): {
  promise: Promise<T>;
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
} {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}
