/**
 * The hostile-input campaign: what an attacker or an unlucky operator does to
 * a database directory, tried against the real code on a real disk. Each case
 * builds a database with acknowledged commits, does one hostile thing —
 * plants a FIFO, a symlink or a device where the log looks, deletes a middle
 * segment, corrupts one, truncates the database file, opens it from a second
 * PID namespace while it is written — and then checks two things:
 *
 * - the log answers with a typed error or works, within a hang guard and
 *   without reading a device into memory (`violations` otherwise);
 * - every acknowledged commit is still there after the damage is undone (or
 *   the damage was reported by a typed error rather than silently accepted):
 *   `lost` counts acknowledged commits that vanished or changed silently.
 *
 * Used by `hostile.test.ts` (one round) and `scripts/hostile.ts` (many
 * rounds with varying seeds).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ParallelWal, type ParallelWalBatch } from '../../src/engine/wal.js';
import { WalError } from '../../src/errors.js';
import { encodeLockInfo, lockPath } from '../../src/storage/lockfile.js';
import { recoverSegments } from '../../src/storage/recovery.js';
import { listSegments, segmentPath, TEMP_NAME_INFIX } from '../../src/storage/segment-files.js';
import { storeHeaderPath } from '../../src/store/header.js';
import { PageStore } from '../../src/store/page-store.js';
import { runCliCaptured } from '../support/cli.js';
import { type CommitAck, checkRecovered, commitPages } from '../support/commit-oracle.js';
import { type Rng, randInt, seededRng } from '../support/rng.js';

/** How long any one operation of a case may take before it counts as a hang, in ms. */
export const HOSTILE_HANG_GUARD_MS = 15_000;
/** Resident memory one case may add before it counts as reading a device, in bytes. */
const RSS_GROWTH_MAX_BYTES = 256 * 1024 * 1024;
/** Largest page image of the engine cases, in bytes. */
const PAGE_BYTES_MAX = 300;
/** Page size of the page-store cases, in bytes. */
const STORE_PAGE_BYTES = 512;
/** Largest page image the namespace child writes (keep equal to `child-writer.ts`). */
const CHILD_PAGE_BYTES_MAX = 1200;

const REPO_ROOT = path.resolve(import.meta.dirname, '../..');
const CHILD_WRITER = path.join(import.meta.dirname, 'child-writer.ts');
const LOCK_CHILD = path.join(REPO_ROOT, 'test/store/support/lock-child.ts');

/** What one case found. */
export interface CaseOutcome {
  /** Acknowledged commits the case made (and checked). */
  acked: number;
  /** Acknowledged commits that vanished or changed without a typed error saying so. */
  lost: number;
  /** What went wrong besides losses (a hang, an untyped error, a silent acceptance). */
  violations: string[];
  /** Set when the case could not run here (e.g. no `unshare`); never set for a failure. */
  skipped?: string;
}

/** One hostile case. */
export interface HostileCase {
  name: string;
  /** The finding of issue 13 it pins (1..11). */
  finding: number;
  run(dir: string, rng: Rng): Promise<CaseOutcome>;
}

/** Totals of a campaign. */
export interface HostileStats {
  tried: number;
  skipped: number;
  acked: number;
  lost: number;
  /** Cases with a loss or a violation, by name: runs that failed, and commits they lost. */
  failedCases: Map<string, { runs: number; lost: number }>;
  violations: string[];
  skips: string[];
}

// ------------------------------------------------------------------ helpers

class Hang extends Error {}

/** `promise`, or a {@link Hang} after the guard. The promise is left running. */
function within<T>(promise: Promise<T>, what: string, ms = HOSTILE_HANG_GUARD_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Hang(`${what} did not settle within ${ms} ms`)), ms);
  });
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer));
}

/** Settles `promise` under the hang guard: the value, or the error (a Hang rethrown). */
async function attempt<T>(
  promise: Promise<T>,
  what: string,
): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
  try {
    return { ok: true, value: await within(promise, what) };
  } catch (error) {
    if (error instanceof Hang) throw error;
    return { ok: false, error };
  }
}

