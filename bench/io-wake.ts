/**
 * How long the log's I/O thread waits for a core once it is woken for a
 * write: the kernel's own record of it (`perf sched`), with the engine
 * alone.
 *
 * A child process opens a log with the default settings and runs
 * `--committers` async committers (one 4 KiB page of random bytes per
 * commit, fsync `full`) for `--seconds` after a warm-up. Meanwhile the
 * parent records the scheduler's events system-wide with `perf sched record`
 * from the end of the warm-up until just before the window ends, then reads
 * `perf sched timehist`. For the child's threads it
 * reports:
 *
 * - the I/O thread: how often it ran, its scheduling delay (from being woken
 *   to running) p50, p99 and max, and how many delays exceeded 0.5 ms;
 * - for those long delays, which task had the core just before the I/O
 *   thread got it (the file thread, the main thread, or another);
 * - each of the three threads' run time.
 *
 * The child names its threads: the two that appear while the log opens are
 * the I/O thread and then the file thread (`/proc/self/task`, in order of
 * creation; libuv's pool is started before). Recording starts once the
 * child reports the end of its warm-up. Needs `perf` (Linux; as root, or
 * with `kernel.perf_event_paranoid` low enough) and prints why when it
 * cannot run. Nothing alternates: run it on two builds in turn to compare.
 *
 * Run: `npx tsx bench/io-wake.ts [--committers 1] [--seconds 4] [--runs 3] [--dir DIR]`.
 */
import { execFileSync, spawn } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { ParallelWal } from '../src/engine/wal.js';
import { onePageBatch, randomPages } from './one-page.js';
import { benchDir, median, percentile } from './raw-floor.js';

const WARMUP_MS = 500;
const LONG_DELAY_MS = 0.5;

function option(name: string, fallback: string): string {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 && process.argv[at + 1] !== undefined ? process.argv[at + 1]! : fallback;
}

/** Thread ids of this process, ascending (Linux). */
async function threadIds(): Promise<number[]> {
  return (await fsp.readdir('/proc/self/task')).map(Number).sort((a, b) => a - b);
}

/** The child: a log and its committers for `seconds`; prints its threads, then commits/s. */
async function child(dir: string, committers: number, seconds: number): Promise<void> {
  await fsp.stat(dir); // starts libuv's pool before the log's threads
  const before = await threadIds();
  const wal = await ParallelWal.open(path.join(dir, 'bench.db'), { fsync: 'full' });
  await new Promise((resolve) => setTimeout(resolve, 50));
  const added = (await threadIds()).filter((tid) => !before.includes(tid));
  const pages = randomPages(64);
  let txn = 0n;
  let commits = 0;
  let stop = false;
  const loop = async (): Promise<void> => {
    while (!stop) {
      txn += 1n;
      await wal.commit(onePageBatch(txn, pages));
      commits++;
    }
  };
  const loops = Array.from({ length: committers }, loop);
  await new Promise((resolve) => setTimeout(resolve, WARMUP_MS));
  console.log(JSON.stringify({ ready: true, io: added[0] ?? -1, file: added[1] ?? -1, added }));
  const start = commits;
  const started = performance.now();
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  const done = commits - start;
  const elapsed = (performance.now() - started) / 1000;
  stop = true;
  await Promise.all(loops);
  await wal.close();
  console.log(JSON.stringify({ commitsPerSec: done / elapsed }));
}

/** One line of `perf sched timehist`: CPU, task (`name[tid/pid]` or `name[pid]`), times in ms. */
interface Switch {
  cpu: string;
  task: string;
  tid: number;
  pid: number;
  schDelayMs: number;
  runMs: number;
}

