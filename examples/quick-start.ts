// Quick start in TypeScript (Node >= 20). Run with a TypeScript runner, e.g.
// `npx tsx examples/quick-start.ts`, or compile with tsc (module NodeNext).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type CommitResult,
  isWalError,
  PageStore,
  ParallelWal,
  type ParallelWalBatch,
} from 'parallel-wal';

const dir = await mkdtemp(join(tmpdir(), 'pwal-quick-start-ts-'));
const dbPath = join(dir, 'app.db');

const batch: ParallelWalBatch = {
  txnToken: { id: 1n, epoch: 0 },
  frames: [{ pageNumber: 1, pageData: new Uint8Array(4096).fill(5), dbSizeIfCommit: 1 }],
};
const wal = await ParallelWal.open(dbPath, { fsync: 'full' });
let result: CommitResult;
try {
  result = await wal.commit(batch);
} finally {
  await wal.close();
}
console.log(`commit ${result.commitSeq} durable in epoch ${result.epoch}`);

// A page store on its own database file, with read-back.
const store = await PageStore.open(join(dir, 'pages.db'), { pageSize: 4096 });
try {
  await store.commit([{ pageNumber: 3, data: new Uint8Array(4096).fill(3) }]);
  const page: Uint8Array = await store.read(3);
  console.log(`read page 3: byte ${page[0]}`);
  await store.read(0).catch((error: unknown) => {
    if (!isWalError(error)) throw error;
    console.log(`page 0: ${error.code}`);
  });
} finally {
  await store.close();
}
await rm(dir, { recursive: true, force: true });
