/**
 * The one seam between replication and the service that stores replicas.
 *
 * Shipping, following, restoring and snapshots are written against
 * {@link ReplicaClient}: a database's stream of epoch chunks (publish with an
 * expected last sequence, read a range, read one message, purge a prefix) and
 * a bucket of snapshot objects (put, list, look up, read, delete). The one
 * implementation, over NATS JetStream and its object store, is in `nats/`,
 * the only code that imports the NATS client packages.
 *
 * Every request is bounded by the client's API timeout. The object calls
 * retry a failed request a few times ({@link withApiRetries}) and then fail
 * with a {@link ReplicationError} (`ERR_REPLICATION_STREAM` when the service
 * refused, `ERR_REPLICATION_UNAVAILABLE` otherwise). The stream calls are
 * not retried and may reject with the service's own error: the replicator
 * and the follower retry a failed round as a whole (after reading the
 * stream's tail again), restore wraps its one-off calls in
 * {@link withApiRetries}.
 */
import type { StreamMessage } from './assembler.js';
import { ReplicationError } from './errors.js';
import type { ChunkMessage } from './wire.js';

/** How long one connection attempt may take before it counts as failed. */
export const connectTimeoutMsDefault = 2_000;
/** Timeout of one API request (stream info, message get). */
export const apiTimeoutMsDefault = 5_000;
/** Largest message of a stream the replicator creates, bytes. */
export const messageBytesMaxDefault = 1024 * 1024;
/** Window in which a stream the replicator creates drops a re-sent message id. */
export const duplicateWindowMsDefault = 2 * 60 * 1000;
/** Replicas of a stream (or snapshot bucket) that replication creates. */
export const streamReplicasDefault = 3;
/** Attempts of an API call made once per run (setup, stream info). */
export const API_CALL_ATTEMPTS = 4;
/** Pause before the first retry of such a call; doubles per attempt. */
export const API_RETRY_DELAY_MS = 250;

/** Where a database's stream lives. */
export interface StreamTarget {
  /** Stream name (no `.`, `*`, `>` or whitespace). */
  stream: string;
  /** The one subject the database's epochs are published on. */
  subject: string;
}

/** The default stream name of a database: `PWAL_<databaseId>`. */
export function defaultStreamName(databaseId: string): string {
  return `PWAL_${databaseId}`;
}

/** The default subject of a database: `pwal.<databaseId>.epochs`. */
export function defaultSubject(databaseId: string): string {
  return `pwal.${databaseId}.epochs`;
}

/** Options of {@link ReplicaClient.ensureStream}. */
export interface EnsureStreamOptions {
  create: boolean;
  replicas: number;
  maxMessageBytes: number;
  duplicateWindowMs: number;
}

/** A stream's extent. */
export interface StreamState {
  /** First stored sequence (the last one + 1 when empty). */
  firstSeq: number;
  /** Last stored sequence (0 when nothing was ever stored). */
  lastSeq: number;
  /** Messages stored. */
  messages: number;
  /** The subjects the stream captures. */
  subjects: readonly string[];
}

/** What {@link ReplicaClient.ensureStream} found or made. */
export interface EnsuredStream {
  state: StreamState;
  /** Largest chunk payload the stream and server take, bytes. */
  chunkPayloadBytes: number;
}

/** The acknowledgement of one published chunk. */
export interface PublishedChunk {
  /** The sequence the message is stored at. */
  seq: number;
  /** The message id was seen before: the message was not stored again. */
  duplicate: boolean;
}

/** One published chunk. */
export interface ChunkPublish {
  stream: string;
  subject: string;
  message: ChunkMessage;
  /**
   * The sequence the stream's last message must have, else the publish is
   * refused (a {@link ReplicationError} `ERR_REPLICATION_UNAVAILABLE`: the
   * stream moved on, read its tail again).
   */
  expectedLastSeq: number;
  timeoutMs: number;
}

/**
 * An object's entry as the bucket lists it: untrusted (another writer may
 * have put anything there), checked by whoever reads it.
 */
export interface ObjectEntry {
  name?: unknown;
  size?: unknown;
  deleted?: unknown;
  metadata?: unknown;
  /** A link to another object, not an object of its own. */
  link?: boolean;
}

