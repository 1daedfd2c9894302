/**
 * Memory made warm before each cell.
 *
 * This machine is a virtual machine whose kernel reports its free memory to
 * the host (free page reporting), which takes the pages back. A page the
 * guest then allocates again faults in the host on first touch: a new
 * page-cache page, as every write into new space needs, cost about 9 µs
 * instead of about 1 (`bench/guest-pages.ts`, 128-page writes into new
 * files: 9.5 µs per page, then 1.2 µs right after a process touched 16 GiB
 * and exited). How much warm free memory there is when a cell starts
 * depends on what ran before it (a cell that emptied its files freed warm
 * pages; a pause lets them be reported), so cells of the same system drew
 * from different regimes. On a long-running server, new page-cache pages
 * mostly come from reclaimed ones, which the host still backs.
 *
 * `--warm-memory GIB` makes a child process touch `gib` GiB and exit before
 * each cell: the freed pages are at the head of the free lists, and the
 * cell's new pages come from them. It is off by default, because it
 * disturbs the cells it is meant to even out: the guest reports the freed
 * gigabytes to the host a few seconds later, while the cell runs. In a
 * pair of runs (4 GiB, against none, the same systems, one run after the
 * other), lmdb, which creates no files, did 13%, 20% and 26% fewer
 * commits/s at 64 and 256 committers and with two workers when memory was
 * warmed; in a second pair, run the other way round, 17%, 10% and 18%
 * fewer (docs/benchmarks.md). (In both pairs the run without warming
 * followed a mass deletion, which made new files dearer in it, so the pairs
 * say nothing about parallel-wal's own cells.)
 */
import { spawnSync } from 'node:child_process';

/** Default GiB touched before each cell. */
export const WARM_MEMORY_GIB_DEFAULT = 0;

/** Touches `gib` GiB in a child process that then exits; milliseconds taken. 0: nothing. */
export function warmMemory(gib: number): number {
  if (gib <= 0) return 0;
  const started = performance.now();
  const chunks = Math.max(1, Math.round(gib * 4));
  // Kept referenced until the child exits, so that every chunk is a distinct set of pages.
  const script = `const kept = []; for (let i = 0; i < ${chunks}; i++) kept.push(Buffer.allocUnsafe(256 * 1024 * 1024).fill(i + 1));`;
  const run = spawnSync(process.execPath, ['-e', script], { stdio: 'inherit' });
  if (run.status !== 0)
    throw new Error(`warming ${gib} GiB of memory failed (status ${run.status})`);
  return performance.now() - started;
}
