/**
 * Pipelined flushing against the flush it replaced, side by side in one run.
 *
 * N async committers in a closed loop (commit, await the acknowledgement,
 * commit again), each commit `pages` fresh incompressible 4 KiB pages, for
 * `--seconds`, with `pipelineFlush: true` (the default: the next epoch's
 * write starts before the written epoch is acknowledged, and big waves are
 * split) and `false` (the next epoch is sealed one event-loop turn after the
 * acknowledgement). The two variants alternate within each repetition, and
 * their order alternates between repetitions; medians are printed with the
 * ratio.
 *
 *   npx tsx bench/waves.ts [--seconds 2] [--runs 3] [--committers 16,64,128,256] [--pages 1,16] [--dir DIR]
 */
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { ParallelWal } from '../src/engine/wal.js';
// The peer harness's pages: incompressible, different for every (commit, index).
import { pageImage as page } from './peers/lib/common.js';
import { benchDir, median, percentile } from './raw-floor.js';

const WARMUP_MS = 300;

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '2' },
    runs: { type: 'string', default: '3' },
    committers: { type: 'string', default: '16,64,128,256' },
    pages: { type: 'string', default: '1,16' },
    dir: { type: 'string' },
  },
});

interface Figures {
  commitsPerSec: number;
  commitsPerEpoch: number;
  p50Ms: number;
  /** Wall time per epoch, µs. */
  epochMicros: number;
  /** Time in the write and fdatasync system calls per epoch, µs (thread jobs only). */
  syscallMicros: number;
}

async function runOnce(
  dir: string,
  committers: number,
  pages: number,
  pipelineFlush: boolean,
  seconds: number,
): Promise<Figures> {
  const dbDir = await fsp.mkdtemp(path.join(dir, 'waves-'));
  const wal = await ParallelWal.open(path.join(dbDir, 'waves.db'), {
    fsync: 'full',
    pipelineFlush,
  });
  let nextId = 0;
  let stop = false;
  let measuring = false;
  let measured = 0;
  const latencies: number[] = [];
  const loop = async (): Promise<void> => {
    while (!stop) {
      const id = ++nextId;
      const frames = Array.from({ length: pages }, (_, i) => ({
        pageNumber: 1 + ((id * pages + i) % 1_000_000),
        pageData: page(id, i),
        dbSizeIfCommit: 0,
      }));
      const started = performance.now();
      await wal.commit({ txnToken: { id: BigInt(id), epoch: 0 }, frames });
      if (measuring) {
        measured++;
        latencies.push(performance.now() - started);
      }
    }
  };
  const loops = Array.from({ length: committers }, loop);
  await new Promise((resolve) => setTimeout(resolve, WARMUP_MS));
  const before = wal.stats();
  measuring = true;
  const t0 = performance.now();
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  measuring = false;
  const elapsedS = (performance.now() - t0) / 1000;
  const after = wal.stats();
  stop = true;
  await Promise.all(loops);
  await wal.close();
  await fsp.rm(dbDir, { recursive: true, force: true });
  const epochs = after.epochsSealed - before.epochsSealed;
  const d0 = before.durableWrites;
  const d1 = after.durableWrites;
  const writes = d1.writes - d0.writes;
  const syscall = d1.writeMicros - d0.writeMicros + (d1.syncMicros - d0.syncMicros);
  latencies.sort((a, b) => a - b);
  return {
    commitsPerSec: measured / elapsedS,
    commitsPerEpoch: epochs === 0 ? 0 : measured / epochs,
    p50Ms: percentile(latencies, 50),
    epochMicros: epochs === 0 ? 0 : (elapsedS * 1e6) / epochs,
    syscallMicros: writes === 0 ? 0 : syscall / writes,
  };
}

async function main(): Promise<void> {
  const seconds = Number(values.seconds);
  const runs = Number(values.runs);
  const committerCounts = values.committers.split(',').map(Number);
  const pageCounts = values.pages.split(',').map(Number);
  const dir = await benchDir(values.dir);
  console.log(
    `pipelined flush (on) against sealing one turn after the acknowledgement (off); ${runs} runs of ${seconds} s each, medians`,
  );
  console.log(
    '| committers | pages | on: commits/s | off: commits/s | on / off | commits per epoch (on / off) | p50 ms (on / off) | µs per epoch (on / off) | of which write + fdatasync calls (on / off) |',
  );
  console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  try {
    for (const pages of pageCounts) {
      for (const committers of committerCounts) {
        const on: Figures[] = [];
        const off: Figures[] = [];
        for (let run = 0; run < runs; run++) {
          for (const pipelined of run % 2 === 0 ? [true, false] : [false, true]) {
            const figures = await runOnce(dir, committers, pages, pipelined, seconds);
            (pipelined ? on : off).push(figures);
          }
        }
        const m = (list: Figures[], key: keyof Figures): number => median(list.map((f) => f[key]));
        const onRate = m(on, 'commitsPerSec');
        const offRate = m(off, 'commitsPerSec');
        const both = (key: keyof Figures, digits: number): string =>
          `${m(on, key).toFixed(digits)} / ${m(off, key).toFixed(digits)}`;
        console.log(
          `| ${committers} | ${pages} | ${onRate.toFixed(0)} | ${offRate.toFixed(0)} | ${(onRate / offRate).toFixed(2)}× | ${both('commitsPerEpoch', 1)} | ${both('p50Ms', 2)} | ${both('epochMicros', 0)} | ${both('syscallMicros', 0)} |`,
        );
      }
    }
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

await main();
