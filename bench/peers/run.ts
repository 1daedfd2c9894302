/**
 * The peer benchmark runner: `npx tsx run.ts [--quick] [--systems a,b] [--concurrency 1,64] ...`.
 *
 * Runs every cell (system × pages per commit × concurrency × repetition) in a fresh child
 * process, on one disk, interleaving systems round-robin within each repetition. The timed
 * repetitions run without a tracer; when strace is installed, one more repetition of every cell
 * runs under `strace -f -c` only to count fsync-family calls (its timings are not reported:
 * tracing slowed parallel-wal's worker cells 2.3× and lmdb's 1.3× in one measured run). Writes the raw results and the
 * report (markdown table + SVG chart) to `results/`.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { retireCellDir } from './lib/cell-dirs.js';
import { type CellResult, type CellSpec, RESULT_PREFIX } from './lib/common.js';
import { cellFileCreationMicros, collectMachineInfo, type MachineInfo } from './lib/machine.js';
import { writeReport } from './lib/report.js';
import { WARM_MEMORY_GIB_DEFAULT, warmMemory } from './lib/warm-memory.js';
import { SYSTEM_NAMES } from './systems/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../..');

/** Page counts per commit in the bandwidth-floor cell (256 × 4 KiB = 1 MiB per fdatasync). */
export const BANDWIDTH_PAGES = 256;
/** Slack a child gets beyond its cell's own time before it is killed, ms. */
const CHILD_TIMEOUT_SLACK_MS = 90_000;
/** parallel-wal's optional sinks and paths: measured only at the target cells. */
const PWAL_VARIANTS = ['pwalpre', 'pwalearly', 'pwalinline', 'pwalpool', 'pwalcaller', 'pwaltrunc'];
/** Committer counts the targets are stated at. */
const TARGET_CONCURRENCY = [1, 16, 64, 256];
/** Worker threads in the multi-thread cells. */
const WORKER_THREADS = 2;
/** Syscalls strace counts: everything that can force data to stable storage. */
const SYNC_SYSCALLS = ['fsync', 'fdatasync', 'msync', 'sync_file_range', 'syncfs', 'sync'];

interface Options {
  systems: string[];
  concurrency: number[];
  workerConcurrency: number[];
  pages: number[];
  reps: number;
  durationMs: number;
  warmupMs: number;
  strace: boolean;
  pwalSrc: 'head' | 'worktree';
  outDir: string;
  dryRun: boolean;
  quick: boolean;
  /** Also run parallel-wal with one worker thread (beside the two-worker cells). */
  singleWorker: boolean;
  /** Delete each cell's directory right after it, instead of emptying it (see lib/cell-dirs.ts). */
  deleteCells: boolean;
  /** GiB a child process touches before each cell (lib/warm-memory.ts); 0: none. */
  warmMemoryGiB: number;
  /** Delete the run's emptied directory at the end (lib/cell-dirs.ts). */
  removeRunDir: boolean;
}

function parseList(v: string | undefined, fallback: number[]): number[] {
  if (v === undefined) return fallback;
  const out = v.split(',').map((s) => Number(s.trim()));
  if (out.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`bad list: ${v}`);
  return out;
}

