#!/usr/bin/env node
// Runs the vitest suite and ends with the plain summary line CI reads:
// `N passed, N failed` (vitest's own summary is not recognised there), plus
// `, N skipped` when tests were skipped. The only tests that skip are the ones
// that need a real `nats-server` (JetStream cluster) where it is not
// installed: the run then says how to install it. With
// PWAL_REQUIRE_NATS_SERVER=1 (set by .ci/run) a skipped test fails the run.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';

const REQUIRE_ENV = 'PWAL_REQUIRE_NATS_SERVER';
/** Most skipped test files listed by name. */
const SKIPPED_FILES_LISTED_MAX = 10;

const out = '.vitest-results.json';
rmSync(out, { force: true });
const args = ['vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile=${out}`];
const run = spawnSync('npx', [...args, ...process.argv.slice(2)], { stdio: 'inherit' });

let passed = 0;
let failed = 0;
let skipped = 0;
const skippedFiles = new Set();
if (existsSync(out)) {
  const report = JSON.parse(readFileSync(out, 'utf8'));
  passed = report.numPassedTests ?? 0;
  failed = (report.numFailedTests ?? 0) + (report.numRuntimeErrorTestSuites ?? 0);
  skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
  for (const suite of report.testResults ?? []) {
    const results = suite.assertionResults ?? [];
    // A suite that failed to load has no tests but must still fail the run.
    if (suite.status === 'failed' && results.length === 0) failed += 1;
    if (results.some((r) => r.status === 'pending' || r.status === 'skipped')) {
      skippedFiles.add(suite.name.replace(`${process.cwd()}/`, ''));
    }
  }
} else {
  failed = 1;
}

let code = run.status === 0 && failed === 0 ? 0 : 1;
if (code !== 0 && failed === 0) failed = 1;
if (skipped > 0) {
  const natsMissing = spawnSync('nats-server', ['--version'], { stdio: 'ignore' }).status !== 0;
  const files = [...skippedFiles].slice(0, SKIPPED_FILES_LISTED_MAX).join(', ');
  console.log(`\n${skipped} tests skipped (in ${files}).`);
  if (natsMissing) {
    console.log(
      'They need a real nats-server (3-node JetStream cluster on loopback). To run them, install ' +
        'nats-server: Debian/Ubuntu `apt-get install -y nats-server`, elsewhere a release binary ' +
        'from https://github.com/nats-io/nats-server/releases on PATH.',
    );
  }
  if (process.env[REQUIRE_ENV] === '1') {
    console.log(`${REQUIRE_ENV}=1: skipped tests are not allowed here; the run fails.`);
    code = 1;
    failed += skipped;
  }
}
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(code);
