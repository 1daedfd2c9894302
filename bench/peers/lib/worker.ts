/**
 * A worker-thread writer of one cell: opens the system's writer with the handle the main thread
 * gave it, says `ready`, waits for `go` (the shared window), commits, closes and reports.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { loadSystem } from '../systems/index.js';
import { type CellSpec, runCommitters, type Window, WORKER_ID_STRIDE } from './common.js';

const port = parentPort!;
const { spec, handle, workerIndex } = workerData as {
  spec: CellSpec;
  handle: unknown;
  workerIndex: number;
};

try {
  const sys = await loadSystem(spec.system);
  if (!sys.openWorker) throw new Error(`${sys.name} has no worker writer`);
  const store = await sys.openWorker(spec.dir, handle, spec);
  const window = await new Promise<Window>((resolve) => {
    port.once('message', (m: { type: 'go'; window: Window }) => resolve(m.window));
    port.postMessage({ type: 'ready' });
  });
  let next = (workerIndex + 1) * WORKER_ID_STRIDE;
  const result = await runCommitters(
    store.commit,
    spec.committers,
    spec.pages,
    window,
    () => ++next,
  );
  await store.close();
  port.postMessage({ type: 'done', result });
} catch (err) {
  port.postMessage({
    type: 'error',
    message: err instanceof Error ? (err.stack ?? err.message) : String(err),
  });
}
