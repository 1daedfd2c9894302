/**
 * The SIGKILL loop: start `child-writer.ts`, let it commit, kill it with
 * SIGKILL at a random moment (sometimes before it even opened the log), then
 * recover in this process and check every acknowledgement any child ever
 * printed against the log with the commit oracle. The next child reopens the
 * same database (the kernel freed the dead child's lock), so kills pile up
 * on one log; every `freshDbEvery` kills a new database is started so that
 * recovery time stays small.
 *
 * Used by `kill-loop.test.ts` (CI size) and `scripts/crash-campaign.ts`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { recoverSegments } from '../../src/storage/recovery.js';
import {
  type CommitAck,
  checkRecovered,
  commitPages,
  pagesDigest,
} from '../support/commit-oracle.js';
import { type Rng, seededRng } from '../support/rng.js';

/** Largest page image the child writes (keep equal to `child-writer.ts`). */
const CHILD_PAGE_BYTES_MAX = 1200;
/** Txn ids of generation g start at (g + 1) * this. */
const TXN_BASE_STRIDE = 1_000_000n;
/** How long a child may take to exit after SIGKILL before the loop gives up, in ms. */
const EXIT_WAIT_MS = 10_000;
/** How long a child may take to print READY, in ms. */
const READY_WAIT_MS = 20_000;

const REPO_ROOT = path.resolve(import.meta.dirname, '../..');
const CHILD = path.join(import.meta.dirname, 'child-writer.ts');

/** Options of {@link runKillLoop}. */
export interface KillLoopOptions {
  kills: number;
  seed: number;
  /** Async writers per child. */
  writers: number;
  /** Worker-thread writers per child (used when the engine offers worker lanes). */
  workers: number;
  /** Longest a child lives after READY before the kill, in ms. */
  maxLifeMs: number;
  /** Start a new database every this many kills. */
  freshDbEvery: number;
  fsync?: 'full' | 'normal' | 'off';
  /** The children's `segmentSink` (default: the engine's default). */
  segmentSink?: string;
  /** `thread`: the children open a ThreadedWal (the log's owner on its own thread). */
  owner?: 'caller' | 'thread';
  /** Progress lines (campaign); silent when absent. */
  log?: (line: string) => void;
}

/** Totals of a kill loop. `lost`, `partial`, `unknown`, `misordered`, `violations` must be 0/empty. */
export interface KillLoopStats {
  kills: number;
  /** Kills that landed before the child printed READY. */
  killsBeforeReady: number;
  acked: number;
  /** Acknowledged commits missing or changed after recovery (distinct). */
  lost: number;
  /** Transactions recovered with only some pages or wrong bytes (distinct). */
  partial: number;
  unknown: number;
  misordered: number;
  /** Commits found by the last recovery of each database, summed. */
  recovered: number;
  workersUsed: boolean;
  violations: string[];
}

interface ChildRun {
  acks: CommitAck[];
  violations: string[];
  killedBeforeReady: boolean;
  workers: boolean;
}

function waitFor<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Runs one child and kills it; returns what it acknowledged. */
async function runChild(
  db: string,
  opts: KillLoopOptions,
  gen: number,
  rng: Rng,
): Promise<ChildRun> {
  const base = BigInt(gen + 1) * TXN_BASE_STRIDE;
  const child: ChildProcess = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      CHILD,
      db,
      String(opts.seed),
      String(base),
      String(opts.writers),
      String(opts.workers),
      opts.fsync ?? 'full',
      opts.segmentSink ?? 'default',
      opts.owner ?? 'caller',
    ],
    { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const run: ChildRun = { acks: [], violations: [], killedBeforeReady: false, workers: false };
  let ready = false;
  let onReady: () => void = () => {};
  const readyPromise = new Promise<void>((resolve) => {
    onReady = resolve;
  });
  let pending = '';
  let stderr = '';
  const handleLine = (text: string): void => {
    const parts = text.split(' ');
    if (parts[0] === 'READY') {
      ready = true;
      onReady();
    } else if (parts[0] === 'ACK' && parts.length === 6) {
      const txnId = BigInt(parts[1]!);
      const pages = commitPages(opts.seed, txnId, CHILD_PAGE_BYTES_MAX);
      const ids = pages.map((p) => p.pageId).join(',');
      if (parts[4] !== ids || parts[5] !== pagesDigest(pages)) {
        run.violations.push(
          `child acked txn ${txnId} with pages ${parts[4]} digest ${parts[5]}, expected ${ids}`,
        );
      }
      run.acks.push({ txnId, epoch: BigInt(parts[2]!), commitSeq: BigInt(parts[3]!) });
    } else if (parts[0] === 'UNTYPED') {
      run.violations.push(`child saw an untyped error: ${text}`);
    } else if (parts[0] === 'WORKERS') {
      run.workers = parts[1] !== '0';
    }
  };
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    pending += chunk;
    let nl = pending.indexOf('\n');
    while (nl >= 0) {
      handleLine(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
      nl = pending.indexOf('\n');
    }
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => {
    if (stderr.length < 4000) stderr += chunk;
  });
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  const exitedEarly = closed.then(() => 'exited' as const);

  if (rng() < 0.15) {
    // Kill at a random moment of start-up: loading, taking the lock, recovering.
    await Promise.race([new Promise((r) => setTimeout(r, Math.floor(rng() * 400))), exitedEarly]);
  } else {
    await waitFor(Promise.race([readyPromise, exitedEarly]), READY_WAIT_MS, 'child start');
    await Promise.race([
      new Promise((r) => setTimeout(r, Math.floor(rng() * opts.maxLifeMs))),
      exitedEarly,
    ]);
  }
  run.killedBeforeReady = !ready;
  child.kill('SIGKILL');
  const { code, signal } = await waitFor(closed, EXIT_WAIT_MS, 'child exit after SIGKILL');
  if (pending.length > 0) {
    // A line cut by the kill: an ACK is only counted when complete.
    pending = '';
  }
  if (signal !== 'SIGKILL') {
    run.violations.push(
      `child ended by itself (code ${code}, signal ${signal}): ${stderr.trim().slice(0, 1000)}`,
    );
  }
  return run;
}

