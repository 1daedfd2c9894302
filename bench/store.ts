/**
 * Page store figures, measured side by side in one run on the same disk:
 *
 * 1. Raw floor: write the same number of bytes the checkpoint writes into a
 *    fresh file in 1 MiB `pwrite`s, then one fsync (what a checkpoint does at
 *    best), and the same as 1 MiB appends each followed by fdatasync.
 * 2. Checkpoint throughput: commit CHECKPOINT_MIB of distinct 4 KiB pages
 *    (64-page commits, 16 concurrent committers), then time `checkpoint()`
 *    (fold — from the in-memory index by default, or reading the segments
 *    back —, write the file, fsync, header, delete segments) and report MB/s
 *    of pages written and its ratio to the raw floor, with the time per step.
 * 3. Commit throughput with checkpoints running vs without: COMMITTERS
 *    concurrent committers of one 4 KiB page for COMMIT_MS, once with
 *    automatic checkpoints off, once with a checkpoint every 20 ms the whole
 *    time; commits/s and p50/p99 commit latency.
 *
 * Rounds alternate the variants; medians over ROUNDS are printed.
 *
 *   npx tsx bench/store.ts            (or: npm run bench:store)
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { PageStore } from '../src/store/page-store.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const PAGE_BYTES = 4096;
const CHECKPOINT_MIB = Number(process.env.BENCH_CHECKPOINT_MIB ?? 32);
const PAGES_PER_COMMIT = 64;
const LOADERS = 16;
const COMMITTERS = 64;
const COMMIT_MS = Number(process.env.BENCH_COMMIT_MS ?? 2000);
const MIB = 1024 * 1024;
const CHECKPOINT_EVERY_MS = 20;

function median(values: readonly number[]): number {
  const sorted = values.slice().sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] ?? Number.NaN;
}

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-bench-store-'));
  try {
    return await fn(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** MB/s of writing `bytes` in 1 MiB pwrites into a new file, then one fsync. */
async function rawWriteThenFsync(bytes: number): Promise<number> {
  return withDir(async (dir) => {
    const chunk = new Uint8Array(randomBytes(MIB));
    const handle = await fsp.open(path.join(dir, 'raw'), 'w');
    const started = performance.now();
    for (let at = 0; at < bytes; at += MIB) await handle.write(chunk, 0, MIB, at);
    await handle.sync();
    const seconds = (performance.now() - started) / 1000;
    await handle.close();
    return bytes / seconds / 1e6;
  });
}

/** MB/s of 1 MiB appends, each followed by fdatasync. */
async function rawAppendDatasync(bytes: number): Promise<number> {
  return withDir(async (dir) => {
    const chunk = new Uint8Array(randomBytes(MIB));
    const handle = await fsp.open(path.join(dir, 'raw'), 'a');
    const started = performance.now();
    for (let at = 0; at < bytes; at += MIB) {
      await handle.write(chunk, 0, MIB);
      await handle.datasync();
    }
    const seconds = (performance.now() - started) / 1000;
    await handle.close();
    return bytes / seconds / 1e6;
  });
}

interface CheckpointFigure {
  mbPerSec: number;
  pages: number;
  segments: number;
  ms: number;
  phases: { fold: number; write: number; header: number; delete: number };
}

async function checkpointThroughput(source: 'memory' | 'log'): Promise<CheckpointFigure> {
  return withDir(async (dir) => {
    const store = await PageStore.open(path.join(dir, 'db'), {
      pageSize: PAGE_BYTES,
      autoCheckpoint: false,
      checkpointSource: source,
    });
    const totalPages = (CHECKPOINT_MIB * MIB) / PAGE_BYTES;
    const image = new Uint8Array(randomBytes(PAGE_BYTES));
    let next = 1;
    await Promise.all(
      Array.from({ length: LOADERS }, async () => {
        while (next <= totalPages) {
          const first = next;
          next += PAGES_PER_COMMIT;
          const pages = [];
          for (let p = first; p < first + PAGES_PER_COMMIT && p <= totalPages; p++) {
            pages.push({ pageNumber: p, data: image });
          }
          await store.commit(pages);
        }
      }),
    );
    const result = await store.checkpoint();
    await store.close();
    return {
      mbPerSec: result.bytesWritten / (result.durationMs / 1000) / 1e6,
      pages: result.pagesWritten,
      segments: result.segmentsApplied,
      ms: result.durationMs,
      phases: result.phasesMs,
    };
  });
}

interface CommitFigure {
  commitsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  checkpoints: number;
}

