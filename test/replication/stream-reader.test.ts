/**
 * The stream reader (`readStreamRange`): exact ranges, deleted sequences,
 * early stops, large ranges, node failures and the per-message fallback
 * against a real 3-node JetStream cluster (see test/support/nats-cluster.ts;
 * without `nats-server` those tests log a note and check nothing), and the
 * reader's ordering guard against scripted consumer sessions.
 */
import { AckPolicy, JetStreamApiError, type JetStreamManager, jetstream } from '@nats-io/jetstream';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StreamMessage } from '../../src/replication/assembler.js';
import { withApiRetries } from '../../src/replication/client.js';
import { ReplicationError, ReplicationErrorCode } from '../../src/replication/errors.js';
import { managerFor } from '../../src/replication/nats/jetstream.js';
import {
  batchMessagesFor,
  type Delivery,
  type DeliverySession,
  type OrderedReadPlan,
  readOrdered,
  readStreamRange,
  readStreamRangeByRequest,
  streamReadBatchMessagesMax,
  streamReadBatchMessagesMin,
} from '../../src/replication/nats/stream-reader.js';
import { NatsCluster, natsServerAvailable } from '../support/nats-cluster.js';
import { requireNatsServer } from '../support/nats-skip.js';

const available = natsServerAvailable();
let cluster: NatsCluster | null = null;
let nc: NatsConnection | null = null;
let jsm: JetStreamManager | null = null;

beforeAll(async () => {
  if (!available) return;
  cluster = await NatsCluster.start();
  nc = await connect({ servers: cluster.urls, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
  jsm = await managerFor(nc);
}, 30_000);

afterAll(async () => {
  await nc?.close();
  await cluster?.stop();
});

/** The payload of the message published `index`-th (1-based): its index, then filler. */
function payload(index: number, bytes: number): Uint8Array {
  const data = new Uint8Array(bytes).fill(index & 0xff);
  new DataView(data.buffer).setUint32(0, index, true);
  return data;
}

function indexOf(message: StreamMessage): number {
  return new DataView(message.data.buffer, message.data.byteOffset).getUint32(0, true);
}

/** Creates an R3 stream and publishes `count` messages (sequence = index). */
async function makeStream(
  name: string,
  count: number,
  bytes = 256,
  extra: { maxConsumers?: number } = {},
): Promise<void> {
  await jsm!.streams.add({
    name,
    subjects: [`${name}.x`],
    num_replicas: 3,
    ...(extra.maxConsumers === undefined ? {} : { max_consumers: extra.maxConsumers }),
  });
  await publish(nc!, name, 1, count, bytes);
}

async function publish(
  conn: NatsConnection,
  stream: string,
  first: number,
  count: number,
  bytes: number,
): Promise<void> {
  const js = jetstream(conn, { timeout: 10_000 });
  for (let start = first; start < first + count; start += 100) {
    const batch: Promise<unknown>[] = [];
    for (let i = start; i < Math.min(first + count, start + 100); i++) {
      const h = headers();
      h.set('x-index', String(i));
      batch.push(js.publish(`${stream}.x`, payload(i, bytes), { headers: h }));
    }
    await Promise.all(batch);
  }
}

async function collect(messages: AsyncIterable<StreamMessage>): Promise<StreamMessage[]> {
  const out: StreamMessage[] = [];
  for await (const m of messages) out.push(m);
  return out;
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, k) => from + k);
}

/** Sequences, and checks every message carries its own payload and header. */
function sequencesOf(messages: readonly StreamMessage[]): number[] {
  for (const m of messages) {
    expect(indexOf(m), `payload of ${m.seq}`).toBe(m.seq);
    expect(m.header('x-index'), `header of ${m.seq}`).toBe(String(m.seq));
    expect(m.header('x-absent')).toBeUndefined();
  }
  return messages.map((m) => m.seq);
}

async function consumerCount(stream: string): Promise<number> {
  return (await jsm!.streams.info(stream)).state.consumer_count;
}

async function streamPeers(stream: string): Promise<{ leader: string; followers: string[] }> {
  const info = await jsm!.streams.info(stream);
  const leader = info.cluster?.leader;
  if (leader === undefined) throw new Error(`stream ${stream} has no leader`);
  return { leader, followers: (info.cluster?.replicas ?? []).map((r) => r.name) };
}

