/**
 * Every example under examples/ runs as written against the built package
 * (`import 'parallel-wal'` resolves to dist/ through the package's own
 * exports map, as it would in a project that installed it), and the
 * TypeScript example type-checks against the published declarations.
 * Needs `npm run build` first (`npm test` does it).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const REPO = path.resolve(import.meta.dirname, '../..');
const EXAMPLES = path.join(REPO, 'examples');
const bin = (name: string): string => path.join(REPO, 'node_modules', '.bin', name);

function run(command: string, args: string[]): { code: number | null; out: string } {
  const result = spawnSync(command, args, { cwd: REPO, encoding: 'utf8', timeout: 60_000 });
  return { code: result.status, out: `${result.stdout}${result.stderr}` };
}

describe('examples', () => {
  it('has a built package to run against', () => {
    for (const file of ['dist/esm/index.js', 'dist/cjs/index.cjs']) {
      expect(fs.existsSync(path.join(REPO, file)), `${file} missing: run npm run build`).toBe(true);
    }
  });

  it('quick-start.mjs commits and reads back both pages through the ESM entry', () => {
    const { code, out } = run(process.execPath, [path.join(EXAMPLES, 'quick-start.mjs')]);
    expect(out).toContain('read back 2 pages from 2 segments: page 1 byte 7, page 2 byte 8');
    expect(code).toBe(0);
  });

  it('quick-start.cjs commits, reports a typed error and reads back through require', () => {
    const { code, out } = run(process.execPath, [path.join(EXAMPLES, 'quick-start.cjs')]);
    expect(out).toContain('rejected: ERR_INVALID_ARGUMENT');
    expect(out).toContain('read back 1 page: page 1 byte 9');
    expect(code).toBe(0);
  });

  it('page-store.mjs reads its pages back before and after reopening', () => {
    const { code, out } = run(process.execPath, [path.join(EXAMPLES, 'page-store.mjs')]);
    expect(out).toContain('read page 2: 4096 bytes of 2');
    expect(out).toContain('after reopen: page 1 byte 1, page 2 byte 2');
    expect(code).toBe(0);
  });

  it('worker-threads.mjs commits from two workers and reads their pages back', () => {
    const { code, out } = run(process.execPath, [path.join(EXAMPLES, 'worker-threads.mjs')]);
    expect(out).toContain('worker committed page 1');
    expect(out).toContain('worker committed page 2');
    expect(out).toContain('read back 2 pages written by workers');
    expect(code).toBe(0);
  });

  it('threaded-wal.mjs commits from its own thread and two workers through ThreadedWal and reads all back', () => {
    const { code, out } = run(process.execPath, [path.join(EXAMPLES, 'threaded-wal.mjs')]);
    expect(out).toContain('this thread committed page 3');
    expect(out).toContain('worker committed page 1');
    expect(out).toContain('worker committed page 2');
    expect(out).toContain('read back 3 pages (page 3 byte 3)');
    expect(code).toBe(0);
  });

  it('quick-start.ts type-checks against the declarations and runs', () => {
    const check = run(bin('tsc'), ['-p', path.join(EXAMPLES, 'tsconfig.json')]);
    expect(check.out).toBe('');
    expect(check.code).toBe(0);
    const { code, out } = run(bin('tsx'), [path.join(EXAMPLES, 'quick-start.ts')]);
    expect(out).toContain('read page 3: byte 3');
    expect(out).toContain('page 0: ERR_INVALID_ARGUMENT');
    expect(code).toBe(0);
  });
});
