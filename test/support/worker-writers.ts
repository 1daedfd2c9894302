/**
 * Writer threads for the engine's tests: start `test/fixtures/worker-writer.ts`
 * with a plan, collect its reports, and wait for conditions on them.
 */
import { Worker } from 'node:worker_threads';
import type { WriterPlan, WriterReport } from '../fixtures/worker-writer.js';

const ENTRY = new URL('../fixtures/worker-entry.mjs', import.meta.url);

/** A writer thread and what it reported so far. */
export interface WriterRun {
  worker: Worker;
  reports: WriterReport[];
  exited: Promise<number>;
}

/** Starts a writer thread; `onReport` sees each report as it arrives. */
export function startWriter(plan: WriterPlan, onReport?: (r: WriterReport) => void): WriterRun {
  const worker = new Worker(ENTRY, { workerData: plan, transferList: [plan.handle.port] });
  const reports: WriterReport[] = [];
  worker.on('message', (r: WriterReport) => {
    reports.push(r);
    onReport?.(r);
  });
  const exited = new Promise<number>((resolve, reject) => {
    worker.on('exit', resolve);
    worker.on('error', reject);
  });
  return { worker, reports, exited };
}

/** The acknowledgements among `reports`. */
export function acks(reports: readonly WriterReport[]): Extract<WriterReport, { kind: 'ack' }>[] {
  return reports.filter((r): r is Extract<WriterReport, { kind: 'ack' }> => r.kind === 'ack');
}

/** Waits (bounded) until `condition` holds; returns whether it did. */
export async function until(condition: () => boolean, deadlineMs = 20_000): Promise<boolean> {
  const end = Date.now() + deadlineMs;
  while (!condition()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 5));
  }
  return true;
}
