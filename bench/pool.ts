/**
 * The reused-segment-file pool, measured (docs/benchmarks.md, "Reused
 * segment files"):
 *
 * - `--mode sinks` (default): the `pool` sink against `earlyAck`, side by
 *   side, at 1, 64 and 256 async committers, one 4 KiB page per commit,
 *   fsync `full`; cells interleaved (round by round, the sink order
 *   alternating) because the machine is shared; medians of `--rounds`.
 * - `--mode cut`: the trade-off of cutting a reused file to the segment's
 *   length at publication. Raw file operations, no engine: a 4 KiB segment
 *   overwritten at offset 0 of a pre-written 64 KiB file + fdatasync (the
 *   critical path), then either nothing (keep the stale tail) or the cut
 *   (ftruncate + fdatasync) and a refill of the freed tail (write + fdatasync)
 *   before the file is reused. Reports per-epoch time of each variant.
 * - `--mode store`: the same two sinks under a page store (checkpoints on,
 *   folded segments recycled into the pool), 1, 64 and 256 committers.
 * - `--mode space`: a page store at 256 committers with automatic
 *   checkpoints for `--seconds` (default 60), sampling the database
 *   directory's total size every 100 ms: the peak shows that disk space stays
 *   bounded (folded segments go back into the pool or are unlinked).
 *   `--pipeline-flush off` runs it with the log's `pipelineFlush: false`.
 * - `--mode recycle`: a bare log at 16, 64 and 256 committers (`--committers
 *   1,16,64,256` to choose) whose
 *   published segments a consumer gives back every 20 ms
 *   (`wal.recycleSegments`, without reading them), against the log growing
 *   for the whole run: `earlyAck` (which unlinks what it is given) and the
 *   pool sink with 8, 64 and 256 files. Interleaved rounds, medians.
 *
 * Run: `npx tsx bench/pool.ts [--mode sinks|cut|store|space|recycle] [--sink pool|earlyAck] [--pipeline-flush on|off] [--seconds S] [--rounds R] [--dir DIR]`.
 */
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import type { SegmentSinkKind } from '../src/engine/segment-writer.js';
import { ParallelWal } from '../src/engine/wal.js';
import { listSegments } from '../src/storage/segment-files.js';
import { PageStore } from '../src/store/page-store.js';
import { onePageBatch, randomPages } from './one-page.js';

const PAGE_BYTES = 4096;
const WARMUP_MS = 300;

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

interface Cell {
  commitsPerSec: number;
  p50Us: number;
  p99Us: number;
}

/** A bare-log cell's options beyond the sink. */
interface SinkCellOptions {
  /** `segmentPoolSize` for the pool sink. */
  poolSize?: number;
  /** Give published segments back (`recycleSegments`) every this many ms; none when absent. */
  recycleEveryMs?: number;
}

/**
 * The log's consumer in `--mode recycle`: every `everyMs` it hands every published segment but
 * the newest back with `wal.recycleSegments` (the pool sink writes later epochs over them, the
 * others unlink them). It does not read them first; the peer harness's `pwaltrunc` cell does.
 */
function startRecycling(wal: ParallelWal, dbPath: string, everyMs: number): () => Promise<void> {
  let stopped = false;
  let failure: unknown = null;
  const loop = (async () => {
    while (!stopped) {
      await new Promise((r) => setTimeout(r, everyMs));
      if (stopped) break;
      try {
        // Published segment names only, sorted by epoch.
        const published = await listSegments(dbPath);
        if (published.length < 2) continue;
        await wal.recycleSegments(published.slice(0, -1), published[published.length - 1]!.epoch);
      } catch (error) {
        failure = error;
        return;
      }
    }
  })();
  return async () => {
    stopped = true;
    await loop;
    if (failure !== null) throw failure;
  };
}