function parseWarmMemory(v: string | undefined): number {
  if (v === undefined) return WARM_MEMORY_GIB_DEFAULT;
  const gib = Number(v);
  if (!Number.isFinite(gib) || gib < 0 || gib > 64) {
    throw new Error(`--warm-memory takes GiB in 0..=64, got ${v}`);
  }
  return gib;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      systems: { type: 'string' },
      concurrency: { type: 'string' },
      'worker-concurrency': { type: 'string' },
      pages: { type: 'string' },
      reps: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      'no-strace': { type: 'boolean', default: false },
      'pwal-src': { type: 'string' },
      out: { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
      'no-single-worker': { type: 'boolean', default: false },
      'delete-cells': { type: 'boolean', default: false },
      'warm-memory': { type: 'string' },
      'remove-run-dir': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      `Usage: npx tsx run.ts [options]
  --quick                    1 repetition, 0.6 s cells (a smoke run; not for publishing)
  --systems a,b              subset of ${SYSTEM_NAMES.join(',')} (default all)
  --concurrency 1,64         async committers per cell (default 1,4,16,64,256)
  --worker-concurrency 2,64  total committers of the ${WORKER_THREADS}-worker cells (default 2,64)
  --pages 1,16               4 KiB pages per commit (default 1,16)
  --reps N                   repetitions, interleaved (default 3)
  --duration MS              measured window per cell (default 2000)
  --warmup MS                warm-up per cell (default 300)
  --no-strace                no extra repetition under strace: fsyncs are counted with the
                             libraries' own counters only (the timed repetitions never run
                             under strace)
  --pwal-src head|worktree   measure a snapshot of the committed HEAD (default) or the
                             working tree as it is (uncommitted edits included)
  --out DIR                  results directory (default results/; --quick and filtered runs
                             default to results/tmp/ so the committed table stays whole)
  --no-single-worker         skip parallel-wal's 1-worker cells (run beside the ${WORKER_THREADS}-worker ones)
  --delete-cells             delete each cell's directory right after it (default: empty its
                             files and leave the run's directory in place; deleting
                             thousands of files makes file creations for the next few
                             minutes cost 10-30x more on an ext4 without a journal)
  --warm-memory GIB          before each cell, a child process touches GIB GiB (0..=64) of
                             memory and exits (default ${WARM_MEMORY_GIB_DEFAULT}: off): on a guest that reports its free
                             memory to the host, a new page-cache page otherwise costs a
                             host fault; but the reporting of the freed memory then runs
                             during the cell (lib/warm-memory.ts)
  --remove-run-dir           delete the run's (emptied) directory at the end (default: leave
                             it, and say where: deleting its files makes new files dearer
                             for the next minutes, so delete it when no benchmark follows)
  --dry-run                  print the plan and exit
`,
    );
    process.exit(0);
  }
  const quick = values.quick ?? false;
  const systems = values.systems ? values.systems.split(',') : [...SYSTEM_NAMES];
  for (const s of systems) {
    if (!(SYSTEM_NAMES as readonly string[]).includes(s)) throw new Error(`unknown system ${s}`);
  }
  const filtered =
    values.systems !== undefined ||
    values.concurrency !== undefined ||
    values.pages !== undefined ||
    values['worker-concurrency'] !== undefined;
  return {
    systems,
    concurrency: parseList(values.concurrency, [1, 4, 16, 64, 256]),
    workerConcurrency: parseList(values['worker-concurrency'], [2, 64]),
    pages: parseList(values.pages, [1, 16]),
    reps: Number(values.reps ?? (quick ? 1 : 3)),
    durationMs: Number(values.duration ?? (quick ? 600 : 2000)),
    warmupMs: Number(values.warmup ?? (quick ? 150 : 300)),
    strace: !(values['no-strace'] ?? false),
    pwalSrc: values['pwal-src'] === 'worktree' ? 'worktree' : 'head',
    outDir: path.resolve(
      here,
      values.out ?? (quick || filtered ? path.join('results', 'tmp') : 'results'),
    ),
    dryRun: values['dry-run'] ?? false,
    quick,
    singleWorker: !(values['no-single-worker'] ?? false),
    deleteCells: values['delete-cells'] ?? false,
    warmMemoryGiB: parseWarmMemory(values['warm-memory']),
    removeRunDir: values['remove-run-dir'] ?? false,
  };
}

/** A cell without its directory and repetition: the unit the report aggregates over. */
export type Workload = Omit<CellSpec, 'dir' | 'rep' | 'durationMs' | 'warmupMs'>;

