/**
 * Replication against a real 3-node NATS JetStream suite.cluster on loopback
 * (started and stopped here; see test/support/nats-suite.cluster.ts). When
 * `nats-server` is not installed, the file logs a note and checks nothing.
 */
import * as fs from 'node:fs';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, headers } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import type { ParallelWalBatch } from '../../src/engine/wal.js';
import { encodeSegment } from '../../src/format/segment.js';
import type { WalRecord } from '../../src/format/types.js';
import { ReplicaErrorCode, ReplicationErrorCode } from '../../src/replication/errors.js';
import { Follower } from '../../src/replication/follower.js';
import { openReplicatedStore } from '../../src/replication/replicated-store.js';
import { ReplicatedWal } from '../../src/replication/replicated-wal.js';
import { restoreFromStream } from '../../src/replication/restore.js';
import { readReplicationState } from '../../src/replication/state-file.js';
import { type ChunkMessage, encodeEpochChunks } from '../../src/replication/wire.js';
import { listSegments } from '../../src/storage/segment-files.js';
import { clusterSuite } from '../support/cluster-suite.js';

const suite = clusterSuite('replication cluster tests');

let nextTxn = 1n;
function batch(pages: number[], fill: number, size = 1024): ParallelWalBatch {
  return {
    txnToken: { id: nextTxn++, epoch: 0 },
    frames: pages.map((pageNumber) => ({
      pageNumber,
      pageData: new Uint8Array(size).fill((fill + pageNumber) & 0xff),
      dbSizeIfCommit: 0,
    })),
  };
}

/** Segment bytes by epoch. */
async function segmentsOf(dbPath: string): Promise<Map<bigint, Buffer>> {
  const out = new Map<bigint, Buffer>();
  for (const entry of await listSegments(dbPath)) out.set(entry.epoch, fs.readFileSync(entry.path));
  return out;
}

function expectSameSegments(a: Map<bigint, Buffer>, b: Map<bigint, Buffer>): void {
  expect([...b.keys()]).toEqual([...a.keys()]);
  for (const [epoch, bytes] of a) expect(b.get(epoch)?.equals(bytes), `epoch ${epoch}`).toBe(true);
}

function openReplicated(dbPath: string, stream: string, extra: { publishTimeoutMs?: number } = {}) {
  return ReplicatedWal.open(dbPath, {
    slotCount: 2,
    fsync: 'normal',
    replication: {
      servers: suite.cluster!.urls,
      stream,
      subject: `${stream}.epochs`,
      replicas: 3,
      publishTimeoutMs: extra.publishTimeoutMs ?? 2_000,
      connectTimeoutMs: 1_000,
    },
  });
}

async function streamLeader(stream: string): Promise<string> {
  const nc = await connect({ servers: suite.cluster!.urls });
  try {
    const info = await (await jetstreamManager(nc)).streams.info(stream);
    const leader = info.cluster?.leader;
    if (leader === undefined) throw new Error(`stream ${stream} has no leader`);
    return leader;
  } finally {
    await nc.close();
  }
}

