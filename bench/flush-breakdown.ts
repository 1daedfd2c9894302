/**
 * Where the time of one flush goes, with `--committers` closed-loop
 * committers (default 1: one commit per epoch): the log's own phase counters (`stats().flushPhases`), the time the
 * write and fdatasync system calls take (`stats().durableWrites`), and the
 * commit latency around them; with the segment write through the promise
 * API on the event loop (`ioThread: false`, the path before the I/O thread),
 * on the I/O thread (the default), and with `callerWriteBytesMax` set (an
 * epoch this small is then written synchronously on the owner thread while
 * the I/O thread is idle). For the I/O thread it also splits the rest of
 * the event loop's wait: the hand-off (job posted → the thread starts it)
 * and the return (the thread done → the owner reads the answer), from
 * `stats().durableWrites.handoffMicros` and `returnMicros`.
 *
 * Beside them, in the same run, the raw floors a flush is made of: a
 * synchronous 4 KiB append + fdatasync into one growing file, a 4 KiB
 * overwrite of already-written space + fdatasync, and, at each committer
 * count, an epoch's worth of records (a 24-byte segment header, then one
 * 4 KiB page and its 57 bytes of record framing per commit) written with one `writev` + fdatasync into a new empty
 * file (what the early-ack sink's pre-created files see) and into a file
 * whose bytes were written and synced before (write syscall and fdatasync
 * timed apart). On a virtual machine whose kernel hands free memory back to
 * its host (free page reporting, `/sys/module/page_reporting`), every new
 * page-cache page the first kind needs can cost a host page fault; the
 * second kind writes over cached pages. The script prints how much memory
 * the guest reported during the run when that counter exists.
 *
 * The logs' directories are emptied (truncated, not deleted) after each
 * variant, and the run's directory is left in place, emptied: on an ext4
 * without a journal, deleted inodes make file creation dearer for minutes
 * (`bench/recent-deletes.ts`).
 *
 * Pages are random bytes (incompressible). Variants are interleaved; medians
 * of `--runs`.
 *
 * Columns are microseconds per epoch (totals over the window divided by the
 * epochs written), except the commit p50. With many committers a write is
 * often queued behind the one in flight, and then most of its hand-off is
 * that wait, not the thread's wake-up.
 *
 * Run: `npx tsx bench/flush-breakdown.ts [--committers 1] [--seconds 2] [--runs 3] [--dir DIR]`
 * (`--committers 1,16,64,256` for several counts).
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { ParallelWal } from '../src/engine/wal.js';
import { onePageBatch, randomPages } from './one-page.js';
import { pageReporting, reportedBetween } from './page-reporting.js';
import { benchDir, median, percentile } from './raw-floor.js';

const PAGE_BYTES = 4096;
/**
 * Bytes a committed version-2 record adds to its 4 KiB page: the `u32`
 * length and a 53-byte body without the images (docs/format.md, 3.2).
 */
const RECORD_OVERHEAD_BYTES = 57;
/** Bytes of a segment header (docs/format.md, 3.1). */
const SEGMENT_HEADER_BYTES = 24;
const WARMUP_MS = 300;
const FLOOR_ITERATIONS = 2000;
/** Files each epoch-sized floor writes (one write + fdatasync each). */
const EPOCH_FLOOR_FILES = 200;

/** Mean microseconds per flush of each part, and the commit latency. */
interface Breakdown {
  name: string;
  commits: number;
  commitsPerEpoch: number;
  commitP50Us: number;
  epochUs: number;
  sealUs: number;
  prepareUs: number;
  writeWaitUs: number;
  writeSyscallUs: number;
  syncSyscallUs: number;
  handoffUs: number;
  returnUs: number;
  acknowledgeUs: number;
  threadShare: number;
  callerShare: number;
}

/** The write paths compared: their names and the log's settings. */
const VARIANTS = [
  { name: 'event loop (ioThread: false)', config: { ioThread: false } },
  { name: 'I/O thread (default)', config: {} },
  {
    name: 'small writes on the owner thread (callerWriteBytesMax: 262144)',
    config: { callerWriteBytesMax: 262144 },
  },
] as const;
type Variant = (typeof VARIANTS)[number];

