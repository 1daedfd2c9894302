/**
 * Why creating a file costs this machine's ext4 anywhere from 10 to 300 µs
 * of CPU: files deleted in the last one to six minutes.
 *
 * ext4 mounted without a journal (this machine's root file system: its
 * `/sys/fs/ext4/<dev>/journal_task` is `<none>`) will not hand out an inode
 * freed less than a minute ago (six minutes while the inode's table block is
 * still dirty). To find a free inode it walks the block group's bitmap and
 * skips every one of those, looking each up in the buffer cache. A directory
 * whose block group saw thousands of deletions in the last minute pays for
 * every one of them on every creation. A journalled ext4 does not make that
 * check.
 *
 * The script:
 * 1. creates `--files` empty files in a fresh directory and reports the CPU
 *    time per file (the baseline: nothing deleted there lately, unless other
 *    work on the machine did);
 * 2. creates `--deletes` files in another directory and deletes them all
 *    (what a benchmark cell's clean-up, or a log's checkpoints, do);
 * 3. at each of `--probes` seconds after the deletions, creates `--files`
 *    files in a new fresh directory and reports the CPU time per file.
 *
 * No directory is deleted until the end (a deletion would itself be a
 * recent delete). Every probe directory is a sibling, so it normally lands
 * in the same block group.
 *
 * Run: `npx tsx bench/recent-deletes.ts [--deletes 20000] [--files 500]
 * [--probes 3,20,45,100] [--dir DIR]`
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { benchDir } from './raw-floor.js';

/** Creates `count` empty files in a fresh directory under `root`; CPU µs per file. */
function createIn(root: string, tag: string, count: number): number {
  const dir = fs.mkdtempSync(path.join(root, `${tag}-`));
  const before = process.cpuUsage();
  for (let i = 0; i < count; i++) fs.closeSync(fs.openSync(path.join(dir, `f${i}`), 'wx'));
  const used = process.cpuUsage(before);
  return (used.user + used.system) / count;
}

/** `<none>` (no journal), a journal thread's name, or why it is unknown. */
function journalOf(dir: string): string {
  const mount = fs
    .readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' '))
    .filter((f) => f.length > 2 && f[2] === 'ext4' && dir.startsWith(f[1]!))
    .sort((x, y) => y[1]!.length - x[1]!.length)[0];
  if (mount === undefined) return 'not ext4';
  const device = path.basename(mount[0]!);
  try {
    return fs.readFileSync(`/sys/fs/ext4/${device}/journal_task`, 'utf8').trim();
  } catch {
    return `unknown (no /sys/fs/ext4/${device}/journal_task)`;
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      deletes: { type: 'string', default: '20000' },
      files: { type: 'string', default: '500' },
      probes: { type: 'string', default: '3,20,45,100' },
      dir: { type: 'string' },
    },
  });
  const deletes = Number(values.deletes);
  const files = Number(values.files);
  const probes = values.probes.split(',').map(Number);
  if (!Number.isInteger(deletes) || deletes < 0 || deletes > 1_000_000) {
    throw new Error(`--deletes must be an integer in 0..=1000000, got ${deletes}`);
  }
  if (!Number.isInteger(files) || files < 1 || files > 100_000) {
    throw new Error(`--files must be an integer in 1..=100000, got ${files}`);
  }
  if (
    probes.some((s) => !Number.isFinite(s) || s < 0) ||
    probes.some((s, i) => s < (probes[i - 1] ?? 0))
  ) {
    throw new Error(`--probes must be ascending seconds, got ${values.probes}`);
  }
  const root = await benchDir(values.dir);
  try {
    process.stdout.write(`${root}: ext4 journal ${journalOf(root)}\n`);
    process.stdout.write(`baseline: ${createIn(root, 'base', files).toFixed(1)} µs CPU per file\n`);
    const churn = fs.mkdtempSync(path.join(root, 'churn-'));
    for (let i = 0; i < deletes; i++) fs.closeSync(fs.openSync(path.join(churn, `f${i}`), 'wx'));
    for (let i = 0; i < deletes; i++) fs.unlinkSync(path.join(churn, `f${i}`));
    const deletedAt = performance.now();
    process.stdout.write(`created and deleted ${deletes} files\n`);
    for (const seconds of probes) {
      const wait = deletedAt + seconds * 1000 - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      const us = createIn(root, `after-${seconds}s`, files);
      process.stdout.write(`${seconds} s after the deletions: ${us.toFixed(1)} µs CPU per file\n`);
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

await main();
