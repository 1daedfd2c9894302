// A page store: commit pages, read them back, checkpoint, then reopen (which
// recovers from the log) and read again.
// Run: node examples/page-store.mjs
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PageStore } from 'parallel-wal';

const dir = await mkdtemp(join(tmpdir(), 'pwal-page-store-'));
const path = join(dir, 'app.db');

const db = await PageStore.open(path, { pageSize: 4096 });
try {
  await db.commit([{ pageNumber: 1, data: new Uint8Array(4096).fill(1) }]);
  await db.checkpoint(); // fold the log into app.db, fsync, then delete segments
  // Resolves once durable; stays in the log until the next checkpoint.
  await db.commit([{ pageNumber: 2, data: new Uint8Array(4096).fill(2) }]);
  const page = await db.read(2); // latest durable image
  console.log(`read page 2: ${page.length} bytes of ${page[0]}`);
} finally {
  await db.close();
}

// Reopening replays the durable log into the file before the first read.
const again = await PageStore.open(path, { pageSize: 4096 });
try {
  const [one, two] = [await again.read(1), await again.read(2)];
  console.log(`after reopen: page 1 byte ${one[0]}, page 2 byte ${two[0]}`);
} finally {
  await again.close();
}
await rm(dir, { recursive: true, force: true });