/**
 * Runs `opts.parallel` independent loops at once (own databases and seeds),
 * sharing the kills between them, and adds up their totals. Children spend
 * most of their short lives starting up, so a few loops side by side keep
 * both cores busy.
 */
export async function runKillLoops(
  opts: KillLoopOptions & { parallel: number },
): Promise<KillLoopStats> {
  const share = (i: number) =>
    Math.floor(opts.kills / opts.parallel) + (i < opts.kills % opts.parallel ? 1 : 0);
  const all = await Promise.all(
    Array.from({ length: opts.parallel }, (_, i) =>
      runKillLoop({ ...opts, kills: share(i), seed: opts.seed + i * 7919 }),
    ),
  );
  const total: KillLoopStats = {
    kills: 0,
    killsBeforeReady: 0,
    acked: 0,
    lost: 0,
    partial: 0,
    unknown: 0,
    misordered: 0,
    recovered: 0,
    workersUsed: false,
    violations: [],
  };
  for (const s of all) {
    total.kills += s.kills;
    total.killsBeforeReady += s.killsBeforeReady;
    total.acked += s.acked;
    total.lost += s.lost;
    total.partial += s.partial;
    total.unknown += s.unknown;
    total.misordered += s.misordered;
    total.recovered += s.recovered;
    total.workersUsed ||= s.workersUsed;
    total.violations.push(...s.violations);
  }
  return total;
}

/** Runs the loop; never throws for a durability violation (it is counted). */
export async function runKillLoop(opts: KillLoopOptions): Promise<KillLoopStats> {
  const stats: KillLoopStats = {
    kills: 0,
    killsBeforeReady: 0,
    acked: 0,
    lost: 0,
    partial: 0,
    unknown: 0,
    misordered: 0,
    recovered: 0,
    workersUsed: false,
    violations: [],
  };
  const rng = seededRng(opts.seed);
  const lost = new Set<string>();
  const partial = new Set<string>();
  let dir = '';
  let acks: CommitAck[] = [];
  let lastRecovered = 0;
  const expected = (id: bigint) =>
    id >= TXN_BASE_STRIDE ? commitPages(opts.seed, id, CHILD_PAGE_BYTES_MAX) : undefined;
  try {
    for (let gen = 0; gen < opts.kills; gen++) {
      if (gen % opts.freshDbEvery === 0) {
        if (dir !== '') fs.rmSync(dir, { recursive: true, force: true });
        dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
        stats.recovered += lastRecovered;
        lastRecovered = 0;
        acks = [];
      }
      const db = path.join(dir, 'crash.db');
      const run = await runChild(db, opts, gen, rng);
      stats.kills += 1;
      if (run.killedBeforeReady) stats.killsBeforeReady += 1;
      if (run.workers) stats.workersUsed = true;
      stats.acked += run.acks.length;
      acks.push(...run.acks);
      for (const v of run.violations) stats.violations.push(`kill ${gen}: ${v}`);
      let records: Awaited<ReturnType<typeof recoverSegments>>['records'];
      try {
        records = (await recoverSegments(db)).records;
      } catch (error) {
        stats.violations.push(`kill ${gen}: default recovery failed: ${String(error)}`);
        continue;
      }
      const report = checkRecovered(records, expected, acks, { contiguousFrom: 1n });
      for (const l of report.lost) lost.add(l);
      for (const p of report.partial) partial.add(p);
      stats.unknown += report.unknown.length;
      stats.misordered += report.misordered.length;
      lastRecovered = report.presentTxns;
      opts.log?.(
        `kill ${gen + 1}/${opts.kills}: +${run.acks.length} acked${run.killedBeforeReady ? ' (killed during start-up)' : ''}, ` +
          `${report.presentTxns} commits in the log, lost ${lost.size}, partial ${partial.size}`,
      );
    }
  } finally {
    if (dir !== '') fs.rmSync(dir, { recursive: true, force: true });
  }
  stats.recovered += lastRecovered;
  stats.lost = lost.size;
  stats.partial = partial.size;
  return stats;
}
