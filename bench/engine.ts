/**
 * Durable commits through the engine, beside the raw floor measured in the
 * same run on the same disk.
 *
 * Cases: N async committers (N = 1, 4, 16, 64, 256), each committing one
 * 4 KiB page in a closed loop (commit, await the durable ack, repeat) for
 * `--seconds`; `--runs` repetitions, medians reported. For each: commits/s,
 * fsyncs/s, mean epoch size, p50/p99 commit latency.
 *
 * Targets (issue 3): 1 committer p50 <= 1.5x raw append+fdatasync p50;
 * 256 committers >= 50% of the bandwidth floor in pages/s; 2 worker writers
 * >= 1.6x the commits/s of 1 worker with fsync `off`.
 *
 * Run: `npm run bench:engine -- [--seconds 2] [--runs 3] [--dir DIR] [--precreate]`.
 */
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { ParallelWal } from '../src/engine/wal.js';
import type { FsyncPolicy } from '../src/storage/segment-files.js';
import { onePageBatch, randomPages } from './one-page.js';
import { benchDir, measureRawFloor, median, ms, type RawFloor } from './raw-floor.js';

/** Figures of one case. */
export interface CaseFigures {
  name: string;
  commitsPerSec: number;
  fsyncsPerSec: number;
  pagesPerEpoch: number;
  p50Us: number;
  p99Us: number;
}

/** Options shared by every case. */
export interface CaseOptions {
  dir: string;
  seconds: number;
  fsync: FsyncPolicy;
  precreate: boolean;
}

/**
 * A bench case: runs once in a fresh database directory and reports figures.
 * Worker-writer cases plug in through {@link extraCases}.
 */
export interface BenchCase {
  name: string;
  run(options: CaseOptions): Promise<CaseFigures>;
}

const WARMUP_MS = 300;

/** N async committers on the owner thread, one 4 KiB page per commit. */
export function asyncCommittersCase(
  committers: number,
  variant: { fsync?: FsyncPolicy; precreate?: boolean; earlyAck?: boolean } = {},
): BenchCase {
  const fsync = variant.fsync ?? 'full';
  const tags = [
    ...(fsync === 'full' ? [] : [`fsync ${fsync}`]),
    ...(variant.precreate === true ? ['precreate'] : []),
    ...(variant.earlyAck === true ? ['earlyAck'] : []),
  ];
  return {
    name: `${committers} async committer${committers === 1 ? '' : 's'}${tags.length === 0 ? '' : ` (${tags.join(', ')})`}`,
    async run(options) {
      const dbDir = await fsp.mkdtemp(path.join(options.dir, 'case-'));
      const wal = await ParallelWal.open(path.join(dbDir, 'bench.db'), {
        fsync,
        precreateSegmentFiles: variant.precreate ?? options.precreate,
        ...(variant.earlyAck === true ? { segmentSink: 'earlyAck' as const } : {}),
      });
      // Random bytes: incompressible, as real pages are for a disk that compresses.
      const pages = randomPages(1);
      let txn = 0n;
      let stop = false;
      let measuring = false;
      let commits = 0;
      const loop = async (): Promise<void> => {
        while (!stop) {
          txn += 1n;
          await wal.commit(onePageBatch(txn, pages));
          if (measuring) commits++;
        }
      };
      const loops = Array.from({ length: committers }, loop);
      await new Promise((resolve) => setTimeout(resolve, WARMUP_MS));
      wal.resetLatencyHistogram();
      const before = wal.stats();
      measuring = true;
      const started = performance.now();
      await new Promise((resolve) => setTimeout(resolve, options.seconds * 1000));
      measuring = false;
      const seconds = (performance.now() - started) / 1000;
      const after = wal.stats();
      stop = true;
      await Promise.all(loops);
      await wal.close();
      await fsp.rm(dbDir, { recursive: true, force: true });
      const segments = after.segmentsWritten - before.segmentsWritten;
      return {
        name: this.name,
        commitsPerSec: commits / seconds,
        fsyncsPerSec: (after.fsyncs - before.fsyncs) / seconds,
        pagesPerEpoch: segments === 0 ? 0 : commits / segments,
        p50Us: after.commitLatencyMicros.p50,
        p99Us: after.commitLatencyMicros.p99,
      };
    },
  };
}