/** The cells of one repetition, systems rotated by `rep` inside each workload. */
function planRepetition(o: Options, rep: number): Workload[] {
  const groups: Workload[][] = [];
  const rotate = <T>(xs: T[]): T[] => {
    if (xs.length === 0) return xs;
    const k = rep % xs.length;
    return [...xs.slice(k), ...xs.slice(0, k)];
  };
  const floors = ['floor', 'floorseg', 'flooro'];
  const peers = o.systems.filter((s) => !floors.includes(s));
  const threaded = peers.filter(
    (s) =>
      s === 'pwal' ||
      s === 'pwalinline' ||
      s === 'pwalpool' ||
      s === 'pwalcaller' ||
      s === 'pwaltrunc' ||
      s === 'sqlite' ||
      s === 'lmdb',
  );
  for (const pages of o.pages) {
    for (const committers of o.concurrency) {
      // The sink variants run only where the targets are measured (1 page; 1 and 64).
      const inCell = peers.filter(
        (s) =>
          !PWAL_VARIANTS.includes(s) || (pages === 1 && TARGET_CONCURRENCY.includes(committers)),
      );
      const group: Workload[] = inCell.map((system) => ({ system, pages, committers, workers: 0 }));
      // The floors are single synchronous loops: measured once per page size, beside 1 committer.
      if (committers === 1) {
        for (const f of floors) {
          if (o.systems.includes(f)) group.push({ system: f, pages, committers: 1, workers: 0 });
        }
      }
      groups.push(rotate(group));
    }
    for (const total of o.workerConcurrency) {
      const committers = Math.max(1, Math.floor(total / WORKER_THREADS));
      const group = threaded.map((system) => ({
        system,
        pages,
        committers,
        workers: WORKER_THREADS,
      }));
      // One worker with as many committers as each of the two: what the second worker adds.
      if (o.singleWorker && threaded.includes('pwal')) {
        group.push({ system: 'pwal', pages, committers, workers: 1 });
      }
      groups.push(rotate(group));
    }
  }
  const bandwidth = ['floor', 'flooro'].filter((f) => o.systems.includes(f));
  if (bandwidth.length > 0) {
    groups.push(
      rotate(
        bandwidth.map((system) => ({ system, pages: BANDWIDTH_PAGES, committers: 1, workers: 0 })),
      ),
    );
  }
  return groups.flat();
}

/** Where cells write: os.tmpdir() when it is on the repository's disk and not tmpfs. */
function chooseBenchRoot(): { root: string; why: string } {
  const tmp = os.tmpdir();
  const fsType = (p: string): string =>
    spawnSync('findmnt', ['-no', 'FSTYPE', '-T', p], { encoding: 'utf8' }).stdout.trim() || '?';
  const sameDevice = fs.statSync(tmp).dev === fs.statSync(repoRoot).dev;
  const tmpType = fsType(tmp);
  if (sameDevice && tmpType !== 'tmpfs' && tmpType !== 'ramfs') {
    return { root: tmp, why: `${tmp} (same device as the repository, ${tmpType})` };
  }
  const local = path.join(here, 'results', 'tmp', 'data');
  fs.mkdirSync(local, { recursive: true });
  return {
    root: local,
    why: `${local} (os.tmpdir() ${tmp} is ${tmpType}${sameDevice ? '' : ', another device'})`,
  };
}

/**
 * The parallel-wal sources to measure. `head`: `git archive HEAD` of src/ and package.json into
 * a temporary directory (outside the repository, so lint never sees it) with a link to the
 * repository's node_modules; `worktree`, or no git: the working tree.
 */
function preparePwalSource(mode: 'head' | 'worktree'): { dir: string; desc: string } {
  const git = (...args: string[]): string =>
    spawnSync('git', args, { cwd: repoRoot, encoding: 'utf8' }).stdout?.trim() ?? '';
  const sha = git('rev-parse', 'HEAD');
  if (!sha) return { dir: repoRoot, desc: 'working tree (not a git checkout)' };
  const short = sha.slice(0, 10);
  if (mode === 'worktree') {
    const dirty = git('status', '--porcelain', '--', 'src', 'package.json') !== '';
    return {
      dir: repoRoot,
      desc: `working tree at ${short}${dirty ? ' with uncommitted changes' : ''}`,
    };
  }
  const dir = path.join(os.tmpdir(), `pwal-peers-src-${short}`);
  if (!fs.existsSync(path.join(dir, 'src', 'index.ts'))) {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    // Its imports resolve the repository's installed dependencies through this link.
    fs.symlinkSync(path.join(repoRoot, 'node_modules'), path.join(dir, 'node_modules'), 'dir');
    const archive = spawnSync('git', ['archive', '--format=tar', sha, 'src', 'package.json'], {
      cwd: repoRoot,
      maxBuffer: 1 << 30,
    });
    const untar = spawnSync('tar', ['-x', '-C', dir], { input: archive.stdout });
    if (archive.status !== 0 || untar.status !== 0) {
      throw new Error(`cannot snapshot HEAD: ${archive.stderr} ${untar.stderr}`);
    }
  }
  return { dir, desc: `commit ${short}` };
}

