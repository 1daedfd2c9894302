/**
 * Worker-writer benchmark: N `worker_threads` commit one 4 KiB page per
 * commit through `wal.workerHandle()` / `attachWriter` for T seconds.
 *
 * `runWorkerWriters` is the helper `bench/engine.ts` plugs in through
 * {@link workerCases}; run this file alone for the 1-vs-2-workers figures:
 *
 *   npx tsx bench/workers.ts [--seconds 3] [--runs 3] [--in-flight 32]
 *   npx tsx bench/workers.ts --owner-busy 5/10   # 2 workers, fsync full: the owner idle vs busy 5 ms in every 10,
 *                                                # then the same with the log on its own thread (ThreadedWal)
 *   npx tsx bench/workers.ts --owner-busy 5/10 --owner-work wait   # busy = blocked in a synchronous wait, no CPU
 *
 * It prints, for fsync `off` (CPU-bound: encoding, CRC, copying, flushing)
 * and `full`, commits/s, fsyncs/s, pages per epoch and p50/p99 latency, and
 * the 2-workers / 1-worker ratio (target >= 1.6x with fsync off).
 */
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import * as hdr from 'hdr-histogram-js';
import { ThreadedWal } from '../src/engine/log-thread.js';
import { ParallelWal } from '../src/engine/wal.js';
import type { FsyncPolicy } from '../src/storage/segment-files.js';
import type { BenchCase, CaseFigures } from './engine.js';
import { benchDir, median, ms } from './raw-floor.js';

const ENTRY = new URL('./worker-writer.mjs', import.meta.url);
const PAGE_BYTES = 4096;
const WARMUP_MS = 500;

/**
 * How the busy owner thread spends its busy time: `spin` runs a loop (CPU
 * work, sharing the machine's cores with the log), `wait` blocks in a
 * synchronous wait (`Atomics.wait`, like a synchronous read: no CPU used,
 * only this thread's event loop stopped).
 */
export type OwnerWork = 'spin' | 'wait';

/** Options of {@link runWorkerWriters}. */
export interface WorkerWritersOptions {
  /** Worker threads, each with its own lane. */
  workers: number;
  /** Measured seconds (after a warm-up). */
  seconds: number;
  fsync: FsyncPolicy;
  /** A directory for the database (a fresh sub-directory is made and removed). */
  dir: string;
  /** Commits outstanding per worker (default 32). */
  inFlight?: number;
  /** Bytes per page (default 4096). */
  pageBytes?: number;
  /**
   * Keeps the owner thread's event loop busy: every `everyMs` a timer spins
   * synchronously for `busyMs` (the application's own work on the thread
   * that opened the log). Absent: the owner does nothing but run the log.
   */
  ownerBusy?: { busyMs: number; everyMs: number; kind?: OwnerWork };
  /**
   * Opens the log with `ThreadedWal` (its owner on a thread of its own)
   * instead of `ParallelWal` (its owner is this thread).
   */
  logThread?: boolean;
}

/** What {@link runWorkerWriters} measured. */
export interface WorkerWritersFigures {
  commits: number;
  commitsPerSec: number;
  fsyncsPerSec: number;
  pagesPerEpoch: number;
  p50Us: number;
  p99Us: number;
  /** Commits that took the serialized path (lane sealed or full). */
  fallbacks: number;
  /** CPU time of the whole process (every thread) per commit, in µs. */
  cpuMicrosPerCommit: number;
}

