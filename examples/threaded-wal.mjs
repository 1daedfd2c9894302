// The log's owner on a thread of its own: this thread and two workers all
// commit through lanes in shared memory, and the workers' commits are sealed
// and acknowledged even while this thread is blocked.
// Run: node examples/threaded-wal.mjs
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { recoverAndApplySegments, ThreadedWal, workerHandleTransferList } from 'parallel-wal';

const dir = await mkdtemp(join(tmpdir(), 'pwal-threaded-'));
const dbPath = join(dir, 'app.db');
const wal = await ThreadedWal.open(dbPath, { fsync: 'full' });
try {
  const own = await wal.commit({
    txnToken: { id: 100n, epoch: 0 },
    frames: [{ pageNumber: 3, pageData: new Uint8Array(4096).fill(3), dbSizeIfCommit: 3 }],
  });
  console.log(`this thread committed page 3 in epoch ${own.epoch}`);
  // The same worker program as worker-threads.mjs.
  const runs = [];
  for (const index of [0, 1]) {
    const handle = await wal.workerHandle();
    const worker = new Worker(new URL('./worker-writer.mjs', import.meta.url), {
      workerData: { handle, pageNumber: index + 1 },
      transferList: workerHandleTransferList(handle),
    });
    runs.push(
      new Promise((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      }),
    );
  }
  // Busy for 200 ms: nothing runs on this thread, the log goes on.
  const until = Date.now() + 200;
  while (Date.now() < until) {}
  for (const { pageNumber, epoch } of await Promise.all(runs)) {
    console.log(`worker committed page ${pageNumber} in epoch ${epoch}`);
  }
  console.log(`segments written: ${(await wal.stats()).segmentsWritten}`);
} finally {
  await wal.close();
}
const pages = new Map();
await recoverAndApplySegments(dbPath, pages);
console.log(`read back ${pages.size} pages (page 3 byte ${pages.get(3)?.[0]})`);
await rm(dir, { recursive: true, force: true });
