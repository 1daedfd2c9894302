/**
 * Followers and base snapshots, against a real 3-node JetStream cluster on
 * loopback (R3 stream), started and stopped here.
 *
 * 1. Catch-up: a primary (replicated page store, 4 KiB pages) commits
 *    COMMITS transactions of 4 pages from 16 committers; then fresh
 *    followers catch up from the stream, `store` mode (a readable replica,
 *    folded every 512 epochs) and `log` mode (one durable segment file per
 *    epoch), interleaved over REPS repetitions: epochs/s and MB/s to visible,
 *    and the time to make it durable (close).
 * 2. Live: while 16 committers commit for LIVE_MS, a store follower follows;
 *    for every 10th commit, the time from its local acknowledgement until the
 *    replica serves it (visibility lag), and the latency of replica reads.
 * 3. Snapshots: publishing the database file as a base snapshot, and a
 *    restore from it versus a restore from the stream alone.
 *
 * Run: `npx tsx bench/follow.ts` (needs `nats-server` on PATH).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Follower } from '../src/replication/follower.js';
import { openReplicatedStore, type ReplicatedStore } from '../src/replication/replicated-store.js';
import { restoreFromStream } from '../src/replication/restore.js';
import { startBenchCluster } from '../test/support/nats-cluster.js';

const COMMITS = Number(process.env.COMMITS ?? 4_000);
const REPS = Number(process.env.REPS ?? 3);
const LIVE_MS = Number(process.env.LIVE_MS ?? 3_000);
const PAGE = 4096;
const PAGES_PER_COMMIT = 4;
const DB_PAGES = 4096;
const COMMITTERS = 16;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function tempDb(): string {
  return path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-bench-follow-')), 'db');
}

let salt = 0;
function pages(): Array<{ pageNumber: number; data: Uint8Array }> {
  salt++;
  const first = ((salt * 7919) % (DB_PAGES - PAGES_PER_COMMIT)) + 1;
  return Array.from({ length: PAGES_PER_COMMIT }, (_, k) => ({
    pageNumber: first + k,
    data: new Uint8Array(PAGE).fill((salt + k) & 0xff),
  }));
}

/** Commits from COMMITTERS callers until `count` commits or `deadline`; returns epochs of every commit. */
async function drive(
  primary: ReplicatedStore,
  until: { count?: number; deadline?: number },
  onCommit?: (epoch: bigint, ackedAt: number) => void,
): Promise<bigint> {
  let started = 0;
  let last = 0n;
  const worker = async (): Promise<void> => {
    for (;;) {
      if (until.count !== undefined && started >= until.count) return;
      if (until.deadline !== undefined && performance.now() >= until.deadline) return;
      started++;
      const { epoch } = await primary.store.commit(pages());
      if (epoch > last) last = epoch;
      onCommit?.(epoch, performance.now());
    }
  };
  await Promise.all(Array.from({ length: COMMITTERS }, worker));
  return last;
}