function parseTimehist(text: string): Switch[] {
  const rows: Switch[] = [];
  for (const line of text.split('\n')) {
    // `<idle>` has no id: kept (tid -1), so that a delay after an idle stretch is not blamed on
    // the task that ran before it.
    const m = /^\s*[\d.]+\s+\[(\d+)\]\s+(\S.*?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$/.exec(line);
    if (m === null) continue;
    const ids = /\[(\d+)(?:\/(\d+))?\]$/.exec(m[2]!);
    const tid = ids === null ? -1 : Number(ids[1]);
    const pid = ids === null ? -1 : ids[2] === undefined ? tid : Number(ids[2]);
    rows.push({ cpu: m[1]!, task: m[2]!, tid, pid, schDelayMs: Number(m[4]), runMs: Number(m[5]) });
  }
  return rows;
}

interface RunFigures {
  commitsPerSec: number;
  delayP50Ms: number;
  delayP99Ms: number;
  delayMaxMs: number;
  longDelays: number;
  runs: number;
  behindFileThread: number;
  behindMain: number;
  behindOther: number;
  runMs: { main: number; io: number; file: number };
}

/** Runs `perf` with `args`; on failure, throws with what it printed. */
function perf(args: string[]): string {
  try {
    return execFileSync('perf', args, {
      encoding: 'utf8',
      maxBuffer: 1 << 28,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? '';
    throw new Error(`perf ${args.slice(0, 2).join(' ')} failed: ${stderr.trim() || String(error)}`);
  }
}

async function oneRun(dir: string, committers: number, seconds: number): Promise<RunFigures> {
  const runDir = await fsp.mkdtemp(path.join(dir, 'io-wake-'));
  const data = path.join(runDir, 'perf.data');
  const script = new URL(import.meta.url).pathname;
  const proc = spawn(
    process.execPath,
    [...process.execArgv, script, '--child', runDir, String(committers), String(seconds)],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  try {
    const lines: Record<string, unknown>[] = [];
    let pending = '';
    let onLine = (): void => {};
    proc.stdout.on('data', (chunk: Buffer) => {
      pending += chunk.toString();
      const parts = pending.split('\n');
      pending = parts.pop()!;
      for (const part of parts) if (part.trim() !== '') lines.push(JSON.parse(part));
      onLine();
    });
    const exited = new Promise<number | null>((resolve) =>
      proc.on('exit', (code) => resolve(code)),
    );
    const ready = await new Promise<{ io: number; file: number; added: number[] } | null>(
      (resolve) => {
        onLine = () => {
          const line = lines.find((l) => l.ready === true);
          if (line !== undefined) resolve(line as never);
        };
        void exited.then(() => resolve(null));
      },
    );
    if (ready === null) throw new Error('the child exited before its warm-up ended');
    // -N: no build-id cache in the home directory.
    perf([
      'sched',
      'record',
      '-N',
      '-o',
      data,
      '--',
      'sleep',
      String(Math.max(0.5, seconds - 0.5)),
    ]);
    const code = await exited;
    const result = lines.find((l) => typeof l.commitsPerSec === 'number');
    if (code !== 0 || result === undefined) throw new Error(`the child failed (exit code ${code})`);
    const rows = parseTimehist(perf(['sched', 'timehist', '-i', data]));
    return figures(rows, proc.pid!, ready, result.commitsPerSec as number);
  } finally {
    proc.kill('SIGKILL');
    await fsp.rm(runDir, { recursive: true, force: true });
  }
}

/** The I/O thread's delays and what held its core, from the switches of the recording. */
function figures(
  rows: Switch[],
  pid: number,
  threads: { io: number; file: number; added: number[] },
  commitsPerSec: number,
): RunFigures {
  if (threads.added.length !== 2) {
    console.log(`note: ${threads.added.length} threads appeared while the log opened (expected 2)`);
  }
  const { io, file } = threads;
  const runMs = { main: 0, io: 0, file: 0 };
  const delays: number[] = [];
  const before = new Map<string, Switch>();
  let behindFileThread = 0;
  let behindMain = 0;
  let behindOther = 0;
  for (const r of rows) {
    if (r.tid === pid) runMs.main += r.runMs;
    if (r.tid === file) runMs.file += r.runMs;
    if (r.tid === io) {
      runMs.io += r.runMs;
      delays.push(r.schDelayMs);
      if (r.schDelayMs > LONG_DELAY_MS) {
        const prev = before.get(r.cpu);
        if (prev?.tid === file) behindFileThread++;
        else if (prev?.tid === pid) behindMain++;
        else behindOther++;
      }
    }
    before.set(r.cpu, r);
  }
  delays.sort((a, b) => a - b);
  return {
    commitsPerSec,
    delayP50Ms: percentile(delays, 50),
    delayP99Ms: percentile(delays, 99),
    delayMaxMs: delays.at(-1) ?? 0,
    longDelays: delays.filter((d) => d > LONG_DELAY_MS).length,
    runs: delays.length,
    behindFileThread,
    behindMain,
    behindOther,
    runMs,
  };
}

async function main(): Promise<void> {
  if (process.argv.includes('--child')) {
    const at = process.argv.indexOf('--child');
    await child(process.argv[at + 1]!, Number(process.argv[at + 2]), Number(process.argv[at + 3]));
    return;
  }
  try {
    execFileSync('perf', ['--version'], { stdio: 'ignore' });
  } catch {
    console.log('perf is not installed: nothing to measure (apt-get install linux-perf)');
    return;
  }
  const committers = Number(option('committers', '1'));
  const seconds = Number(option('seconds', '4'));
  const runs = Number(option('runs', '3'));
  const own = !process.argv.includes('--dir');
  const dir = own ? await benchDir() : option('dir', '');
  console.log(
    `engine alone, ${committers} committer(s), ${seconds} s per run, ${runs} runs, ${os.cpus().length} cores, in ${dir}`,
  );
  const all: RunFigures[] = [];
  try {
    await measure(all, dir, committers, seconds, runs);
  } catch (error) {
    console.log(`cannot measure: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  } finally {
    if (own) await fsp.rm(dir, { recursive: true, force: true });
  }
}

async function measure(
  all: RunFigures[],
  dir: string,
  committers: number,
  seconds: number,
  runs: number,
): Promise<void> {
  for (let i = 0; i < runs; i++) {
    const f = await oneRun(dir, committers, seconds);
    all.push(f);
    console.log(
      `run ${i + 1}: ${Math.round(f.commitsPerSec)} commits/s; I/O thread ran ${f.runs} times, delay p50 ${f.delayP50Ms.toFixed(3)} ms, p99 ${f.delayP99Ms.toFixed(3)}, max ${f.delayMaxMs.toFixed(3)}; ${f.longDelays} over ${LONG_DELAY_MS} ms (core held by the file thread ${f.behindFileThread}, the main thread ${f.behindMain}, others ${f.behindOther}); run ms main ${Math.round(f.runMs.main)}, I/O ${Math.round(f.runMs.io)}, file ${Math.round(f.runMs.file)}`,
    );
  }
  const med = (pick: (f: RunFigures) => number): number => median(all.map(pick));
  console.log(
    `median: ${Math.round(med((f) => f.commitsPerSec))} commits/s; delay p99 ${med((f) => f.delayP99Ms).toFixed(3)} ms; over ${LONG_DELAY_MS} ms ${med((f) => f.longDelays)} (behind the file thread ${med((f) => f.behindFileThread)})`,
  );
}

await main();
