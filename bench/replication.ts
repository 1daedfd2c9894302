/**
 * Replicated-commit throughput and latency against local-only commits, in
 * one run, on the same disk, against a real 3-node JetStream cluster on
 * loopback (R3 stream), started and stopped here.
 *
 * Modes, each a fresh database, one 4 KiB page per commit, fsync `full`:
 * - `local-only`: a plain ParallelWal (no replication at all);
 * - `local+ship`: ReplicatedWal, default durability `local` (asynchronous
 *   shipping runs alongside);
 * - `replicated`: ReplicatedWal, `durability: 'replicated'` (a commit resolves
 *   once the cluster acknowledged its epoch).
 * For 1, 16 and 64 concurrent committers, each cell runs CELL_MS; cells are
 * interleaved across REPS repetitions and the median of each figure printed.
 *
 * Run: `npx tsx bench/replication.ts` (needs `nats-server` on PATH).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ParallelWal, type ParallelWalBatch } from '../src/engine/wal.js';
import { ReplicatedWal } from '../src/replication/replicated-wal.js';
import { type NatsCluster, startBenchCluster } from '../test/support/nats-cluster.js';

const CELL_MS = Number(process.env.CELL_MS ?? 2_000);
const REPS = Number(process.env.REPS ?? 3);
const CONCURRENCY = (process.env.CONCURRENCY ?? '1,16,64').split(',').map(Number);
const PAGE_BYTES = 4096;
type Mode = 'local-only' | 'local+ship' | 'replicated';
const MODES: Mode[] = ['local-only', 'local+ship', 'replicated'];

interface Cell {
  commitsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  epochsPerSec: number;
}

let txn = 1n;
function batch(): ParallelWalBatch {
  const id = txn++;
  return {
    txnToken: { id, epoch: 0 },
    frames: [
      {
        pageNumber: Number(id % 1000n) + 1,
        pageData: new Uint8Array(PAGE_BYTES).fill(Number(id & 0xffn)),
        dbSizeIfCommit: 0,
      },
    ],
  };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function runCell(
  cluster: NatsCluster,
  mode: Mode,
  concurrency: number,
  cell: number,
): Promise<Cell> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-bench-repl-'));
  const dbPath = path.join(dir, 'db');
  const stream = `BENCH_${cell}`;
  let commit: (b: ParallelWalBatch) => Promise<unknown>;
  let close: () => Promise<void>;
  let epochs: () => number;
  if (mode === 'local-only') {
    const wal = await ParallelWal.open(dbPath, { fsync: 'full' });
    commit = (b) => wal.commit(b);
    close = () => wal.close();
    epochs = () => wal.stats().segmentsWritten;
  } else {
    const log = await ReplicatedWal.open(dbPath, {
      fsync: 'full',
      replication: { servers: cluster.urls, stream, subject: `${stream}.e`, replicas: 3 },
    });
    // Warm up: stream created and connection up before measuring.
    await log.commit(batch(), { durability: 'replicated' });
    const durability = mode === 'replicated' ? 'replicated' : 'local';
    commit = (b) => log.commit(b, { durability });
    close = () => log.close();
    epochs = () => log.stats().wal.segmentsWritten;
  }
  const latencies: number[] = [];
  const startEpochs = epochs();
  const started = performance.now();
  const deadline = started + CELL_MS;
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      await commit(batch());
      latencies.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsedSec = (performance.now() - started) / 1000;
  const written = epochs() - startEpochs;
  await close();
  fs.rmSync(dir, { recursive: true, force: true });
  latencies.sort((a, b) => a - b);
  return {
    commitsPerSec: latencies.length / elapsedSec,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    epochsPerSec: written / elapsedSec,
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function main(): Promise<void> {
  const cluster = await startBenchCluster();
  if (cluster === null) return;
  try {
    const results = new Map<string, Cell[]>();
    let cell = 0;
    for (let rep = 0; rep < REPS; rep++) {
      for (const concurrency of CONCURRENCY) {
        for (const mode of MODES) {
          const key = `${mode}@${concurrency}`;
          const r = await runCell(cluster, mode, concurrency, cell++);
          results.set(key, [...(results.get(key) ?? []), r]);
        }
      }
    }
    console.log(
      `replication benchmark: ${REPS} reps x ${CELL_MS} ms per cell, 4 KiB page per commit, fsync full, R3 JetStream on loopback, ${os.cpus().length} cores`,
    );
    console.log(
      'mode         conc   commits/s   epochs/s   p50 ms   p99 ms   vs local-only (commits/s)',
    );
    for (const concurrency of CONCURRENCY) {
      const base = median(results.get(`local-only@${concurrency}`)!.map((c) => c.commitsPerSec));
      for (const mode of MODES) {
        const cells = results.get(`${mode}@${concurrency}`)!;
        const cps = median(cells.map((c) => c.commitsPerSec));
        const line = [
          mode.padEnd(12),
          String(concurrency).padStart(4),
          cps.toFixed(0).padStart(11),
          median(cells.map((c) => c.epochsPerSec))
            .toFixed(0)
            .padStart(10),
          median(cells.map((c) => c.p50Ms))
            .toFixed(2)
            .padStart(8),
          median(cells.map((c) => c.p99Ms))
            .toFixed(2)
            .padStart(8),
          `${(cps / base).toFixed(2)}x`.padStart(10),
        ];
        console.log(line.join(' '));
      }
    }
  } finally {
    await cluster.stop();
  }
}

await main();
