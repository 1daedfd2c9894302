/**
 * The child process of the SIGKILL tests (run with tsx):
 *
 *   node --import tsx test/crash/child-writer.ts <db> <runSeed> <txnBase> <writers> <workers> [fsync] [segmentSink] [owner]
 *
 * Opens a ParallelWal on `db` (`owner` = `thread`: a ThreadedWal, the log's
 * owner on a thread of its own, the async writers committing through this
 * thread's lane), prints `READY`, then commits forever from
 * `writers` async writers (own lanes, bursts of concurrent commits) and, when
 * the engine offers worker lanes (`wal.workerHandle()`), from `workers`
 * worker threads. After each commit *resolved*, it prints one line
 *
 *   ACK <txnId> <epoch> <commitSeq> <pageIds,…> <digest>
 *
 * Stdout is a pipe, and pipes are written synchronously by Node on Linux, so
 * a printed line reached the parent before the next instruction runs. The
 * pages of transaction t are `commitPages(runSeed, t)`, so the parent can
 * check the bytes. Rejections print `REJECT <txnId> <code>`; anything
 * untyped prints `UNTYPED …` (the parent fails on it).
 */
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { ThreadedWal } from '../../src/engine/log-thread.js';
import type { SegmentSinkKind } from '../../src/engine/segment-writer.js';
import { ParallelWal, type ParallelWalBatch } from '../../src/engine/wal.js';
import { WalError } from '../../src/errors.js';
import type { FsyncPolicy } from '../../src/storage/segment-files.js';
import { commitPages, pagesDigest } from '../support/commit-oracle.js';
import { randInt, seededRng } from '../support/rng.js';

const [db, seedArg, baseArg, writersArg, workersArg, fsyncArg, sinkArg, ownerArg] =
  process.argv.slice(2);
if (db === undefined || seedArg === undefined || baseArg === undefined) {
  process.stderr.write(
    'usage: child-writer.ts <db> <runSeed> <txnBase> <writers> <workers> [fsync] [segmentSink] [owner]\n',
  );
  process.exit(2);
}
const runSeed = Number(seedArg);
const txnBase = BigInt(baseArg);
const writers = Number(writersArg ?? 2);
const workers = Number(workersArg ?? 0);
const fsync = (fsyncArg ?? 'full') as FsyncPolicy;
/**
 * Txn ids of one child: txnBase + writer + k * stride, async writers first
 * (0 ..< writers), then the workers; the stride leaves room for every
 * writer, so no two writers ever share an id.
 */
const STRIDE = BigInt(Math.max(16, writers + workers));
/** Page images of the SIGKILL workload are at most this large, in bytes. */
export const CHILD_PAGE_BYTES_MAX = 1200;

function line(text: string): void {
  process.stdout.write(`${text}\n`);
}

function batchOf(txnId: bigint): ParallelWalBatch {
  const pages = commitPages(runSeed, txnId, CHILD_PAGE_BYTES_MAX);
  return {
    txnToken: { id: txnId, epoch: 0 },
    frames: pages.map((p) => ({ pageNumber: p.pageId, pageData: p.data, dbSizeIfCommit: 0 })),
  };
}

function report(txnId: bigint, epoch: bigint, commitSeq: bigint): void {
  const pages = commitPages(runSeed, txnId, CHILD_PAGE_BYTES_MAX);
  line(
    `ACK ${txnId} ${epoch} ${commitSeq} ${pages.map((p) => p.pageId).join(',')} ${pagesDigest(pages)}`,
  );
}

function reject(txnId: bigint, error: unknown): void {
  if (error instanceof WalError) line(`REJECT ${txnId} ${error.code}`);
  else line(`UNTYPED ${txnId} ${String(error).replace(/\s+/g, ' ')}`);
}

const config = {
  fsync,
  slotCount: Math.max(1, writers),
  ...(sinkArg === undefined || sinkArg === 'default'
    ? {}
    : { segmentSink: sinkArg as SegmentSinkKind }),
};
const threaded = ownerArg === 'thread' ? await ThreadedWal.open(db, config) : null;
const wal = threaded === null ? await ParallelWal.open(db, config) : null;
line('READY');

async function asyncWriter(w: number): Promise<void> {
  const lane = threaded ?? wal!.openWriter();
  const rng = seededRng(runSeed ^ (w * 7919) ^ Number(txnBase % 1000003n));
  let k = 0n;
  const one = async (): Promise<void> => {
    const txnId = txnBase + BigInt(w) + k * STRIDE;
    k += 1n;
    try {
      const r = await lane.commit(batchOf(txnId));
      report(txnId, r.epoch, r.commitSeq);
    } catch (error) {
      reject(txnId, error);
      throw error;
    }
  };
  for (;;) {
    const burst = rng() < 0.5 ? randInt(rng, 2, 6) : 1;
    await Promise.all(Array.from({ length: burst }, one));
  }
}

type HandleApi = { workerHandle?: () => unknown };
const api = (threaded ?? wal) as unknown as HandleApi;
if (workers > 0 && typeof api.workerHandle === 'function') {
  const { workerHandleTransferList } = await import('../../src/engine/worker.js');
  for (let i = 0; i < workers; i++) {
    const handle = await api.workerHandle();
    const worker = new Worker(path.join(import.meta.dirname, 'child-worker-entry.mjs'), {
      workerData: { handle, runSeed, txnBase: txnBase + BigInt(writers + i), stride: STRIDE },
      transferList: workerHandleTransferList(
        handle as Parameters<typeof workerHandleTransferList>[0],
      ),
    });
    worker.on('message', (m: string) => line(m));
    worker.on('error', (error) => line(`UNTYPED worker ${String(error).replace(/\s+/g, ' ')}`));
  }
  line(`WORKERS ${workers}`);
} else if (workers > 0) {
  line('WORKERS 0 (engine has no workerHandle)');
}

await Promise.all(Array.from({ length: writers }, (_, w) => asyncWriter(w))).catch(() => {
  // The log failed (the parent decides whether that was expected); stop writing.
});
