/**
 * The long SIGKILL campaign: `npm run crash -- --kills 1000`.
 *
 * Options: --kills N (default 1000), --parallel P (default 3), --seed S,
 * --writers W (default 3), --workers K (default 2; used when the engine has
 * worker lanes), --max-life-ms M (default 250), --fresh-every F (default 20),
 * --fsync full|normal|off (default full), --sink pool|earlyAck|precreate|storage
 * (the children's segment sink; default: the engine's default), --log-thread
 * (the children open a ThreadedWal: the log's owner on a thread of its own),
 * --quiet.
 *
 * Prints kills, commits acknowledged, lost (must be 0), partial (must be 0);
 * exits 1 on any violation.
 */
import { parseArgs } from 'node:util';
import { runKillLoops } from '../test/crash/kill-loop.js';

const { values } = parseArgs({
  options: {
    kills: { type: 'string', default: '1000' },
    parallel: { type: 'string', default: '3' },
    seed: { type: 'string', default: String(Date.now() % 1_000_000) },
    writers: { type: 'string', default: '3' },
    workers: { type: 'string', default: '2' },
    'max-life-ms': { type: 'string', default: '250' },
    'fresh-every': { type: 'string', default: '20' },
    fsync: { type: 'string', default: 'full' },
    sink: { type: 'string', default: 'default' },
    'log-thread': { type: 'boolean', default: false },
    quiet: { type: 'boolean', default: false },
  },
});

const fsync = values.fsync as 'full' | 'normal' | 'off';
if (!['full', 'normal', 'off'].includes(fsync)) throw new Error(`bad --fsync ${values.fsync}`);
const seed = Number(values.seed);
const started = Date.now();
console.log(
  `crash campaign: ${values.kills} SIGKILLs, seed ${seed}, fsync ${fsync}, sink ${values.sink}${values['log-thread'] ? ', log on its own thread' : ''}, ${values.parallel} loops in parallel`,
);
const stats = await runKillLoops({
  kills: Number(values.kills),
  parallel: Number(values.parallel),
  seed,
  writers: Number(values.writers),
  workers: Number(values.workers),
  maxLifeMs: Number(values['max-life-ms']),
  freshDbEvery: Number(values['fresh-every']),
  fsync,
  segmentSink: values.sink,
  owner: values['log-thread'] ? 'thread' : 'caller',
  ...(values.quiet ? {} : { log: (line: string) => console.log(line) }),
});
const seconds = ((Date.now() - started) / 1000).toFixed(0);
console.log('');
console.log(`kills:        ${stats.kills} (${stats.killsBeforeReady} during start-up)`);
console.log(`acknowledged: ${stats.acked}`);
console.log(`lost:         ${stats.lost}`);
console.log(`partial:      ${stats.partial}`);
console.log(`unknown:      ${stats.unknown}`);
console.log(`misordered:   ${stats.misordered}`);
console.log(`worker lanes: ${stats.workersUsed ? 'used' : 'not available in this engine'}`);
console.log(`seed ${seed}, ${seconds} s`);
for (const v of stats.violations.slice(0, 20)) console.log(`VIOLATION ${v}`);
const clean =
  stats.lost === 0 &&
  stats.partial === 0 &&
  stats.unknown === 0 &&
  stats.misordered === 0 &&
  stats.violations.length === 0;
process.exit(clean ? 0 : 1);
