/**
 * `pwal demo [dir]`: a live run of the parallel WAL. N async committers on the
 * main thread and M worker threads commit page batches into `dir/demo.db`
 * for a few seconds, with a progress line every second (commits/s, fsyncs/s,
 * commits per epoch, p50/p99 commit latency). Then the log is closed,
 * reopened (which validates every segment, fail closed) and every
 * acknowledged commit is checked on disk: present exactly once, with its
 * exact page bytes, in its acknowledged epoch, in commit order.
 * It says where it writes, and at the end what it removed: a temporary
 * directory of its own is deleted (with its file count and bytes) unless
 * `--keep`; a directory you name is never deleted. `--json` prints one JSON
 * report instead of the lines; a progress line shows on a terminal.
 * Exit 0 when everything checks out, 1 otherwise, 2 for bad options.
 */
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as nodePath from 'node:path';
import { Worker } from 'node:worker_threads';
import { type Command, InvalidArgumentError } from 'commander';
import * as hdr from 'hdr-histogram-js';
import { ParallelWal } from '../engine/wal.js';
import { WalArgumentError } from '../errors.js';
import type { FsyncPolicy } from '../storage/segment-files.js';
import { listSegments, readSegment } from '../storage/segment-files.js';
import { type CliContext, type CliIo, EXIT_OK, jsonLine } from './context.js';
import { demoPage } from './demo-pages.js';
import type { DemoWorkerPlan, DemoWorkerReport } from './demo-worker.js';
import { CliErrorCode, CliUsageError } from './errors.js';
import { NO_PROGRESS, type Progress } from './progress.js';

/** Options of {@link runDemo}. */
export interface DemoOptions {
  /** Directory of the database; default a fresh temporary directory (removed afterwards). */
  dir?: string;
  /** Async committers on the main thread. */
  committers: number;
  /** Worker-thread writers. */
  workers: number;
  /** Commits in flight per worker. */
  workerConcurrency: number;
  /** How long to commit, in seconds. */
  seconds: number;
  pageBytes: number;
  pagesPerCommit: number;
  fsync: FsyncPolicy;
  /** Keep the temporary directory. */
  keep: boolean;
}

/** The defaults of `pwal demo`. */
export const demoOptionsDefault: Omit<DemoOptions, 'dir'> = {
  committers: 64,
  workers: 2,
  workerConcurrency: 32,
  seconds: 5,
  pageBytes: 4096,
  pagesPerCommit: 1,
  fsync: 'full',
  keep: false,
};

/** Limits of the demo's options. */
const LIMITS = {
  committers: [0, 10_000],
  workers: [0, 64],
  workerConcurrency: [1, 10_000],
  seconds: [1, 3600],
  pageBytes: [16, 65536],
  pagesPerCommit: [1, 64],
} as const;

/** How a demo run reports while it runs. */
export interface DemoOutput {
  /** Progress of the timed phase (seconds elapsed of `seconds`). */
  progress?: Progress;
  /** Print no lines (the caller prints the report, e.g. as JSON). */
  quiet?: boolean;
}

/** What happened to the demo's directory at the end. */
export interface DemoCleanup {
  /** The directory the demo wrote into. */
  dir: string;
  /** True when the demo created the directory (a temporary one). */
  temporary: boolean;
  /** True when the directory and everything in it was deleted. */
  removed: boolean;
  /** Files in the directory at the end (deleted ones included). */
  files: number;
  /** Their total size. */
  bytes: number;
}

/** What a demo run found. */
export interface DemoReport {
  dbPath: string;
  /** Where it wrote, and what it deleted. */
  cleanup: DemoCleanup;
  acknowledged: number;
  asyncAcknowledged: number;
  workerAcknowledged: number;
  rejected: number;
  segments: number;
  commitsPerSec: number;
  fsyncsPerSec: number;
  verified: boolean;
  problems: string[];
}

interface Ack {
  txnId: number;
  epoch: bigint;
}

/** Most problems listed in the report (the count is always exact). */
const problemsListedMax = 10;
/** How often a line of figures is printed, ms. */
const REPORT_INTERVAL_MS = 1000;
/** How often the progress line is updated, ms. */
const PROGRESS_TICK_MS = 100;
/** Txn ids of worker `w` start at `(w + 1) * WORKER_TXN_STRIDE`. */
const WORKER_TXN_STRIDE = 1_000_000_000;

