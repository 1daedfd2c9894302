/**
 * JetStream plumbing of the NATS client: connecting with bounded timeouts,
 * creating or checking a database's stream, and turning stored messages
 * into the assembler's {@link StreamMessage}.
 */
import type { JetStreamManager, StoredMsg, StreamInfo } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { StreamMessage } from '../assembler.js';
import {
  apiTimeoutMsDefault,
  connectTimeoutMsDefault,
  type EnsureStreamOptions,
  messageBytesMaxDefault,
  type StreamTarget,
} from '../client.js';
import { ReplicationError, ReplicationErrorCode } from '../errors.js';
import { CHUNK_HEADER_RESERVE_BYTES, chunkPayloadBytesMin } from '../wire.js';
import { loadedNats, loadNats } from './peer.js';

/** Pause between the client's own reconnect attempts once it was connected. */
export const RECONNECT_WAIT_MS = 250;

/**
 * One bounded connection attempt (all servers tried once). Afterwards the
 * client reconnects by itself without limit; callers bound their own waits.
 */
export async function connectBounded(
  servers: string | readonly string[],
  options: { connectTimeoutMs?: number; name?: string } = {},
): Promise<NatsConnection> {
  const { transport } = await loadNats();
  try {
    return await transport.connect({
      servers: typeof servers === 'string' ? servers : [...servers],
      name: options.name,
      timeout: options.connectTimeoutMs ?? connectTimeoutMsDefault,
      maxReconnectAttempts: -1,
      reconnectTimeWait: RECONNECT_WAIT_MS,
    });
  } catch (error) {
    throw new ReplicationError(
      ReplicationErrorCode.unavailable,
      `cannot connect to NATS at ${String(servers)}: ${(error as Error).message}`,
      { cause: error },
    );
  }
}

/** True when `error` is a JetStream API error with the given code. */
export function isApiError(error: unknown, code: number): boolean {
  const jetstream = loadedNats()?.jetstream;
  return (
    jetstream !== undefined && error instanceof jetstream.JetStreamApiError && error.code === code
  );
}

/** Stream info, or `null` when the stream does not exist. */
export async function streamInfoOrNull(
  jsm: JetStreamManager,
  stream: string,
): Promise<StreamInfo | null> {
  const { jetstream } = await loadNats();
  try {
    return await jsm.streams.info(stream);
  } catch (error) {
    if (isApiError(error, jetstream.JetStreamApiCodes.StreamNotFound)) return null;
    throw error;
  }
}

/**
 * Returns the stream's info, creating the stream when it is missing and
 * `create` is set. Throws when it exists but does not capture `subject`.
 */
export async function ensureStream(
  jsm: JetStreamManager,
  target: StreamTarget,
  options: EnsureStreamOptions,
): Promise<StreamInfo> {
  const existing = await streamInfoOrNull(jsm, target.stream);
  if (existing !== null) {
    if (!existing.config.subjects?.includes(target.subject)) {
      throw new ReplicationError(
        ReplicationErrorCode.stream,
        `stream ${target.stream} does not capture subject ${target.subject} (subjects: ${existing.config.subjects?.join(', ')})`,
      );
    }
    return existing;
  }
  if (!options.create) {
    throw new ReplicationError(
      ReplicationErrorCode.stream,
      `stream ${target.stream} does not exist`,
    );
  }
  const { jetstream } = await loadNats();
  return jsm.streams.add({
    name: target.stream,
    subjects: [target.subject],
    num_replicas: options.replicas,
    storage: jetstream.StorageType.File,
    retention: jetstream.RetentionPolicy.Limits,
    max_msg_size: options.maxMessageBytes,
    // nanoseconds
    duplicate_window: options.duplicateWindowMs * 1_000_000,
  });
}

/**
 * Largest chunk payload for a stream: its `max_msg_size` (when set) and the
 * server's `max_payload`, less {@link CHUNK_HEADER_RESERVE_BYTES} for headers.
 */
export function chunkPayloadBytesFor(info: StreamInfo, nc: NatsConnection): number {
  const serverMax = nc.info?.max_payload ?? messageBytesMaxDefault;
  const streamMax = info.config.max_msg_size;
  const limit =
    streamMax !== undefined && streamMax > 0 ? Math.min(streamMax, serverMax) : serverMax;
  const payload = limit - CHUNK_HEADER_RESERVE_BYTES;
  if (payload < chunkPayloadBytesMin) {
    throw new ReplicationError(
      ReplicationErrorCode.stream,
      `stream ${info.config.name} allows ${limit}-byte messages; at least ${chunkPayloadBytesMin + CHUNK_HEADER_RESERVE_BYTES} are needed`,
    );
  }
  return payload;
}

/** A stored JetStream message as the assembler reads it. */
export function toStreamMessage(stored: StoredMsg): StreamMessage {
  return {
    seq: stored.seq,
    header: (name) => (stored.header?.has(name) ? stored.header.get(name) : undefined),
    data: stored.data,
  };
}

/** A JetStream manager with a bounded API timeout. */
export async function managerFor(
  nc: NatsConnection,
  apiTimeoutMs = apiTimeoutMsDefault,
): Promise<JetStreamManager> {
  const { jetstream } = await loadNats();
  return jetstream.jetstreamManager(nc, { timeout: apiTimeoutMs });
}
