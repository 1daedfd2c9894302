/**
 * A worker-thread writer of the store tests: attaches with
 * `attachStoreWriter`, commits `count` commits of two pages each
 * (pages `base+1`, `base+2`, filled with the commit number), posts
 * `{ ack: i, epoch }` after each, then `{ done: true }` and closes.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { StoreWorkerHandle } from '../../../src/store/page-store.js';
import { attachStoreWriter } from '../../../src/store/worker.js';

const { handle, base, count, pageSize } = workerData as {
  handle: StoreWorkerHandle;
  base: number;
  count: number;
  pageSize: number;
};
const writer = attachStoreWriter(handle);
if (writer.pageSize !== pageSize) throw new Error('page size mismatch');
for (let i = 1; i <= count; i++) {
  const ack = await writer.commit([
    { pageNumber: base + 1, data: new Uint8Array(pageSize).fill(i) },
    { pageNumber: base + 2, data: new Uint8Array(pageSize).fill(255 - i) },
  ]);
  parentPort?.postMessage({ ack: i, epoch: ack.epoch.toString() });
}
// A bad commit is refused on the worker's side with a typed error.
const refused = await writer.commit([{ pageNumber: 0, data: new Uint8Array(pageSize) }]).then(
  () => null,
  (e: { code?: string }) => e.code ?? 'untyped',
);
await writer.close();
parentPort?.postMessage({ done: true, refused });