async function sinkCell(
  dir: string,
  sink: SegmentSinkKind,
  committers: number,
  seconds: number,
  options: SinkCellOptions = {},
): Promise<Cell> {
  const dbDir = await fsp.mkdtemp(path.join(dir, 'cell-'));
  const dbPath = path.join(dbDir, 'bench.db');
  const wal = await ParallelWal.open(dbPath, {
    fsync: 'full',
    segmentSink: sink,
    ...(options.poolSize === undefined ? {} : { segmentPoolSize: options.poolSize }),
  });
  const stopRecycling =
    options.recycleEveryMs === undefined
      ? null
      : startRecycling(wal, dbPath, options.recycleEveryMs);
  // Incompressible pages (a virtual disk makes constant bytes look faster).
  const images = randomPages(1000);
  let txn = 0n;
  let stop = false;
  let measuring = false;
  let commits = 0;
  const loop = async (): Promise<void> => {
    while (!stop) {
      txn += 1n;
      await wal.commit(onePageBatch(txn, images));
      if (measuring) commits++;
    }
  };
  const loops = Array.from({ length: committers }, loop);
  await new Promise((r) => setTimeout(r, WARMUP_MS));
  wal.resetLatencyHistogram();
  measuring = true;
  const started = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  measuring = false;
  const elapsed = (performance.now() - started) / 1000;
  const latency = wal.stats().commitLatencyMicros;
  stop = true;
  await Promise.all(loops);
  await stopRecycling?.();
  await wal.close();
  await fsp.rm(dbDir, { recursive: true, force: true });
  return { commitsPerSec: commits / elapsed, p50Us: latency.p50, p99Us: latency.p99 };
}

/** `--mode recycle`: see the file comment. */
async function recycleSinks(
  dir: string,
  seconds: number,
  rounds: number,
  committerCounts: readonly number[],
): Promise<void> {
  const every = 20;
  const variants: { name: string; sink: SegmentSinkKind; options: SinkCellOptions }[] = [
    { name: 'earlyAck, log grows', sink: 'earlyAck', options: {} },
    { name: 'earlyAck, recycled', sink: 'earlyAck', options: { recycleEveryMs: every } },
    { name: 'pool 64, log grows', sink: 'pool', options: { poolSize: 64 } },
    { name: 'pool 8, recycled', sink: 'pool', options: { poolSize: 8, recycleEveryMs: every } },
    { name: 'pool 64, recycled', sink: 'pool', options: { poolSize: 64, recycleEveryMs: every } },
    { name: 'pool 256, recycled', sink: 'pool', options: { poolSize: 256, recycleEveryMs: every } },
  ];
  console.log(
    `bare log, published segments given back every ${every} ms or never; ${rounds} interleaved rounds of ${seconds} s, medians`,
  );
  for (const committers of committerCounts) {
    const cells = new Map<string, Cell[]>();
    for (let round = 0; round < rounds; round++) {
      for (const v of round % 2 === 0 ? variants : [...variants].reverse()) {
        const cell = await sinkCell(dir, v.sink, committers, seconds, v.options);
        cells.set(v.name, [...(cells.get(v.name) ?? []), cell]);
      }
    }
    const base = median(cells.get(variants[0]!.name)!.map((c) => c.commitsPerSec));
    for (const v of variants) {
      const rows = cells.get(v.name)!;
      const cps = median(rows.map((c) => c.commitsPerSec));
      console.log(
        `${String(committers).padStart(4)} committers  ${v.name.padEnd(20)} ${cps.toFixed(0).padStart(7)} commits/s  p50 ${(median(rows.map((c) => c.p50Us)) / 1000).toFixed(3)} ms  ${(cps / base).toFixed(2)}x`,
      );
    }
  }
}

async function sinks(dir: string, seconds: number, rounds: number): Promise<void> {
  const committerCounts = [1, 64, 256];
  const kinds: SegmentSinkKind[] = ['pool', 'earlyAck'];
  const results = new Map<string, Cell[]>();
  for (let round = 0; round < rounds; round++) {
    for (const committers of committerCounts) {
      const order = round % 2 === 0 ? kinds : [...kinds].reverse();
      for (const sink of order) {
        const cell = await sinkCell(dir, sink, committers, seconds);
        const key = `${committers}|${sink}`;
        results.set(key, [...(results.get(key) ?? []), cell]);
      }
    }
  }
  console.log(`sinks side by side: ${rounds} interleaved rounds of ${seconds} s, medians`);
  console.log('committers  sink      commits/s   p50 ms   p99 ms');
  for (const committers of committerCounts) {
    const cps: Record<string, number> = {};
    for (const sink of kinds) {
      const cells = results.get(`${committers}|${sink}`)!;
      const c = median(cells.map((x) => x.commitsPerSec));
      cps[sink] = c;
      console.log(
        `${String(committers).padStart(10)}  ${sink.padEnd(8)} ${c.toFixed(0).padStart(10)} ${(median(cells.map((x) => x.p50Us)) / 1000).toFixed(3).padStart(8)} ${(median(cells.map((x) => x.p99Us)) / 1000).toFixed(3).padStart(8)}`,
      );
    }
    console.log(`${''.padStart(10)}  pool / earlyAck = ${(cps.pool! / cps.earlyAck!).toFixed(2)}x`);
  }
}

