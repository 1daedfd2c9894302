/**
 * What a new page-cache page costs a virtual machine that hands its free
 * memory back to the host (free page reporting): writing into a new file
 * needs new pages, and once the guest has reported its free memory, the
 * first touch of each such page faults in the host.
 *
 * The script measures the `writev` of `--pages` 4 KiB pages (random bytes)
 * into new empty files and into pre-written files (their pages cached), one
 * file per write, `--files` of each (200 MiB of new pages by default; the
 * new files are cut only once all of them are written, since a freed page
 * would be handed out again while the host still backs it), median
 * microseconds per page:
 * 1. now;
 * 2. right after a child process touched `--touch-gib` GiB of memory and
 *    exited (the guest has just used those pages; the host backs them);
 * 3. `--wait` seconds later (the guest has had time to report them again).
 *
 * It prints, beside each, how much memory the guest reported to the host
 * since the row before, where the kernel counts it (`page-reporting.ts`).
 * Files are truncated, not deleted, and the directory is left in place (on
 * an ext4 without a journal, deletions make file creation dearer for
 * minutes: `bench/recent-deletes.ts`).
 *
 * Run: `npx tsx bench/guest-pages.ts [--pages 128] [--files 400] [--touch-gib 8] [--wait 30] [--dir DIR]`
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { type PageReporting, pageReporting, reportedBetween } from './page-reporting.js';
import { benchDir, median } from './raw-floor.js';

const PAGE_BYTES = 4096;

const { values } = parseArgs({
  options: {
    pages: { type: 'string', default: '128' },
    files: { type: 'string', default: '400' },
    'touch-gib': { type: 'string', default: '8' },
    wait: { type: 'string', default: '30' },
    dir: { type: 'string' },
  },
});
const pages = Number(values.pages);
const files = Number(values.files);
const touchGib = Number(values['touch-gib']);
const waitSeconds = Number(values.wait);
for (const [name, v] of Object.entries({ pages, files })) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer`);
}
if (!(touchGib > 0) || !(waitSeconds >= 0)) {
  throw new Error('--touch-gib must be above 0 and --wait at least 0');
}

/** Median µs per page of one writev into each of `files` files, new or pre-written. */
function writevPerPage(dir: string, tag: string, prewritten: boolean): number {
  const into = fs.mkdtempSync(path.join(dir, `${tag}-`));
  const source = randomBytes(pages * PAGE_BYTES);
  const chunks = Array.from({ length: pages }, (_, i) =>
    source.subarray(i * PAGE_BYTES, (i + 1) * PAGE_BYTES),
  );
  const fds: number[] = [];
  for (let i = 0; i < files; i++) {
    const fd = fs.openSync(path.join(into, `f${i}`), 'wx+');
    if (prewritten) {
      fs.writeSync(fd, randomBytes(source.length), 0, source.length, 0);
      fs.fdatasyncSync(fd);
    }
    fds.push(fd);
  }
  const perPage: number[] = [];
  for (const fd of fds) {
    const started = performance.now();
    fs.writevSync(fd, chunks, 0);
    perPage.push(((performance.now() - started) * 1000) / pages);
    fs.fdatasyncSync(fd);
  }
  // Only now: a page freed by a cut during the row would be handed out again, warm.
  for (const fd of fds) {
    fs.ftruncateSync(fd, 0);
    fs.closeSync(fd);
  }
  return median(perPage);
}

/** Touches about `gib` GiB (whole 256 MiB chunks) in a child process, which then exits; GiB touched. */
function touchMemory(gib: number): number {
  // Kept referenced until the end, so that every chunk is a distinct set of pages.
  const chunks = Math.max(1, Math.round(gib * 4));
  const script = `const kept = []; for (let i = 0; i < ${chunks}; i++) kept.push(Buffer.allocUnsafe(256 * 1024 * 1024).fill(i + 1));`;
  const run = spawnSync(process.execPath, ['-e', script], { stdio: 'inherit' });
  if (run.status !== 0) throw new Error(`the memory-touching child failed (status ${run.status})`);
  return chunks / 4;
}

async function main(): Promise<void> {
  const dir = await benchDir(values.dir);
  // The column covers the time between the previous row and this one (the
  // touch, the wait), read before the row's own writes.
  const row = (label: string, since: PageReporting | null): void => {
    const between = since === null ? 'n/a' : reportedBetween(since, pageReporting());
    const fresh = writevPerPage(dir, 'new', false);
    const cached = writevPerPage(dir, 'prewritten', true);
    process.stdout.write(
      `| ${label} | ${fresh.toFixed(2)} | ${cached.toFixed(2)} | ${between} |\n`,
    );
  };
  process.stdout.write(
    `writev of ${pages} × 4 KiB pages, one per file, ${files} files of each kind; median µs per page\n\n` +
      '| when | new empty file | pre-written file | free memory handed back to the host since the row before |\n|---|--:|--:|--:|\n',
  );
  row('now', null);
  let mark = pageReporting();
  const touched = touchMemory(touchGib);
  row(`right after touching ${touched} GiB`, mark);
  mark = pageReporting();
  await new Promise((resolve) => setTimeout(resolve, waitSeconds * 1000));
  row(`${waitSeconds} s later`, mark);
  process.stdout.write(
    `\nleft the emptied directory ${dir} (deleting its files now would make new files dearer for the next minutes)\n`,
  );
}

await main();
