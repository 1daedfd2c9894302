/**
 * Read-only replicas and base snapshots against a real 3-node JetStream
 * suite.cluster (see test/support/nats-suite.cluster.ts): a follower keeps a page store
 * replica readable and equal to the primary, resumes from its own position,
 * and is promoted by opening it as a page store; a database that had
 * checkpointed data before its stream began publishes a base snapshot, from
 * which restore and a new follower rebuild it whole.
 */

import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import { ReplicaErrorCode } from '../../src/replication/errors.js';
import { Follower } from '../../src/replication/follower.js';
import {
  openReplicatedStore,
  type ReplicatedStore,
} from '../../src/replication/replicated-store.js';
import { restoreFromStream } from '../../src/replication/restore.js';
import { listSnapshots } from '../../src/replication/snapshot.js';
import { PageStore } from '../../src/store/page-store.js';
import { ReplicaStore } from '../../src/store/replica-store.js';
import { clusterSuite } from '../support/cluster-suite.js';
import { seededRng } from '../support/rng.js';

const suite = clusterSuite('replica and snapshot tests');

const PAGE = 1024;
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const FOLLOWER_KILLS = Number(process.env.PWAL_FOLLOWER_KILLS ?? 6);

function page(pageNumber: number, fill: number): Uint8Array {
  const data = new Uint8Array(PAGE).fill(fill & 0xff);
  new DataView(data.buffer).setUint32(0, pageNumber, true);
  return data;
}

interface DbState {
  size: number;
  pages: Buffer[];
}

async function stateOf(
  size: number,
  read: (pageNumber: number) => Promise<Uint8Array>,
): Promise<DbState> {
  const pages: Buffer[] = [];
  for (let p = 1; p <= size; p++) pages.push(Buffer.from(await read(p)));
  return { size, pages };
}

function expectSame(seen: DbState, want: DbState, what: string): void {
  expect(seen.size, `${what}: size`).toBe(want.size);
  seen.pages.forEach((data, i) => {
    expect(data.equals(want.pages[i]!), `${what}: page ${i + 1}`).toBe(true);
  });
}

function openPrimary(dbPath: string, stream: string): Promise<ReplicatedStore> {
  return openReplicatedStore(dbPath, {
    pageSize: PAGE,
    autoCheckpoint: false,
    fsync: 'normal',
    replication: suite.replication(stream),
  });
}

/** Commits `count` transactions of a few pages (with a shrink and regrowth); returns the last epoch. */
async function workload(store: PageStore, count: number, salt: number): Promise<bigint> {
  let last = 0n;
  for (let i = 0; i < count; i++) {
    const pages = [1 + (i % 5), 6 + ((i * 3) % 11)].map((p) => ({
      pageNumber: p,
      data: page(p, salt + i),
    }));
    const options = i === Math.floor(count / 2) ? { dbSizePages: 8 } : {};
    const kept = options.dbSizePages === undefined ? pages : pages.filter((p) => p.pageNumber <= 8);
    last = (await store.commit(kept, options)).epoch;
  }
  return last;
}

