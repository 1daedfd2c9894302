import * as nodeFs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { demoOptionsDefault, runDemo } from '../../src/cli/demo.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) nodeFs.rmSync(dir, { recursive: true, force: true });
});

describe('pwal demo', () => {
  it('commits from async committers and a worker thread, then verifies every ack after reopen', async () => {
    const dir = nodeFs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
    dirs.push(dir);
    const lines: string[] = [];
    const report = await runDemo(
      { ...demoOptionsDefault, dir, committers: 8, workers: 1, workerConcurrency: 4, seconds: 1 },
      { stdout: (t) => lines.push(t), stderr: (t) => lines.push(t) },
    );
    expect(report.problems).toEqual([]);
    expect(report.verified).toBe(true);
    expect(report.asyncAcknowledged).toBeGreaterThan(0);
    expect(report.workerAcknowledged).toBeGreaterThan(0);
    expect(lines.some((l) => l.includes('commits/s'))).toBe(true);
    expect(lines.some((l) => l.includes('present exactly once'))).toBe(true);
    // A directory the caller named is never deleted, and the demo says so.
    expect(lines.at(-1)).toMatch(
      new RegExp(
        `^deleted nothing: the demo database stays in ${dir} \\(\\d+ file\\(s\\), \\d+ bytes\\)\n$`,
      ),
    );
    expect(report.cleanup).toMatchObject({ dir, temporary: false, removed: false });
    expect(nodeFs.readdirSync(dir).length).toBe(report.cleanup.files);
  });

  it('rejects options out of range with a typed error', async () => {
    await expect(
      runDemo({ ...demoOptionsDefault, seconds: 0 }, { stdout() {}, stderr() {} }),
    ).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });
});