/**
 * Worker-writer cases (1 and 2 workers, fsync `full` and `off`) plug in here —
 * either push into this array, or (preferred, no edit of this file) add
 * `bench/engine-workers.ts` exporting `cases: BenchCase[]`: `BenchCase`s whose `run` opens a ParallelWal, starts workers that
 * `attachWriter(wal.workerHandle())` and commit one 4 KiB page in a loop, and
 * reports the same figures. `main` prints them beside the async cases and
 * computes the 2-workers / 1-worker ratio when both `off` cases are present
 * (names `1 worker (fsync off)` and `2 workers (fsync off)`).
 */
export const extraCases: BenchCase[] = [];

/** Optional plug-in module with worker cases: `bench/engine-workers.ts` exporting `cases: BenchCase[]`. */
async function pluginCases(): Promise<BenchCase[]> {
  const plugin = './engine-workers.js';
  try {
    const module = (await import(plugin)) as { cases?: BenchCase[] };
    return [...extraCases, ...(module.cases ?? [])];
  } catch (error) {
    if ((error as { code?: string }).code === 'ERR_MODULE_NOT_FOUND') return extraCases;
    throw error;
  }
}

function medianFigures(name: string, results: readonly CaseFigures[]): CaseFigures {
  return {
    name,
    commitsPerSec: median(results.map((r) => r.commitsPerSec)),
    fsyncsPerSec: median(results.map((r) => r.fsyncsPerSec)),
    pagesPerEpoch: median(results.map((r) => r.pagesPerEpoch)),
    p50Us: median(results.map((r) => r.p50Us)),
    p99Us: median(results.map((r) => r.p99Us)),
  };
}

function row(f: CaseFigures): string {
  return `${f.name.padEnd(34)} ${f.commitsPerSec.toFixed(0).padStart(8)} commits/s ${f.fsyncsPerSec.toFixed(0).padStart(6)} fsyncs/s ${f.pagesPerEpoch.toFixed(1).padStart(7)} pages/epoch  p50 ${ms(f.p50Us)} ms  p99 ${ms(f.p99Us)} ms`;
}

