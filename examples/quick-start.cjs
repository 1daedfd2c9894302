// Quick start (plain JavaScript, CommonJS, Node >= 20): the same as
// quick-start.mjs through `require`.
// Run: node examples/quick-start.cjs
const { mkdtemp, rm } = require('node:fs/promises');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const { ParallelWal, recoverAndApplySegments, isWalError } = require('parallel-wal');

async function main() {
  const dir = await mkdtemp(join(tmpdir(), 'pwal-quick-start-'));
  const dbPath = join(dir, 'app.db');
  const wal = await ParallelWal.open(dbPath, { fsync: 'full' });
  try {
    const { epoch, commitSeq } = await wal.commit({
      txnToken: { id: 1n, epoch: 0 },
      frames: [{ pageNumber: 1, pageData: new Uint8Array(4096).fill(9), dbSizeIfCommit: 1 }],
    });
    console.log(`commit ${commitSeq} durable in epoch ${epoch}`);
    // Typed errors: branch on the stable code.
    await wal.commit({ txnToken: { id: 2n, epoch: 0 }, frames: [] }).catch((error) => {
      if (!isWalError(error, 'ERR_INVALID_ARGUMENT')) throw error;
      console.log(`rejected: ${error.code}`);
    });
  } finally {
    await wal.close();
  }
  const pages = new Map();
  await recoverAndApplySegments(dbPath, pages);
  console.log(`read back ${pages.size} page: page 1 byte ${pages.get(1)[0]}`);
  await rm(dir, { recursive: true, force: true });
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