/** A live object found by name: what {@link ReplicaClient.readObject} needs. */
export interface StoredObject extends ObjectEntry {
  name: string;
  deleted: boolean;
  /** The store's digest of the bytes: `SHA-256=<base64url>`. */
  digest: string;
  /** Chunks the bytes are stored in. */
  chunks: number;
  /** The store's id of this version of the object (a replaced object gets a new one). */
  version: string;
}

/** An object to store. */
export interface ObjectPut {
  name: string;
  description: string;
  /** String metadata, stored with the object and listed with it. */
  metadata: Record<string, string>;
  /** Bytes per stored chunk. */
  chunkBytes: number;
}

/** The result of {@link ReplicaClient.findObject}. */
export type ObjectLookup = { bucket: false } | { bucket: true; object: StoredObject | null };

/** Replication's view of the service holding streams and snapshot objects. */
export interface ReplicaClient {
  /** True once the connection is closed for good: a new client is needed. */
  isClosed(): boolean;
  /** Closes the connection when this client opened it (a given one stays open). */
  close(): Promise<void>;

  /** The stream's extent, or `null` when it does not exist. */
  streamState(stream: string): Promise<StreamState | null>;
  /**
   * The stream's extent and chunk size, creating it when missing and
   * `create` is set. Throws `ERR_REPLICATION_STREAM` when it exists but does
   * not capture `target.subject`, or is missing and may not be created.
   */
  ensureStream(target: StreamTarget, options: EnsureStreamOptions): Promise<EnsuredStream>;
  /** Publishes one chunk (not retried: a failure rejects). */
  publish(chunk: ChunkPublish): Promise<PublishedChunk>;
  /** The newest message on `subject`, or `null` when there is none. */
  lastMessage(stream: string, subject: string): Promise<StreamMessage | null>;
  /** The message at `seq`, or `null` when none is stored there. */
  message(stream: string, seq: number): Promise<StreamMessage | null>;
  /**
   * The messages `fromSeq ..= toSeq` in order, each at most once; sequences
   * deleted meanwhile are skipped. Stopping early releases what the read holds.
   */
  readRange(stream: string, fromSeq: number, toSeq: number): AsyncGenerator<StreamMessage>;
  /** Deletes the stream's messages below `keepFromSeq`; returns how many went. */
  purgeBelow(stream: string, keepFromSeq: number): Promise<number>;
  /** Calls `onMessage` whenever a message is published on `subject`, until stopped. */
  watch(subject: string, onMessage: () => void): { stop(): void };

  /**
   * Every object entry of the bucket, deleted ones included (`null`: no such
   * bucket); an entry the client cannot decode is passed to `onUnreadable`.
   */
  listObjects(bucket: string, onUnreadable: (where: string) => void): Promise<ObjectEntry[] | null>;
  /** The object called `name`, if the bucket exists. */
  findObject(bucket: string, name: string): Promise<ObjectLookup>;
  /**
   * Stores `data` as the object (replacing one of the same name at once:
   * readers see the old or the new one), creating the bucket with `replicas`
   * when missing. When `data` errors, nothing becomes visible. Returns the
   * stored size.
   */
  putObject(
    bucket: string,
    object: ObjectPut,
    data: ReadableStream<Uint8Array>,
    options: { replicas: number; timeoutMs: number },
  ): Promise<{ size: number }>;
  /**
   * The object's chunks in order, one fetched ahead; `null` in place of a
   * chunk that is gone (the object was replaced or deleted meanwhile).
   */
  readObject(bucket: string, object: StoredObject): AsyncGenerator<Uint8Array | null>;
  /** Deletes the object (false: the bucket does not exist). */
  deleteObject(bucket: string, name: string): Promise<boolean>;
}

/**
 * Runs `call` up to {@link API_CALL_ATTEMPTS} times with a doubling pause:
 * right after a node restart or during a leader election, API requests time
 * out for a few seconds. A {@link ReplicationError} is final at once; the
 * last failure is thrown.
 */
export async function withApiRetries<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      if (attempt >= API_CALL_ATTEMPTS || error instanceof ReplicationError) throw error;
      await new Promise((resolve) => setTimeout(resolve, API_RETRY_DELAY_MS * 2 ** (attempt - 1)));
    }
  }
}
