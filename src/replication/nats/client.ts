/**
 * {@link ReplicaClient} over NATS JetStream: a database's stream is a
 * JetStream stream with one subject, snapshot objects live in a JetStream
 * object store bucket. This folder is the only code that imports the NATS
 * client packages, and only through {@link loadNats} (they are optional peer
 * dependencies).
 */
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { StreamMessage } from '../assembler.js';
import {
  apiTimeoutMsDefault,
  type ChunkPublish,
  type EnsuredStream,
  type EnsureStreamOptions,
  type ObjectEntry,
  type ObjectLookup,
  type ObjectPut,
  type PublishedChunk,
  type ReplicaClient,
  type StoredObject,
  type StreamState,
  type StreamTarget,
} from '../client.js';
import { ReplicationError, ReplicationErrorCode } from '../errors.js';
import {
  chunkPayloadBytesFor,
  connectBounded,
  ensureStream,
  isApiError,
  managerFor,
  streamInfoOrNull,
  toStreamMessage,
} from './jetstream.js';
import { ObjectBucketClient } from './objects.js';
import { loadedNats, loadNats } from './peer.js';
import { readStreamRange } from './stream-reader.js';

export type { NatsConnection } from '@nats-io/transport-node';

/**
 * Loads the NATS packages, failing with `ERR_REPLICATION_PEER_MISSING` when
 * one is not installed: what replication's entry points call first, so that
 * a missing package fails there, typed, not later in a background loop.
 */
export async function requireNatsPeers(): Promise<void> {
  await loadNats();
}

/** How a {@link NatsReplicaClient} reaches the cluster. */
export interface NatsClientOptions {
  /** NATS server URL(s). Ignored when `connection` is given. */
  servers?: string | readonly string[];
  /** An existing connection to use (never closed by the client). */
  connection?: NatsConnection;
  /** Client name shown by the server. */
  name?: string;
  /** Wait for one connection attempt, ms. */
  connectTimeoutMs?: number;
  /** Wait for one API request, ms (default 5 s). */
  apiTimeoutMs?: number;
}

/** The replica client of replication, over one NATS connection. */
export class NatsReplicaClient implements ReplicaClient {
  private js: JetStreamClient | null = null;
  private jsm: JetStreamManager | null = null;
  private readonly objects: ObjectBucketClient;

  private constructor(
    /** The connection; handed to hooks that publish on their own. */
    readonly connection: NatsConnection,
    private readonly ownsConnection: boolean,
    private readonly apiTimeoutMs: number,
  ) {
    this.objects = new ObjectBucketClient(connection, apiTimeoutMs);
  }

  /**
   * A client over `options.connection`, or over a new connection to
   * `options.servers` (one bounded attempt; afterwards the connection
   * reconnects by itself). Fails with `ERR_REPLICATION_PEER_MISSING` when the
   * NATS packages are not installed.
   */
  static async connect(options: NatsClientOptions): Promise<NatsReplicaClient> {
    await loadNats();
    const apiTimeoutMs = options.apiTimeoutMs ?? apiTimeoutMsDefault;
    const nc =
      options.connection ??
      (await connectBounded(options.servers ?? [], {
        ...(options.connectTimeoutMs === undefined
          ? {}
          : { connectTimeoutMs: options.connectTimeoutMs }),
        ...(options.name === undefined ? {} : { name: options.name }),
      }));
    return new NatsReplicaClient(nc, options.connection === undefined, apiTimeoutMs);
  }

  /**
   * The stream manager, made on first use (its setup checks that JetStream
   * answers; snapshot calls, which have their own, never need it).
   */
  private async manager(): Promise<JetStreamManager> {
    this.jsm ??= await managerFor(this.connection, this.apiTimeoutMs);
    return this.jsm;
  }

  isClosed(): boolean {
    return this.connection.isClosed();
  }

  async close(): Promise<void> {
    if (this.ownsConnection && !this.connection.isClosed()) await this.connection.close();
  }