/** Runs `workers` worker writers against a fresh log and measures them. */
export async function runWorkerWriters(
  options: WorkerWritersOptions,
): Promise<WorkerWritersFigures> {
  const dbDir = await fsp.mkdtemp(path.join(options.dir, 'workers-'));
  const dbPath = path.join(dbDir, 'bench.db');
  const config = { fsync: options.fsync, slotCount: 1 };
  const wal = options.logThread
    ? await ThreadedWal.open(dbPath, config)
    : await ParallelWal.open(dbPath, config);
  const flags = new SharedArrayBuffer(8);
  const control = new Int32Array(flags);
  const threads: { worker: Worker; result: Promise<Float64Array>; exited: Promise<unknown> }[] = [];
  for (let i = 0; i < options.workers; i++) {
    const handle = await wal.workerHandle();
    const worker = new Worker(ENTRY, {
      workerData: {
        handle,
        flags,
        pageBytes: options.pageBytes ?? PAGE_BYTES,
        inFlight: options.inFlight ?? 32,
        txnBase: (i + 1) * 1_000_000_000,
      },
      transferList: [handle.port],
    });
    const result = new Promise<Float64Array>((resolve, reject) => {
      worker.once('message', (m: { latencies: Float64Array }) => resolve(m.latencies));
      worker.once('error', reject);
    });
    // Listen for the exit now: a worker may be gone before its result is read.
    const exited = new Promise((r) => worker.once('exit', r));
    threads.push({ worker, result, exited });
  }
  let busyTimer: NodeJS.Timeout | null = null;
  const busy = options.ownerBusy;
  if (busy !== undefined) {
    const nap = new Int32Array(new SharedArrayBuffer(4));
    busyTimer = setInterval(() => {
      if (busy.kind === 'wait') {
        Atomics.wait(nap, 0, 0, busy.busyMs);
        return;
      }
      const until = performance.now() + busy.busyMs;
      while (performance.now() < until) {
        // The application's synchronous work: the event loop runs nothing else meanwhile.
      }
    }, busy.everyMs);
  }
  await new Promise((r) => setTimeout(r, WARMUP_MS));
  const before = await wal.stats();
  const cpuBefore = process.cpuUsage();
  Atomics.store(control, 0, 1);
  const started = performance.now();
  await new Promise((r) => setTimeout(r, options.seconds * 1000));
  Atomics.store(control, 0, 0);
  const seconds = (performance.now() - started) / 1000;
  if (busyTimer !== null) clearInterval(busyTimer);
  const cpu = process.cpuUsage(cpuBefore);
  const after = await wal.stats();
  Atomics.store(control, 1, 1);
  const samples = await Promise.all(threads.map((t) => t.result));
  await Promise.all(threads.map((t) => t.exited));
  const fallbacks = (await wal.stats()).fallbacks;
  await wal.close();
  await fsp.rm(dbDir, { recursive: true, force: true });

  const histogram = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000 });
  let commits = 0;
  for (const s of samples) {
    for (const v of s) histogram.recordValue(Math.max(1, Math.round(v)));
    commits += s.length;
  }
  const segments = after.segmentsWritten - before.segmentsWritten;
  return {
    commits,
    commitsPerSec: commits / seconds,
    fsyncsPerSec: (after.fsyncs - before.fsyncs) / seconds,
    pagesPerEpoch: segments === 0 ? 0 : commits / segments,
    p50Us: commits === 0 ? 0 : histogram.getValueAtPercentile(50),
    p99Us: commits === 0 ? 0 : histogram.getValueAtPercentile(99),
    fallbacks,
    cpuMicrosPerCommit: commits === 0 ? 0 : (cpu.user + cpu.system) / commits,
  };
}

/**
 * The worker cases of `bench/engine.ts`: 1 and 2 workers with fsync `full`
 * and `off` (`extraCases.push(...workerCases())`).
 */
