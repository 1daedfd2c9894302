/**
 * Drives a {@link ParallelWal} with a deterministic random workload: several
 * async writers (each with its own lane via `openWriter`, plus the thread's
 * default lane), commits issued one at a time or in bursts, and records every
 * acknowledgement. Used by the power-cut and fault-injection tests.
 */

import type { CommitResult, ParallelWal, ParallelWalBatch } from '../../src/engine/wal.js';
import { WalError } from '../../src/errors.js';
import { type CommitAck, type CommitPage, commitPages } from './commit-oracle.js';
import { type Rng, randInt, seededRng } from './rng.js';

/** Shape of a workload. */
export interface WorkloadPlan {
  seed: number;
  writers: number;
  commitsPerWriter: number;
  /** Chance that a writer fires a burst of 2–4 commits without waiting in between. */
  burstChance: number;
  /** Largest page image, in bytes. */
  maxPageBytes: number;
  /** First txn id (ids are consecutive per writer stride). */
  firstTxnId?: bigint;
}

/** What happened to a workload's commits. */
export interface WorkloadOutcome {
  /** Pages of every submitted transaction, by txn id. */
  submitted: Map<bigint, CommitPage[]>;
  /** Acknowledged commits, in acknowledgement order. */
  acks: CommitAck[];
  /** Rejections, in order. */
  rejections: unknown[];
  /** Errors that were not typed {@link WalError}s (must stay empty). */
  untyped: unknown[];
}

/** A commit batch for txn `txnId` of the plan. */
export function batchFor(plan: WorkloadPlan, txnId: bigint): ParallelWalBatch {
  const pages = commitPages(plan.seed, txnId, plan.maxPageBytes);
  return {
    txnToken: { id: txnId, epoch: 0 },
    frames: pages.map((p, i) => ({
      pageNumber: p.pageId,
      pageData: p.data,
      dbSizeIfCommit: i === pages.length - 1 ? 300 : 0,
    })),
  };
}

/**
 * Runs the plan to completion (every commit settles). Commits that fail are
 * recorded, not thrown; the caller decides what failures were expected.
 */
export async function runWorkload(wal: ParallelWal, plan: WorkloadPlan): Promise<WorkloadOutcome> {
  const outcome: WorkloadOutcome = { submitted: new Map(), acks: [], rejections: [], untyped: [] };
  const base = plan.firstTxnId ?? 1n;
  const writer = async (w: number, rng: Rng): Promise<void> => {
    let lane: {
      commit(b: ParallelWalBatch): Promise<CommitResult>;
      close(): Promise<void>;
    } | null = null;
    try {
      lane = w === 0 ? { commit: (b) => wal.commit(b), close: async () => {} } : wal.openWriter();
    } catch (error) {
      outcome.rejections.push(error);
      if (!(error instanceof WalError)) outcome.untyped.push(error);
      return;
    }
    const one = async (n: number): Promise<void> => {
      const txnId = base + BigInt(n * plan.writers + w);
      const batch = batchFor(plan, txnId);
      outcome.submitted.set(txnId, commitPages(plan.seed, txnId, plan.maxPageBytes));
      try {
        const result = await lane!.commit(batch);
        outcome.acks.push({ txnId, epoch: result.epoch, commitSeq: result.commitSeq });
      } catch (error) {
        outcome.rejections.push(error);
        if (!(error instanceof WalError)) outcome.untyped.push(error);
      }
    };
    let n = 0;
    while (n < plan.commitsPerWriter) {
      if (rng() < plan.burstChance) {
        const burst = Math.min(randInt(rng, 2, 4), plan.commitsPerWriter - n);
        await Promise.all(Array.from({ length: burst }, (_, i) => one(n + i)));
        n += burst;
      } else {
        await one(n);
        n += 1;
      }
    }
    await lane.close().catch(() => undefined);
  };
  await Promise.all(
    Array.from({ length: plan.writers }, (_, w) => writer(w, seededRng(plan.seed * 31 + w))),
  );
  return outcome;
}

/** Resolves with `promise`, or rejects if it has not settled after `ms` (a hang). */
export async function settleWithin<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${what} did not settle within ${ms} ms (hang)`)),
      ms,
    );
  });
  try {
    return await Promise.race([promise, hang]);
  } finally {
    clearTimeout(timer);
  }
}
