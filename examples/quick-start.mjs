// Quick start (plain JavaScript, ES modules, Node >= 20): commit through the
// log, then read back what is durable after it closed.
// Run: node examples/quick-start.mjs
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ParallelWal, recoverAndApplySegments } from 'parallel-wal';

const dir = await mkdtemp(join(tmpdir(), 'pwal-quick-start-'));
const dbPath = join(dir, 'app.db');
const page = new Uint8Array(4096).fill(7);

const wal = await ParallelWal.open(dbPath, { fsync: 'full' });
try {
  // Resolves only once the epoch holding the commit is durable on disk.
  const { epoch, commitSeq, durability } = await wal.commit({
    txnToken: { id: 42n, epoch: 0 }, // u64 values are bigint
    frames: [{ pageNumber: 1, pageData: page, dbSizeIfCommit: 1 }],
  });
  console.log(`commit ${commitSeq} durable in epoch ${epoch} (${durability})`);

  // A writer context with its own lane, for one concurrent committer.
  const writer = wal.openWriter();
  await writer.commit({
    txnToken: { id: 43n, epoch: 0 },
    frames: [{ pageNumber: 2, pageData: new Uint8Array(4096).fill(8), dbSizeIfCommit: 2 }],
  });
  await writer.close(); // the lane is given back and reused

  // Stats can be logged as JSON: bigint figures (epochs) become decimal strings.
  console.log(`stats: ${JSON.stringify(wal.stats()).length} bytes of JSON`);
  const { commits, fsyncs, commitLatencyMicros } = wal.stats();
  console.log(`${commits} commits, ${fsyncs} fsyncs, p99 ${commitLatencyMicros.p99} µs`);
} finally {
  await wal.close();
}

// Read back: replay the durable segments into page images.
const pages = new Map();
const recovered = await recoverAndApplySegments(dbPath, pages);
console.log(
  `read back ${pages.size} pages from ${recovered.segmentsRecovered} segments: ` +
    `page 1 byte ${pages.get(1)[0]}, page 2 byte ${pages.get(2)[0]}`,
);
await rm(dir, { recursive: true, force: true });