function outcome(acked = 0): CaseOutcome {
  return { acked, lost: 0, violations: [] };
}

function batchFor(seed: number, txnId: bigint, commitSeq?: bigint): ParallelWalBatch {
  const pages = commitPages(seed, txnId, PAGE_BYTES_MAX);
  return {
    txnToken: { id: txnId, epoch: 0 },
    ...(commitSeq === undefined ? {} : { commitSeq }),
    frames: pages.map((p) => ({ pageNumber: p.pageId, pageData: p.data, dbSizeIfCommit: 0 })),
  };
}

/** An engine log with acknowledged commits; each awaited commit is its own epoch. */
interface EngineLog {
  db: string;
  seed: number;
  acks: CommitAck[];
}

async function engineLog(dir: string, rng: Rng, commits: number): Promise<EngineLog> {
  const db = path.join(dir, 'app.db');
  const seed = randInt(rng, 1, 1_000_000);
  const log: EngineLog = { db, seed, acks: [] };
  await appendCommits(log, commits, {});
  return log;
}

async function appendCommits(
  log: EngineLog,
  commits: number,
  config: { skipCorrupt?: boolean },
): Promise<void> {
  const wal = await within(
    ParallelWal.open(log.db, { segmentSink: 'storage', ...config }),
    'ParallelWal.open',
  );
  try {
    for (let i = 0; i < commits; i++) {
      const txnId = BigInt(log.acks.length + 1);
      const r = await within(wal.commit(batchFor(log.seed, txnId)), 'commit');
      log.acks.push({ txnId, epoch: r.epoch, commitSeq: r.commitSeq });
    }
  } finally {
    await within(wal.close(), 'close');
  }
}

/** Acknowledged commits missing or changed in `db`'s log (recovered read-only). */
async function lostInLog(
  log: EngineLog,
  options: { skipCorrupt?: boolean; acks?: CommitAck[] } = {},
): Promise<number> {
  const recovered = await within(
    recoverSegments(log.db, { skipCorrupt: options.skipCorrupt ?? false }),
    'recoverSegments',
  );
  const report = checkRecovered(
    recovered.records,
    (id) => commitPages(log.seed, id, PAGE_BYTES_MAX),
    options.acks ?? log.acks,
  );
  return report.lost.length + report.partial.length;
}

