// The worker side of worker-threads.mjs: attach to the lane the owner made,
// commit, report the durable epoch, close.
import { parentPort, workerData } from 'node:worker_threads';
import { attachWriter } from 'parallel-wal';

const { handle, pageNumber } = workerData;
const writer = attachWriter(handle);
const { epoch } = await writer.commit({
  txnToken: { id: BigInt(pageNumber), epoch: 0 },
  frames: [{ pageNumber, pageData: new Uint8Array(4096).fill(pageNumber), dbSizeIfCommit: 2 }],
});
await writer.close();
parentPort.postMessage({ pageNumber, epoch });