async function cut(dir: string, rounds: number): Promise<void> {
  const FILE_BYTES = 64 * 1024;
  const SEGMENT_BYTES = 4096;
  const EPOCHS = 400;
  const segment = new Uint8Array(SEGMENT_BYTES).fill(0x5a);
  const filler = new Uint8Array(FILE_BYTES);
  const runOne = async (
    variant: 'keep' | 'cut',
  ): Promise<{ criticalUs: number; totalUs: number }> => {
    const file = path.join(dir, `cut-${variant}-${process.pid}`);
    const handle = await fsp.open(file, 'w+');
    await handle.write(filler, 0, FILE_BYTES, 0);
    await handle.datasync();
    const critical: number[] = [];
    const started = performance.now();
    for (let i = 0; i < EPOCHS; i++) {
      const t0 = performance.now();
      await handle.write(segment, 0, SEGMENT_BYTES, 0);
      await handle.datasync();
      critical.push((performance.now() - t0) * 1000);
      if (variant === 'cut') {
        // Publication cuts the file; before reuse the pool refills the tail.
        await handle.truncate(SEGMENT_BYTES);
        await handle.datasync();
        await handle.write(filler, 0, FILE_BYTES - SEGMENT_BYTES, SEGMENT_BYTES);
        await handle.datasync();
      }
    }
    const totalUs = ((performance.now() - started) * 1000) / EPOCHS;
    await handle.close();
    await fsp.rm(file, { force: true });
    return { criticalUs: median(critical), totalUs };
  };
  const keep: { criticalUs: number; totalUs: number }[] = [];
  const cutting: { criticalUs: number; totalUs: number }[] = [];
  for (let round = 0; round < rounds; round++) {
    if (round % 2 === 0) {
      keep.push(await runOne('keep'));
      cutting.push(await runOne('cut'));
    } else {
      cutting.push(await runOne('cut'));
      keep.push(await runOne('keep'));
    }
  }
  console.log(
    `cut vs keep (4 KiB segment in a 64 KiB reused file, ${EPOCHS} epochs, ${rounds} rounds, medians)`,
  );
  for (const [name, rows] of [
    ['keep stale tail', keep],
    ['cut + refill', cutting],
  ] as const) {
    console.log(
      `${name.padEnd(16)} critical path p50 ${(median(rows.map((r) => r.criticalUs)) / 1000).toFixed(3)} ms, disk time per epoch ${(median(rows.map((r) => r.totalUs)) / 1000).toFixed(3)} ms`,
    );
  }
}

async function storeCell(
  dir: string,
  sink: SegmentSinkKind,
  committers: number,
  seconds: number,
): Promise<Cell & { checkpoints: number }> {
  const dbDir = await fsp.mkdtemp(path.join(dir, 'store-'));
  const store = await PageStore.open(path.join(dbDir, 'bench.db'), {
    pageSize: PAGE_BYTES,
    segmentSink: sink,
  });
  const images = randomBytes(4096 * PAGE_BYTES);
  let stop = false;
  let measuring = false;
  let commits = 0;
  let next = 0;
  const loop = async (): Promise<void> => {
    while (!stop) {
      next++;
      const slot = next % 4096;
      await store.commit([
        { pageNumber: 1 + slot, data: images.subarray(slot * PAGE_BYTES, (slot + 1) * PAGE_BYTES) },
      ]);
      if (measuring) commits++;
    }
  };
  const loops = Array.from({ length: committers }, loop);
  await new Promise((r) => setTimeout(r, WARMUP_MS));
  store.log.resetLatencyHistogram();
  const before = (store.stats() as { autoCheckpoints: number }).autoCheckpoints;
  measuring = true;
  const started = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  measuring = false;
  const elapsed = (performance.now() - started) / 1000;
  const latency = store.log.stats().commitLatencyMicros;
  const checkpoints = (store.stats() as { autoCheckpoints: number }).autoCheckpoints - before;
  stop = true;
  await Promise.all(loops);
  await store.close();
  await fsp.rm(dbDir, { recursive: true, force: true });
  return {
    commitsPerSec: commits / elapsed,
    p50Us: latency.p50,
    p99Us: latency.p99,
    checkpoints,
  };
}

