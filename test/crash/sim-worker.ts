/**
 * A worker-thread writer for `wal-worker-power-cut.test.ts`: attaches to its
 * lane, commits `count` transactions (`txnBase + i * stride`) three at a time
 * and posts `{ txnId, epoch, commitSeq }` for each acknowledgement, `{ txnId,
 * code }` for each rejection, then `'done'`.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { attachWriter, type WorkerLaneHandle } from '../../src/engine/worker.js';
import { WalError } from '../../src/errors.js';
import { commitPages } from '../support/commit-oracle.js';

const data = workerData as {
  handle: WorkerLaneHandle;
  runSeed: number;
  txnBase: bigint;
  stride: bigint;
  count: number;
  maxPageBytes: number;
};
const port = parentPort!;
const writer = attachWriter(data.handle);
let next = 0;

async function loop(): Promise<void> {
  while (next < data.count) {
    const txnId = data.txnBase + BigInt(next++) * data.stride;
    const pages = commitPages(data.runSeed, txnId, data.maxPageBytes);
    try {
      const ack = await writer.commit({
        txnToken: { id: txnId, epoch: 0 },
        frames: pages.map((p) => ({ pageNumber: p.pageId, pageData: p.data, dbSizeIfCommit: 0 })),
      });
      port.postMessage({ txnId, epoch: ack.epoch, commitSeq: ack.commitSeq });
    } catch (error) {
      port.postMessage({
        txnId,
        code: error instanceof WalError ? error.code : `untyped: ${String(error)}`,
      });
    }
  }
}

await Promise.all([loop(), loop(), loop()]);
await writer.close().catch(() => undefined);
port.postMessage('done');