async function main(): Promise<void> {
  const cluster = await startBenchCluster();
  if (cluster === null) return;
  const dbPath = tempDb();
  const primary = await openReplicatedStore(dbPath, {
    pageSize: PAGE,
    fsync: 'full',
    replication: { servers: cluster.urls, stream: 'BFOLLOW', subject: 'BFOLLOW.e', replicas: 3 },
  });
  try {
    // --- 1. catch-up ---
    const last = await drive(primary, { count: COMMITS });
    await primary.replicator.waitForReplicated(last, 120_000);
    const shipped = primary.replicator.stats();
    const epochs = shipped.epochsShipped;
    const mb = shipped.bytesShipped / 1e6;
    const catchUp = new Map<string, Array<{ visibleMs: number; durableMs: number }>>();
    for (let rep = 0; rep < REPS; rep++) {
      for (const mode of ['store', 'log'] as const) {
        const replicaPath = tempDb();
        const t0 = performance.now();
        const follower = await Follower.start({
          servers: cluster.urls,
          stream: 'BFOLLOW',
          dbPath: replicaPath,
          mode,
        });
        await follower.waitForEpoch(last, 300_000);
        const visibleMs = performance.now() - t0;
        await follower.close();
        const durableMs = performance.now() - t0;
        catchUp.set(mode, [...(catchUp.get(mode) ?? []), { visibleMs, durableMs }]);
        fs.rmSync(path.dirname(replicaPath), { recursive: true, force: true });
      }
    }
    console.log(
      `follower catch-up: ${COMMITS} commits x ${PAGES_PER_COMMIT} pages of ${PAGE} B from ${COMMITTERS} committers = ${epochs} epochs, ${mb.toFixed(1)} MB in the stream; ${REPS} reps, medians; ${os.cpus().length} cores`,
    );
    console.log('mode    to visible ms   epochs/s    MB/s   to durable ms');
    for (const [mode, runs] of catchUp) {
      const visible = median(runs.map((r) => r.visibleMs));
      console.log(
        [
          mode.padEnd(6),
          visible.toFixed(0).padStart(14),
          (epochs / (visible / 1000)).toFixed(0).padStart(10),
          (mb / (visible / 1000)).toFixed(1).padStart(7),
          median(runs.map((r) => r.durableMs))
            .toFixed(0)
            .padStart(15),
        ].join(' '),
      );
    }

    // --- 2. live ---
    const livePath = tempDb();
    const follower = await Follower.start({
      servers: cluster.urls,
      stream: 'BFOLLOW',
      dbPath: livePath,
    });
    await follower.waitForEpoch(last, 300_000);
    const replica = follower.replica!;
    const lags: number[] = [];
    const replicatedLags: number[] = [];
    const readMs: number[] = [];
    let reading = true;
    const reader = (async () => {
      while (reading) {
        const t0 = performance.now();
        await replica.read(((salt * 31) % DB_PAGES) + 1).catch(() => undefined);
        readMs.push(performance.now() - t0);
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    let n = 0;
    const waits: Promise<void>[] = [];
    const liveLast = await drive(
      primary,
      { deadline: performance.now() + LIVE_MS },
      (epoch, at) => {
        if (n++ % 10 !== 0) return;
        waits.push(
          follower.waitForEpoch(epoch, 60_000).then(() => {
            lags.push(performance.now() - at);
          }),
          primary.replicator.waitForReplicated(epoch, 60_000).then(() => {
            replicatedLags.push(performance.now() - at);
          }),
        );
      },
    );
    await Promise.all(waits);
    await follower.waitForEpoch(liveLast, 60_000);
    reading = false;
    await reader;
    await follower.close();
    console.log(
      `live follow (${COMMITTERS} committers, ${LIVE_MS} ms, ${n} commits): after the local ack: replicated (cluster ack) p50 ${percentile(replicatedLags, 50).toFixed(1)} ms, p99 ${percentile(replicatedLags, 99).toFixed(1)} ms; visible on the replica p50 ${percentile(lags, 50).toFixed(1)} ms, p99 ${percentile(lags, 99).toFixed(1)} ms; replica read p50 ${percentile(readMs, 50).toFixed(3)} ms, p99 ${percentile(readMs, 99).toFixed(3)} ms (${readMs.length} reads)`,
    );

    // --- 3. snapshots ---
    const t0 = performance.now();
    const meta = await primary.snapshot();
    const snapMs = performance.now() - t0;
    const restoreRuns = new Map<string, number[]>();
    for (let rep = 0; rep < REPS; rep++) {
      for (const useSnapshot of [true, false]) {
        const target = tempDb();
        const r0 = performance.now();
        const result = await restoreFromStream({
          servers: cluster.urls,
          stream: 'BFOLLOW',
          dbPath: target,
          useSnapshot,
        });
        if (result.stoppedBy !== null) throw result.stoppedBy;
        const key = useSnapshot ? 'snapshot + later epochs' : 'stream alone';
        restoreRuns.set(key, [...(restoreRuns.get(key) ?? []), performance.now() - r0]);
        fs.rmSync(path.dirname(target), { recursive: true, force: true });
      }
    }
    console.log(
      `snapshot publish: ${((meta?.bytes ?? 0) / 1e6).toFixed(1)} MB at epoch ${meta?.epoch} in ${snapMs.toFixed(0)} ms (${((meta?.bytes ?? 0) / 1e3 / snapMs).toFixed(1)} MB/s, incl. checkpoint)`,
    );
    for (const [key, runs] of restoreRuns) {
      console.log(
        `restore from ${key.padEnd(24)} ${median(runs).toFixed(0).padStart(7)} ms (median of ${runs.length})`,
      );
    }
  } finally {
    await primary.close();
    await cluster.stop();
    fs.rmSync(path.dirname(dbPath), { recursive: true, force: true });
  }
}

await main();