describe('read-only replicas and base snapshots', () => {
  it('a follower keeps a readable page store replica equal to the primary, resumes, and is promoted', async () => {
    if (suite.cluster === null) return;
    const source = suite.tempDb();
    const replicaPath = suite.tempDb();
    const primary = await openPrimary(source, 'RREPLICA');
    const { store, replicator } = primary;
    try {
      let last = await workload(store, 30, 1);
      await replicator.waitForReplicated(last, 15_000);
      const follower = await Follower.start({
        servers: suite.cluster.urls,
        stream: 'RREPLICA',
        dbPath: replicaPath,
        flushEveryEpochs: 7,
      });
      try {
        await follower.waitForEpoch(last, 15_000);
        const replica = follower.replica!;
        expect(replica.appliedEpoch()).toBe(last);
        const want = await stateOf(store.dbSizePages, (p) => store.read(p));
        expectSame(await stateOf(replica.dbSizePages, (p) => replica.read(p)), want, 'caught up');
        // Live: commits keep landing while a reader reads the replica.
        const during = workload(store, 20, 100);
        let reads = 0;
        while (reads < 50) {
          const numbers = Array.from({ length: 8 }, (_, k) => k + 1);
          const { epoch, pages } = await replica.readPages(numbers);
          expect(epoch).not.toBeNull();
          expect(pages).toHaveLength(8);
          reads++;
          await new Promise((resolve) => setTimeout(resolve, 2));
        }
        last = await during;
        await replicator.waitForReplicated(last, 15_000);
        await follower.waitForEpoch(last, 15_000);
        const now = await stateOf(store.dbSizePages, (p) => store.read(p));
        expectSame(await stateOf(replica.dbSizePages, (p) => replica.read(p)), now, 'live');
        expect(follower.stats().state).not.toBe('failed');
      } finally {
        await follower.close();
      }
      const firstRun = follower.stats();
      expect(firstRun.durableEpoch).toBe(last);

      // Resumes from its own durable position: only the new epochs are applied.
      last = await workload(store, 10, 200);
      await replicator.waitForReplicated(last, 15_000);
      const resumed = await Follower.start({
        servers: suite.cluster.urls,
        stream: 'RREPLICA',
        dbPath: replicaPath,
      });
      try {
        await resumed.waitForEpoch(last, 15_000);
        expect(resumed.stats().epochsApplied).toBe(10);
        expect(resumed.stats().epochsAlreadyHeld).toBe(0);
      } finally {
        await resumed.close();
      }
      const final = await stateOf(store.dbSizePages, (p) => store.read(p));
      // Promotion: the replica's files are a page store database at `last`.
      const promoted = await PageStore.open(replicaPath, { autoCheckpoint: false });
      try {
        expectSame(await stateOf(promoted.dbSizePages, (p) => promoted.read(p)), final, 'promoted');
        const next = await promoted.commit([{ pageNumber: 1, data: page(1, 250) }]);
        expect(next.epoch > last).toBe(true);
      } finally {
        await promoted.close();
      }
    } finally {
      await primary.close();
    }
  });

  it('a database checkpointed before its stream began publishes a base snapshot; restore and a new follower rebuild it whole', async () => {
    if (suite.cluster === null) return;
    const source = suite.tempDb();
    // Before replication: data folded into the file, its segments deleted.
    const local = await PageStore.open(source, { pageSize: PAGE, autoCheckpoint: false });
    await workload(local, 25, 7);
    await local.close({ checkpoint: true });

    const primary = await openPrimary(source, 'RBASE');
    const { store, replicator } = primary;
    let mid: DbState;
    let midEpoch: bigint;
    let beforeSecondEpoch: bigint;
    try {
      midEpoch = await workload(store, 6, 50);
      mid = await stateOf(store.dbSizePages, (p) => store.read(p));
      let last = await workload(store, 6, 56);
      await replicator.waitForReplicated(last, 15_000);
      expect(replicator.stats().basesEnsured).toBe(1);
      const snapshots = await listSnapshots(await connectTo(suite.cluster.urls), 'RBASE');
      expect(snapshots).toHaveLength(1);
      expect(snapshots[0]!.epoch < midEpoch).toBe(true);
      beforeSecondEpoch = last;
      // A later snapshot, at a later checkpoint.
      const second = await primary.snapshot();
      expect(second?.epoch).toBe(last);
      last = await workload(store, 6, 90);
      await replicator.waitForReplicated(last, 15_000);
    } finally {
      await primary.close();
    }
    const want = await storeState(source);

    // Restore: the newest snapshot, then the epochs after it.
    const restored = suite.tempDb();
    const result = await restoreFromStream({
      servers: suite.cluster.urls,
      stream: 'RBASE',
      dbPath: restored,
    });
    expect(result.stoppedBy).toBeNull();
    expect(result.snapshot?.epoch).toBe(beforeSecondEpoch);
    expect(result.epochsRestored).toBe(6);
    expectSame(await storeState(restored), want, 'restored');

    // Point in time before the newest snapshot: the older (base) snapshot is used.
    const earlier = suite.tempDb();
    const pit = await restoreFromStream({
      servers: suite.cluster.urls,
      stream: 'RBASE',
      dbPath: earlier,
      untilEpoch: midEpoch!,
    });
    expect(pit.stoppedBy).toBeNull();
    expect(pit.snapshot!.epoch < midEpoch!).toBe(true);
    expect(pit.lastEpoch).toBe(midEpoch!);
    expectSame(await storeState(earlier), mid!, 'point in time');

    // Without the snapshot the stream alone is incomplete: reported, not restored in part silently.
    const alone = await restoreFromStream({
      servers: suite.cluster.urls,
      stream: 'RBASE',
      dbPath: suite.tempDb(),
      useSnapshot: false,
    });
    expect(alone.stoppedBy?.code).toBe(ReplicaErrorCode.gap);
    expect(alone.epochsRestored).toBe(0);

    // A new follower starts from the newest snapshot and converges.
    const replicaPath = suite.tempDb();
    const follower = await Follower.start({
      servers: suite.cluster.urls,
      stream: 'RBASE',
      dbPath: replicaPath,
    });
    try {
      await follower.waitForEpoch(result.lastEpoch!, 15_000);
      expect(follower.stats().snapshot?.epoch).toBe(beforeSecondEpoch);
      const replica = follower.replica!;
      expectSame(await stateOf(replica.dbSizePages, (p) => replica.read(p)), want, 'follower');
    } finally {
      await follower.close();
    }

    // The CLI: restore --apply folds everything into the file.
    const viaCli = suite.tempDb();
    const out: string[] = [];
    const io = { stdout: (t: string) => out.push(t), stderr: (t: string) => out.push(t) };
    const code = await runCli(
      ['restore', '--from', suite.cluster.urls.join(','), '--stream', 'RBASE', viaCli, '--apply'],
      io,
    );
    expect(code, out.join('')).toBe(0);
    expect(out.join('')).toContain(`base snapshot of epoch ${beforeSecondEpoch}`);
    expectSame(await storeState(viaCli), want, 'cli --apply');
  });
});

