// Writers on worker threads: each worker gets its own lane in shared memory
// and commits on its own core; the owner thread holds the log.
// Run: node examples/worker-threads.mjs
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { ParallelWal, recoverAndApplySegments, workerHandleTransferList } from 'parallel-wal';

const dir = await mkdtemp(join(tmpdir(), 'pwal-workers-'));
const dbPath = join(dir, 'app.db');
const wal = await ParallelWal.open(dbPath, { fsync: 'full' });
try {
  const runs = [0, 1].map((index) => {
    const handle = wal.workerHandle();
    const worker = new Worker(new URL('./worker-writer.mjs', import.meta.url), {
      workerData: { handle, pageNumber: index + 1 },
      transferList: workerHandleTransferList(handle),
    });
    return new Promise((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
  });
  for (const { pageNumber, epoch } of await Promise.all(runs)) {
    console.log(`worker committed page ${pageNumber} in epoch ${epoch}`);
  }
} finally {
  await wal.close();
}
const pages = new Map();
await recoverAndApplySegments(dbPath, pages);
console.log(`read back ${pages.size} pages written by workers`);
await rm(dir, { recursive: true, force: true });
