/**
 * The SIGKILL child of the store kill test:
 *   node --import tsx store-child.ts <db> <seed> <memory|log>
 * Commits the deterministic workload one commit at a time and prints
 * `ACK <i>` right after commit i resolved (stdout to a pipe is synchronous
 * on Linux, so a printed ack was acknowledged), while checkpoints run
 * concurrently (a loop every few ms, plus automatic ones at 16 KiB of log).
 * `PWAL_SEGMENT_SINK` (e.g. `pool`) picks the log's segment sink.
 */
import type { SegmentSinkKind } from '../../../src/engine/segment-writer.js';
import { PageStore } from '../../../src/store/page-store.js';
import { WORKLOAD_PAGE_BYTES, workloadCommit } from './store-workload.js';

const [dbPath, seedText, source] = process.argv.slice(2);
if (dbPath === undefined || seedText === undefined) throw new Error('usage: <db> <seed> <source>');
const seed = Number(seedText);
const store = await PageStore.open(dbPath, {
  pageSize: WORKLOAD_PAGE_BYTES,
  checkpointThresholdBytes: 16 * 1024,
  checkpointSource: source === 'log' ? 'log' : 'memory',
  ...(process.env.PWAL_SEGMENT_SINK === undefined
    ? {}
    : { segmentSink: process.env.PWAL_SEGMENT_SINK as SegmentSinkKind }),
});
process.stdout.write('READY\n');
let stop = false;
const checkpoints = (async () => {
  while (!stop) {
    const result = await store.checkpoint();
    if (result.pagesWritten > 0) process.stdout.write(`CKPT ${result.checkpointEpoch}\n`);
    await new Promise((r) => setTimeout(r, 3));
  }
})();
for (let i = 1; i <= 1_000_000; i++) {
  const commit = workloadCommit(seed, i);
  await store.commit(
    commit.pages,
    commit.dbSizePages === undefined ? {} : { dbSizePages: commit.dbSizePages },
  );
  process.stdout.write(`ACK ${i}\n`);
}
stop = true;
await checkpoints;
await store.close();