describe('trimming the stream below a snapshot', () => {
  it('bounds the stream; restore and a fresh follower still rebuild the database, a follower left behind re-seeds itself from the newest snapshot', async () => {
    if (suite.cluster === null) return;
    const source = suite.tempDb();
    const primary = await openPrimary(source, 'RTRIM');
    const { store, replicator } = primary;
    const behindPath = suite.tempDb();
    try {
      let last = await workload(store, 15, 3);
      await replicator.waitForReplicated(last, 15_000);
      // A follower that catches up now and then stays away.
      const behind = await Follower.start({
        servers: suite.cluster.urls,
        stream: 'RTRIM',
        dbPath: behindPath,
      });
      await behind.waitForEpoch(last, 15_000);
      await behind.close();
      last = await workload(store, 15, 30);
      await replicator.waitForReplicated(last, 15_000);
      const nc = await connectTo(suite.cluster.urls);
      const jsm = await jetstreamManager(nc);
      const before = (await jsm.streams.info('RTRIM')).state;
      const meta = await primary.snapshot({ keep: 1, trimStream: true });
      const after = (await jsm.streams.info('RTRIM')).state;
      expect(meta?.epoch).toBe(last);
      expect(after.first_seq).toBeGreaterThan(before.first_seq);
      expect(after.messages).toBeLessThan(before.messages);
      // The tail stays: the replicator keeps shipping after it.
      expect(after.last_seq).toBe(before.last_seq);
      last = await workload(store, 5, 60);
      await replicator.waitForReplicated(last, 15_000);
      expect(replicator.stats().lastError).toBeNull();
    } finally {
      await primary.close();
    }
    const want = await storeState(source);

    const restored = suite.tempDb();
    const result = await restoreFromStream({
      servers: suite.cluster.urls,
      stream: 'RTRIM',
      dbPath: restored,
    });
    expect(result.stoppedBy).toBeNull();
    expect(result.epochsRestored).toBe(5);
    expectSame(await storeState(restored), want, 'restored');

    const fresh = await Follower.start({
      servers: suite.cluster.urls,
      stream: 'RTRIM',
      dbPath: suite.tempDb(),
    });
    try {
      await fresh.waitForEpoch(result.lastEpoch!, 15_000);
      const replica = fresh.replica!;
      expectSame(
        await stateOf(replica.dbSizePages, (p) => replica.read(p)),
        want,
        'fresh follower',
      );
    } finally {
      await fresh.close();
    }

    // Left behind with re-seeding off: it says it must be rebuilt.
    const stuck = await Follower.start({
      servers: suite.cluster.urls,
      stream: 'RTRIM',
      dbPath: behindPath,
      reseed: false,
    });
    try {
      const error = await stuck.waitForEpoch(result.lastEpoch!, 15_000).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: ReplicaErrorCode.gap });
      expect((error as Error).message).toContain('rebuild the replica');
      expect(stuck.stats().state).toBe('failed');
    } finally {
      await stuck.close();
    }
    // By default it re-seeds itself from the newest snapshot and converges
    // (reads during a re-seed: test/store/replica-store.test.ts).
    const resumed = await Follower.start({
      servers: suite.cluster.urls,
      stream: 'RTRIM',
      dbPath: behindPath,
    });
    try {
      const early = await resumed.replica!.readPages([1, 2]);
      expect(early.pages).toHaveLength(2);
      await resumed.waitForEpoch(result.lastEpoch!, 15_000);
      expect(resumed.stats().reseeds).toBe(1);
      const replica = resumed.replica!;
      expectSame(await stateOf(replica.dbSizePages, (p) => replica.read(p)), want, 're-seeded');
    } finally {
      await resumed.close();
    }
    expectSame(await storeState(behindPath), want, 're-seeded, promoted');
  });
});

