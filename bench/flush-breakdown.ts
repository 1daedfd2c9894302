/**
 * Where the time of one flush goes, with one committer (so one commit per
 * epoch): the log's own phase counters (`stats().flushPhases`), the time the
 * write and fdatasync system calls take (`stats().durableWrites`), and the
 * commit latency around them; with the segment write through the promise
 * API on the event loop (`ioThread: false`, the path before the I/O thread),
 * on the I/O thread (the default), and with `callerWriteBytesMax` set (an
 * epoch this small is then written synchronously on the owner thread while
 * the I/O thread is idle). Beside them, in the same run, the raw
 * floors a flush is made of: a synchronous 4 KiB append + fdatasync into a
 * fresh file (what the early-ack sink's pre-created files see) and a 4 KiB
 * overwrite of already-written space + fdatasync.
 *
 * Pages are random bytes (incompressible). Variants are interleaved; medians
 * of `--runs`.
 *
 * Run: `npx tsx bench/flush-breakdown.ts [--seconds 2] [--runs 3] [--dir DIR]`.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { ParallelWal } from '../src/engine/wal.js';
import { onePageBatch, randomPages } from './one-page.js';
import { benchDir, median, percentile } from './raw-floor.js';

const PAGE_BYTES = 4096;
const WARMUP_MS = 300;
const FLOOR_ITERATIONS = 2000;

/** Mean microseconds per flush of each part, and the commit latency. */
interface Breakdown {
  name: string;
  commits: number;
  commitMeanUs: number;
  commitP50Us: number;
  sealUs: number;
  prepareUs: number;
  writeWaitUs: number;
  writeSyscallUs: number;
  syncSyscallUs: number;
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

async function runVariant(dir: string, seconds: number, variant: Variant): Promise<Breakdown> {
  const dbDir = await fsp.mkdtemp(path.join(dir, 'flush-'));
  const wal = await ParallelWal.open(path.join(dbDir, 'bench.db'), {
    fsync: 'full',
    ...variant.config,
  });
  const pages = randomPages(64);
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
  const running = loop();
  await new Promise((resolve) => setTimeout(resolve, WARMUP_MS));
  const before = wal.stats();
  measuring = true;
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  measuring = false;
  const after = wal.stats();
  stop = true;
  await running;
  await wal.close();
  await fsp.rm(dbDir, { recursive: true, force: true });
  const phase = (key: keyof typeof after.flushPhases): number =>
    after.flushPhases[key] - before.flushPhases[key];
  const epochs = Math.max(1, phase('epochs'));
  const writes = Math.max(1, after.durableWrites.writes - before.durableWrites.writes);
  const sorted = latencies.sort((a, b) => a - b);
  return {
    name: variant.name,
    commits: latencies.length,
    commitMeanUs: latencies.reduce((a, b) => a + b, 0) / Math.max(1, latencies.length),
    commitP50Us: percentile(sorted, 50),
    sealUs: phase('sealMicros') / Math.max(1, after.epochsSealed - before.epochsSealed),
    prepareUs: phase('prepareMicros') / epochs,
    writeWaitUs: phase('writeMicros') / epochs,
    writeSyscallUs: (after.durableWrites.writeMicros - before.durableWrites.writeMicros) / writes,
    syncSyscallUs: (after.durableWrites.syncMicros - before.durableWrites.syncMicros) / writes,
    acknowledgeUs: phase('acknowledgeMicros') / epochs,
    threadShare:
      (after.durableWrites.threadWrites - before.durableWrites.threadWrites) /
      Math.max(1, after.durableWrites.writes - before.durableWrites.writes),
    callerShare:
      (after.durableWrites.callerWrites - before.durableWrites.callerWrites) /
      Math.max(1, after.durableWrites.writes - before.durableWrites.writes),
  };
}

/** Synchronous 4 KiB write + fdatasync: `append` into a fresh file, or `overwrite` in place. */
function floor(dir: string, mode: 'append' | 'overwrite'): { p50Us: number; writeUs: number } {
  const file = path.join(dir, `floor-${mode}`);
  const fd = fs.openSync(file, 'w');
  const page = randomBytes(PAGE_BYTES);
  if (mode === 'overwrite') {
    for (let i = 0; i < 256; i++)
      fs.writeSync(fd, randomBytes(PAGE_BYTES), 0, PAGE_BYTES, i * PAGE_BYTES);
    fs.fdatasyncSync(fd);
  }
  const total: number[] = [];
  const writeOnly: number[] = [];
  for (let i = 0; i < FLOOR_ITERATIONS; i++) {
    const position = mode === 'append' ? i * PAGE_BYTES : (i % 256) * PAGE_BYTES;
    const started = performance.now();
    fs.writeSync(fd, page, 0, PAGE_BYTES, position);
    const written = performance.now();
    fs.fdatasyncSync(fd);
    total.push((performance.now() - started) * 1000);
    writeOnly.push((written - started) * 1000);
  }
  fs.closeSync(fd);
  fs.rmSync(file);
  return {
    p50Us: percentile(
      total.sort((a, b) => a - b),
      50,
    ),
    writeUs: percentile(
      writeOnly.sort((a, b) => a - b),
      50,
    ),
  };
}

function us(v: number): string {
  return v.toFixed(0).padStart(6);
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const value = (flag: string): string | undefined => {
    const i = args.indexOf(flag);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const seconds = Number(value('--seconds') ?? 2);
  const runs = Number(value('--runs') ?? 3);
  const dir = await benchDir(value('--dir'));
  const results = new Map<string, Breakdown[]>();
  const floors: { append: number[]; overwrite: number[] } = { append: [], overwrite: [] };
  for (let run = 0; run < runs; run++) {
    const order = run % 2 === 0 ? [...VARIANTS] : [...VARIANTS].reverse();
    for (const variant of order) {
      const r = await runVariant(dir, seconds, variant);
      results.set(r.name, [...(results.get(r.name) ?? []), r]);
    }
    floors.append.push(floor(dir, 'append').p50Us);
    floors.overwrite.push(floor(dir, 'overwrite').p50Us);
  }
  process.stdout.write(
    `flush breakdown, 1 committer × 4 KiB (random), fsync full, earlyAck sink; medians of ${runs} runs of ${seconds} s; microseconds per flush\n\n`,
  );
  process.stdout.write(
    '| path | commits/s | commit p50 | commit mean | seal | prepare | sink write (event loop waits) | of which write syscall | of which fdatasync | hops + rest of the write | acknowledge | commit→seal + resolve |\n',
  );
  process.stdout.write('|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n');
  for (const [name, rs] of results) {
    const m = (f: (b: Breakdown) => number): number => median(rs.map(f));
    const mean = m((b) => b.commitMeanUs);
    const write = m((b) => b.writeWaitUs);
    const writeSys = m((b) => b.writeSyscallUs);
    const syncSys = m((b) => b.syncSyscallUs);
    const seal = m((b) => b.sealUs);
    const prepare = m((b) => b.prepareUs);
    const ack = m((b) => b.acknowledgeUs);
    const rest = mean - seal - prepare - write - ack;
    process.stdout.write(
      `| ${name} | ${(m((b) => b.commits) / seconds).toFixed(0)} | ${us(m((b) => b.commitP50Us))} | ${us(mean)} | ${us(seal)} | ${us(prepare)} | ${us(write)} | ${us(writeSys)} | ${us(syncSys)} | ${us(write - writeSys - syncSys)} | ${us(ack)} | ${us(rest)} |\n`,
    );
    process.stdout.write(
      `  (${name}: writes on the I/O thread ${(m((b) => b.threadShare) * 100).toFixed(0)}%, synchronous on the owner thread ${(m((b) => b.callerShare) * 100).toFixed(0)}%; with ioThread: false the "syscall" columns are the awaited promise calls, hops included)\n`,
    );
  }
  process.stdout.write(
    `\nfloors (synchronous, same run): 4 KiB append + fdatasync into a fresh file p50 ${us(median(floors.append))} us; 4 KiB overwrite + fdatasync p50 ${us(median(floors.overwrite))} us\n`,
  );
}

await main();