function haveStrace(): boolean {
  const r = spawnSync('strace', ['-V'], { encoding: 'utf8' });
  return r.status === 0;
}

/** Parses `strace -c` output: calls per syscall. */
export function parseStraceSummary(text: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:(\d+)\s+)?(\w+)\s*$/.exec(line);
    if (m && m[3] !== 'total') counts[m[3]!] = Number(m[1]);
  }
  return counts;
}

function runCell(
  spec: CellSpec,
  useStrace: boolean,
  pwalSource: { dir: string; desc: string },
): Promise<CellResult> {
  const cellArgs = ['--import', 'tsx', path.join(here, 'cell.ts'), JSON.stringify(spec)];
  const straceOut = path.join(spec.dir, '..', `${path.basename(spec.dir)}.strace`);
  const [cmd, args] = useStrace
    ? [
        'strace',
        [
          '-f',
          '--seccomp-bpf',
          '-c',
          '-o',
          straceOut,
          '-e',
          `trace=${SYNC_SYSCALLS.join(',')}`,
          process.execPath,
          ...cellArgs,
        ],
      ]
    : [process.execPath, cellArgs];
  return new Promise((resolve) => {
    // Own process group, so a hung cell is killed with strace, node and all its threads.
    const child = spawn(cmd, args, {
      cwd: here,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
      env: { ...process.env, PWAL_SRC_DIR: pwalSource.dir, PWAL_SRC_DESC: pwalSource.desc },
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const timer = setTimeout(
      () => {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      },
      spec.durationMs + spec.warmupMs + CHILD_TIMEOUT_SLACK_MS,
    );
    child.on('close', (code) => {
      clearTimeout(timer);
      const line = out.split('\n').find((l) => l.startsWith(RESULT_PREFIX));
      let result: CellResult;
      if (line) {
        result = JSON.parse(line.slice(RESULT_PREFIX.length)) as CellResult;
      } else {
        result = {
          spec,
          ok: false,
          error: `child exited ${code} without a result: ${err.slice(-2000) || out.slice(-2000)}`,
          effectiveConcurrency: 0,
          commitsPerSec: 0,
          pagesPerSec: 0,
          p50Ms: Number.NaN,
          p99Ms: Number.NaN,
          totalCommits: 0,
          verifiedCommits: 0,
          verifyFailures: 0,
          versions: {},
        };
      }
      if (useStrace && fs.existsSync(straceOut)) {
        const counts = parseStraceSummary(fs.readFileSync(straceOut, 'utf8'));
        result.straceBreakdown = counts;
        result.straceSyncCalls = Object.values(counts).reduce((a, b) => a + b, 0);
        fs.rmSync(straceOut, { force: true });
      }
      resolve(result);
    });
  });
}

function describe(r: CellResult): string {
  const s = r.spec;
  const shape = s.workers > 0 ? `${s.workers}w×${s.committers}` : `c=${s.committers}`;
  const head = `${s.system.padEnd(9)} p=${String(s.pages).padEnd(3)} ${shape.padEnd(7)} rep ${s.rep}${s.syncCount ? ' (traced, counts syncs only)' : ''}`;
  if (!r.ok) return `${head}  FAILED: ${(r.error ?? '').split('\n')[0]}`;
  const fsyncs =
    r.straceSyncCalls !== undefined
      ? `${(r.straceSyncCalls / r.totalCommits).toFixed(3)} syncs/commit`
      : r.libraryFsyncs !== undefined
        ? `${(r.libraryFsyncs / r.totalCommits).toFixed(3)} fsyncs/commit (lib)`
        : 'syncs n/a';
  const creation = `create ${(r.fileCreationUs ?? Number.NaN).toFixed(0).padStart(3)} µs`;
  return `${head}  load ${(r.loadAvg1 ?? 0).toFixed(1).padStart(4)}  ${creation}  ${r.commitsPerSec.toFixed(0).padStart(7)} commits/s  p50 ${r.p50Ms.toFixed(2)} ms  p99 ${r.p99Ms.toFixed(2)} ms  ${fsyncs}  verified ${r.verifiedCommits}/${r.totalCommits}`;
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const strace = o.strace && haveStrace();
  const plan: (Workload & { syncCount?: boolean })[][] = [];
  for (let rep = 0; rep < o.reps; rep++) plan.push(planRepetition(o, rep));
  // One more repetition, traced, only to count fsync-family calls.
  if (strace) plan.push(planRepetition(o, o.reps).map((w) => ({ ...w, syncCount: true })));
  const cells = plan.flat().length;
  const perCellS = (o.durationMs + o.warmupMs) / 1000 + 1.5;
  process.stdout.write(
    `peers benchmark: ${cells} cells (${o.reps} timed reps${strace ? ' + 1 traced to count syncs' : ''} × ${cells / plan.length}), ~${Math.ceil((cells * perCellS) / 60)} min; strace ${strace ? 'on for the counting rep' : 'off (not installed or --no-strace)'}\n`,
  );
  if (o.dryRun) {
    for (const [rep, cellsOfRep] of plan.entries()) {
      for (const w of cellsOfRep) process.stdout.write(`rep ${rep}: ${JSON.stringify(w)}\n`);
    }
    return;
  }
  const pwalSource = preparePwalSource(o.pwalSrc);
  process.stdout.write(`parallel-wal sources: ${pwalSource.desc} (${pwalSource.dir})\n`);
  const bench = chooseBenchRoot();
  const runDir = fs.mkdtempSync(path.join(bench.root, 'pwal-peers-'));
  const machine: MachineInfo = collectMachineInfo(runDir, bench.why, strace);
  const started = new Date();
  const results: CellResult[] = [];
  try {
    for (const [rep, cellsOfRep] of plan.entries()) {
      for (const w of cellsOfRep) {
        const dir = fs.mkdtempSync(path.join(runDir, `${w.system}-`));
        const spec: CellSpec = { ...w, dir, rep, durationMs: o.durationMs, warmupMs: o.warmupMs };
        warmMemory(o.warmMemoryGiB);
        const loadAvg1 = os.loadavg()[0] ?? Number.NaN;
        const r = await runCell(spec, spec.syncCount === true, pwalSource);
        r.loadAvg1 = loadAvg1;
        // With the files the cell left there (a growing log's segments).
        r.fileCreationUs = cellFileCreationMicros(dir);
        retireCellDir(dir, o.deleteCells);
        results.push(r);
        process.stdout.write(`${describe(r)}\n`);
      }
    }
  } finally {
    if (o.deleteCells || o.removeRunDir) fs.rmSync(runDir, { recursive: true, force: true });
    else process.stdout.write(`left the emptied run directory ${runDir} (see --remove-run-dir)\n`);
  }
  const finished = new Date();
  fs.mkdirSync(o.outDir, { recursive: true });
  const files = writeReport(o.outDir, {
    machine,
    options: {
      reps: o.reps,
      durationMs: o.durationMs,
      warmupMs: o.warmupMs,
      quick: o.quick,
      strace,
      deleteCells: o.deleteCells,
      warmMemoryGiB: o.warmMemoryGiB,
      removeRunDir: o.deleteCells || o.removeRunDir,
      command: `npm run bench:peers${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    },
    started: started.toISOString(),
    finished: finished.toISOString(),
    results,
  });
  const failed = results.filter((r) => !r.ok);
  process.stdout.write(
    `\n${results.length - failed.length}/${results.length} cells ok; wrote ${files.join(', ')}\n`,
  );
  if (failed.length > 0) process.exitCode = 1;
}

await main();