async function storeSinks(dir: string, seconds: number, rounds: number): Promise<void> {
  const kinds: SegmentSinkKind[] = ['pool', 'earlyAck'];
  for (const committers of [1, 64, 256]) {
    const cells = new Map<SegmentSinkKind, (Cell & { checkpoints: number })[]>();
    for (let round = 0; round < rounds; round++) {
      for (const sink of round % 2 === 0 ? kinds : [...kinds].reverse()) {
        cells.set(sink, [
          ...(cells.get(sink) ?? []),
          await storeCell(dir, sink, committers, seconds),
        ]);
      }
    }
    const cps = (sink: SegmentSinkKind) => median(cells.get(sink)!.map((c) => c.commitsPerSec));
    for (const sink of kinds) {
      const rows = cells.get(sink)!;
      console.log(
        `page store, ${committers} committers, ${sink.padEnd(8)}: ${cps(sink).toFixed(0)} commits/s, p50 ${(median(rows.map((r) => r.p50Us)) / 1000).toFixed(3)} ms, checkpoints ${median(rows.map((r) => r.checkpoints))}`,
      );
    }
    console.log(`  pool / earlyAck = ${(cps('pool') / cps('earlyAck')).toFixed(2)}x`);
  }
}

async function directoryBytes(dir: string): Promise<number> {
  let total = 0;
  for (const name of await fsp.readdir(dir)) {
    try {
      total += (await fsp.stat(path.join(dir, name))).size;
    } catch {
      // Renamed or removed while listing.
    }
  }
  return total;
}

async function space(
  dir: string,
  seconds: number,
  sink: SegmentSinkKind,
  pipelineFlush: boolean,
): Promise<void> {
  const dbDir = await fsp.mkdtemp(path.join(dir, 'space-'));
  const store = await PageStore.open(path.join(dbDir, 'bench.db'), {
    pageSize: PAGE_BYTES,
    segmentSink: sink,
    pipelineFlush,
  });
  // Incompressible pages (a virtual disk makes constant bytes look faster).
  const images = randomBytes(4096 * PAGE_BYTES);
  let stop = false;
  let commits = 0;
  let next = 0;
  const loop = async (): Promise<void> => {
    while (!stop) {
      next++;
      const slot = next % 4096;
      await store.commit([
        {
          pageNumber: 1 + slot,
          data: images.subarray(slot * PAGE_BYTES, (slot + 1) * PAGE_BYTES),
        },
      ]);
      commits++;
    }
  };
  let peak = 0;
  let peakAtSecond = 0;
  const started = performance.now();
  const sampler = setInterval(() => {
    void directoryBytes(dbDir).then((bytes) => {
      if (bytes > peak) {
        peak = bytes;
        peakAtSecond = (performance.now() - started) / 1000;
      }
    });
  }, 100);
  const loops = Array.from({ length: 256 }, loop);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  stop = true;
  await Promise.all(loops);
  clearInterval(sampler);
  const stats = store.stats() as { autoCheckpoints?: number; wal?: { segmentPool?: unknown } };
  const end = await directoryBytes(dbDir);
  await store.close();
  await fsp.rm(dbDir, { recursive: true, force: true });
  const mib = (n: number) => (n / 1024 / 1024).toFixed(1);
  console.log(
    `page store (${sink} sink, pipelineFlush ${pipelineFlush ? 'on' : 'off'}), 256 committers, ${seconds} s: ${commits} commits (${(commits / seconds).toFixed(0)}/s), ` +
      `${stats.autoCheckpoints ?? '?'} checkpoints; directory peak ${mib(peak)} MiB (at ${peakAtSecond.toFixed(1)} s), at the end ${mib(end)} MiB; database file holds 4096 pages (16 MiB) at most`,
  );
  console.log(`pool: ${JSON.stringify(stats.wal?.segmentPool ?? null)}`);
}

const mode = arg('mode', 'sinks');
const dir = arg('dir', os.tmpdir());
const rounds = Number(arg('rounds', '3'));
if (mode === 'sinks') await sinks(dir, Number(arg('seconds', '2')), rounds);
else if (mode === 'cut') await cut(dir, rounds);
else if (mode === 'space')
  await space(
    dir,
    Number(arg('seconds', '60')),
    arg('sink', 'pool') as SegmentSinkKind,
    arg('pipeline-flush', 'on') !== 'off',
  );
else if (mode === 'store') await storeSinks(dir, Number(arg('seconds', '3')), rounds);
else if (mode === 'recycle') {
  const counts = arg('committers', '16,64,256').split(',').map(Number);
  if (counts.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new Error(
      `--committers wants positive integers separated by commas, got ${arg('committers', '')}`,
    );
  }
  await recycleSinks(dir, Number(arg('seconds', '2')), rounds, counts);
} else throw new Error(`unknown --mode ${mode}`);