/** Truncates every file under `dir` to 0 bytes (frees the blocks, keeps the inodes). */
async function emptyFiles(dir: string): Promise<void> {
  for (const name of await fsp.readdir(dir)) {
    await fsp.truncate(path.join(dir, name), 0).catch(() => {});
  }
}

async function runVariant(
  dir: string,
  seconds: number,
  committers: number,
  variant: Variant,
): Promise<Breakdown> {
  const dbDir = await fsp.mkdtemp(path.join(dir, 'flush-'));
  const wal = await ParallelWal.open(path.join(dbDir, 'bench.db'), {
    fsync: 'full',
    ...variant.config,
  });
  const pages = randomPages(Math.max(64, committers));
  let txn = 0n;
  let measuring = false;
  let stop = false;
  const latencies: number[] = [];
  const loop = async (): Promise<void> => {
    while (!stop) {
      txn += 1n;
      const started = performance.now();
      await wal.commit(onePageBatch(txn, pages));
      if (measuring) latencies.push((performance.now() - started) * 1000);
    }
  };
  const running = Array.from({ length: committers }, loop);
  await new Promise((resolve) => setTimeout(resolve, WARMUP_MS));
  const before = wal.stats();
  const startedAt = performance.now();
  measuring = true;
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  measuring = false;
  const after = wal.stats();
  const elapsedUs = (performance.now() - startedAt) * 1000;
  stop = true;
  await Promise.all(running);
  await wal.close();
  await emptyFiles(dbDir);
  const phase = (key: keyof typeof after.flushPhases): number =>
    after.flushPhases[key] - before.flushPhases[key];
  const written = (key: keyof typeof after.durableWrites): number =>
    Number(after.durableWrites[key]) - Number(before.durableWrites[key]);
  const epochs = Math.max(1, phase('epochs'));
  const writes = Math.max(1, written('writes'));
  const sorted = latencies.sort((a, b) => a - b);
  return {
    name: variant.name,
    commits: latencies.length,
    commitsPerEpoch: latencies.length / epochs,
    commitP50Us: percentile(sorted, 50),
    epochUs: elapsedUs / epochs,
    sealUs: phase('sealMicros') / Math.max(1, after.epochsSealed - before.epochsSealed),
    prepareUs: phase('prepareMicros') / epochs,
    writeWaitUs: phase('writeMicros') / epochs,
    // Per epoch, so that they add up with the write wait even when only some
    // writes went to the thread (callerWriteBytesMax).
    writeSyscallUs: written('writeMicros') / epochs,
    syncSyscallUs: written('syncMicros') / epochs,
    handoffUs: written('handoffMicros') / epochs,
    returnUs: written('returnMicros') / epochs,
    acknowledgeUs: phase('acknowledgeMicros') / epochs,
    threadShare: written('threadWrites') / writes,
    callerShare: written('callerWrites') / writes,
  };
}

/** Synchronous 4 KiB write + fdatasync: `append` into one growing file, or `overwrite` in place. */
function floor(dir: string, mode: 'append' | 'overwrite'): number {
  const file = path.join(dir, `floor-${mode}`);
  const fd = fs.openSync(file, 'w');
  const page = randomBytes(PAGE_BYTES);
  if (mode === 'overwrite') {
    for (let i = 0; i < 256; i++)
      fs.writeSync(fd, randomBytes(PAGE_BYTES), 0, PAGE_BYTES, i * PAGE_BYTES);
    fs.fdatasyncSync(fd);
  }
  const total: number[] = [];
  for (let i = 0; i < FLOOR_ITERATIONS; i++) {
    const position = mode === 'append' ? i * PAGE_BYTES : (i % 256) * PAGE_BYTES;
    const started = performance.now();
    fs.writeSync(fd, page, 0, PAGE_BYTES, position);
    fs.fdatasyncSync(fd);
    total.push((performance.now() - started) * 1000);
  }
  fs.closeSync(fd);
  fs.truncateSync(file, 0);
  return percentile(
    total.sort((a, b) => a - b),
    50,
  );
}

