/**
 * The source tree's shape (`scripts/check-shape.mjs`, run by `npm run lint`):
 * `src/` keeps every file and every function within the limits, and a tree
 * with a file and a function over them fails, naming both.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));
const script = `${root}scripts/check-shape.mjs`;
const made: string[] = [];

afterEach(() => {
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function checkShape(dir: string): { status: number | null; stderr: string } {
  const result = spawnSync(process.execPath, [script, dir], { cwd: root, encoding: 'utf8' });
  if (result.error !== undefined) throw result.error;
  return { status: result.status, stderr: result.stderr };
}

/** A function of `bodyLines` statements, `lines` long in all. */
function functionOf(name: string, bodyLines: number): string {
  const body = Array.from({ length: bodyLines }, (_, i) => `  total += ${i};`).join('\n');
  return `export function ${name}(): number {\n  let total = 0;\n${body}\n  return total;\n}\n`;
}

describe('source shape', () => {
  it('src/ has no file over 620 lines and no function over 70', () => {
    const { status, stderr } = checkShape(`${root}src`);
    expect(stderr).toBe('');
    expect(status).toBe(0);
  });

  it('names a function over 70 lines and a file over 620, and fails', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-shape-'));
    made.push(dir);
    // 67 statements + signature, `let`, `return` and the brace: 71 lines.
    fs.writeFileSync(path.join(dir, 'long-function.ts'), functionOf('tooLong', 67));
    // 68 lines: at the limit, not over it.
    fs.writeFileSync(path.join(dir, 'at-limit.ts'), functionOf('atLimit', 64));
    const many = Array.from({ length: 13 }, (_, i) => functionOf(`part${i}`, 45)).join('');
    fs.writeFileSync(path.join(dir, 'long-file.ts'), many);
    const { status, stderr } = checkShape(dir);
    expect(stderr).toContain('long-function.ts:1: tooLong has 71 lines (at most 70)');
    expect(stderr).toMatch(/long-file\.ts:1: file has \d+ lines \(at most 620\)/);
    expect(stderr).not.toContain('atLimit');
    expect(stderr).not.toContain('part0 has');
    expect(status).toBe(1);
  });
});
