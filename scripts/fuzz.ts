/**
 * The long hostile-input run: `npm run fuzz` (100k decoder cases by default).
 *
 * Options: --cases N (segment decoder cases, default 100000), --dirs N
 * (hostile directories through recovery and open, default 5000), --cli N
 * (hostile CLI argument vectors, default 5000), --seed S.
 *
 * Checks: nothing but typed errors; no case slower than --max-case-ms
 * (default 1000, a hang detector); resident memory stays bounded (reported).
 * Exits 1 on any violation, printing the seed and case to reproduce it.
 */
import { parseArgs } from 'node:util';
import { fuzzDecoder } from '../test/fuzz/fuzz-core.js';
import { checkHostileCli, checkHostileDirectory } from '../test/fuzz/recovery-fuzz.js';
import { seededRng } from '../test/support/rng.js';

const { values } = parseArgs({
  options: {
    cases: { type: 'string', default: '100000' },
    dirs: { type: 'string', default: '5000' },
    cli: { type: 'string', default: '5000' },
    seed: { type: 'string', default: String(Date.now() % 1_000_000) },
    'max-case-ms': { type: 'string', default: '1000' },
  },
});
const seed = Number(values.seed);
const maxCaseMs = Number(values['max-case-ms']);
const cases = Number(values.cases);
let peakRss = process.memoryUsage().rss;
const startRss = peakRss;
let failed = false;
const started = Date.now();
console.log(
  `fuzz: ${cases} decoder cases, ${values.dirs} directories, ${values.cli} CLI runs, seed ${seed}`,
);

// Decoder: in chunks so that progress and memory can be reported.
const CHUNK = 10_000;
const rejected = new Map<string, number>();
let accepted = 0;
let slowest = 0;
for (let done = 0; done < cases; done += CHUNK) {
  const n = Math.min(CHUNK, cases - done);
  try {
    const stats = fuzzDecoder(seed + done, n, seededRng);
    accepted += stats.accepted;
    slowest = Math.max(slowest, stats.slowestMs);
    for (const [code, count] of stats.rejected)
      rejected.set(code, (rejected.get(code) ?? 0) + count);
  } catch (error) {
    console.log(`VIOLATION decoder (chunk seed ${seed + done}): ${String(error)}`);
    failed = true;
    break;
  }
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
  process.stdout.write(`\rdecoder ${done + n}/${cases}`);
}
console.log('');
console.log(`decoder: ${cases} cases, ${accepted} accepted, slowest ${slowest.toFixed(1)} ms`);
for (const [code, count] of [...rejected].sort((a, b) => b[1] - a[1]))
  console.log(`  ${code}: ${count}`);
if (slowest > maxCaseMs) {
  console.log(`VIOLATION decoder case took ${slowest.toFixed(0)} ms (> ${maxCaseMs})`);
  failed = true;
}

async function timed(
  label: string,
  count: number,
  run: (i: number) => Promise<unknown>,
): Promise<void> {
  let worst = 0;
  const outcomes = new Map<string, number>();
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    try {
      const outcome = String(await run(i));
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    } catch (error) {
      console.log(`VIOLATION ${label} case ${i} (seed ${seed}): ${String(error)}`);
      failed = true;
      return;
    }
    worst = Math.max(worst, performance.now() - t0);
    if (i % 500 === 0) peakRss = Math.max(peakRss, process.memoryUsage().rss);
  }
  console.log(
    `${label}: ${count} cases, outcomes ${JSON.stringify(Object.fromEntries(outcomes))}, slowest ${worst.toFixed(1)} ms`,
  );
  if (worst > maxCaseMs) {
    console.log(`VIOLATION ${label} case took ${worst.toFixed(0)} ms (> ${maxCaseMs})`);
    failed = true;
  }
}

const dirRng = seededRng(seed ^ 0x5a5a5a);
await timed('directories', Number(values.dirs), () => checkHostileDirectory(dirRng));
const cliRng = seededRng(seed ^ 0xa5a5a5);
await timed('cli', Number(values.cli), () => checkHostileCli(cliRng));

const mib = (n: number) => (n / 1024 / 1024).toFixed(0);
console.log(`memory: rss ${mib(startRss)} MiB at start, peak ${mib(peakRss)} MiB`);
console.log(
  `total ${cases + Number(values.dirs) + Number(values.cli)} cases in ${((Date.now() - started) / 1000).toFixed(0)} s, seed ${seed}: ${failed ? 'FAILED' : 'no violation'}`,
);
process.exit(failed ? 1 : 0);