function startWorker(plan: DemoWorkerPlan): Worker {
  const here = import.meta.url;
  const options = { workerData: plan, transferList: [plan.handle.port] };
  if (!here.endsWith('.ts')) return new Worker(new URL('./demo-worker.js', here), options);
  // Running from source (tsx): a worker cannot load .ts on Node 20 by itself.
  const tsx = import.meta.resolve('tsx/esm/api');
  const entry = new URL('./demo-worker.ts', here).href;
  const code = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); })`;
  return new Worker(code, { ...options, eval: true });
}

function ms(us: number): string {
  return (us / 1000).toFixed(2);
}

/** Files directly in `dir` and their total size. */
async function contentsOf(dir: string): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  for (const entry of await fsp.readdir(dir, { withFileTypes: true })) {
    if (!entry.isFile()) continue;
    files++;
    bytes += (await fsp.stat(nodePath.join(dir, entry.name))).size;
  }
  return { files, bytes };
}

function cleanupLine(c: DemoCleanup): string {
  const contents = `${c.files} file(s), ${c.bytes} bytes`;
  if (c.removed) return `deleted ${c.dir} (${contents}); pass --keep to keep it\n`;
  if (c.temporary) return `kept ${c.dir} (${contents})\n`;
  return `deleted nothing: the demo database stays in ${c.dir} (${contents})\n`;
}

/**
 * Checks the demo's options against their limits.
 * @throws {WalArgumentError} naming the option out of range.
 */
export function validateDemoOptions(options: DemoOptions): void {
  for (const [name, [lo, hi]] of Object.entries(LIMITS)) {
    const value = options[name as keyof typeof LIMITS];
    if (!Number.isInteger(value) || value < lo || value > hi) {
      throw new WalArgumentError(`--${name} must be an integer in ${lo}..=${hi}, got ${value}`);
    }
  }
  if (options.committers + options.workers === 0) {
    throw new WalArgumentError('need at least one committer or worker');
  }
}

/** Runs the demo, printing progress through `io`. */
export async function runDemo(
  options: DemoOptions,
  io: CliIo,
  output: DemoOutput = {},
): Promise<DemoReport> {
  validateDemoOptions(options);
  const temporary = options.dir === undefined;
  const dir = options.dir ?? (await fsp.mkdtemp(nodePath.join(os.tmpdir(), 'pwal-demo-')));
  await fsp.mkdir(dir, { recursive: true });
  const dbPath = nodePath.join(dir, 'demo.db');
  const lines: CliIo = output.quiet === true ? { stdout: () => {}, stderr: io.stderr } : io;
  const finish = async (): Promise<DemoCleanup> => {
    const cleanup: DemoCleanup = {
      dir,
      temporary,
      removed: temporary && !options.keep,
      ...(await contentsOf(dir)),
    };
    if (cleanup.removed) await fsp.rm(dir, { recursive: true, force: true });
    lines.stdout(cleanupLine(cleanup));
    return cleanup;
  };
  let report: Omit<DemoReport, 'cleanup'>;
  try {
    report = await demo(dbPath, options, lines, output.progress ?? NO_PROGRESS);
  } catch (error) {
    await finish();
    throw error;
  }
  return { ...report, cleanup: await finish() };
}

/** The state a demo run shares between its committers, workers and reporter. */
interface DemoRun {
  wal: ParallelWal;
  options: DemoOptions;
  /** Every acknowledged commit by its sequence. */
  acks: Map<bigint, Ack>;
  /** Commit latencies (µs) since the last line of figures. */
  interval: ReturnType<typeof hdr.build>;
  asyncAcks: number;
  workerAcks: number;
  rejected: number;
  firstError: string | null;
  /** Set when the timed phase ends: committers finish their current commit. */
  stopping: boolean;
  /** The next main-thread txn id. */
  nextTxn: number;
}

/** A started worker thread: `ready` once it attached (or exited), `done` when it exited. */
interface DemoWorker {
  worker: Worker;
  ready: Promise<void>;
  done: Promise<void>;
}

/** The demo: commit for `options.seconds`, close, reopen and check every acknowledged commit on disk. */
async function demo(
  dbPath: string,
  options: DemoOptions,
  io: CliIo,
  progress: Progress,
): Promise<Omit<DemoReport, 'cleanup'>> {
  io.stdout(
    `pwal demo: ${options.committers} async committers + ${options.workers} worker threads (${options.workerConcurrency} in flight each), ${options.pagesPerCommit} x ${options.pageBytes}-byte page(s) per commit, fsync ${options.fsync}, ${options.seconds} s, into ${dbPath}\n`,
  );
  const wal = await ParallelWal.open(dbPath, { fsync: options.fsync });
  wal.start();
  const run: DemoRun = {
    wal,
    options,
    acks: new Map<bigint, Ack>(),
    interval: hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000 }),
    asyncAcks: 0,
    workerAcks: 0,
    rejected: 0,
    firstError: null,
    stopping: false,
    nextTxn: 1,
  };
  const workers: DemoWorker[] = [];
  for (let w = 0; w < options.workers; w++) workers.push(startDemoWorker(run, w));
  // The clock starts once every worker has attached (thread start-up is not the log's time).
  try {
    await Promise.race([
      Promise.all(workers.map((w) => w.ready)),
      Promise.all(workers.map((w) => w.done)),
    ]);
  } catch (error) {
    // A worker failed to start: stop the others and the log, then report.
    await Promise.all(workers.map((w) => w.worker.terminate()));
    await wal.close();
    throw error;
  }
  const { elapsed, stats } = await commitForSeconds(run, workers, io, progress);
  await wal.close();
  const acknowledged = run.asyncAcks + run.workerAcks;
  io.stdout(
    `committed ${acknowledged} (${run.asyncAcks} async, ${run.workerAcks} from workers) in ${elapsed.toFixed(1)} s: ${(acknowledged / elapsed).toFixed(0)} commits/s, ${(stats.fsyncs / elapsed).toFixed(0)} fsyncs/s, ${stats.segmentsWritten} segments, ${stats.fallbacks} serialized fallbacks; closed\n`,
  );
  if (run.rejected > 0) io.stdout(`rejected: ${run.rejected} (first: ${run.firstError})\n`);

  // Reopen: validates every segment (fail closed) and continues the numbering.
  const reopened = await ParallelWal.open(dbPath, { fsync: options.fsync });
  const nextEpoch = reopened.currentEpoch;
  await reopened.close();
  const check = await checkRecovered(dbPath, options, run.acks);
  const verified = check.problemCount === 0 && run.rejected === 0;
  io.stdout(
    `reopened (next epoch ${nextEpoch}) and recovered ${check.segments} segments: ${verified ? `all ${acknowledged} acknowledged commits present exactly once, byte for byte, in commit order` : `${check.problemCount} problem(s)`}${check.unacknowledged > 0 ? ` (${check.unacknowledged} durable records whose ack was not reported)` : ''}\n`,
  );
  for (const text of check.problems) io.stdout(`  problem: ${text}\n`);
  return {
    dbPath,
    acknowledged,
    asyncAcknowledged: run.asyncAcks,
    workerAcknowledged: run.workerAcks,
    rejected: run.rejected,
    segments: check.segments,
    commitsPerSec: acknowledged / elapsed,
    fsyncsPerSec: stats.fsyncs / elapsed,
    verified,
    problems: check.problems,
  };
}

/** The demo batch of main-thread txn `txnId`: `pagesPerCommit` demo pages. */
function demoBatch(txnId: number, options: DemoOptions) {
  return {
    txnToken: { id: BigInt(txnId), epoch: 0 },
    frames: Array.from({ length: options.pagesPerCommit }, (_, f) => ({
      pageNumber: f + 1,
      pageData: demoPage(txnId, f + 1, options.pageBytes),
      dbSizeIfCommit: options.pagesPerCommit,
    })),
  };
}

/** One main-thread committer: commits one batch after another until the run stops or a commit is rejected. */
async function commitUntilStopped(run: DemoRun): Promise<void> {
  while (!run.stopping) {
    const txnId = run.nextTxn++;
    const started = performance.now();
    try {
      const ack = await run.wal.commit(demoBatch(txnId, run.options));
      run.interval.recordValue(Math.max(1, Math.round((performance.now() - started) * 1000)));
      run.acks.set(ack.commitSeq, { txnId, epoch: ack.epoch });
      run.asyncAcks++;
    } catch (error) {
      run.rejected++;
      run.firstError ??= error instanceof Error ? error.message : String(error);
      return;
    }
  }
}

/** Starts worker `w` on a handle of the run's log and tallies its reports into the run. */
function startDemoWorker(run: DemoRun, w: number): DemoWorker {
  const worker = startWorker({
    handle: run.wal.workerHandle(),
    pageBytes: run.options.pageBytes,
    framesPerCommit: run.options.pagesPerCommit,
    concurrency: run.options.workerConcurrency,
    txnBase: (w + 1) * WORKER_TXN_STRIDE,
  });
  let markReady = (): void => {};
  const ready = new Promise<void>((resolve) => {
    markReady = resolve;
  });
  const done = new Promise<void>((resolve, reject) => {
    worker.on('message', (report: DemoWorkerReport) => {
      if (report.kind === 'ready') {
        markReady();
      } else if (report.kind === 'acks') {
        for (const ack of report.acks) {
          run.interval.recordValue(Math.max(1, ack.latencyUs));
          run.acks.set(ack.commitSeq, { txnId: ack.txnId, epoch: ack.epoch });
          run.workerAcks++;
        }
      } else {
        run.rejected += report.rejected;
        run.firstError ??= report.firstError;
      }
    });
    worker.on('error', reject);
    worker.on('exit', () => {
      markReady();
      resolve();
    });
  });
  return { worker, ready, done };
}

/** The timed phase: commit for `options.seconds`, a line of figures each second, then stop all. */
async function commitForSeconds(
  run: DemoRun,
  workers: DemoWorker[],
  io: CliIo,
  progress: Progress,
): Promise<{ elapsed: number; stats: ReturnType<ParallelWal['stats']> }> {
  const { options, wal } = run;
  const committers = Array.from({ length: options.committers }, () => commitUntilStopped(run));
  const started = performance.now();
  let last = { at: started, acks: 0, fsyncs: 0, segments: 0 };
  const reporter = setInterval(() => {
    const now = performance.now();
    const stats = wal.stats();
    const total = run.asyncAcks + run.workerAcks;
    const seconds = (now - last.at) / 1000;
    const segments = stats.segmentsWritten - last.segments;
    const commits = total - last.acks;
    const { interval } = run;
    io.stdout(
      `[${((now - started) / 1000).toFixed(1).padStart(5)} s] ${(commits / seconds).toFixed(0).padStart(7)} commits/s  ${((stats.fsyncs - last.fsyncs) / seconds).toFixed(0).padStart(5)} fsyncs/s  ${(segments === 0 ? 0 : commits / segments).toFixed(1).padStart(6)} commits/epoch  p50 ${ms(interval.totalCount === 0 ? 0 : interval.getValueAtPercentile(50))} ms  p99 ${ms(interval.totalCount === 0 ? 0 : interval.getValueAtPercentile(99))} ms\n`,
    );
    interval.reset();
    last = { at: now, acks: total, fsyncs: stats.fsyncs, segments: stats.segmentsWritten };
  }, REPORT_INTERVAL_MS);

  const tick = setInterval(() => {
    const elapsed = Math.min(options.seconds, (performance.now() - started) / 1000);
    progress.update(Math.floor(elapsed * 10) / 10, options.seconds, 's');
  }, PROGRESS_TICK_MS);
  progress.update(0, options.seconds, 's');
  await new Promise((resolve) => setTimeout(resolve, options.seconds * 1000));
  clearInterval(tick);
  progress.end();
  run.stopping = true;
  for (const { worker } of workers) worker.postMessage('stop');
  await Promise.all(committers);
  await Promise.all(workers.map((w) => w.done));
  clearInterval(reporter);
  const elapsed = (performance.now() - started) / 1000;
  return { elapsed, stats: wal.stats() };
}

/**
 * Reads every segment of the closed log and checks each acknowledged commit:
 * in commit order, in its acknowledged epoch, of its txn, with its exact page
 * bytes, and present exactly once per page.
 */
async function checkRecovered(
  dbPath: string,
  options: DemoOptions,
  acks: Map<bigint, Ack>,
): Promise<{ problems: string[]; problemCount: number; unacknowledged: number; segments: number }> {
  const problems: string[] = [];
  let problemCount = 0;
  const problem = (text: string): void => {
    problemCount++;
    if (problems.length < problemsListedMax) problems.push(text);
  };
  const seen = new Map<bigint, number>();
  let previousSeq = -1n;
  let unacknowledged = 0;
  const segments = await listSegments(dbPath);
  for (const segment of segments) {
    const { records } = await readSegment(segment.path);
    for (const record of records) {
      if (record.beginSeq < previousSeq) {
        problem(`commit ${record.beginSeq} recovered after commit ${previousSeq}`);
      }
      previousSeq = record.beginSeq;
      const ack = acks.get(record.beginSeq);
      if (ack === undefined) {
        unacknowledged++;
        continue;
      }
      seen.set(record.beginSeq, (seen.get(record.beginSeq) ?? 0) + 1);
      if (record.epoch !== ack.epoch) {
        problem(
          `commit ${record.beginSeq} acknowledged in epoch ${ack.epoch}, found in ${record.epoch}`,
        );
      }
      if (record.txnToken.id !== BigInt(ack.txnId)) {
        problem(
          `commit ${record.beginSeq} belongs to txn ${ack.txnId}, found ${record.txnToken.id}`,
        );
      }
      const expected = demoPage(ack.txnId, record.pageId, options.pageBytes);
      if (!Buffer.from(record.afterImage).equals(expected)) {
        problem(`commit ${record.beginSeq} page ${record.pageId}: bytes differ`);
      }
    }
  }
  for (const [seq] of acks) {
    const count = seen.get(seq) ?? 0;
    if (count !== options.pagesPerCommit) {
      problem(`acknowledged commit ${seq}: ${count} of ${options.pagesPerCommit} page(s) on disk`);
    }
  }
  return { problems, problemCount, unacknowledged, segments: segments.length };
}

function integer(name: string): (value: string) => number {
  return (value) => {
    const parsed = Number(value);
    // Commander reports this as a usage error (exit 2), naming the option.
    if (!Number.isInteger(parsed))
      throw new InvalidArgumentError(`--${name} must be an integer, got ${value}`);
    return parsed;
  };
}

/** Adds the `demo` subcommand to `program`. */
export function registerDemo(program: Command, ctx: CliContext): void {
  program
    .command('demo')
    .description(
      'live run: concurrent committers and worker threads, then reopen, recover and verify',
    )
    .argument('[dir]', 'directory for the demo database (default: a fresh temporary directory)')
    .option(
      '--committers <n>',
      'async committers on the main thread',
      integer('committers'),
      demoOptionsDefault.committers,
    )
    .option(
      '--workers <n>',
      'worker-thread writers',
      integer('workers'),
      demoOptionsDefault.workers,
    )
    .option(
      '--worker-concurrency <n>',
      'commits in flight per worker',
      integer('worker-concurrency'),
      demoOptionsDefault.workerConcurrency,
    )
    .option('--seconds <n>', 'how long to commit', integer('seconds'), demoOptionsDefault.seconds)
    .option(
      '--page-bytes <n>',
      'bytes per page',
      integer('page-bytes'),
      demoOptionsDefault.pageBytes,
    )
    .option('--pages <n>', 'pages per commit', integer('pages'), demoOptionsDefault.pagesPerCommit)
    .option('--fsync <policy>', 'full, normal or off', demoOptionsDefault.fsync)
    .option('--keep', 'keep the temporary directory (a directory you name is always kept)')
    .option('--json', 'print one JSON report instead of the progress lines')
    .action((dir: string | undefined, flags: DemoFlags) => runDemoCommand(ctx, dir, flags));
}

/** The flags of `pwal demo`, as commander parses them. */
interface DemoFlags {
  committers: number;
  workers: number;
  workerConcurrency: number;
  seconds: number;
  pageBytes: number;
  pages: number;
  fsync: string;
  keep?: boolean;
  json?: boolean;
}

/** `pwal demo`: checks the flags (usage errors exit 2), runs the demo and reports a failed check. */
async function runDemoCommand(
  ctx: CliContext,
  dir: string | undefined,
  flags: DemoFlags,
): Promise<void> {
  if (flags.fsync !== 'full' && flags.fsync !== 'normal' && flags.fsync !== 'off') {
    throw new CliUsageError(`--fsync must be full, normal or off, got ${flags.fsync}`);
  }
  const json = flags.json === true;
  const progress = ctx.progress('demo');
  const demoOptions: DemoOptions = {
    ...(dir === undefined ? {} : { dir }),
    committers: flags.committers,
    workers: flags.workers,
    workerConcurrency: flags.workerConcurrency,
    seconds: flags.seconds,
    pageBytes: flags.pageBytes,
    pagesPerCommit: flags.pages,
    fsync: flags.fsync,
    keep: flags.keep ?? false,
  };
  try {
    validateDemoOptions(demoOptions);
  } catch (error) {
    throw new CliUsageError((error as Error).message);
  }
  const report = await runDemo(demoOptions, ctx.io, { progress, quiet: json });
  if (json) ctx.io.stdout(jsonLine(report));
  if (!report.verified) {
    const first = report.problems[0] ?? `${report.rejected} commit(s) rejected`;
    ctx.problem(
      { code: CliErrorCode.demoVerification, message: `demo check failed: ${first}` },
      !json,
    );
    return;
  }
  ctx.setExitCode(EXIT_OK);
}