describe('replication to a 3-node JetStream cluster', () => {
  it('acknowledges replicated commits only once the suite.cluster has them, while a node is killed and restarted', async () => {
    if (suite.cluster === null) return;
    const dbPath = suite.tempDb();
    const log = await openReplicated(dbPath, 'RKILL');
    try {
      const commits: Promise<{ epoch: bigint; replicated: boolean }>[] = [];
      for (let i = 0; i < 40; i++)
        commits.push(
          log.commit(batch([1, 2, 3], i), { durability: 'replicated', timeoutMs: 15_000 }),
        );
      const first = await Promise.all(commits);
      expect(first.every((c) => c.replicated)).toBe(true);
      // The hardest node to lose: the stream's Raft leader (a new one must be elected).
      const victim = await streamLeader('RKILL');
      await suite.cluster.kill(victim);
      const during: Promise<{ epoch: bigint; replicated: boolean }>[] = [];
      for (let i = 0; i < 40; i++)
        during.push(
          log.commit(batch([4, 5, i + 10], i), { durability: 'replicated', timeoutMs: 15_000 }),
        );
      const second = await Promise.all(during);
      await suite.cluster.restart(victim);
      const after = await log.commit(batch([6], 1), {
        durability: 'replicated',
        timeoutMs: 15_000,
      });
      const acknowledged = [...first, ...second, after];
      const maxEpoch = acknowledged.reduce((m, c) => (c.epoch > m ? c.epoch : m), 0n);
      expect(log.replicatedEpoch()).not.toBeNull();
      expect(log.replicatedEpoch()! >= maxEpoch).toBe(true);
      const stats = log.stats().replication;
      expect(stats.localDurableEpoch).toBe(log.wal.durableEpoch());
      expect(stats.epochsShipped).toBeGreaterThan(0);
      await log.close();
      const state = await readReplicationState(dbPath);
      expect(state?.replicatedEpoch).toBe(log.replicatedEpoch());

      // Every acknowledged epoch is in the stream: a restore has them all, byte for byte.
      const restored = suite.tempDb();
      const result = await restoreFromStream({
        servers: suite.cluster.urls,
        stream: 'RKILL',
        dbPath: restored,
      });
      expect(result.stoppedBy).toBeNull();
      expect(result.duplicateCount).toBe(0);
      expectSameSegments(await segmentsOf(dbPath), await segmentsOf(restored));
    } finally {
      await log.close();
    }
  });

  it('restores a fresh directory to exactly the source at a chosen epoch', async () => {
    if (suite.cluster === null) return;
    const dbPath = suite.tempDb();
    const log = await openReplicated(dbPath, 'RPIT');
    const epochs: bigint[] = [];
    try {
      for (let i = 0; i < 12; i++) {
        // Large pages: several epochs span more than one message (1 MiB max).
        const pages = i % 4 === 0 ? Array.from({ length: 24 }, (_, k) => k + 1) : [i + 1];
        const result = await log.commit(batch(pages, i, 60_000), { durability: 'replicated' });
        epochs.push(result.epoch);
      }
    } finally {
      await log.close();
    }
    const source = await segmentsOf(dbPath);
    const cut = epochs[6]!;
    const restored = suite.tempDb();
    const result = await restoreFromStream({
      servers: suite.cluster.urls,
      stream: 'RPIT',
      dbPath: restored,
      untilEpoch: cut,
    });
    expect(result.stoppedBy).toBeNull();
    expect(result.lastEpoch).toBe(cut);
    const upToCut = new Map([...source].filter(([epoch]) => epoch <= cut));
    expectSameSegments(upToCut, await segmentsOf(restored));
    // The same through the CLI, as an operator would run it.
    const out: string[] = [];
    const io = { stdout: (t: string) => out.push(t), stderr: (t: string) => out.push(t) };
    const viaCli = suite.tempDb();
    const argv = [
      'restore',
      '--from',
      suite.cluster.urls.join(','),
      '--stream',
      'RPIT',
      viaCli,
      '--until-epoch',
      String(cut),
    ];
    expect(await runCli(argv, io)).toBe(0);
    expect(out.join('')).toContain(`up to epoch ${cut}`);
    expectSameSegments(upToCut, await segmentsOf(viaCli));
    // A restore refuses a target that already has segments.
    await expect(
      restoreFromStream({ servers: suite.cluster.urls, stream: 'RPIT', dbPath: restored }),
    ).rejects.toMatchObject({
      code: ReplicationErrorCode.position,
    });
  });

  it('keeps a follower current and resumes it from its own durable position', async () => {
    if (suite.cluster === null) return;
    const dbPath = suite.tempDb();
    const replica = suite.tempDb();
    const log = await openReplicated(dbPath, 'RFOLLOW');
    try {
      let last = 0n;
      for (let i = 0; i < 10; i++)
        last = (await log.commit(batch([1, i + 2], i), { durability: 'replicated' })).epoch;
      const follower = await Follower.start({
        servers: suite.cluster.urls,
        stream: 'RFOLLOW',
        dbPath: replica,
        mode: 'log',
      });
      await follower.waitForEpoch(last, 15_000);
      const firstRun = follower.stats();
      await follower.close();
      expectSameSegments(await segmentsOf(dbPath), await segmentsOf(replica));

      for (let i = 0; i < 10; i++)
        last = (await log.commit(batch([7, i + 20], i), { durability: 'replicated' })).epoch;
      const resumed = await Follower.start({
        servers: suite.cluster.urls,
        stream: 'RFOLLOW',
        dbPath: replica,
        mode: 'log',
      });
      try {
        await resumed.waitForEpoch(last, 15_000);
        // Only the new epochs were applied: it resumed from its position, not from the start.
        expect(resumed.stats().epochsApplied).toBe(
          (await segmentsOf(dbPath)).size - firstRun.epochsApplied,
        );
        // And it keeps up with live commits.
        last = (await log.commit(batch([9], 3), { durability: 'replicated' })).epoch;
        await resumed.waitForEpoch(last, 15_000);
      } finally {
        await resumed.close();
      }
      expectSameSegments(await segmentsOf(dbPath), await segmentsOf(replica));

      // `pwal follow --once` resumes the same replica and stops when caught up.
      last = (await log.commit(batch([11], 5), { durability: 'replicated' })).epoch;
      const out: string[] = [];
      const io = { stdout: (t: string) => out.push(t), stderr: (t: string) => out.push(t) };
      const argv = [
        'follow',
        '--from',
        suite.cluster.urls.join(','),
        '--stream',
        'RFOLLOW',
        '--mode',
        'log',
        replica,
        '--until-epoch',
        String(last),
      ];
      expect(await runCli(argv, io)).toBe(0);
      expect(out.join('')).toContain(`applied up to epoch ${last}`);
      expectSameSegments(await segmentsOf(dbPath), await segmentsOf(replica));
    } finally {
      await log.close();
    }
  });

  it('detects duplicates and gaps injected into the stream', async () => {
    if (suite.cluster === null) return;
    const nc = await connect({ servers: suite.cluster.urls });
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: 'RINJECT', subjects: ['inject.x'], num_replicas: 3 });
      const js = jetstream(nc);
      const publish = async (messages: ChunkMessage[]): Promise<void> => {
        for (const m of messages) {
          const h = headers();
          for (const [k, v] of m.headers) h.set(k, v);
          await js.publish('inject.x', m.data, { headers: h });
        }
      };
      const epoch = (e: bigint, prev: bigint | null, pages = 2): ChunkMessage[] =>
        encodeEpochChunks(
          {
            databaseId: 'inj',
            epoch: e,
            prevEpoch: prev,
            segment: segmentOf(e, pages),
            certificate: null,
          },
          4096,
        );
      await publish(epoch(1n, null));
      await publish(epoch(2n, 1n, 6));
      await publish(epoch(2n, 1n, 6)); // an exact duplicate of a whole epoch
      await publish(epoch(3n, 2n));
      await publish(epoch(5n, 4n)); // epoch 4 never arrives: a gap
      await publish(epoch(6n, 5n));

      const target = suite.tempDb();
      const result = await restoreFromStream({ connection: nc, stream: 'RINJECT', dbPath: target });
      expect(result.lastEpoch).toBe(3n);
      expect(result.epochsRestored).toBe(3);
      expect(result.duplicateCount).toBe(epoch(2n, 1n, 6).length);
      expect(result.stoppedBy?.code).toBe(ReplicaErrorCode.gap);
      expect(result.stoppedBy?.epoch).toBe(5n);
      expect([...(await segmentsOf(target)).keys()]).toEqual([1n, 2n, 3n]);

      // A follower stops at the same place and reports why.
      const replica = suite.tempDb();
      const follower = await Follower.start({
        connection: nc,
        stream: 'RINJECT',
        dbPath: replica,
        mode: 'log',
      });
      await expect(follower.waitForEpoch(6n, 10_000)).rejects.toMatchObject({
        code: ReplicaErrorCode.gap,
      });
      expect(follower.appliedEpoch()).toBe(3n);
      expect(follower.stats().duplicatesSkipped).toBe(epoch(2n, 1n, 6).length);
      await follower.close();

      // A second, different copy of an epoch already seen is a conflict, not a duplicate.
      await jsm.streams.add({ name: 'RCONFLICT', subjects: ['conflict.x'], num_replicas: 3 });
      for (const m of [...epoch(1n, null), ...epoch(1n, null, 3)]) {
        const h = headers();
        for (const [k, v] of m.headers) h.set(k, v);
        await js.publish('conflict.x', m.data, { headers: h });
      }
      const conflict = await restoreFromStream({
        connection: nc,
        stream: 'RCONFLICT',
        dbPath: suite.tempDb(),
      });
      expect(conflict.epochsRestored).toBe(1);
      expect(conflict.stoppedBy?.code).toBe(ReplicaErrorCode.conflictingDuplicate);
    } finally {
      await nc.close();
    }
  });

  it('reopens above the replicated epoch after every segment was deleted, instead of failing', async () => {
    if (suite.cluster === null) return;
    const dbPath = suite.tempDb();
    const first = await openReplicated(dbPath, 'RFLOOR');
    let last: bigint;
    try {
      for (let i = 0; i < 3; i++) await first.commit(batch([1, 2], i));
      last = (await first.commit(batch([3], 7), { durability: 'replicated' })).epoch;
    } finally {
      await first.close();
    }
    // Close flushes (maybe an empty epoch, replicated too): at least the last commit's epoch.
    const saved = (await readReplicationState(dbPath))?.replicatedEpoch ?? null;
    expect(saved !== null && saved >= last).toBe(true);
    // What a checkpoint does once the suite.cluster has everything.
    for (const s of await listSegments(dbPath)) fs.unlinkSync(s.path);
    const again = await openReplicated(dbPath, 'RFLOOR');
    try {
      expect(again.wal.currentEpoch).toBe((saved ?? 0n) + 1n);
      const next = await again.commit(batch([4], 8), { durability: 'replicated' });
      expect(next.epoch).toBeGreaterThan(last);
      expect(next.replicated).toBe(true);
      expect(again.stats().replication.lastError).toBeNull();
    } finally {
      await again.close();
    }
  });

  it('a replicated page store checkpoints away only the segments the suite.cluster acknowledged', async () => {
    if (suite.cluster === null) return;
    const dbPath = suite.tempDb();
    const replicated = await openReplicatedStore(dbPath, {
      pageSize: 1024,
      autoCheckpoint: false,
      fsync: 'normal',
      replication: suite.replication('RSTORE'),
    });
    const { store, replicator } = replicated;
    try {
      let last = 0n;
      for (let i = 1; i <= 4; i++) {
        last = (await store.commit([{ pageNumber: i, data: new Uint8Array(1024).fill(i) }])).epoch;
      }
      await replicator.waitForReplicated(last, 15_000);
      const result = await store.checkpoint();
      const left = (await listSegments(dbPath)).map((s) => s.epoch);
      const through = replicator.replicatedEpoch()!;
      expect(left.every((epoch) => epoch > through)).toBe(true);
      expect(result.segmentsDeleted).toBeGreaterThan(0);
      // The next epochs continue above everything shipped, and ship too.
      const next = await store.commit([{ pageNumber: 1, data: new Uint8Array(1024).fill(9) }]);
      expect(next.epoch).toBeGreaterThan(last);
      await replicator.waitForReplicated(next.epoch, 15_000);
      expect(replicator.stats().lastError).toBeNull();
    } finally {
      await replicated.close();
    }
  });

  it('keeps committing locally while the suite.cluster is down, fails replicated commits with a typed error, then catches up without gaps or duplicates', async () => {
    if (suite.cluster === null) return;
    const dbPath = suite.tempDb();
    const log = await openReplicated(dbPath, 'RDOWN', { publishTimeoutMs: 1_000 });
    try {
      await log.commit(batch([1], 1), { durability: 'replicated' });
      for (const name of suite.cluster.nodeNames) await suite.cluster.kill(name);
      const local: bigint[] = [];
      for (let i = 0; i < 20; i++) local.push((await log.commit(batch([2, i + 3], i))).epoch);
      await expect(
        log.commit(batch([3], 9), { durability: 'replicated', timeoutMs: 1_500 }),
      ).rejects.toMatchObject({
        code: ReplicationErrorCode.timeout,
      });
      expect(log.replicatedEpoch()! < local.at(-1)!).toBe(true);
      for (const name of suite.cluster.nodeNames) await suite.cluster.restart(name);
      await suite.cluster.waitReady();
      const last = await log.commit(batch([4], 4), { durability: 'replicated', timeoutMs: 30_000 });
      expect(last.replicated).toBe(true);
      expect(log.stats().replication.failures).toBeGreaterThan(0);
    } finally {
      await log.close();
    }
    const restored = suite.tempDb();
    const result = await restoreFromStream({
      servers: suite.cluster.urls,
      stream: 'RDOWN',
      dbPath: restored,
    });
    expect(result.stoppedBy).toBeNull();
    expect(result.duplicateCount).toBe(0);
    expectSameSegments(await segmentsOf(dbPath), await segmentsOf(restored));
  });
});

function segmentOf(epoch: bigint, pages: number): Uint8Array {
  const records: WalRecord[] = [];
  for (let p = 1; p <= pages; p++) {
    records.push({
      txnToken: { id: epoch * 100n + BigInt(p), epoch: 0 },
      epoch,
      pageId: p,
      beginSeq: epoch * 100n + BigInt(p),
      endSeq: epoch * 100n + BigInt(p),
      beforeImage: new Uint8Array(0),
      afterImage: new Uint8Array(3000).fill(p),
    });
  }
  return encodeSegment(epoch, records);
}