describe('pwal snapshot', () => {
  it('publishes a closed database as a base snapshot, keeps the newest and trims the stream; restore rebuilds it', async () => {
    if (suite.cluster === null) return;
    const source = suite.tempDb();
    const primary = await openPrimary(source, 'RSNAPCLI');
    const last = await workload(primary.store, 12, 9);
    await primary.replicator.waitForReplicated(last, 15_000);
    await primary.close();
    const want = await storeState(source);
    const urls = suite.cluster.urls.join(',');
    const out: string[] = [];
    const io = { stdout: (t: string) => out.push(t), stderr: (t: string) => out.push(t) };
    // The stream comes from the database's replication state; twice, keeping one.
    expect(await runCli(['snapshot', '--to', urls, source], io), out.join('')).toBe(0);
    expect(await runCli(['snapshot', '--to', urls, source, '--keep', '1', '--trim'], io)).toBe(0);
    expect(out.join('')).toContain(`to stream RSNAPCLI: epoch ${last}`);
    expect(out.join('')).toContain('stream trimmed');
    const snapshots = await listSnapshots(await connectTo(suite.cluster.urls), 'RSNAPCLI');
    expect(snapshots.map((m) => m.epoch)).toEqual([last]);
    const restored = suite.tempDb();
    const result = await restoreFromStream({
      servers: suite.cluster.urls,
      stream: 'RSNAPCLI',
      dbPath: restored,
    });
    expect(result.stoppedBy).toBeNull();
    expect(result.snapshot?.epoch).toBe(last);
    expectSame(await storeState(restored), want, 'restored from the CLI snapshot');
    // Usage errors, before anything is opened.
    expect(await runCli(['snapshot', '--to', urls, source, '--keep', '0'], io)).toBe(2);
    expect(await runCli(['snapshot', '--to', urls, suite.tempDb()], io)).toBe(2);
  });
});

