/**
 * The worker-thread side of the page store.
 *
 * On the owner thread: `const handle = store.workerHandle()` and post it with
 * `worker.postMessage(handle, [handle.lane.port])`. In the worker:
 * `const writer = attachStoreWriter(handle)`, then `await writer.commit(pages)`
 * with the same validation and the same promise semantics as
 * `PageStore.commit` (resolved once durable). Encoding and CRC run on the
 * worker's core, in its own lane of shared memory; the owner's store reads
 * the durable segments back into its index, so `store.read` on the owner sees
 * a worker's commit once the worker's promise resolved.
 */

import { attachWriter, type WorkerCommitAck, type WorkerWriter } from '../engine/worker.js';
import { WalArgumentError } from '../errors.js';
import { type PageWrites, prepareCommit } from './commit-batch.js';
import type { CommitOptions, StoreWorkerHandle } from './page-store.js';

/** A worker's writer into a page store. */
export interface StoreWorkerWriter extends AsyncDisposable {
  /** Page size of the store, in bytes. */
  readonly pageSize: number;
  /** Commits pages; resolves once durable. Same rules as `PageStore.commit`. */
  commit(pages: PageWrites, options?: CommitOptions): Promise<WorkerCommitAck>;
  /** Waits for commits in flight and gives the lane back. Idempotent. */
  close(): Promise<void>;
}

/** Transaction ids of worker writers start here (the owner's count from 1). */
const WORKER_TXN_ID_BASE = 1n << 48n;
/** Transaction ids each worker lane gets before ids would overlap the next lane's. */
const WORKER_TXN_IDS_PER_LANE = 1n << 32n;

/**
 * Attaches the calling worker thread to a lane of the store the handle came from.
 * @throws {WalArgumentError} for something that is not a store worker handle,
 * or a handle already attached / of a released lane (from the log).
 */
export function attachStoreWriter(handle: StoreWorkerHandle): StoreWorkerWriter {
  if (
    typeof handle !== 'object' ||
    handle === null ||
    handle.kind !== 'pwal-store-worker' ||
    typeof handle.pageSize !== 'number'
  ) {
    throw new WalArgumentError('not a page store worker handle (from store.workerHandle())');
  }
  const writer: WorkerWriter = attachWriter(handle.lane);
  const { pageSize } = handle;
  let nextTxn = WORKER_TXN_ID_BASE + BigInt(writer.laneId) * WORKER_TXN_IDS_PER_LANE;
  let knownSize = 0;
  return {
    pageSize,
    async commit(pages: PageWrites, options: CommitOptions = {}): Promise<WorkerCommitAck> {
      const prepared = prepareCommit(pages, options.dbSizePages, pageSize, knownSize);
      nextTxn++;
      const ack = await writer.commit({
        txnToken: { id: nextTxn, epoch: 0 },
        frames: prepared.frames,
      });
      knownSize = prepared.setPages ?? Math.max(knownSize, prepared.maxPage);
      return ack;
    },
    close: () => writer.close(),
    [Symbol.asyncDispose]: () => writer.close(),
  };
}
