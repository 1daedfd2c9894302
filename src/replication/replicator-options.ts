/**
 * What a {@link Replicator} is opened with and reports, and the watermark it
 * starts from (saved beside the database by the last replicator).
 */
import type { WalFileSystem } from '../storage/fs.js';
import { nodeFileSystem } from '../storage/fs.js';
import type { NatsConnection } from './nats/client.js';
import type { Replicator } from './replicator.js';
import { type ReplicationState, readReplicationState } from './state-file.js';

/** Timeout of one publish acknowledgement. */
export const publishTimeoutMsDefault = 5_000;
/** Messages published and not yet acknowledged, at most. */
export const inFlightMessagesMaxDefault = 64;
/** First pause after a failure; doubles per consecutive failure. */
export const retryDelayMsMin = 25;
/** Longest pause between retries. */
export const retryDelayMsMax = 1_000;
/** The replication state file is rewritten at most this often while shipping. */
export const STATE_WRITE_INTERVAL_MS = 1_000;
/** Default wait of {@link Replicator.waitForReplicated} and replicated commits. */
export const replicationTimeoutMsDefault = 10_000;

/** Options of {@link Replicator.open}. */
export interface ReplicatorOptions {
  /** The database file path; its segments sit next to it. */
  dbPath: string;
  /** NATS server URL(s). Ignored when `connection` is given. */
  servers?: string | readonly string[];
  /** An existing connection to use (not closed by the replicator). */
  connection?: NatsConnection;
  /** Database id used in message ids and headers; default: from the state file, else random. */
  databaseId?: string;
  /** Stream name; default `PWAL_<databaseId>`. */
  stream?: string;
  /** Subject; default `pwal.<databaseId>.epochs`. One subject per stream. */
  subject?: string;
  /** Create the stream when missing (default true). */
  createStream?: boolean;
  /** Replicas of a created stream (default 3). */
  replicas?: number;
  /** `max_msg_size` of a created stream (default 1 MiB); epochs above it are chunked. */
  maxMessageBytes?: number;
  /** `duplicate_window` of a created stream (default 2 min). */
  duplicateWindowMs?: number;
  /** Wait for one publish acknowledgement (default 5 s). */
  publishTimeoutMs?: number;
  /** Wait for one connection attempt (default 2 s). */
  connectTimeoutMs?: number;
  /** Wait for one JetStream API request (default 5 s). */
  apiTimeoutMs?: number;
  /** Pipelining window (default 64 messages). */
  maxInFlightMessages?: number;
  /** Durable epoch of the log at open; default: the newest segment on disk. */
  initialDurableEpoch?: bigint;
  /**
   * Epochs the database already holds outside the log (a page store's
   * checkpointed file) — a stream that starts empty starts above it: its
   * first epoch names this one as predecessor, so a reader without the base
   * detects the gap instead of restoring half a database.
   */
  baseEpoch?: bigint | null;
  /**
   * Called before the first epoch is shipped into an EMPTY stream when
   * `baseEpoch` is set: must make a snapshot of the database through at least
   * `baseEpoch` durable in the cluster (see `openReplicatedStore`). A failure
   * is retried like a failed publish; nothing is shipped until it succeeds.
   */
  ensureBase?: (input: {
    connection: NatsConnection;
    baseEpoch: bigint;
    databaseId: string;
    stream: string;
  }) => Promise<void>;
  /** Returns the certificate bytes of an epoch, or null (control plane hook). */
  readCertificate?: (epoch: bigint) => Promise<Uint8Array | null>;
  /** File system (default the real one). */
  fs?: WalFileSystem;
}

/** The replicator's loop state. */
export type ReplicatorState = 'connecting' | 'shipping' | 'idle' | 'failed' | 'closed';

/** Counters and watermarks of a {@link Replicator}. */
export interface ReplicatorStats {
  state: ReplicatorState;
  databaseId: string;
  stream: string;
  subject: string;
  /** Highest epoch the local log reported durable (`null`: none). */
  localDurableEpoch: bigint | null;
  /** Highest epoch whose every segment the cluster acknowledged (`null`: none). */
  replicatedEpoch: bigint | null;
  /** Stream sequence of the last acknowledged message (0 before contact). */
  streamSeq: number;
  /** Largest chunk payload, from the stream's limits (0 before contact). */
  chunkPayloadBytes: number;
  epochsShipped: number;
  messagesPublished: number;
  bytesShipped: number;
  /** Publishes acknowledged as duplicates (a retried message that had landed). */
  duplicateAcks: number;
  /** Failed shipping attempts (each followed by backoff and resync). */
  failures: number;
  /** Times the position was re-read from the stream's tail. */
  resyncs: number;
  /** Times the base snapshot was published before shipping into an empty stream. */
  basesEnsured: number;
  /** Callers waiting for an epoch to be replicated. */
  waiters: number;
  lastError: { code: string; message: string } | null;
}

/**
 * The saved watermark when the state file is of this database and stream.
 * It is never ahead of what the cluster acknowledged, so it may protect
 * segments from deletion (and floor the log's epochs) before the first contact.
 */
export function savedWatermark(
  saved: ReplicationState | null,
  databaseId: string,
  stream: string,
): bigint | null {
  const sameStream = saved !== null && saved.databaseId === databaseId && saved.stream === stream;
  return sameStream ? saved.replicatedEpoch : null;
}

/**
 * The replicated watermark saved beside `dbPath` for the database and stream
 * these options ship to — what {@link Replicator.open} starts from — read
 * without connecting (`null`: nothing replicated yet, no state file, or one
 * of another database or stream). Never ahead of what the cluster
 * acknowledged (the live watermark may be further).
 */
export async function savedReplicatedEpoch(
  options: Pick<ReplicatorOptions, 'dbPath' | 'databaseId' | 'stream' | 'fs'>,
): Promise<bigint | null> {
  const saved = await readReplicationState(options.dbPath, options.fs ?? nodeFileSystem);
  if (saved === null) return null;
  const databaseId = options.databaseId ?? saved.databaseId;
  return savedWatermark(saved, databaseId, options.stream ?? saved.stream);
}
