/**
 * What the opening thread's own commits cost with the log on a thread of its
 * own: N async committers on this thread, one 4 KiB page of random bytes per
 * commit, fsync `full`, through `ParallelWal` (the log's owner is this
 * thread) and through `ThreadedWal` (the owner is a thread of its own; this
 * thread commits through a worker lane). The two alternate run by run;
 * medians.
 *
 *   npx tsx bench/log-thread.ts [--committers 1,16,64,256] [--seconds 2] [--runs 3] [--dir DIR]
 *
 * Worker writers with the opening thread busy: `bench/workers.ts --owner-busy`.
 */
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { ThreadedWal } from '../src/engine/log-thread.js';
import { ParallelWal } from '../src/engine/wal.js';
import { benchDir, median } from './raw-floor.js';

const PAGE_BYTES = 4096;
const WARMUP_MS = 300;
/** Incompressible page images, read at rotating offsets. */
const POOL = randomBytes(16 << 20);

type Kind = 'ParallelWal' | 'ThreadedWal';

interface Committer {
  commit(batch: {
    txnToken: { id: bigint; epoch: number };
    frames: { pageNumber: number; pageData: Uint8Array; dbSizeIfCommit: number }[];
  }): Promise<unknown>;
  close(): Promise<void>;
}

/** Commits/s of `committers` closed-loop committers on this thread for `seconds`. */
async function run(kind: Kind, committers: number, seconds: number, dir: string): Promise<number> {
  const dbDir = await fsp.mkdtemp(path.join(dir, 'log-thread-'));
  const dbPath = path.join(dbDir, 'bench.db');
  const wal: Committer =
    kind === 'ThreadedWal'
      ? await ThreadedWal.open(dbPath, { fsync: 'full' })
      : await ParallelWal.open(dbPath, { fsync: 'full' });
  let id = 0;
  let done = 0;
  let stop = false;
  const loop = async (): Promise<void> => {
    while (!stop) {
      const i = ++id;
      const at = (i * PAGE_BYTES) % (POOL.length - PAGE_BYTES);
      await wal.commit({
        txnToken: { id: BigInt(i), epoch: 0 },
        frames: [
          {
            pageNumber: 1 + (i % 100_000),
            pageData: POOL.subarray(at, at + PAGE_BYTES),
            dbSizeIfCommit: 0,
          },
        ],
      });
      done++;
    }
  };
  const loops = Array.from({ length: committers }, loop);
  await new Promise((r) => setTimeout(r, WARMUP_MS));
  const before = done;
  const started = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const perSec = (done - before) / ((performance.now() - started) / 1000);
  stop = true;
  await Promise.all(loops);
  await wal.close();
  await fsp.rm(dbDir, { recursive: true, force: true });
  return perSec;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const value = (flag: string): string | undefined => {
    const i = args.indexOf(flag);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const committerCounts = (value('--committers') ?? '1,16,64,256').split(',').map(Number);
  const seconds = Number(value('--seconds') ?? 2);
  const runs = Number(value('--runs') ?? 3);
  const dir = await benchDir(value('--dir'));
  console.log(
    `async committers on the opening thread, 1 × 4 KiB per commit, fsync full, ${seconds} s per case, medians of ${runs} alternating runs`,
  );
  try {
    for (const committers of committerCounts) {
      const owner: number[] = [];
      const threaded: number[] = [];
      for (let r = 0; r < runs; r++) {
        owner.push(await run('ParallelWal', committers, seconds, dir));
        threaded.push(await run('ThreadedWal', committers, seconds, dir));
      }
      const a = median(owner);
      const b = median(threaded);
      const list = (xs: number[]): string => xs.map((x) => x.toFixed(0)).join('/');
      console.log(
        `${String(committers).padStart(4)} committers: ParallelWal ${a.toFixed(0).padStart(7)}  ThreadedWal ${b.toFixed(0).padStart(7)} commits/s  ratio ${(b / a).toFixed(2)}  runs ${list(owner)} vs ${list(threaded)}`,
      );
    }
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

await main();
