/**
 * The packed package as a user installs it (scripts/check-package.mjs):
 * tarball size and file list, `require` and `import` of both entries from a
 * fresh project, no @nats-io package installed or reached by the root entry,
 * the typed error for a missing NATS peer, declarations for both module
 * systems, the examples and the `pwal` binary. Needs `npm run build` first
 * (`npm test` does it) and the npm registry for the package's dependencies.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const REPO = path.resolve(import.meta.dirname, '../..');
/** Packing, installing and type-checking take about 30 s on 2 shared cores. */
const CHECK_TIMEOUT_MS = 240_000;

describe('the packed tarball', () => {
  it(
    'installs into a fresh project where require and import work and nothing from NATS is installed',
    () => {
      const run = spawnSync(process.execPath, [path.join(REPO, 'scripts', 'check-package.mjs')], {
        cwd: REPO,
        encoding: 'utf8',
        timeout: CHECK_TIMEOUT_MS,
      });
      const output = `${run.stdout}${run.stderr}`;
      expect(output).not.toContain('FAIL ');
      expect(output).toContain('npm ls shows no @nats-io package');
      expect(output).toContain('probe.cjs: committed and read back');
      expect(output).toContain('probe.mjs: committed and read back');
      expect(output).toContain('package check passed');
      expect(run.status).toBe(0);
    },
    CHECK_TIMEOUT_MS,
  );
});
