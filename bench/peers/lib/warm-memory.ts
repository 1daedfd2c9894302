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
 * So by default, before each cell, a child process touches `gib` GiB and
 * exits: the freed pages are at the head of the free lists, and the cell's
 * new pages come from them (a cell writes at most a few hundred MiB).
 */
import { spawnSync } from 'node:child_process';

/** Default GiB touched before each cell. */
export const WARM_MEMORY_GIB_DEFAULT = 4;

/** Touches `gib` GiB in a child process that then exits; milliseconds taken. 0: nothing. */
export function warmMemory(gib: number): number {
  if (gib <= 0) return 0;
  const started = performance.now();
  const chunks = Math.max(1, Math.round(gib * 4));
  const script = `for (let i = 0; i < ${chunks}; i++) Buffer.allocUnsafe(256 * 1024 * 1024).fill(i + 1);`;
  const run = spawnSync(process.execPath, ['-e', script], { stdio: 'inherit' });
  if (run.status !== 0)
    throw new Error(`warming ${gib} GiB of memory failed (status ${run.status})`);
  return performance.now() - started;
}