describe('a follower process killed at random moments', () => {
  it('always reopens at a whole epoch equal to the primary, resumes, and converges', async () => {
    if (suite.cluster === null) return;
    const source = suite.tempDb();
    const replicaPath = suite.tempDb();
    const primary = await openPrimary(source, 'RKILLF');
    const { store, replicator } = primary;
    // The primary's state after every epoch (one committer: one commit per epoch at most).
    const states: Array<{ epoch: bigint; state: DbState }> = [];
    const stateAt = (epoch: bigint | null): DbState => {
      let found: DbState = { size: 0, pages: [] };
      for (const s of states) if (epoch !== null && s.epoch <= epoch) found = s.state;
      return found;
    };
    let committing = true;
    let salt = 0;
    const committer = (async () => {
      while (committing) {
        const last = await workload(store, 1, salt++);
        states.push({ epoch: last, state: await stateOf(store.dbSizePages, (p) => store.read(p)) });
        await new Promise((resolve) => setTimeout(resolve, 3));
      }
    })();
    const rng = seededRng(42);
    const durables: Array<bigint | null> = [];
    try {
      for (let kill = 0; kill < FOLLOWER_KILLS; kill++) {
        const child = spawn(
          process.execPath,
          [
            '--import',
            'tsx',
            path.join(repoRoot, 'src/cli/pwal.ts'),
            'follow',
            '--from',
            suite.cluster.urls.join(','),
            '--stream',
            'RKILLF',
            '--flush-every',
            '3',
            replicaPath,
          ],
          { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] },
        );
        let out = '';
        child.stdout?.on('data', (chunk: Buffer) => {
          out += chunk.toString();
        });
        child.stderr?.on('data', (chunk: Buffer) => {
          out += chunk.toString();
        });
        const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
        // Let it start and apply for a while, then kill it without warning.
        const started = Date.now();
        while (!out.includes('applied up to epoch') && Date.now() - started < 15_000) {
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        expect(out, 'the follower did not start').toContain('applied up to epoch');
        await new Promise((resolve) => setTimeout(resolve, 50 + Math.floor(rng() * 600)));
        child.kill('SIGKILL');
        await exited;
        // Opening the replica (taking over the dead follower's lock) gives a whole epoch.
        const replica = await ReplicaStore.open(replicaPath);
        const durable = replica.durableEpoch();
        durables.push(durable);
        expectSame(
          await stateOf(replica.dbSizePages, (p) => replica.read(p)),
          stateAt(durable),
          `after kill ${kill} (epoch ${durable})`,
        );
        await replica.close();
      }
    } finally {
      committing = false;
      await committer;
    }
    const last = states.at(-1)!.epoch;
    await replicator.waitForReplicated(last, 15_000);
    await primary.close();
    // The replica moved forward across the kills, and a last run converges.
    expect(new Set(durables.map(String)).size).toBeGreaterThan(1);
    const io = { stdout: () => {}, stderr: () => {} };
    const code = await runCli(
      [
        'follow',
        '--from',
        suite.cluster.urls.join(','),
        '--stream',
        'RKILLF',
        replicaPath,
        '--once',
      ],
      io,
    );
    expect(code).toBe(0);
    const shown: string[] = [];
    const inspectIo = {
      stdout: (t: string) => shown.push(t),
      stderr: (t: string) => shown.push(t),
    };
    expect(await runCli(['inspect', replicaPath], inspectIo)).toBe(0);
    expect(shown.join('')).toContain(`from stream RKILLF, durable through epoch ${last}`);
    const replica = await ReplicaStore.open(replicaPath);
    expect(replica.durableEpoch()).toBe(last);
    expectSame(
      await stateOf(replica.dbSizePages, (p) => replica.read(p)),
      states.at(-1)!.state,
      'converged',
    );
    await replica.close();
  }, 120_000);
});

/** The database at `dbPath` as a page store reads it (opened and closed again). */
async function storeState(dbPath: string): Promise<DbState> {
  const store = await PageStore.open(dbPath, { autoCheckpoint: false });
  try {
    return await stateOf(store.dbSizePages, (p) => store.read(p));
  } finally {
    await store.close();
  }
}

async function connectTo(urls: string[]) {
  const { connect } = await import('@nats-io/transport-node');
  const nc = await connect({ servers: urls });
  ncs.push(nc);
  return nc;
}
const ncs: Array<{ close(): Promise<void> }> = [];
afterAll(async () => {
  for (const nc of ncs) await nc.close();
});