function isTyped(error: unknown): boolean {
  return error instanceof WalError;
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

function mkfifo(at: string): void {
  const made = spawnSync('mkfifo', [at]);
  if (made.status !== 0) throw new Error(`mkfifo ${at} failed`);
}

/** A refusal must be typed; an acceptance of a hostile file is a violation named `what`. */
function expectTypedRefusal(
  result: { ok: true; value: unknown } | { ok: false; error: unknown },
  what: string,
  into: CaseOutcome,
): void {
  if (result.ok) into.violations.push(`${what}: accepted`);
  else if (!isTyped(result.error))
    into.violations.push(`${what}: untyped ${describe(result.error)}`);
}

async function closeIfOpened(result: { ok: boolean; value?: unknown }): Promise<void> {
  if (result.ok) await (result.value as { close(): Promise<unknown> }).close().catch(() => {});
}

/**
 * Plants a hostile file with `plant`, checks the open refuses it (typed,
 * no hang, no memory blow-up), removes it, and checks the log is whole and
 * still takes commits.
 */
async function plantedFileCase(
  dir: string,
  rng: Rng,
  plant: (log: EngineLog) => string,
  expectRefusal: boolean,
): Promise<CaseOutcome> {
  const log = await engineLog(dir, rng, randInt(rng, 2, 4));
  const out = outcome();
  const planted = plant(log);
  const rssBefore = process.memoryUsage().rss;
  const opened = await attempt(ParallelWal.open(log.db), 'open with a planted file');
  await closeIfOpened(opened);
  if (expectRefusal) expectTypedRefusal(opened, `open with ${path.basename(planted)}`, out);
  else if (!opened.ok) out.violations.push(`open refused: ${describe(opened.error)}`);
  const verify = await within(runCliCaptured('verify', log.db), 'pwal verify');
  // A planted segment or temporary file is damage verify reports; beside the
  // lock file it only has to settle (it may read without the lock).
  const verifyMustFail = expectRefusal && !planted.endsWith('.lock');
  if (verifyMustFail && verify.code !== 1) out.violations.push(`pwal verify exit ${verify.code}`);
  if (verify.code !== 0 && verify.code !== 1)
    out.violations.push(`pwal verify exit ${verify.code}`);
  const inspect = await within(runCliCaptured('inspect', log.db), 'pwal inspect');
  if (inspect.code !== 0 && inspect.code !== 1) out.violations.push(`inspect exit ${inspect.code}`);
  const grew = process.memoryUsage().rss - rssBefore;
  if (grew > RSS_GROWTH_MAX_BYTES) out.violations.push(`memory grew ${grew} bytes`);
  fs.rmSync(planted, { force: true });
  await appendCommits(log, 1, {});
  out.acked = log.acks.length;
  out.lost = await lostInLog(log);
  return out;
}

// ------------------------------------------------------------------ cases

const nonRegularCases: HostileCase[] = [
  {
    name: 'FIFO named like a segment',
    finding: 5,
    run: (dir, rng) =>
      plantedFileCase(
        dir,
        rng,
        (log) => {
          const at = segmentPath(log.db, BigInt(log.acks.length + randInt(rng, 0, 5)));
          fs.rmSync(at, { force: true });
          mkfifo(at);
          return at;
        },
        true,
      ),
  },
  {
    name: 'FIFO named like a temporary file',
    finding: 5,
    run: (dir, rng) =>
      plantedFileCase(
        dir,
        rng,
        (log) => {
          const at = path.join(dir, `${path.basename(log.db)}${TEMP_NAME_INFIX}ack-0123456789ab`);
          mkfifo(at);
          return at;
        },
        true,
      ),
  },
  {
    name: 'FIFO as the lock file',
    finding: 5,
    run: (dir, rng) =>
      plantedFileCase(
        dir,
        rng,
        (log) => {
          mkfifo(lockPath(log.db));
          return lockPath(log.db);
        },
        true,
      ),
  },
  {
    name: 'segment-named symlink to /dev/zero',
    finding: 5,
    run: (dir, rng) =>
      plantedFileCase(
        dir,
        rng,
        (log) => {
          const at = segmentPath(log.db, BigInt(log.acks.length + 1));
          fs.symlinkSync('/dev/zero', at);
          return at;
        },
        true,
      ),
  },
  {
    name: 'segment replaced by a symlink to itself moved elsewhere',
    finding: 5,
    async run(dir, rng) {
      const log = await engineLog(dir, rng, 3);
      const out = outcome(log.acks.length);
      const victim = segmentPath(log.db, log.acks[1]!.epoch);
      const moved = path.join(dir, 'moved-away');
      fs.renameSync(victim, moved);
      fs.symlinkSync(moved, victim);
      const recovered = await attempt(recoverSegments(log.db), 'recoverSegments');
      expectTypedRefusal(recovered, 'recovery through a segment symlink', out);
      fs.rmSync(victim);
      fs.renameSync(moved, victim);
      out.lost = await lostInLog(log);
      return out;
    },
  },
  {
    name: 'symlink planted at <db>-pwal-store.tmp',
    finding: 6,
    async run(dir, rng) {
      const db = path.join(dir, 'app.db');
      const target = path.join(dir, 'victim');
      fs.writeFileSync(target, 'precious');
      fs.symlinkSync(target, `${storeHeaderPath(db)}.tmp`);
      const out = outcome();
      const written = new Map<number, Uint8Array>();
      const store = await within(PageStore.open(db, { pageSize: STORE_PAGE_BYTES }), 'open');
      try {
        for (let i = 0; i < randInt(rng, 2, 5); i++) {
          const page = randInt(rng, 1, 4);
          const data = new Uint8Array(STORE_PAGE_BYTES).fill(randInt(rng, 1, 255));
          await within(store.commit([{ pageNumber: page, data }]), 'commit');
          written.set(page, data);
          out.acked++;
        }
        await within(store.checkpoint(), 'checkpoint');
      } finally {
        await store.close();
      }
      if (fs.readFileSync(target, 'utf8') !== 'precious')
        out.violations.push('link target written');
      if (!fs.lstatSync(storeHeaderPath(db)).isFile()) out.violations.push('header is not a file');
      out.lost = await lostInStore(db, written);
      return out;
    },
  },
  {
    name: 'database file is a symlink',
    finding: 5,
    async run(dir) {
      const db = path.join(dir, 'app.db');
      const target = path.join(dir, 'elsewhere');
      fs.writeFileSync(target, '');
      fs.symlinkSync(target, db);
      const out = outcome();
      const opened = await attempt(PageStore.open(db, { pageSize: STORE_PAGE_BYTES }), 'open');
      await closeIfOpened(opened);
      expectTypedRefusal(opened, 'page store through a symlinked database file', out);
      if (fs.statSync(target).size !== 0) out.violations.push('link target written');
      return out;
    },
  },
];

/** Pages of a page store that differ from what acknowledged commits wrote. */
async function lostInStore(db: string, written: Map<number, Uint8Array>): Promise<number> {
  const store = await within(PageStore.open(db), 'reopen');
  try {
    let lost = 0;
    for (const [page, data] of written) {
      // A page the store cannot read back (e.g. past its end) is lost too.
      const seen = await within(store.read(page), 'read').catch(() => null);
      if (seen === null || Buffer.compare(Buffer.from(seen), Buffer.from(data)) !== 0) lost++;
    }
    return lost;
  } finally {
    await store.close();
  }
}

const holeCases: HostileCase[] = [
  {
    name: 'missing middle segment (engine)',
    finding: 2,
    async run(dir, rng) {
      const log = await engineLog(dir, rng, randInt(rng, 3, 6));
      const out = outcome(log.acks.length);
      const epochs = [...new Set(log.acks.map((a) => a.epoch))];
      const gone = epochs[randInt(rng, 1, epochs.length - 2)]!;
      fs.rmSync(segmentPath(log.db, gone));
      const silent = log.acks.filter((a) => a.epoch === gone).length;
      const recovered = await attempt(recoverSegments(log.db), 'recoverSegments');
      const opened = await attempt(ParallelWal.open(log.db), 'ParallelWal.open');
      await closeIfOpened(opened);
      const verify = await within(runCliCaptured('verify', log.db), 'pwal verify');
      // The deletion is the attacker's; staying silent about it is the log's.
      if (recovered.ok || opened.ok) out.lost += silent;
      if (recovered.ok) out.violations.push(`recovery silent about missing epoch ${gone}`);
      if (opened.ok) out.violations.push(`open silent about missing epoch ${gone}`);
      if (verify.code !== 1) out.violations.push(`pwal verify exit ${verify.code} on a hole`);
      return out;
    },
  },
  {
    name: 'missing middle segment (page store)',
    finding: 2,
    async run(dir, rng) {
      const db = path.join(dir, 'app.db');
      const out = outcome();
      const store = await within(
        PageStore.open(db, { pageSize: STORE_PAGE_BYTES, autoCheckpoint: false }),
        'open',
      );
      const epochs: bigint[] = [];
      try {
        for (let page = 1; page <= 3; page++) {
          const r = await within(
            store.commit([{ pageNumber: page, data: new Uint8Array(STORE_PAGE_BYTES).fill(page) }]),
            'commit',
          );
          epochs.push(r.epoch);
          out.acked++;
        }
      } finally {
        await store.close({ checkpoint: false });
      }
      const segments = (await listSegments(db)).map((s) => s.epoch);
      const middle = epochs[1]!;
      if (!segments.includes(middle) || segments.length < 3) {
        out.violations.push(`setup: expected a segment for epoch ${middle}, found ${segments}`);
        return out;
      }
      fs.rmSync(segmentPath(db, middle));
      void rng;
      const reopened = await attempt(PageStore.open(db), 'PageStore.open');
      await closeIfOpened(reopened);
      if (reopened.ok) {
        out.lost += 1;
        out.violations.push(`page store silent about missing epoch ${middle}`);
      }
      return out;
    },
  },
];

const numberingCases: HostileCase[] = [
  {
    name: 'skipCorrupt never reuses epochs or sequences (commit after a skip stays reachable)',
    finding: 4,
    async run(dir, rng) {
      const log = await engineLog(dir, rng, 3);
      const out = outcome();
      const bad = log.acks[1]!;
      corruptSegment(segmentPath(log.db, bad.epoch), rng);
      const before = log.acks.length;
      await appendCommits(log, 1, { skipCorrupt: true });
      const after = log.acks[before]!;
      const highestEpoch = largest(log.acks.slice(0, before).map((a) => a.epoch));
      const highestSeq = largest(log.acks.slice(0, before).map((a) => a.commitSeq));
      if (after.epoch <= highestEpoch) out.violations.push(`epoch ${after.epoch} reused`);
      if (after.commitSeq <= highestSeq)
        out.violations.push(`commit seq ${after.commitSeq} reused`);
      // The commit made after the skip was acknowledged: recovery must reach it.
      out.acked = 1;
      out.lost = await lostInLog(log, { skipCorrupt: true, acks: [after] });
      return out;
    },
  },
  {
    name: 'corrupt segment under skipCorrupt keeps the prefix and later commits',
    finding: 4,
    async run(dir, rng) {
      const log = await engineLog(dir, rng, randInt(rng, 3, 6));
      const out = outcome();
      const epochs = [...new Set(log.acks.map((a) => a.epoch))];
      const bad = epochs[randInt(rng, 0, epochs.length - 1)]!;
      corruptSegment(segmentPath(log.db, bad), rng);
      const prefix = log.acks.filter((a) => a.epoch < bad);
      const strict = await attempt(recoverSegments(log.db), 'recoverSegments');
      expectTypedRefusal(strict, 'default recovery of a corrupt segment', out);
      const before = log.acks.length;
      await appendCommits(log, 2, { skipCorrupt: true });
      const later = log.acks.slice(before);
      out.acked = prefix.length + later.length;
      out.lost = await lostInLog(log, { skipCorrupt: true, acks: [...prefix, ...later] });
      return out;
    },
  },
  {
    name: 'non-increasing caller commitSeq',
    finding: 8,
    async run(dir, rng) {
      const db = path.join(dir, 'app.db');
      const seed = randInt(rng, 1, 1_000_000);
      const out = outcome();
      const wal = await within(ParallelWal.open(db), 'open');
      const a = batchFor(seed, 1n, 100n);
      const b = {
        ...batchFor(seed, 2n, 50n),
        frames: batchFor(seed, 2n).frames.map((f, i) => ({
          ...f,
          pageNumber: a.frames[i % a.frames.length]!.pageNumber,
        })),
      };
      const results = await Promise.allSettled([wal.commit(a), wal.commit(b)]);
      await wal.close();
      const [ra, rb] = results;
      if (ra?.status !== 'fulfilled') {
        out.violations.push(`first commit rejected: ${describe(ra?.reason)}`);
        return out;
      }
      out.acked = rb?.status === 'fulfilled' ? 2 : 1;
      if (rb?.status === 'rejected') {
        if (!isWalError(rb.reason, 'ERR_INVALID_ARGUMENT')) {
          out.violations.push(`second commit: ${describe(rb.reason)}`);
        }
        return out;
      }
      // Both acknowledged, B after A: recovery must show B's image on the shared page.
      const page = b.frames[0]!.pageNumber;
      const recovered = await within(recoverSegments(db), 'recoverSegments');
      const last = recovered.records.filter((r) => r.pageId === page).at(-1);
      if (last?.txnToken.id !== 2n) out.lost += 1;
      return out;
    },
  },
];

function largest(values: readonly bigint[]): bigint {
  let top = 0n;
  for (const v of values) if (v > top) top = v;
  return top;
}

function isWalError(error: unknown, code: string): boolean {
  return error instanceof WalError && error.code === code;
}

function corruptSegment(file: string, rng: Rng): void {
  const bytes = fs.readFileSync(file);
  const at = randInt(rng, Math.min(40, bytes.length - 1), bytes.length - 1);
  bytes[at] = (bytes[at] ?? 0) ^ (1 << randInt(rng, 0, 7));
  fs.writeFileSync(file, bytes);
}

const storeCases: HostileCase[] = [
  {
    name: 'truncated database file',
    finding: 7,
    async run(dir, rng) {
      const db = path.join(dir, 'app.db');
      const out = outcome();
      const written = new Map<number, Uint8Array>();
      const store = await within(PageStore.open(db, { pageSize: STORE_PAGE_BYTES }), 'open');
      try {
        for (let page = 1; page <= 3; page++) {
          const data = new Uint8Array(STORE_PAGE_BYTES).fill(randInt(rng, 1, 255));
          await within(store.commit([{ pageNumber: page, data }]), 'commit');
          written.set(page, data);
          out.acked++;
        }
        await within(store.checkpoint(), 'checkpoint');
      } finally {
        await store.close();
      }
      fs.truncateSync(db, STORE_PAGE_BYTES);
      const reopened = await attempt(PageStore.open(db), 'PageStore.open');
      if (reopened.ok) {
        const s = reopened.value;
        for (const [page, data] of written) {
          const seen = await s.read(page);
          if (Buffer.compare(Buffer.from(seen), Buffer.from(data)) !== 0) out.lost++;
        }
        await s.close();
        if (out.lost > 0) out.violations.push('truncated file opened with pages read as zeros');
      } else if (!isTyped(reopened.error)) {
        out.violations.push(`untyped: ${describe(reopened.error)}`);
      }
      const verify = await within(runCliCaptured('verify', db), 'pwal verify');
      if (verify.code !== 1)
        out.violations.push(`pwal verify exit ${verify.code} on a truncated file`);
      return out;
    },
  },
  {
    name: 'commits through store.log survive a memory checkpoint',
    finding: 3,
    async run(dir, rng) {
      const db = path.join(dir, 'app.db');
      const out = outcome();
      const written = new Map<number, Uint8Array>();
      const store = await within(PageStore.open(db, { pageSize: STORE_PAGE_BYTES }), 'open');
      try {
        const data = new Uint8Array(STORE_PAGE_BYTES).fill(randInt(rng, 1, 255));
        // Either the store reads such commits back, or `log` offers no way to write.
        const log = store.log as unknown as { commit?: (b: ParallelWalBatch) => Promise<unknown> };
        const viaLog =
          typeof log.commit === 'function'
            ? await attempt(
                log.commit({
                  txnToken: { id: 1n, epoch: 0 },
                  frames: [{ pageNumber: 2, pageData: data, dbSizeIfCommit: 2 }],
                }),
                'store.log.commit',
              )
            : ({
                ok: false,
                error: new WalError('ERR_NO_WRITE_PATH', 'store.log cannot write'),
              } as const);
        if (viaLog.ok) {
          written.set(2, data);
          out.acked++;
        } else if (!isTyped(viaLog.error)) {
          out.violations.push(`untyped: ${describe(viaLog.error)}`);
        }
        const other = new Uint8Array(STORE_PAGE_BYTES).fill(7);
        await within(store.commit([{ pageNumber: 1, data: other }]), 'commit');
        written.set(1, other);
        out.acked++;
        await within(store.checkpoint(), 'checkpoint');
      } finally {
        await store.close();
      }
      out.lost = await lostInStore(db, written);
      return out;
    },
  },
];

// ------------------------------------------------------------------ lock cases

/** `unshare -p -f --mount-proc` works here (root, or user namespaces). */
export function unshareAvailable(): boolean {
  return (
    spawnSync('unshare', ['-p', '-f', '--mount-proc', 'true'], { stdio: 'ignore' }).status === 0
  );
}

interface Child {
  child: ChildProcess;
  lines: string[];
  stderr: string[];
  exited: Promise<void>;
}

function startChild(command: string, args: string[]): Child {
  const child = spawn(command, args, { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const stderr: string[] = [];
  let partial = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    partial += chunk.toString();
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts);
  });
  child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk.toString()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  return { child, lines, stderr, exited };
}