function verdict(ok: boolean): string {
  return ok ? 'meets target' : 'BELOW target';
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const value = (flag: string): string | undefined => {
    const i = args.indexOf(flag);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const seconds = Number(value('--seconds') ?? 2);
  const runs = Number(value('--runs') ?? 3);
  const precreate = args.includes('--precreate');
  const dir = await benchDir(value('--dir'));
  try {
    // This disk's latency and bandwidth drift by several times over seconds.
    // Each run measures the floor and then every case, round after round, so
    // that slow and fast periods hit the floor and all cases alike; medians
    // over the rounds are reported.
    console.log(
      `engine bench in ${dir}: ${seconds} s per case, ${runs} rounds, precreate=${precreate}`,
    );
    const options: CaseOptions = { dir, seconds, fsync: 'full', precreate };
    const cases = [
      ...[1, 4, 16, 64, 256].map((n) => asyncCommittersCase(n)),
      // The same extremes with the next segment file created ahead of time.
      asyncCommittersCase(1, { precreate: true }),
      asyncCommittersCase(256, { precreate: true }),
      // Acknowledge at data durability, publish in the background (segmentSink earlyAck).
      asyncCommittersCase(1, { earlyAck: true }),
      asyncCommittersCase(64, { earlyAck: true }),
      asyncCommittersCase(256, { earlyAck: true }),
      ...(await pluginCases()),
    ];
    const floors: RawFloor[] = [];
    const results = new Map<string, CaseFigures[]>();
    const loads: number[] = [];
    for (let round = 0; round < runs; round++) {
      loads.push(os.loadavg()[0]!);
      floors.push(await measureRawFloor(dir, 1));
      for (const c of cases) {
        const list = results.get(c.name) ?? [];
        list.push(await c.run(options));
        results.set(c.name, list);
      }
    }
    const rawP50 = median(floors.map((f) => f.append4k.p50Us));
    const rawP99 = median(floors.map((f) => f.append4k.p99Us));
    const rawOps = median(floors.map((f) => f.append4k.opsPerSec));
    const mbPerSec = median(floors.map((f) => f.bandwidth1m.mbPerSec));
    const pagesFloor = median(floors.map((f) => f.pagesPerSecFloor));
    console.log(
      `raw floor: 4 KiB append+fdatasync p50 ${ms(rawP50)} ms p99 ${ms(rawP99)} ms (${rawOps.toFixed(0)} ops/s); 1 MiB append+fdatasync ${mbPerSec.toFixed(1)} MB/s = ${pagesFloor.toFixed(0)} pages/s (per round: ${floors.map((f) => `${ms(f.append4k.p50Us)} ms/${f.bandwidth1m.mbPerSec.toFixed(0)} MB/s`).join(', ')})`,
    );
    console.log(
      `1-minute load average at the start of each round: ${loads.map((l) => l.toFixed(1)).join(', ')} (${os.cpus().length} CPUs; figures from a loaded machine are not comparable)`,
    );
    const figures = new Map<string, CaseFigures>();
    for (const c of cases) {
      const f = medianFigures(c.name, results.get(c.name)!);
      figures.set(c.name, f);
      console.log(row(f));
    }
    // Ratios are paired per round (case vs the floor of the same round), then
    // the median over rounds is taken: the floor drifts too much between rounds.
    for (const [one, many] of [
      [cases[0]!, cases[4]!],
      [cases[5]!, cases[6]!],
    ] as const) {
      const oneRuns = results.get(one.name)!;
      const manyRuns = results.get(many.name)!;
      const latencyRatios = floors.map((f, i) => oneRuns[i]!.p50Us / f.append4k.p50Us);
      const bandwidthRatios = floors.map((f, i) => manyRuns[i]!.commitsPerSec / f.pagesPerSecFloor);
      const latencyRatio = median(latencyRatios);
      const bandwidthRatio = median(bandwidthRatios);
      console.log(
        `target 1: ${one.name} p50 / raw append p50 = ${latencyRatio.toFixed(2)}x (target <= 1.5x): ${verdict(latencyRatio <= 1.5)} [per round: ${latencyRatios.map((r) => r.toFixed(2)).join(', ')}]`,
      );
      console.log(
        `target 2: ${many.name} pages/s / bandwidth floor = ${(bandwidthRatio * 100).toFixed(1)}% (target >= 50%): ${verdict(bandwidthRatio >= 0.5)} [per round: ${bandwidthRatios.map((r) => `${(r * 100).toFixed(1)}%`).join(', ')}]`,
      );
    }
    // earlyAck vs the default sink, paired per round.
    for (const [base, early] of [
      [cases[0]!, cases[7]!],
      [cases[3]!, cases[8]!],
      [cases[4]!, cases[9]!],
    ] as const) {
      const b = results.get(base.name)!;
      const e = results.get(early.name)!;
      const p50Ratio = median(floors.map((f, i) => e[i]!.p50Us / f.append4k.p50Us));
      const speedup = median(b.map((r, i) => e[i]!.commitsPerSec / r.commitsPerSec));
      console.log(
        `earlyAck: ${early.name} p50 / raw append p50 = ${p50Ratio.toFixed(2)}x; commits/s vs ${base.name} = ${speedup.toFixed(2)}x`,
      );
    }
    const w1 = figures.get('1 worker (fsync off)');
    const w2 = figures.get('2 workers (fsync off)');
    if (w1 !== undefined && w2 !== undefined) {
      const scale = w2.commitsPerSec / w1.commitsPerSec;
      console.log(
        `target 3: 2 workers / 1 worker commits/s (fsync off) = ${scale.toFixed(2)}x (target >= 1.6x): ${verdict(scale >= 1.6)}`,
      );
    } else {
      console.log('target 3: worker cases not registered (extraCases is empty)');
    }
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

await main();
