/**
 * The contract of `ReplicaClient`, the one seam between replication and the
 * service holding streams and snapshot objects: every implementation runs
 * these cases (today the NATS JetStream one; a new backend adds an entry to
 * `implementations`).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isWalError } from '../../src/errors.js';
import type { ReplicaClient } from '../../src/replication/client.js';
import { ReplicationErrorCode } from '../../src/replication/errors.js';
import { NatsReplicaClient } from '../../src/replication/nats/client.js';
import type { ChunkMessage } from '../../src/replication/wire.js';
import { NatsCluster, natsServerAvailable } from '../support/nats-cluster.js';
import { requireNatsServer } from '../support/nats-skip.js';

const available = natsServerAvailable();
let cluster: NatsCluster | null = null;

/** How each implementation is reached; `close` ends what `open` started. */
const implementations: { name: string; open: () => Promise<ReplicaClient> }[] = [
  {
    name: 'NATS JetStream',
    open: () =>
      NatsReplicaClient.connect({ servers: cluster!.urls, name: 'replica-client-contract' }),
  },
];

beforeAll(async () => {
  if (!available) return;
  cluster = await NatsCluster.start();
}, 30_000);

afterAll(async () => {
  await cluster?.stop();
});

function chunk(id: string, text: string): ChunkMessage {
  return {
    msgId: id,
    headers: new Map([['Pwal-Test', id]]),
    data: new TextEncoder().encode(text),
  };
}

function text(data: Uint8Array): string {
  return new TextDecoder().decode(data);
}