  async streamState(stream: string): Promise<StreamState | null> {
    const info = await streamInfoOrNull(await this.manager(), stream);
    return info === null ? null : stateOf(info);
  }

  async ensureStream(target: StreamTarget, options: EnsureStreamOptions): Promise<EnsuredStream> {
    const info = await ensureStream(await this.manager(), target, options);
    return { state: stateOf(info), chunkPayloadBytes: chunkPayloadBytesFor(info, this.connection) };
  }

  publish(chunk: ChunkPublish): Promise<PublishedChunk> {
    // Synchronous up to the send, so that pipelined publishes leave in call
    // order. Loaded: a client exists only after loadNats().
    const { transport, jetstream } = loadedNats()!;
    this.js ??= jetstream.jetstream(this.connection, { timeout: chunk.timeoutMs });
    const hdrs = transport.headers();
    for (const [name, value] of chunk.message.headers) hdrs.set(name, value);
    return this.js
      .publish(chunk.subject, chunk.message.data, {
        msgID: chunk.message.msgId,
        headers: hdrs,
        timeout: chunk.timeoutMs,
        expect: { lastSequence: chunk.expectedLastSeq },
      })
      .then(
        (ack) => ({ seq: ack.seq, duplicate: ack.duplicate }),
        (error: unknown) => {
          if (isApiError(error, jetstream.JetStreamApiCodes.StreamWrongLastSequence)) {
            throw new ReplicationError(
              ReplicationErrorCode.unavailable,
              `stream ${chunk.stream} moved on under a pipelined publish; resyncing`,
              { cause: error },
            );
          }
          throw error;
        },
      );
  }

  async lastMessage(stream: string, subject: string): Promise<StreamMessage | null> {
    const stored = await (await this.manager()).streams.getMessage(stream, {
      last_by_subj: subject,
    });
    return stored === null ? null : toStreamMessage(stored);
  }

  async message(stream: string, seq: number): Promise<StreamMessage | null> {
    const stored = await (await this.manager()).streams.getMessage(stream, { seq });
    return stored === null ? null : toStreamMessage(stored);
  }

  async *readRange(stream: string, fromSeq: number, toSeq: number): AsyncGenerator<StreamMessage> {
    yield* readStreamRange(await this.manager(), stream, fromSeq, toSeq);
  }

  async purgeBelow(stream: string, keepFromSeq: number): Promise<number> {
    return (await (await this.manager()).streams.purge(stream, { seq: keepFromSeq })).purged;
  }

  watch(subject: string, onMessage: () => void): { stop(): void } {
    const subscription = this.connection.subscribe(subject, { callback: () => onMessage() });
    return { stop: () => subscription.unsubscribe() };
  }

  listObjects(
    bucket: string,
    onUnreadable: (where: string) => void,
  ): Promise<ObjectEntry[] | null> {
    return this.objects.list(bucket, onUnreadable);
  }

  findObject(bucket: string, name: string): Promise<ObjectLookup> {
    return this.objects.find(bucket, name);
  }

  putObject(
    bucket: string,
    object: ObjectPut,
    data: ReadableStream<Uint8Array>,
    options: { replicas: number; timeoutMs: number },
  ): Promise<{ size: number }> {
    return this.objects.put(bucket, object, data, options);
  }

  readObject(bucket: string, object: StoredObject): AsyncGenerator<Uint8Array | null> {
    return this.objects.read(bucket, object);
  }

  deleteObject(bucket: string, name: string): Promise<boolean> {
    return this.objects.delete(bucket, name);
  }
}

function stateOf(info: {
  config: { subjects?: string[] };
  state: { first_seq: number; last_seq: number; messages: number };
}): StreamState {
  return {
    firstSeq: info.state.first_seq,
    lastSeq: info.state.last_seq,
    messages: info.state.messages,
    subjects: info.config.subjects ?? [],
  };
}
