/**
 * A worker-thread writer of the SIGKILL child: attaches to its lane and
 * commits forever, posting `ACK …` lines (formatted as the child prints
 * them) to the child's main thread after each commit resolved.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { attachWriter, type WorkerLaneHandle } from '../../src/engine/worker.js';
import { WalError } from '../../src/errors.js';
import { commitPages, pagesDigest } from '../support/commit-oracle.js';

const CHILD_PAGE_BYTES_MAX = 1200;
const data = workerData as {
  handle: WorkerLaneHandle;
  runSeed: number;
  txnBase: bigint;
  stride: bigint;
};
const port = parentPort!;
const writer = attachWriter(data.handle);
let k = 0n;

async function one(): Promise<void> {
  const txnId = data.txnBase + k * data.stride;
  k += 1n;
  const pages = commitPages(data.runSeed, txnId, CHILD_PAGE_BYTES_MAX);
  try {
    const ack = await writer.commit({
      txnToken: { id: txnId, epoch: 0 },
      frames: pages.map((p) => ({ pageNumber: p.pageId, pageData: p.data, dbSizeIfCommit: 0 })),
    });
    port.postMessage(
      `ACK ${txnId} ${ack.epoch} ${ack.commitSeq} ${pages.map((p) => p.pageId).join(',')} ${pagesDigest(pages)}`,
    );
  } catch (error) {
    port.postMessage(
      error instanceof WalError
        ? `REJECT ${txnId} ${error.code}`
        : `UNTYPED ${txnId} ${String(error)}`,
    );
    throw error;
  }
}

for (;;) {
  try {
    await Promise.all([one(), one(), one()]);
  } catch {
    break;
  }
}