export function workerCases(inFlight = 32): BenchCase[] {
  const cases: BenchCase[] = [];
  for (const fsync of ['full', 'off'] as const) {
    for (const workers of [1, 2]) {
      const name = `${workers} worker${workers === 1 ? '' : 's'}${fsync === 'full' ? '' : ` (fsync ${fsync})`}`;
      cases.push({
        name,
        async run(options): Promise<CaseFigures> {
          const f = await runWorkerWriters({
            workers,
            seconds: options.seconds,
            fsync,
            dir: options.dir,
            inFlight,
          });
          return { name, ...f };
        },
      });
    }
  }
  return cases;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const value = (flag: string): string | undefined => {
    const i = args.indexOf(flag);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const seconds = Number(value('--seconds') ?? 3);
  const runs = Number(value('--runs') ?? 3);
  const inFlight = Number(value('--in-flight') ?? 32);
  const dir = await benchDir(value('--dir'));
  const ownerBusy = value('--owner-busy');
  if (ownerBusy !== undefined) {
    try {
      const kind = (value('--owner-work') ?? 'spin') as OwnerWork;
      if (kind !== 'spin' && kind !== 'wait')
        throw new Error(`--owner-work wants spin or wait, got ${kind}`);
      await compareOwnerBusy(ownerBusy, { seconds, runs, inFlight, dir, kind });
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
    return;
  }
  console.log(
    `worker writers: ${seconds} s per case, median of ${runs} interleaved runs, ${inFlight} commits in flight per worker, 4 KiB pages`,
  );
  try {
    for (const fsync of ['off', 'full'] as const) {
      const one: WorkerWritersFigures[] = [];
      const two: WorkerWritersFigures[] = [];
      for (let r = 0; r < runs; r++) {
        // Interleaved, so disk and machine noise hit both sides alike.
        one.push(await runWorkerWriters({ workers: 1, seconds, fsync, dir, inFlight }));
        two.push(await runWorkerWriters({ workers: 2, seconds, fsync, dir, inFlight }));
      }
      const show = (label: string, xs: WorkerWritersFigures[]): number => {
        const cps = median(xs.map((x) => x.commitsPerSec));
        console.log(
          `${label.padEnd(22)} ${cps.toFixed(0).padStart(8)} commits/s ${median(
            xs.map((x) => x.fsyncsPerSec),
          )
            .toFixed(0)
            .padStart(6)} fsyncs/s ${median(xs.map((x) => x.pagesPerEpoch))
            .toFixed(1)
            .padStart(
              7,
            )} pages/epoch  p50 ${ms(median(xs.map((x) => x.p50Us)))} ms  p99 ${ms(median(xs.map((x) => x.p99Us)))} ms  fallbacks ${median(xs.map((x) => x.fallbacks))}  cpu/commit ${median(xs.map((x) => x.cpuMicrosPerCommit)).toFixed(1)} µs  runs ${xs.map((x) => x.commitsPerSec.toFixed(0)).join('/')}`,
        );
        return cps;
      };
      const c1 = show(`1 worker (fsync ${fsync})`, one);
      const c2 = show(`2 workers (fsync ${fsync})`, two);
      console.log(
        `  2 workers / 1 worker = ${(c2 / c1).toFixed(2)}x${fsync === 'off' ? ' (target >= 1.6x)' : ''}`,
      );
    }
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

/**
 * `--owner-busy BUSY/EVERY`: 2 worker writers (fsync full) while the owner
 * thread only runs the log, and while it also spins BUSY ms in every EVERY
 * ms; interleaved runs, medians. Worker lanes are sealed, written and
 * acknowledged from the owner's event loop, so its own work delays them.
 */
async function compareOwnerBusy(
  spec: string,
  options: { seconds: number; runs: number; inFlight: number; dir: string; kind: OwnerWork },
): Promise<void> {
  const match = /^(\d+(?:\.\d+)?)\/(\d+(?:\.\d+)?)$/.exec(spec);
  const busyMs = Number(match?.[1]);
  const everyMs = Number(match?.[2]);
  if (match === null || !(busyMs > 0) || !(everyMs > busyMs)) {
    throw new Error(`--owner-busy wants BUSY/EVERY in ms with 0 < BUSY < EVERY, got ${spec}`);
  }
  const { seconds, runs, inFlight, dir, kind } = options;
  const work = kind === 'spin' ? 'a spinning loop' : 'a synchronous wait (no CPU)';
  console.log(
    `2 worker writers, fsync full, ${inFlight} commits in flight each, ${seconds} s per case, medians of ${runs} interleaved runs; busy owner: ${busyMs} ms of ${work} every ${everyMs} ms`,
  );
  const idle: WorkerWritersFigures[] = [];
  const busy: WorkerWritersFigures[] = [];
  const threadIdle: WorkerWritersFigures[] = [];
  const threadBusy: WorkerWritersFigures[] = [];
  for (let r = 0; r < runs; r++) {
    const base = { workers: 2, seconds, fsync: 'full' as const, dir, inFlight };
    const ownerBusy = { busyMs, everyMs, kind };
    idle.push(await runWorkerWriters(base));
    busy.push(await runWorkerWriters({ ...base, ownerBusy }));
    threadIdle.push(await runWorkerWriters({ ...base, logThread: true }));
    threadBusy.push(await runWorkerWriters({ ...base, logThread: true, ownerBusy }));
  }
  const row = (label: string, xs: WorkerWritersFigures[]): number => {
    const cps = median(xs.map((x) => x.commitsPerSec));
    console.log(
      `${label.padEnd(24)} ${cps.toFixed(0).padStart(8)} commits/s  p50 ${ms(median(xs.map((x) => x.p50Us)))} ms  p99 ${ms(median(xs.map((x) => x.p99Us)))} ms  runs ${xs.map((x) => x.commitsPerSec.toFixed(0)).join('/')}`,
    );
    return cps;
  };
  const a = row('owner idle', idle);
  const b = row(`owner busy ${busyMs}/${everyMs}`, busy);
  console.log(`  busy / idle = ${(b / a).toFixed(2)}x`);
  // The same, with the log's owner on a thread of its own (ThreadedWal):
  // "busy" is then the thread that opened the log, which no longer runs it.
  const c = row('log thread, idle', threadIdle);
  const d = row(`log thread, busy ${busyMs}/${everyMs}`, threadBusy);
  console.log(
    `  busy / idle = ${(d / c).toFixed(2)}x; busy, log thread / owner = ${(d / b).toFixed(2)}x`,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await main();
}
