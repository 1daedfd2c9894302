/**
 * The hostile-input campaign: `npm run hostile -- --rounds 20`.
 *
 * Options: --rounds N (default 10: every case N times, each with its own
 * seed and a fresh directory), --seed S, --filter TEXT (only cases whose
 * name contains it), --quiet.
 *
 * Prints cases tried, acknowledged commits checked, lost (must be 0), and
 * every violation (a hang, an untyped error, a hostile file accepted
 * silently) with the case seed; exits 1 on any loss or violation.
 */
import { parseArgs } from 'node:util';
import { HOSTILE_CASES, runHostileCampaign } from '../test/crash/hostile.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '10' },
    seed: { type: 'string', default: String(Date.now() % 1_000_000) },
    filter: { type: 'string' },
    quiet: { type: 'boolean', default: false },
  },
});
const rounds = Number(values.rounds);
const seed = Number(values.seed);
if (!Number.isSafeInteger(rounds) || rounds < 1) throw new Error(`bad --rounds ${values.rounds}`);
const started = Date.now();
console.log(
  `hostile campaign: ${HOSTILE_CASES.length} cases x ${rounds} rounds, seed ${seed}${values.filter === undefined ? '' : `, filter "${values.filter}"`}`,
);
const stats = await runHostileCampaign({
  rounds,
  seed,
  ...(values.filter === undefined ? {} : { filter: values.filter }),
  ...(values.quiet ? {} : { log: (line: string) => console.log(`  ${line}`) }),
});
const seconds = ((Date.now() - started) / 1000).toFixed(0);
console.log('');
console.log(`cases tried:  ${stats.tried}`);
console.log(`skipped:      ${stats.skipped}`);
console.log(`acknowledged: ${stats.acked}`);
console.log(`lost:         ${stats.lost}`);
for (const s of stats.skips) console.log(`SKIPPED ${s}`);
for (const [name, f] of stats.failedCases) {
  console.log(`FAILED ${name}: ${f.runs} of ${rounds} runs, ${f.lost} lost`);
}
for (const v of stats.violations.slice(0, 40)) console.log(`VIOLATION ${v}`);
console.log(`seed ${seed}, ${seconds} s`);
process.exit(stats.lost === 0 && stats.violations.length === 0 ? 0 : 1);
