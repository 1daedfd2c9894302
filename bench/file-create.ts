/**
 * What a new file costs a log that grows by one file per epoch: raw file
 * operations, no engine.
 *
 * In a fresh directory `A` (and a sibling `B` made right after it), measures
 * the CPU time per operation of 100 in a row:
 *
 * 1. creating an empty file in `A` (open `O_CREAT|O_EXCL`, close) while `A`
 *    is empty;
 * 2. the same once `A` holds `--files` files (default 3,000: about what one
 *    benchmark cell's growing log leaves behind);
 * 3. the same in the empty sibling `B` meanwhile (is it `A`'s entries, or
 *    where the new inodes go?);
 * 4. renaming a file from `B` into `A` (a publication), and opening an
 *    existing file of `A` (what a reused file costs instead);
 * 5. creating in `A` again once its files are deleted.
 *
 * Repeated `--rounds` times (fresh directories each time); every figure is
 * printed, then the medians.
 *
 * Run: `npx tsx bench/file-create.ts [--files 3000] [--rounds 3] [--dir DIR]`
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { benchDir, median } from './raw-floor.js';

/** Operations per measurement. */
const OPS = 100;

/** CPU µs per call of `op(i)` over {@link OPS} calls. */
function cpuMicros(op: (i: number) => void): number {
  const before = process.cpuUsage();
  for (let i = 0; i < OPS; i++) op(i);
  const used = process.cpuUsage(before);
  return (used.user + used.system) / OPS;
}

/** Creates {@link OPS} empty files `<dir>/<tag><i>`; CPU µs per file. */
function create(dir: string, tag: string): number {
  return cpuMicros((i) => fs.closeSync(fs.openSync(path.join(dir, `${tag}${i}`), 'wx')));
}

/** Removes `<dir>/<tag><i>` for every `i` below `count`. */
function remove(dir: string, tag: string, count = OPS): void {
  for (let i = 0; i < count; i++) fs.unlinkSync(path.join(dir, `${tag}${i}`));
}

const STEPS = [
  'create, A empty',
  'create, A holding the files',
  'create, sibling B empty meanwhile',
  'rename B -> A',
  'open an existing file of A',
  'create, A after deleting them',
] as const;

function round(root: string, files: number): number[] {
  const a = fs.mkdtempSync(path.join(root, 'a-'));
  const b = fs.mkdtempSync(path.join(root, 'b-'));
  try {
    const emptyA = create(a, 'x');
    remove(a, 'x');
    for (let i = 0; i < files; i++) fs.closeSync(fs.openSync(path.join(a, `f${i}`), 'wx'));
    const fullA = create(a, 'y');
    remove(a, 'y');
    const sibling = create(b, 'z');
    const rename = cpuMicros((i) => fs.renameSync(path.join(b, `z${i}`), path.join(a, `seg-${i}`)));
    remove(a, 'seg-');
    const open = cpuMicros((i) => fs.closeSync(fs.openSync(path.join(a, `f${i}`), 'r+')));
    remove(a, 'f', files);
    const afterA = create(a, 'w');
    return [emptyA, fullA, sibling, rename, open, afterA];
  } finally {
    fs.rmSync(a, { recursive: true, force: true });
    fs.rmSync(b, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const value = (flag: string): string | undefined => {
    const i = process.argv.indexOf(flag);
    return i >= 0 ? process.argv[i + 1] : undefined;
  };
  const files = Number(value('--files') ?? 3000);
  const rounds = Number(value('--rounds') ?? 3);
  // At least OPS: the reopen step opens OPS of them.
  if (!Number.isInteger(files) || files < OPS || files > 100_000) {
    throw new Error(`--files must be an integer in ${OPS}..=100000, got ${files}`);
  }
  if (!Number.isInteger(rounds) || rounds < 1) {
    throw new Error(`--rounds must be a positive integer, got ${rounds}`);
  }
  const root = await benchDir(value('--dir'));
  try {
    const figures: number[][] = [];
    for (let r = 0; r < rounds; r++) figures.push(round(root, files));
    process.stdout.write(
      `CPU µs per operation (${OPS} in a row), ${files} files in A for the second step; ${rounds} rounds in ${root}\n\n`,
    );
    process.stdout.write('| step | each round | median |\n|---|---|--:|\n');
    STEPS.forEach((step, s) => {
      const values = figures.map((f) => f[s]!);
      const each = values.map((v) => v.toFixed(0)).join(', ');
      process.stdout.write(`| ${step} | ${each} | ${median(values).toFixed(0)} |\n`);
    });
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

await main();