function inNamespace(args: string[]): [string, string[]] {
  return ['unshare', ['-p', '-f', '--mount-proc', '--kill-child', process.execPath, ...args]];
}

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + HOSTILE_HANG_GUARD_MS * 2;
  while (!check()) {
    if (Date.now() > deadline) throw new Hang(`${what} did not happen`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function acksOf(lines: readonly string[]): CommitAck[] {
  const acks: CommitAck[] = [];
  for (const line of lines) {
    const parts = line.split(' ');
    if (parts[0] === 'ACK' && parts.length === 6) {
      acks.push({
        txnId: BigInt(parts[1]!),
        epoch: BigInt(parts[2]!),
        commitSeq: BigInt(parts[3]!),
      });
    }
  }
  return acks;
}

const lockCases: HostileCase[] = [
  {
    name: 'second writer in another PID namespace while the first commits',
    finding: 1,
    async run(dir, rng) {
      if (!unshareAvailable()) {
        return { ...outcome(), skipped: 'unshare -p -f --mount-proc is not permitted here' };
      }
      const db = path.join(dir, 'app.db');
      const seed = randInt(rng, 1, 1_000_000);
      const writerArgs = (base: string) => [
        '--import',
        'tsx',
        CHILD_WRITER,
        db,
        String(seed),
        base,
        '2',
        '0',
      ];
      const first = startChild(...inNamespace(writerArgs('1000000')));
      const out = outcome();
      let second: Child | null = null;
      try {
        await until(() => acksOf(first.lines).length >= 10, 'the first writer acknowledging');
        second = startChild(...inNamespace(writerArgs('2000000')));
        await within(
          Promise.race([second.exited, until(() => second!.lines.includes('READY'), 'READY')]),
          'the second writer',
        );
        if (second.lines.includes('READY')) {
          out.violations.push('a second writer opened the log in another PID namespace');
        } else if (!second.stderr.join('').includes('ERR_LOCKED')) {
          out.violations.push(`second writer failed without ERR_LOCKED: ${second.stderr.join('')}`);
        }
        // Let both run on (a broken lock shows here: the intruder removes the
        // first writer's files); a first writer that stopped is checked below.
        const seen = acksOf(first.lines).length;
        await until(() => acksOf(first.lines).length >= seen + 10, 'more acknowledgements').catch(
          () => out.violations.push('the first writer stopped acknowledging'),
        );
      } finally {
        first.child.kill('SIGKILL');
        second?.child.kill('SIGKILL');
        await Promise.all([first.exited, second?.exited]);
      }
      const acks = [...acksOf(first.lines), ...(second === null ? [] : acksOf(second.lines))];
      out.acked = acks.length;
      const recovered = await within(recoverSegments(db), 'recoverSegments');
      const report = checkRecovered(
        recovered.records,
        (id) => commitPages(seed, id, CHILD_PAGE_BYTES_MAX),
        acks,
      );
      out.lost = report.lost.length + report.partial.length;
      return out;
    },
  },
  {
    name: 'lock file naming our own pid, held by another process',
    finding: 1,
    async run(dir) {
      const db = path.join(dir, 'app.db');
      const out = outcome();
      const holder = startChild(process.execPath, ['--import', 'tsx', LOCK_CHILD, db, 'hold']);
      try {
        await until(() => holder.lines.length > 0, 'the holder');
        fs.writeFileSync(
          lockPath(db),
          encodeLockInfo({
            pid: process.pid,
            startedAtMs: Date.now(),
            hostname: os.hostname(),
            nonce: 'x',
          }),
        );
        const opened = await attempt(ParallelWal.open(db), 'ParallelWal.open');
        await closeIfOpened(opened);
        if (opened.ok)
          out.violations.push('opened a log another process holds (our pid in the file)');
        else if (!isWalError(opened.error, 'ERR_LOCKED'))
          out.violations.push(describe(opened.error));
      } finally {
        holder.child.stdin?.end();
        await holder.exited;
      }
      return out;
    },
  },
  {
    name: 'lock creator stalled between create and describing itself',
    finding: 1,
    async run(dir) {
      const db = path.join(dir, 'app.db');
      const out = outcome();
      const holder = startChild(process.execPath, ['--import', 'tsx', LOCK_CHILD, db, 'stall']);
      try {
        await until(() => holder.lines.length > 0, 'the stalled holder');
        const opened = await attempt(ParallelWal.open(db, { lockTimeoutMs: 1500 }), 'open');
        await closeIfOpened(opened);
        if (opened.ok) out.violations.push('took the lock of a stalled creator');
        else if (!isWalError(opened.error, 'ERR_LOCKED'))
          out.violations.push(describe(opened.error));
      } finally {
        holder.child.stdin?.end();
        await holder.exited;
      }
      return out;
    },
  },
];

/** Every case, in the order the campaign runs them. */
export const HOSTILE_CASES: readonly HostileCase[] = [
  ...nonRegularCases,
  ...holeCases,
  ...numberingCases,
  ...storeCases,
  ...lockCases,
];

/** Options of {@link runHostileCampaign}. */
export interface HostileOptions {
  rounds: number;
  seed: number;
  /** Only cases whose name contains this. */
  filter?: string;
  log?: (line: string) => void;
}

/** Runs every case `rounds` times (each in a fresh directory) and totals the results. */
export async function runHostileCampaign(options: HostileOptions): Promise<HostileStats> {
  const stats: HostileStats = {
    tried: 0,
    skipped: 0,
    acked: 0,
    lost: 0,
    failedCases: new Map(),
    violations: [],
    skips: [],
  };
  const rng = seededRng(options.seed);
  const cases = HOSTILE_CASES.filter(
    (c) => options.filter === undefined || c.name.includes(options.filter),
  );
  for (let round = 0; round < options.rounds; round++) {
    for (const c of cases) {
      const caseSeed = Math.floor(rng() * 2 ** 31);
      const result = await runOne(c, caseSeed);
      if (result.skipped !== undefined) {
        stats.skipped++;
        if (!stats.skips.includes(`${c.name}: ${result.skipped}`))
          stats.skips.push(`${c.name}: ${result.skipped}`);
        continue;
      }
      stats.tried++;
      stats.acked += result.acked;
      stats.lost += result.lost;
      if (result.lost > 0 || result.violations.length > 0) {
        const failed = stats.failedCases.get(c.name) ?? { runs: 0, lost: 0 };
        stats.failedCases.set(c.name, { runs: failed.runs + 1, lost: failed.lost + result.lost });
        for (const v of result.violations) {
          stats.violations.push(`[finding ${c.finding}] ${c.name} (case seed ${caseSeed}): ${v}`);
        }
        if (result.lost > 0 && result.violations.length === 0) {
          stats.violations.push(
            `[finding ${c.finding}] ${c.name} (case seed ${caseSeed}): ${result.lost} lost`,
          );
        }
      }
      options.log?.(
        `${c.name}: acked ${result.acked}, lost ${result.lost}${result.violations.length > 0 ? `, ${result.violations.join('; ')}` : ''}`,
      );
    }
  }
  return stats;
}

async function runOne(c: HostileCase, seed: number): Promise<CaseOutcome> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-hostile-'));
  try {
    return await c.run(dir, seededRng(seed));
  } catch (error) {
    return { ...outcome(), violations: [`case threw: ${describe(error)}`] };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
