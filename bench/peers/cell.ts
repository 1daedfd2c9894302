/**
 * One cell in a fresh process: `tsx cell.ts '<CellSpec JSON>'`. Opens the system in
 * `spec.dir`, runs the committers (on this thread, or in `spec.workers` worker threads), closes,
 * reopens and reads every acknowledged commit back, then prints one result line
 * (`PEERS-RESULT {json}`) for the parent.
 */
import { Worker } from 'node:worker_threads';
import {
  type CellResult,
  type CellSpec,
  nowMs,
  quantile,
  RESULT_PREFIX,
  runCommitters,
  type Window,
  type WriterResult,
} from './lib/common.js';
import type { OpenStore, SystemDef } from './lib/system.js';
import { loadSystem } from './systems/index.js';

/** Messages between this thread and a worker writer (see lib/worker.ts). */
export type FromWorker =
  | { type: 'ready' }
  | { type: 'done'; result: WriterResult }
  | { type: 'error'; message: string };

async function runOnThisThread(store: OpenStore, spec: CellSpec): Promise<WriterResult[]> {
  const start = nowMs();
  const window: Window = {
    measureFrom: start + spec.warmupMs,
    measureTo: start + spec.warmupMs + spec.durationMs,
  };
  let next = 0;
  return [await runCommitters(store.commit, spec.committers, spec.pages, window, () => ++next)];
}

async function runInWorkers(
  sys: SystemDef,
  store: OpenStore,
  spec: CellSpec,
): Promise<WriterResult[]> {
  if (!sys.supportsWorkers || !sys.openWorker) {
    throw new Error(`${sys.name} does not support worker writers`);
  }
  const workers: Worker[] = [];
  const ready: Promise<void>[] = [];
  const done: Promise<WriterResult>[] = [];
  for (let w = 0; w < spec.workers; w++) {
    const handle = store.workerHandle?.();
    const worker = new Worker(new URL('./lib/worker-entry.mjs', import.meta.url), {
      workerData: { spec, handle: handle?.value, workerIndex: w },
      transferList: handle?.transferList ?? [],
    });
    workers.push(worker);
    let onReady!: () => void;
    ready.push(new Promise<void>((res) => (onReady = res)));
    done.push(
      new Promise<WriterResult>((resolve, reject) => {
        worker.on('message', (m: FromWorker) => {
          if (m.type === 'ready') onReady();
          else if (m.type === 'done') resolve(m.result);
          else reject(new Error(`worker ${w}: ${m.message}`));
        });
        worker.on('error', reject);
        worker.on('exit', (code) => reject(new Error(`worker ${w} exited with ${code}`)));
      }),
    );
  }
  // A worker that fails before it is ready must not leave us waiting forever.
  await Promise.race([Promise.all(ready), Promise.all(done)]);
  const start = nowMs();
  const window: Window = {
    measureFrom: start + spec.warmupMs,
    measureTo: start + spec.warmupMs + spec.durationMs,
  };
  for (const worker of workers) worker.postMessage({ type: 'go', window });
  const results = await Promise.all(done);
  await Promise.all(workers.map((w) => w.terminate()));
  return results;
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? '') as CellSpec;
  const result: CellResult = {
    spec,
    ok: false,
    effectiveConcurrency: 0,
    commitsPerSec: 0,
    pagesPerSec: 0,
    p50Ms: Number.NaN,
    p99Ms: Number.NaN,
    totalCommits: 0,
    verifiedCommits: 0,
    verifyFailures: 0,
    versions: {},
  };
  try {
    const sys = await loadSystem(spec.system);
    result.versions = await sys.versions();
    const eff = sys.effectiveConcurrency(spec.committers, spec.workers);
    result.effectiveConcurrency = eff.n;
    if (eff.note) result.concurrencyNote = eff.note;
    const store = await sys.open(spec.dir, spec);
    const writers =
      spec.workers > 0 ? await runInWorkers(sys, store, spec) : await runOnThisThread(store, spec);
    const lib = store.libraryFsyncs?.();
    if (lib !== undefined) result.libraryFsyncs = lib;
    await store.close();

    const latencies = writers.flatMap((w) => w.latenciesMs);
    const windowCommits = writers.reduce((n, w) => n + w.windowCommits, 0);
    const acked = writers.flatMap((w) => w.acked);
    result.commitsPerSec = windowCommits / (spec.durationMs / 1000);
    result.pagesPerSec = result.commitsPerSec * spec.pages;
    result.p50Ms = quantile(latencies, 0.5);
    result.p99Ms = quantile(latencies, 0.99);
    result.totalCommits = acked.length;

    const v = await sys.verify(spec.dir, acked, spec.pages);
    result.verifiedCommits = v.checked - v.failures;
    result.verifyFailures = v.failures;
    result.ok = v.failures === 0 && v.checked === acked.length && windowCommits > 0;
    if (!result.ok) {
      result.error =
        v.firstFailure ??
        (windowCommits === 0 ? 'no commit in the window' : 'verification incomplete');
    }
  } catch (err) {
    result.error = err instanceof Error ? (err.stack ?? err.message) : String(err);
  }
  process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(result)}\n`);
  // Some bindings keep handles open after close; the result is out, so end the process.
  process.exit(result.ok ? 0 : 1);
}

await main();