async function commitThroughput(withCheckpoints: boolean): Promise<CommitFigure> {
  return withDir(async (dir) => {
    const store = await PageStore.open(path.join(dir, 'db'), {
      pageSize: PAGE_BYTES,
      autoCheckpoint: false,
    });
    const image = new Uint8Array(randomBytes(PAGE_BYTES));
    const latencies: number[] = [];
    let stop = false;
    let checkpoints = 0;
    // A checkpoint every CHECKPOINT_EVERY_MS (or back to back when one takes longer).
    const checkpointLoop = (async () => {
      while (withCheckpoints && !stop) {
        const result = await store.checkpoint();
        if (result.pagesWritten > 0) checkpoints++;
        await new Promise((r) => setTimeout(r, CHECKPOINT_EVERY_MS));
      }
    })();
    const started = performance.now();
    await Promise.all(
      Array.from({ length: COMMITTERS }, async (_, w) => {
        let n = 0;
        while (performance.now() - started < COMMIT_MS) {
          const t0 = performance.now();
          // Each committer cycles over its own 256 pages (a working set that
          // keeps the checkpoint writing real pages).
          await store.commit([{ pageNumber: 1 + w * 256 + (n++ % 256), data: image }]);
          latencies.push(performance.now() - t0);
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    stop = true;
    await checkpointLoop;
    await store.close();
    latencies.sort((a, b) => a - b);
    return {
      commitsPerSec: latencies.length / seconds,
      p50Ms: percentile(latencies, 50),
      p99Ms: percentile(latencies, 99),
      checkpoints,
    };
  });
}

async function main(): Promise<void> {
  const bytes = CHECKPOINT_MIB * MIB;
  console.log(
    `page store bench: ${PAGE_BYTES} B pages, checkpoint of ${CHECKPOINT_MIB} MiB, ${COMMITTERS} committers for ${COMMIT_MS} ms, ${ROUNDS} rounds (medians)`,
  );
  const raw: number[] = [];
  const rawAppend: number[] = [];
  const ckpt: CheckpointFigure[] = [];
  const ckptLog: CheckpointFigure[] = [];
  const ratios: number[] = [];
  const ratiosLog: number[] = [];
  const without: CommitFigure[] = [];
  const withCk: CommitFigure[] = [];
  const commitRatios: number[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const r = await rawWriteThenFsync(bytes);
    const a = await rawAppendDatasync(bytes);
    const c = await checkpointThroughput('memory');
    const l = await checkpointThroughput('log');
    raw.push(r);
    rawAppend.push(a);
    ckpt.push(c);
    ckptLog.push(l);
    ratios.push(c.mbPerSec / r);
    ratiosLog.push(l.mbPerSec / r);
    // Alternate which variant goes first: the disk is still writing back the
    // previous run's data for a while, which penalises whoever comes first.
    const [off, on] =
      round % 2 === 1
        ? [await commitThroughput(false), await commitThroughput(true)]
        : await (async () => {
            const first = await commitThroughput(true);
            return [await commitThroughput(false), first] as const;
          })();
    without.push(off);
    withCk.push(on);
    commitRatios.push(on.commitsPerSec / off.commitsPerSec);
    const phases = (f: CheckpointFigure) =>
      `fold ${f.phases.fold.toFixed(0)} + write/fsync ${f.phases.write.toFixed(0)} + header ${f.phases.header.toFixed(0)} + delete ${f.phases.delete.toFixed(0)} ms`;
    console.log(
      `round ${round}: raw ${r.toFixed(0)} MB/s, append+fdatasync ${a.toFixed(0)} MB/s; checkpoint from memory ${c.mbPerSec.toFixed(0)} MB/s (${c.pages} pages, ${c.segments} segments: ${phases(c)}), from log ${l.mbPerSec.toFixed(0)} MB/s (${phases(l)}); commits/s ${off.commitsPerSec.toFixed(0)} without vs ${on.commitsPerSec.toFixed(0)} with ${on.checkpoints} checkpoints`,
    );
  }
  const m = (xs: CommitFigure[], key: keyof CommitFigure) => median(xs.map((x) => x[key]));
  console.log('');
  console.log(`raw write 1 MiB pwrites + fsync:     ${median(raw).toFixed(0)} MB/s`);
  console.log(`raw 1 MiB append + fdatasync each:   ${median(rawAppend).toFixed(0)} MB/s`);
  console.log(
    `checkpoint (from memory, default):   ${median(ckpt.map((c) => c.mbPerSec)).toFixed(0)} MB/s (${(median(ratios) * 100).toFixed(0)}% of raw write+fsync, median of per-round ratios)`,
  );
  console.log(
    `checkpoint (segments read back):     ${median(ckptLog.map((c) => c.mbPerSec)).toFixed(0)} MB/s (${(median(ratiosLog) * 100).toFixed(0)}% of raw write+fsync)`,
  );
  console.log(
    `commits without checkpoints:         ${m(without, 'commitsPerSec').toFixed(0)} commits/s, p50 ${m(without, 'p50Ms').toFixed(2)} ms, p99 ${m(without, 'p99Ms').toFixed(2)} ms`,
  );
  console.log(
    `commits with a checkpoint loop:      ${m(withCk, 'commitsPerSec').toFixed(0)} commits/s, p50 ${m(withCk, 'p50Ms').toFixed(2)} ms, p99 ${m(withCk, 'p99Ms').toFixed(2)} ms, ${m(withCk, 'checkpoints').toFixed(0)} checkpoints per run`,
  );
  console.log(
    `with/without commits/s:              ${(median(commitRatios) * 100).toFixed(0)}% (median of per-round ratios)`,
  );
}

await main();
