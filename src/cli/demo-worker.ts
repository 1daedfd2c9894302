/**
 * The worker-thread writer of `pwal demo`: attaches to the lane in
 * `workerData.handle`, commits page batches with `concurrency` commits in
 * flight until the parent posts `'stop'`, and reports every acknowledgement
 * (batched) back to the parent, which verifies them after recovery.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { attachWriter, type WorkerLaneHandle } from '../engine/worker.js';
import { demoPage } from './demo-pages.js';

/** What the parent tells a demo worker. */
export interface DemoWorkerPlan {
  handle: WorkerLaneHandle;
  pageBytes: number;
  framesPerCommit: number;
  concurrency: number;
  /** Txn ids of this worker are `txnBase + i`. */
  txnBase: number;
}

/** One acknowledged commit. */
export interface DemoAck {
  txnId: number;
  commitSeq: bigint;
  epoch: bigint;
  latencyUs: number;
}

/** Messages a demo worker posts. */
export type DemoWorkerReport =
  | { kind: 'ready' }
  | { kind: 'acks'; acks: DemoAck[] }
  | { kind: 'done'; rejected: number; firstError: string | null };

/** Acks are posted at least this often, in milliseconds. */
const REPORT_INTERVAL_MS = 100;

async function run(): Promise<void> {
  const port = parentPort;
  if (port === null) throw new Error('demo-worker must run in a worker thread');
  const plan = workerData as DemoWorkerPlan;
  const writer = attachWriter(plan.handle);
  let stopping = false;
  port.on('message', (message: unknown) => {
    if (message === 'stop') stopping = true;
  });
  let pending: DemoAck[] = [];
  const flush = (): void => {
    if (pending.length === 0) return;
    port.postMessage({ kind: 'acks', acks: pending } satisfies DemoWorkerReport);
    pending = [];
  };
  const timer = setInterval(flush, REPORT_INTERVAL_MS);
  port.postMessage({ kind: 'ready' } satisfies DemoWorkerReport);
  let next = 0;
  let rejected = 0;
  let firstError: string | null = null;
  const loop = async (): Promise<void> => {
    while (!stopping) {
      const txnId = plan.txnBase + next++;
      const started = performance.now();
      try {
        const ack = await writer.commit({
          txnToken: { id: BigInt(txnId), epoch: 0 },
          frames: Array.from({ length: plan.framesPerCommit }, (_, f) => ({
            pageNumber: f + 1,
            pageData: demoPage(txnId, f + 1, plan.pageBytes),
            dbSizeIfCommit: plan.framesPerCommit,
          })),
        });
        pending.push({
          txnId,
          commitSeq: ack.commitSeq,
          epoch: ack.epoch,
          latencyUs: Math.round((performance.now() - started) * 1000),
        });
      } catch (error) {
        rejected++;
        firstError ??= error instanceof Error ? error.message : String(error);
        return;
      }
    }
  };
  await Promise.all(Array.from({ length: plan.concurrency }, loop));
  clearInterval(timer);
  flush();
  await writer.close();
  port.postMessage({ kind: 'done', rejected, firstError } satisfies DemoWorkerReport);
  port.close();
}

await run();