/** Write syscall and fdatasync p50 (µs) of one epoch's worth of records. */
interface EpochFloor {
  writeUs: number;
  syncUs: number;
}

/**
 * `commits` records (header + 4 KiB page each) with one `writev` + fdatasync,
 * {@link EPOCH_FLOOR_FILES} times: each into a `fresh` (new, empty) file, or
 * into a `prewritten` one (the same length written and synced first). The
 * files are created, and the directory synced, before the timed writes.
 */
function epochFloor(dir: string, commits: number, mode: 'fresh' | 'prewritten'): EpochFloor {
  const floorDir = fs.mkdtempSync(path.join(dir, `epoch-${mode}-`));
  const recordBytes = RECORD_OVERHEAD_BYTES + PAGE_BYTES;
  const source = randomBytes(SEGMENT_HEADER_BYTES + commits * recordBytes);
  const bytes = source.length;
  const chunks = [
    source.subarray(0, SEGMENT_HEADER_BYTES),
    ...Array.from({ length: commits }, (_, i) =>
      source.subarray(
        SEGMENT_HEADER_BYTES + i * recordBytes,
        SEGMENT_HEADER_BYTES + (i + 1) * recordBytes,
      ),
    ),
  ];
  const fds: number[] = [];
  for (let i = 0; i < EPOCH_FLOOR_FILES; i++) {
    const fd = fs.openSync(path.join(floorDir, `f${i}`), 'wx+');
    if (mode === 'prewritten') {
      fs.writeSync(fd, randomBytes(bytes), 0, bytes, 0);
      fs.fdatasyncSync(fd);
    }
    fds.push(fd);
  }
  const dirFd = fs.openSync(floorDir, 'r');
  fs.fsyncSync(dirFd);
  fs.closeSync(dirFd);
  const writeUs: number[] = [];
  const syncUs: number[] = [];
  for (const fd of fds) {
    const started = performance.now();
    fs.writevSync(fd, chunks, 0);
    const written = performance.now();
    fs.fdatasyncSync(fd);
    writeUs.push((written - started) * 1000);
    syncUs.push((performance.now() - written) * 1000);
    fs.closeSync(fd);
  }
  for (let i = 0; i < EPOCH_FLOOR_FILES; i++) fs.truncateSync(path.join(floorDir, `f${i}`), 0);
  return { writeUs: median(writeUs), syncUs: median(syncUs) };
}

function us(v: number): string {
  return v.toFixed(0).padStart(6);
}

/** The breakdown table of one committer count. */
function printBreakdown(committers: number, results: Map<string, Breakdown[]>): void {
  process.stdout.write(
    `\n### ${committers} committer${committers === 1 ? '' : 's'}\n\n` +
      '| path | commits/s | commits/epoch | commit p50 | epoch (wall) | seal | prepare | sink write (event loop waits) | of which write syscall | of which fdatasync | of which hand-off to the I/O thread | of which return to the owner | rest of the write | acknowledge |\n' +
      '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n',
  );
  for (const [name, rs] of results) {
    const m = (f: (b: Breakdown) => number): number => median(rs.map(f));
    const write = m((b) => b.writeWaitUs);
    const writeSys = m((b) => b.writeSyscallUs);
    const syncSys = m((b) => b.syncSyscallUs);
    const onThread = m((b) => b.threadShare) > 0;
    const handoff = onThread ? m((b) => b.handoffUs) : 0;
    const back = onThread ? m((b) => b.returnUs) : 0;
    const cell = (v: number): string => (onThread ? us(v) : '—');
    process.stdout.write(
      `| ${name} | ${(m((b) => b.commits) / seconds).toFixed(0)} | ${m((b) => b.commitsPerEpoch).toFixed(1)} | ${us(m((b) => b.commitP50Us))} | ${us(m((b) => b.epochUs))} | ${us(m((b) => b.sealUs))} | ${us(m((b) => b.prepareUs))} | ${us(write)} | ${us(writeSys)} | ${us(syncSys)} | ${cell(handoff)} | ${cell(back)} | ${us(write - writeSys - syncSys - handoff - back)} | ${us(m((b) => b.acknowledgeUs))} |\n`,
    );
    process.stdout.write(
      `  (${name}: writes on the I/O thread ${(m((b) => b.threadShare) * 100).toFixed(0)}%, synchronous on the owner thread ${(m((b) => b.callerShare) * 100).toFixed(0)}%; with ioThread: false the "syscall" columns are the awaited promise calls, hops included)\n`,
    );
  }
}