function urlsWithout(node: string): string[] {
  return cluster!.urls.filter((_, i) => cluster!.nodeNames[i] !== node);
}

describe('readStreamRange against a 3-node cluster', () => {
  requireNatsServer('stream reader tests');

  it('yields exactly fromSeq ..= toSeq, in order, from a middle start to before the last message', async () => {
    if (cluster === null) return;
    await makeStream('RANGE', 200);
    const read = await collect(readStreamRange(jsm!, 'RANGE', 37, 150));
    expect(sequencesOf(read)).toEqual(range(37, 150));
    // One message, the first one, the last one.
    expect(sequencesOf(await collect(readStreamRange(jsm!, 'RANGE', 99, 99)))).toEqual([99]);
    expect(sequencesOf(await collect(readStreamRange(jsm!, 'RANGE', 1, 3)))).toEqual([1, 2, 3]);
    expect(sequencesOf(await collect(readStreamRange(jsm!, 'RANGE', 198, 200)))).toEqual([
      198, 199, 200,
    ]);
    // An empty range, and one past the end of the stream.
    expect(await collect(readStreamRange(jsm!, 'RANGE', 60, 59))).toEqual([]);
    expect(sequencesOf(await collect(readStreamRange(jsm!, 'RANGE', 195, 260)))).toEqual(
      range(195, 200),
    );
    // The per-message reader agrees.
    expect(sequencesOf(await collect(readStreamRangeByRequest(jsm!, 'RANGE', 37, 150)))).toEqual(
      range(37, 150),
    );
    expect(await consumerCount('RANGE')).toBe(0);
  }, 30_000);

  it('skips deleted sequences, also at the start and the end of the range and all of a range', async () => {
    if (cluster === null) return;
    await makeStream('DELETED', 120);
    const deleted = [10, 11, 50, 51, 52, 100, 118, 119, 120];
    for (const seq of deleted) await jsm!.streams.deleteMessage('DELETED', seq);
    const kept = (from: number, to: number) => range(from, to).filter((s) => !deleted.includes(s));
    expect(sequencesOf(await collect(readStreamRange(jsm!, 'DELETED', 10, 100)))).toEqual(
      kept(10, 100),
    );
    // The stream's last three are gone: the read still ends, after 117.
    expect(sequencesOf(await collect(readStreamRange(jsm!, 'DELETED', 1, 120)))).toEqual(
      kept(1, 120),
    );
    expect(await collect(readStreamRange(jsm!, 'DELETED', 50, 52))).toEqual([]);
    expect(await collect(readStreamRange(jsm!, 'DELETED', 118, 120))).toEqual([]);
    expect(sequencesOf(await collect(readStreamRangeByRequest(jsm!, 'DELETED', 1, 120)))).toEqual(
      kept(1, 120),
    );
    expect(await consumerCount('DELETED')).toBe(0);
  }, 30_000);

  it('an early break or return deletes the consumer before the loop goes on and leaves nothing pending', async () => {
    if (cluster === null) return;
    await makeStream('EARLY', 1_000);
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => {
      unhandled.push(reason);
    };
    process.on('unhandledRejection', onUnhandled);
    try {
      const seen: number[] = [];
      for await (const m of readStreamRange(jsm!, 'EARLY', 1, 1_000)) {
        seen.push(m.seq);
        if (seen.length === 5) break;
      }
      expect(seen).toEqual([1, 2, 3, 4, 5]);
      // The consumer was deleted before control came back here.
      expect(await consumerCount('EARLY')).toBe(0);

      const firstAbove = async (limit: number): Promise<number | null> => {
        for await (const m of readStreamRange(jsm!, 'EARLY', 400, 1_000)) {
          if (m.seq > limit) return m.seq;
        }
        return null;
      };
      expect(await firstAbove(450)).toBe(451);
      expect(await consumerCount('EARLY')).toBe(0);

      // A consumer that throws mid-read.
      const failing = async (): Promise<void> => {
        for await (const m of readStreamRange(jsm!, 'EARLY', 1, 1_000)) {
          if (m.seq === 10) throw new Error('consumer gave up');
        }
      };
      await expect(failing()).rejects.toThrow('consumer gave up');
      expect(await consumerCount('EARLY')).toBe(0);

      // Also the per-message reader settles its requests in flight.
      for await (const m of readStreamRangeByRequest(jsm!, 'EARLY', 1, 1_000)) {
        if (m.seq === 3) break;
      }
      // Give anything left behind the time to fail loudly.
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  }, 30_000);

  it('reads a range of a few thousand messages in order, each once', async () => {
    if (cluster === null) return;
    await makeStream('LARGE', 4_000, 2_048);
    const read = await collect(readStreamRange(jsm!, 'LARGE', 1, 4_000));
    expect(sequencesOf(read)).toEqual(range(1, 4_000));
    for (const m of read) expect(m.data.length).toBe(2_048);
    expect(await consumerCount('LARGE')).toBe(0);
  }, 60_000);

  it('never ends early on a replica that is catching up after a restart', async () => {
    if (cluster === null) return;
    await makeStream('LAGGING', 100, 512);
    const { followers } = await streamPeers('LAGGING');
    const victim = followers[0]!;
    await cluster.kill(victim);
    const publisher = await connect({ servers: urlsWithout(victim) });
    try {
      // While it is down the stream grows: on restart it has only a prefix.
      await publish(publisher, 'LAGGING', 101, 3_000, 8_192);
    } finally {
      await publisher.close();
    }
    await cluster.restart(victim);
    // Consumers are placed on any replica, the lagging one included: every
    // read must still reach the end (a consumer there once reported 100
    // pending messages of 3,100).
    for (let read = 0; read < 8; read++) {
      const seqs = (await collect(readStreamRange(jsm!, 'LAGGING', 1, 3_100))).map((m) => m.seq);
      expect(seqs.length, `read ${read}`).toBe(3_100);
      expect(seqs).toEqual(range(1, 3_100));
    }
    await cluster.waitReady();
  }, 120_000);

  it('yields every message once, in order, while the stream leader is killed mid-read', async () => {
    if (cluster === null) return;
    await makeStream('LEADERKILL', 3_000, 1_024);
    const { leader } = await streamPeers('LEADERKILL');
    const seqs: number[] = [];
    try {
      for await (const m of readStreamRange(jsm!, 'LEADERKILL', 1, 3_000)) {
        expect(indexOf(m)).toBe(m.seq);
        seqs.push(m.seq);
        // The leader goes while the consumer has pulled messages in flight.
        if (seqs.length === 300) await cluster.kill(leader);
      }
      // The kill really forced an election.
      expect((await withApiRetries(() => streamPeers('LEADERKILL'))).leader).not.toBe(leader);
    } finally {
      await cluster.restart(leader);
    }
    // Two of three nodes keep a quorum: a new leader is elected within the
    // reader's bounded retries, so the read completes rather than fails.
    expect(seqs).toEqual(range(1, 3_000));
    await cluster.waitReady();
  }, 120_000);

  it('falls back to per-message reads when the stream refuses another consumer', async () => {
    if (cluster === null) return;
    await makeStream('NOCONSUMERS', 300, 256, { maxConsumers: 1 });
    await jsm!.consumers.add('NOCONSUMERS', {
      durable_name: 'occupant',
      ack_policy: AckPolicy.None,
    });
    // The server really refuses an ordered consumer now.
    await expect(jsm!.jetstream().consumers.get('NOCONSUMERS', {})).rejects.toBeInstanceOf(
      JetStreamApiError,
    );
    await jsm!.streams.deleteMessage('NOCONSUMERS', 150);
    const read = await collect(readStreamRange(jsm!, 'NOCONSUMERS', 20, 280));
    expect(sequencesOf(read)).toEqual(range(20, 280).filter((s) => s !== 150));
    expect(await consumerCount('NOCONSUMERS')).toBe(1);
  }, 30_000);

  it('ends with a typed error when the stream does not exist or the cluster is gone', async () => {
    if (cluster === null) return;
    await expect(collect(readStreamRange(jsm!, 'MISSING', 1, 10))).rejects.toMatchObject({
      code: ReplicationErrorCode.stream,
    });
    await makeStream('GONE', 2_000);
    const quick = await managerFor(nc!, 500);
    const seen: number[] = [];
    const reading = (async () => {
      for await (const m of readStreamRange(quick, 'GONE', 1, 2_000, {
        stallTimeoutMs: 500,
        attempts: 2,
      })) {
        seen.push(m.seq);
        if (m.seq === 10) for (const name of cluster!.nodeNames) await cluster!.kill(name);
      }
    })();
    try {
      const error = await reading.then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ReplicationError);
      expect((error as ReplicationError).code).toBe(ReplicationErrorCode.unavailable);
      expect((error as ReplicationError).message).toContain('GONE');
      expect(seen).toEqual(range(1, seen.length));
      expect(seen.length).toBeGreaterThanOrEqual(10);
      // What the consumer had pulled before the cluster went is still yielded.
      expect(seen.length).toBeLessThan(2_000);
    } finally {
      for (const name of cluster.nodeNames) await cluster.restart(name);
      await cluster.waitReady();
    }
  }, 120_000);
});

