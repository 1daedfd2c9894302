/**
 * How long the log's I/O thread waits for a core once it is woken for a
 * write: the kernel's own record of it (`perf sched`), with the engine
 * alone.
 *
 * A child process opens a log with the default settings and runs
 * `--committers` async committers (one 4 KiB page of random bytes per
 * commit, fsync `full`) for `--seconds`. Meanwhile the parent records the
 * scheduler's events system-wide with `perf sched record` for the middle of
 * that window, then reads `perf sched timehist`. For the child's threads it
 * reports:
 *
 * - the I/O thread (the thread, other than the main one, switched most
 *   often): its scheduling delay (from being woken to running) p50, p99,
 *   max, and how many delays exceeded 0.5 ms;
 * - for those long delays, which task had the core just before the I/O
 *   thread got it (the file thread is the thread, other than those two, that
 *   ran longest);
 * - each of the three threads' run time.
 *
 * Needs `perf` (Linux; as root, or with `kernel.perf_event_paranoid` low
 * enough) and prints why when it cannot run. Runs alternate nothing: run it
 * twice, on two builds, to compare.
 *
 * Run: `npx tsx bench/io-wake.ts [--committers 1] [--seconds 4] [--runs 3] [--dir DIR]`.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { ParallelWal } from '../src/engine/wal.js';
import { benchDir, median, percentile } from './raw-floor.js';

const PAGE_BYTES = 4096;
const WARMUP_MS = 500;
const LONG_DELAY_MS = 0.5;

function option(name: string, fallback: string): string {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 && process.argv[at + 1] !== undefined ? process.argv[at + 1]! : fallback;
}

/** The child: a log and its committers for `seconds`; prints commits/s. */
async function child(dir: string, committers: number, seconds: number): Promise<void> {
  const wal = await ParallelWal.open(path.join(dir, 'bench.db'), { fsync: 'full' });
  const pages = Array.from({ length: 64 }, () => new Uint8Array(randomBytes(PAGE_BYTES)));
  let txn = 0n;
  let commits = 0;
  let stop = false;
  const loop = async (): Promise<void> => {
    while (!stop) {
      txn += 1n;
      await wal.commit({
        txnToken: { id: txn, epoch: 0 },
        frames: [
          {
            pageNumber: 1 + Number(txn % 1000n),
            pageData: pages[Number(txn % 64n)]!,
            dbSizeIfCommit: 1000,
          },
        ],
      });
      commits++;
    }
  };
  const loops = Array.from({ length: committers }, loop);
  await new Promise((resolve) => setTimeout(resolve, WARMUP_MS));
  const start = commits;
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000 - WARMUP_MS));
  const done = commits - start;
  stop = true;
  await Promise.all(loops);
  await wal.close();
  console.log(JSON.stringify({ commitsPerSec: done / (seconds - WARMUP_MS / 1000) }));
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
    const m =
      /^\s*[\d.]+\s+\[(\d+)\]\s+(\S.*?\[(\d+)(?:\/(\d+))?\])\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$/.exec(
        line,
      );
    if (m === null) continue;
    const tid = Number(m[3]);
    rows.push({
      cpu: m[1]!,
      task: m[2]!,
      tid,
      pid: m[4] === undefined ? tid : Number(m[4]),
      schDelayMs: Number(m[6]),
      runMs: Number(m[7]),
    });
  }
  return rows;
}

interface RunFigures {
  commitsPerSec: number;
  delayP50Ms: number;
  delayP99Ms: number;
  delayMaxMs: number;
  longDelays: number;
  wakes: number;
  behindFileThread: number;
  behindMain: number;
  behindOther: number;
  runMs: { main: number; io: number; file: number };
}

async function oneRun(dir: string, committers: number, seconds: number): Promise<RunFigures> {
  const runDir = await fsp.mkdtemp(path.join(dir, 'io-wake-'));
  const data = path.join(runDir, 'perf.data');
  const script = new URL(import.meta.url).pathname;
  const proc = spawn(
    process.execPath,
    [...process.execArgv, script, '--child', runDir, String(committers), String(seconds)],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let out = '';
  proc.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
  await new Promise((resolve) => setTimeout(resolve, WARMUP_MS + 300));
  const recordSeconds = Math.max(0.5, seconds - (WARMUP_MS + 300) / 1000 - 0.5);
  execFileSync('perf', ['sched', 'record', '-o', data, '--', 'sleep', String(recordSeconds)], {
    stdio: 'ignore',
  });
  await exited;
  const timehist = execFileSync('perf', ['sched', 'timehist', '-i', data], {
    encoding: 'utf8',
    maxBuffer: 1 << 28,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  await fsp.rm(runDir, { recursive: true, force: true });
  const pid = proc.pid!;
  const rows = parseTimehist(timehist);
  const mine = rows.filter((r) => r.pid === pid);
  const byTid = new Map<number, { switches: number; runMs: number }>();
  for (const r of mine) {
    const t = byTid.get(r.tid) ?? { switches: 0, runMs: 0 };
    t.switches++;
    t.runMs += r.runMs;
    byTid.set(r.tid, t);
  }
  const others = [...byTid.entries()].filter(([tid]) => tid !== pid);
  const io = others.sort((a, b) => b[1].switches - a[1].switches)[0]?.[0] ?? -1;
  const file =
    others.filter(([tid]) => tid !== io).sort((a, b) => b[1].runMs - a[1].runMs)[0]?.[0] ?? -1;
  const delays: number[] = [];
  const before = new Map<string, Switch>();
  let behindFileThread = 0;
  let behindMain = 0;
  let behindOther = 0;
  for (const r of rows) {
    if (r.tid === io) {
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
    commitsPerSec:
      (JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as { commitsPerSec?: number })
        .commitsPerSec ?? 0,
    delayP50Ms: percentile(delays, 50),
    delayP99Ms: percentile(delays, 99),
    delayMaxMs: delays.at(-1) ?? 0,
    longDelays: delays.filter((d) => d > LONG_DELAY_MS).length,
    wakes: delays.length,
    behindFileThread,
    behindMain,
    behindOther,
    runMs: {
      main: byTid.get(pid)?.runMs ?? 0,
      io: byTid.get(io)?.runMs ?? 0,
      file: byTid.get(file)?.runMs ?? 0,
    },
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
  for (let i = 0; i < runs; i++) {
    const f = await oneRun(dir, committers, seconds);
    all.push(f);
    console.log(
      `run ${i + 1}: ${Math.round(f.commitsPerSec)} commits/s; I/O thread woken ${f.wakes} times, delay p50 ${f.delayP50Ms.toFixed(3)} ms, p99 ${f.delayP99Ms.toFixed(3)}, max ${f.delayMaxMs.toFixed(3)}; ${f.longDelays} over ${LONG_DELAY_MS} ms (core held by the file thread ${f.behindFileThread}, the main thread ${f.behindMain}, others ${f.behindOther}); run ms main ${Math.round(f.runMs.main)}, I/O ${Math.round(f.runMs.io)}, file ${Math.round(f.runMs.file)}`,
    );
  }
  const med = (pick: (f: RunFigures) => number): number => median(all.map(pick));
  console.log(
    `median: ${Math.round(med((f) => f.commitsPerSec))} commits/s; delay p99 ${med((f) => f.delayP99Ms).toFixed(3)} ms; over ${LONG_DELAY_MS} ms ${med((f) => f.longDelays)} (behind the file thread ${med((f) => f.behindFileThread)})`,
  );
  if (own) await fsp.rm(dir, { recursive: true, force: true });
}

await main();
