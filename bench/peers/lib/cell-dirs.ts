/**
 * What the runner does with a cell's directory once the cell is done.
 *
 * Deleting it would hurt the next cells: this machine's ext4 runs without a
 * journal, and such an ext4 will not reuse an inode freed less than a minute
 * ago (six minutes while its inode-table block is still dirty). Every later
 * creation of a file in that block group skips each of them, one
 * buffer-cache lookup apiece: 10 µs of CPU per new file became
 * 246–313 µs in the first 45 s after 20,000 deletions
 * (`bench/recent-deletes.ts`). A growing log's cell leaves thousands of
 * files, so deleting them would charge every file-creating cell after it
 * (parallel-wal's, the new-file group-commit floor's) for the clean-up of the
 * cells before it. So by default the runner only empties the cell's files
 * (truncated to 0 bytes: their blocks are freed, their inodes stay), and
 * leaves the run directory in place at the end, saying where it is: its
 * deletion would weigh on whatever runs in the next minutes (a second run
 * started right after one that deleted its directory paid 86–826 µs per new
 * file in parallel-wal's cells, median 471, against 18–454, median 24, in
 * the run before it). `--remove-run-dir` deletes it at the end, as runs did
 * until 2026-12-07 23:36 UTC. `--delete-cells` deletes each cell's directory right
 * after the cell instead, as runs did before 2026-12-07.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Truncates every regular file under `dir` to 0 bytes, leaving files and directories in place. */
export function emptyCellDir(dir: string): void {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const at = path.join(dir, entry.name);
    if (entry.isDirectory()) emptyCellDir(at);
    else if (entry.isFile()) fs.truncateSync(at, 0);
  }
}

/** Empties (default) or deletes (`deleteCells`) a finished cell's directory. */
export function retireCellDir(dir: string, deleteCells: boolean): void {
  if (deleteCells) fs.rmSync(dir, { recursive: true, force: true });
  else emptyCellDir(dir);
}