/** Scripted sessions: each `open` takes the next script; `stalled` once a script runs out. */
function scripted(scripts: Delivery[][], pendingAtStart: number[] = []) {
  const opened: number[] = [];
  let closed = 0;
  const open = async (startSeq: number): Promise<DeliverySession> => {
    opened.push(startSeq);
    const script = scripts.shift() ?? [];
    return {
      pendingAtStart: pendingAtStart.shift() ?? 1,
      next: async () => script.shift() ?? { kind: 'stalled' },
      close: async () => {
        closed += 1;
      },
    };
  };
  return { open, opened, closed: () => closed };
}

function msg(seq: number, pending = 1): Delivery {
  return {
    kind: 'message',
    message: { seq, header: () => undefined, data: new Uint8Array([seq & 0xff]) },
    pending,
  };
}

function plan(extra: Partial<OrderedReadPlan> = {}): OrderedReadPlan {
  return {
    stallTimeoutMs: 10,
    attempts: 3,
    stream: 'S',
    firstAtOrAfter: async () => null,
    fallback: async function* () {},
    ...extra,
  };
}

async function seqsOf(messages: AsyncIterable<StreamMessage>): Promise<number[]> {
  return (await collect(messages)).map((m) => m.seq);
}

describe('the ordered read loop (scripted consumer sessions)', () => {
  it('never yields a sequence twice or out of order: a redelivery re-creates the consumer at the next expected sequence', async () => {
    const s = scripted([
      [msg(1), msg(2), msg(3), msg(2), msg(4)],
      [msg(4), msg(3), msg(9)],
      [msg(5), msg(7), msg(8, 0)],
    ]);
    expect(await seqsOf(readOrdered(s.open, 1, 8, plan()))).toEqual([1, 2, 3, 4, 5, 7, 8]);
    expect(s.opened).toEqual([1, 4, 5]);
    expect(s.closed()).toBe(3);
  });

  it('ignores deliveries past the range and ends there', async () => {
    const s = scripted([[msg(3), msg(6), msg(7)]]);
    expect(await seqsOf(readOrdered(s.open, 3, 5, plan()))).toEqual([3]);
    expect(s.closed()).toBe(1);
  });

  it('re-creates a stalled consumer after the last sequence yielded and fails typed once the attempts are spent', async () => {
    const s = scripted([[msg(1), msg(2)], [], [{ kind: 'ended', error: new Error('gone') }]]);
    const seen: number[] = [];
    const error = await (async () => {
      for await (const m of readOrdered(s.open, 1, 10, plan({ attempts: 3 }))) seen.push(m.seq);
    })().then(
      () => null,
      (e: unknown) => e,
    );
    expect(seen).toEqual([1, 2]);
    expect(error).toBeInstanceOf(ReplicationError);
    expect((error as ReplicationError).code).toBe(ReplicationErrorCode.unavailable);
    expect((error as ReplicationError).message).toContain('sequence 3');
    expect((error as ReplicationError).message).toContain('gone');
    expect(s.opened).toEqual([1, 3, 3]);
    expect(s.closed()).toBe(3);
  });

  it('progress resets the attempts: a read that keeps advancing never fails', async () => {
    const scripts: Delivery[][] = [];
    for (let seq = 1; seq <= 6; seq++) scripts.push([msg(seq)]);
    const s = scripted(scripts);
    expect(await seqsOf(readOrdered(s.open, 1, 6, plan({ attempts: 2 })))).toEqual(range(1, 6));
    expect(s.opened).toEqual(range(1, 6));
  });

  it('asks the leader when a consumer runs dry before the end, and ends only when the leader has nothing left in the range', async () => {
    // The first consumer sits on a replica that has only 1..3.
    const asked: number[] = [];
    const leader = new Map([
      [4, 4],
      [9, 12],
    ]);
    const s = scripted(
      [
        [msg(1), msg(2), msg(3, 0)],
        [msg(5), msg(6), msg(8, 0)],
      ],
      [3, 4],
    );
    const read = readOrdered(
      s.open,
      1,
      10,
      plan({
        firstAtOrAfter: async (seq) => {
          asked.push(seq);
          const found = leader.get(seq);
          return found === undefined ? null : (msg(found) as { message: StreamMessage }).message;
        },
      }),
    );
    expect(await seqsOf(read)).toEqual([1, 2, 3, 4, 5, 6, 8]);
    expect(asked).toEqual([4, 9]);
    expect(s.opened).toEqual([1, 5]);
  });

  it('a consumer that starts with nothing pending asks the leader once', async () => {
    const s = scripted([[]], [0]);
    const asked: number[] = [];
    const read = readOrdered(
      s.open,
      7,
      9,
      plan({
        firstAtOrAfter: async (seq) => {
          asked.push(seq);
          return null;
        },
      }),
    );
    expect(await seqsOf(read)).toEqual([]);
    expect(asked).toEqual([7]);
    expect(s.closed()).toBe(1);
  });

  it('closes the session when the caller stops early', async () => {
    const s = scripted([[msg(1), msg(2), msg(3)]]);
    for await (const m of readOrdered(s.open, 1, 3, plan())) {
      if (m.seq === 1) break;
    }
    expect(s.closed()).toBe(1);
  });

  it('falls back to the per-message reader from the next sequence when the server refuses consumers', async () => {
    let calls = 0;
    const open = async (): Promise<DeliverySession> => {
      calls += 1;
      throw new JetStreamApiError({
        code: 400,
        err_code: 10026,
        description: 'maximum consumers limit reached',
      });
    };
    const fellBackFrom: number[] = [];
    const read = readOrdered(
      open,
      5,
      7,
      plan({
        fallback: async function* (from) {
          fellBackFrom.push(from);
          for (let seq = from; seq <= 7; seq++)
            yield (msg(seq) as { message: StreamMessage }).message;
        },
      }),
    );
    expect(await seqsOf(read)).toEqual([5, 6, 7]);
    expect(fellBackFrom).toEqual([5]);
    expect(calls).toBe(1);
  });

  it('retries an unavailable cluster and reports a missing stream with its own code', async () => {
    const missing = async (): Promise<DeliverySession> => {
      throw new JetStreamApiError({ code: 404, err_code: 10059, description: 'stream not found' });
    };
    await expect(collect(readOrdered(missing, 1, 2, plan({ attempts: 2 })))).rejects.toMatchObject({
      code: ReplicationErrorCode.stream,
    });
  });
});

describe('pull batch size', () => {
  it('fits the read-ahead budget to the largest message the stream allows, within bounds', () => {
    expect(batchMessagesFor(1024 * 1024, 16 * 1024 * 1024)).toBe(16);
    expect(batchMessagesFor(-1, 16 * 1024 * 1024)).toBe(16);
    expect(batchMessagesFor(undefined, 16 * 1024 * 1024)).toBe(16);
    expect(batchMessagesFor(4096, 16 * 1024 * 1024)).toBe(streamReadBatchMessagesMax);
    expect(batchMessagesFor(8 * 1024 * 1024, 16 * 1024 * 1024)).toBe(streamReadBatchMessagesMin);
  });
});