const { values } = parseArgs({
  options: {
    committers: { type: 'string', default: '1' },
    seconds: { type: 'string', default: '2' },
    runs: { type: 'string', default: '3' },
    dir: { type: 'string' },
  },
});
const seconds = Number(values.seconds);
const runs = Number(values.runs);
const committerCounts = [...new Set(values.committers.split(',').map(Number))];
if (
  committerCounts.some((n) => !Number.isInteger(n) || n < 1) ||
  !(seconds > 0) ||
  !Number.isInteger(runs) ||
  runs < 1
) {
  throw new Error(
    '--committers takes positive integers, --seconds a positive number, --runs a positive integer',
  );
}

async function main(): Promise<void> {
  const dir = await benchDir(values.dir);
  const reportedBefore = pageReporting();
  const floors: { append: number[]; overwrite: number[] } = { append: [], overwrite: [] };
  const epochFloors = new Map<number, { fresh: EpochFloor[]; prewritten: EpochFloor[] }>();
  const results = new Map<number, Map<string, Breakdown[]>>();
  for (let run = 0; run < runs; run++) {
    for (const committers of committerCounts) {
      const order = run % 2 === 0 ? [...VARIANTS] : [...VARIANTS].reverse();
      const byVariant = results.get(committers) ?? new Map<string, Breakdown[]>();
      results.set(committers, byVariant);
      for (const variant of order) {
        const r = await runVariant(dir, seconds, committers, variant);
        byVariant.set(r.name, [...(byVariant.get(r.name) ?? []), r]);
      }
      const kinds = epochFloors.get(committers) ?? { fresh: [], prewritten: [] };
      epochFloors.set(committers, kinds);
      kinds.fresh.push(epochFloor(dir, committers, 'fresh'));
      kinds.prewritten.push(epochFloor(dir, committers, 'prewritten'));
    }
    floors.append.push(floor(dir, 'append'));
    floors.overwrite.push(floor(dir, 'overwrite'));
  }
  const reportedAfter = pageReporting();
  process.stdout.write(
    `flush breakdown: closed-loop committers × 4 KiB (random), fsync full, earlyAck sink; medians of ${runs} runs of ${seconds} s; microseconds per epoch (flush)\n`,
  );
  for (const committers of committerCounts) printBreakdown(committers, results.get(committers)!);
  process.stdout.write(
    `\n### Floors (synchronous, same run, p50 in microseconds)\n\n4 KiB append + fdatasync into one growing file ${us(median(floors.append))}; 4 KiB overwrite + fdatasync ${us(median(floors.overwrite))}\n\n` +
      '| records of 4 KiB in one writev | new empty file: writev | new empty file: fdatasync | pre-written file: writev | pre-written file: fdatasync |\n|--:|--:|--:|--:|--:|\n',
  );
  for (const [committers, kinds] of epochFloors) {
    const m = (list: EpochFloor[], f: (e: EpochFloor) => number): string => us(median(list.map(f)));
    process.stdout.write(
      `| ${committers} | ${m(kinds.fresh, (e) => e.writeUs)} | ${m(kinds.fresh, (e) => e.syncUs)} | ${m(kinds.prewritten, (e) => e.writeUs)} | ${m(kinds.prewritten, (e) => e.syncUs)} |\n`,
    );
  }
  process.stdout.write(
    `\nfree memory handed back to the host during the run: ${reportedBetween(reportedBefore, reportedAfter)}\n` +
      `left the emptied run directory ${dir} (deleting its files now would make new files dearer for the next minutes)\n`,
  );
}

await main();