async function codeOf(promise: Promise<unknown>): Promise<string | null> {
  return promise.then(
    () => null,
    (error: unknown) => (isWalError(error) ? error.code : `not a WalError: ${String(error)}`),
  );
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

const streamOptions = {
  create: true,
  replicas: 1,
  maxMessageBytes: 64 * 1024,
  duplicateWindowMs: 60_000,
};

describe.each(implementations)('ReplicaClient contract: $name', ({ open }) => {
  requireNatsServer('replica client contract tests');

  it('finds no stream, refuses one it may not create, creates one, and refuses a stream without the subject', async () => {
    const client = await open();
    try {
      expect(await client.streamState('CONTRACT_A')).toBeNull();
      const target = { stream: 'CONTRACT_A', subject: 'contract.a' };
      expect(await codeOf(client.ensureStream(target, { ...streamOptions, create: false }))).toBe(
        ReplicationErrorCode.stream,
      );
      const made = await client.ensureStream(target, streamOptions);
      expect(made.state).toEqual({
        firstSeq: 0,
        lastSeq: 0,
        messages: 0,
        subjects: ['contract.a'],
      });
      expect(made.chunkPayloadBytes).toBeGreaterThan(0);
      expect(made.chunkPayloadBytes).toBeLessThan(64 * 1024);
      const other = { stream: 'CONTRACT_A', subject: 'contract.other' };
      expect(await codeOf(client.ensureStream(other, streamOptions))).toBe(
        ReplicationErrorCode.stream,
      );
    } finally {
      await client.close();
    }
  });

  it('publishes behind an expected last sequence, drops a re-sent id, and refuses a stale expectation typed', async () => {
    const client = await open();
    try {
      const target = { stream: 'CONTRACT_B', subject: 'contract.b' };
      await client.ensureStream(target, streamOptions);
      const publish = (message: ChunkMessage, expectedLastSeq: number) =>
        client.publish({ ...target, message, expectedLastSeq, timeoutMs: 5_000 });
      expect(await publish(chunk('b.1', 'one'), 0)).toEqual({ seq: 1, duplicate: false });
      expect(await publish(chunk('b.2', 'two'), 1)).toEqual({ seq: 2, duplicate: false });
      expect(await publish(chunk('b.2', 'two'), 1)).toEqual({ seq: 2, duplicate: true });
      expect(await codeOf(publish(chunk('b.3', 'three'), 1))).toBe(
        ReplicationErrorCode.unavailable,
      );
      expect((await client.streamState(target.stream))?.lastSeq).toBe(2);
      const last = await client.lastMessage(target.stream, target.subject);
      expect(last?.seq).toBe(2);
      expect(last?.header('Pwal-Test')).toBe('b.2');
      expect(last?.header('Pwal-Absent')).toBeUndefined();
      expect(text(last!.data)).toBe('two');
    } finally {
      await client.close();
    }
  });

  it('reads one message or a range in order, skips purged ones, and purges a prefix', async () => {
    const client = await open();
    try {
      const target = { stream: 'CONTRACT_C', subject: 'contract.c' };
      await client.ensureStream(target, streamOptions);
      expect(await client.lastMessage(target.stream, target.subject)).toBeNull();
      for (let i = 1; i <= 6; i++) {
        await client.publish({
          ...target,
          message: chunk(`c.${i}`, `m${i}`),
          expectedLastSeq: i - 1,
          timeoutMs: 5_000,
        });
      }
      expect(text((await client.message(target.stream, 4))!.data)).toBe('m4');
      expect(await client.message(target.stream, 99)).toBeNull();
      const range = await collect(client.readRange(target.stream, 2, 5));
      expect(range.map((m) => [m.seq, text(m.data)])).toEqual([
        [2, 'm2'],
        [3, 'm3'],
        [4, 'm4'],
        [5, 'm5'],
      ]);
      expect(await client.purgeBelow(target.stream, 4)).toBe(3);
      expect(await client.message(target.stream, 2)).toBeNull();
      const state = await client.streamState(target.stream);
      expect([state?.firstSeq, state?.lastSeq, state?.messages]).toEqual([4, 6, 3]);
      const rest = await collect(client.readRange(target.stream, 1, 6));
      expect(rest.map((m) => m.seq)).toEqual([4, 5, 6]);
    } finally {
      await client.close();
    }
  });

  it('rings a watcher on every publish until it is stopped', async () => {
    const client = await open();
    try {
      const target = { stream: 'CONTRACT_D', subject: 'contract.d' };
      await client.ensureStream(target, streamOptions);
      let rung = 0;
      let ring: () => void = () => {};
      const watcher = client.watch(target.subject, () => {
        rung += 1;
        ring();
      });
      const next = () => new Promise<void>((resolve) => (ring = resolve));
      const first = next();
      await client.publish({
        ...target,
        message: chunk('d.1', 'x'),
        expectedLastSeq: 0,
        timeoutMs: 5_000,
      });
      await first;
      expect(rung).toBe(1);
      watcher.stop();
      await client.publish({
        ...target,
        message: chunk('d.2', 'y'),
        expectedLastSeq: 1,
        timeoutMs: 5_000,
      });
      // A round trip on the same connection: a delivery would have come first.
      await client.streamState(target.stream);
      expect(rung).toBe(1);
    } finally {
      await client.close();
    }
  });

  it('puts, lists, finds, reads and deletes objects, and tells a missing bucket apart', async () => {
    const client = await open();
    try {
      const bucket = 'CONTRACT_E_snapshots';
      expect(await client.listObjects(bucket, () => {})).toBeNull();
      expect(await client.findObject(bucket, 'x')).toEqual({ bucket: false });
      expect(await client.deleteObject(bucket, 'x')).toBe(false);
      const bytes = new Uint8Array(10_000).map((_, i) => i % 251);
      const stored = await client.putObject(
        bucket,
        {
          name: 'obj.1',
          description: 'contract',
          metadata: { 'pwal-test': 'yes' },
          chunkBytes: 4096,
        },
        new ReadableStream({
          start(controller) {
            controller.enqueue(bytes.slice(0, 6000));
            controller.enqueue(bytes.slice(6000));
            controller.close();
          },
        }),
        { replicas: 1, timeoutMs: 5_000 },
      );
      expect(stored.size).toBe(bytes.length);
      const unreadable: string[] = [];
      const listed = await client.listObjects(bucket, (where) => unreadable.push(where));
      expect(unreadable).toEqual([]);
      expect(listed?.map((e) => [e.name, e.size, e.deleted === true, e.link, e.metadata])).toEqual([
        ['obj.1', bytes.length, false, false, { 'pwal-test': 'yes' }],
      ]);
      const found = await client.findObject(bucket, 'obj.1');
      if (!found.bucket || found.object === null) throw new Error('obj.1 not found');
      expect(found.object.chunks).toBe(3);
      expect(found.object.digest).toMatch(/^SHA-256=/);
      const chunks = await collect(client.readObject(bucket, found.object));
      expect(chunks.map((c) => c?.length)).toEqual([4096, 4096, 1808]);
      expect(Buffer.concat(chunks.map((c) => c!))).toEqual(Buffer.from(bytes));
      expect(await client.findObject(bucket, 'obj.2')).toEqual({ bucket: true, object: null });
      expect(await client.deleteObject(bucket, 'obj.1')).toBe(true);
      const gone = await client.findObject(bucket, 'obj.1');
      expect(gone.bucket && (gone.object === null || gone.object.deleted)).toBe(true);
      // The old version's chunks are gone: a reader holding it sees a missing chunk.
      expect(await collect(client.readObject(bucket, found.object))).toEqual([null]);
    } finally {
      await client.close();
    }
  });

  it('is closed for good after close', async () => {
    const own = await open();
    expect(own.isClosed()).toBe(false);
    await own.close();
    expect(own.isClosed()).toBe(true);
  });
});
