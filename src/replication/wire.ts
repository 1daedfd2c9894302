/**
 * How one durable epoch travels through the stream (pure bytes, no I/O).
 *
 * An epoch is shipped as one *object*: the segment file's bytes, followed by
 * the epoch's commit certificate bytes when the control plane has one. The
 * object is cut into chunks that fit the stream's maximum message size; each
 * chunk is one JetStream message on the database's subject, in order:
 *
 * | header | value |
 * |---|---|
 * | `Nats-Msg-Id` | `<databaseId>.<epoch>.<chunk>`: JetStream drops a retried copy inside the duplicate window |
 * | `Pwal-Wire` | wire version, `1` |
 * | `Pwal-Db` | database id |
 * | `Pwal-Epoch` | epoch (decimal u64) |
 * | `Pwal-Prev-Epoch` | the epoch shipped before it (`-` = none; epoch 0 is a real epoch): a reader detects a missing epoch even though empty epochs have no segment |
 * | `Pwal-Chunk`, `Pwal-Chunks` | 0-based chunk index, chunk count |
 * | `Pwal-Chunk-Crc32c` | CRC-32C of this chunk's payload, 8 hex digits |
 * | `Pwal-Segment-Bytes`, `Pwal-Certificate-Bytes` | lengths of the two parts of the object |
 * | `Pwal-Digest` | SHA-256 of the whole object, 64 hex digits |
 *
 * Every chunk repeats the epoch-level headers so that a reader can check a
 * chunk belongs to the epoch it is assembling.
 */
import { createHash } from 'node:crypto';
import { crc32c } from '../format/crc32c.js';
import { u64Max } from '../format/types.js';
import { ReplicaErrorCode, ReplicaVerificationError } from './errors.js';

/** `Pwal-Prev-Epoch` value of the first epoch in a stream. */
export const NO_EPOCH = '-';

/** Version of this message layout, in the `Pwal-Wire` header. */
export const REPLICATION_WIRE_VERSION = 1;

/** Header names, in one place. */
export const ReplicationHeader = {
  msgId: 'Nats-Msg-Id',
  wire: 'Pwal-Wire',
  database: 'Pwal-Db',
  epoch: 'Pwal-Epoch',
  prevEpoch: 'Pwal-Prev-Epoch',
  chunk: 'Pwal-Chunk',
  chunks: 'Pwal-Chunks',
  chunkCrc: 'Pwal-Chunk-Crc32c',
  segmentBytes: 'Pwal-Segment-Bytes',
  certificateBytes: 'Pwal-Certificate-Bytes',
  digest: 'Pwal-Digest',
} as const;

/**
 * Bytes of a message kept free for the headers above when a chunk's payload
 * size is derived from the stream's maximum message size (the server counts
 * headers and payload together). The headers take about 350 bytes.
 */
export const CHUNK_HEADER_RESERVE_BYTES = 1024;
/** Smallest chunk payload accepted: below this the header overhead dominates. */
export const chunkPayloadBytesMin = 1024;
/** Most chunks one epoch may be cut into (a bound for readers of untrusted streams). */
export const chunksPerEpochMax = 1 << 20;
/** Largest epoch object a reader accepts (segment + certificate). */
export const epochObjectBytesMax = 2 ** 31;
/** Database ids: what is safe inside a message id, a header and a subject token. */
const DATABASE_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** One durable epoch as shipped: its segment and (optionally) its certificate. */
export interface EpochEnvelope {
  databaseId: string;
  epoch: bigint;
  /** The epoch shipped just before this one in the stream (`null` for the first). */
  prevEpoch: bigint | null;
  /** The segment file's bytes, exactly as on disk. */
  segment: Uint8Array;
  /** The commit certificate's canonical bytes, or `null` when the log has none. */
  certificate: Uint8Array | null;
}

/** One message to publish: payload plus headers (without the transport). */
export interface ChunkMessage {
  msgId: string;
  headers: ReadonlyMap<string, string>;
  data: Uint8Array;
}

/** The parsed replication headers of one message. */
export interface ChunkHeader {
  databaseId: string;
  epoch: bigint;
  /** `null`: the first epoch of the stream. */
  prevEpoch: bigint | null;
  chunk: number;
  chunks: number;
  chunkCrc: number;
  segmentBytes: number;
  certificateBytes: number;
  /** 64 lowercase hex digits. */
  digest: string;
}

/** Throws unless `id` is 1..64 characters of `[A-Za-z0-9_-]`. */
export function assertDatabaseId(id: string): void {
  if (!DATABASE_ID_PATTERN.test(id)) {
    throw new ReplicaVerificationError(
      ReplicaErrorCode.framing,
      `invalid database id ${JSON.stringify(id)}: expected 1..64 characters of [A-Za-z0-9_-]`,
    );
  }
}

/** The JetStream message id of one chunk: unique per database, epoch and chunk. */
export function chunkMessageId(databaseId: string, epoch: bigint, chunk: number): string {
  return `${databaseId}.${epoch}.${chunk}`;
}

/** SHA-256 of the parts, back to back, as 64 lowercase hex digits. */
export function objectDigest(parts: readonly Uint8Array[]): string {
  const hash = createHash('sha256');
  for (const part of parts) hash.update(part);
  return hash.digest('hex');
}

/**
 * Cuts an epoch into chunk messages of at most `chunkPayloadBytes` payload
 * bytes each (at least one chunk, even for an empty object).
 */
export function encodeEpochChunks(
  envelope: EpochEnvelope,
  chunkPayloadBytes: number,
): ChunkMessage[] {
  assertDatabaseId(envelope.databaseId);
  if (!Number.isInteger(chunkPayloadBytes) || chunkPayloadBytes < chunkPayloadBytesMin) {
    throw new RangeError(
      `chunk payload ${chunkPayloadBytes} bytes is below the minimum ${chunkPayloadBytesMin}`,
    );
  }
  const certificate = envelope.certificate ?? new Uint8Array(0);
  const object = concatBytes([envelope.segment, certificate]);
  const digest = objectDigest([object]);
  const chunks = Math.max(1, Math.ceil(object.length / chunkPayloadBytes));
  if (chunks > chunksPerEpochMax) {
    throw new RangeError(
      `epoch ${envelope.epoch} needs ${chunks} chunks (max ${chunksPerEpochMax})`,
    );
  }
  const messages: ChunkMessage[] = [];
  for (let chunk = 0; chunk < chunks; chunk++) {
    const data = object.subarray(chunk * chunkPayloadBytes, (chunk + 1) * chunkPayloadBytes);
    const msgId = chunkMessageId(envelope.databaseId, envelope.epoch, chunk);
    const headers = new Map<string, string>([
      [ReplicationHeader.wire, String(REPLICATION_WIRE_VERSION)],
      [ReplicationHeader.database, envelope.databaseId],
      [ReplicationHeader.epoch, envelope.epoch.toString()],
      [
        ReplicationHeader.prevEpoch,
        envelope.prevEpoch === null ? NO_EPOCH : envelope.prevEpoch.toString(),
      ],
      [ReplicationHeader.chunk, String(chunk)],
      [ReplicationHeader.chunks, String(chunks)],
      [ReplicationHeader.chunkCrc, crcHex(crc32c(data))],
      [ReplicationHeader.segmentBytes, String(envelope.segment.length)],
      [ReplicationHeader.certificateBytes, String(certificate.length)],
      [ReplicationHeader.digest, digest],
    ]);
    messages.push({ msgId, headers, data });
  }
  return messages;
}

/** A CRC-32C as 8 lowercase hex digits (the `Pwal-Chunk-Crc32c` form). */
export function crcHex(crc: number): string {
  return (crc >>> 0).toString(16).padStart(8, '0');
}

/** Concatenates byte arrays (returns the only part itself when there is one non-empty part). */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const nonEmpty = parts.filter((p) => p.length > 0);
  if (nonEmpty.length === 1) return nonEmpty[0]!;
  let total = 0;
  for (const part of nonEmpty) total += part.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of nonEmpty) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function framingError(
  message: string,
  streamSeq: number,
  epoch?: bigint,
): ReplicaVerificationError {
  return new ReplicaVerificationError(ReplicaErrorCode.framing, message, { streamSeq, epoch });
}

function parseU64(value: string | undefined, name: string, streamSeq: number): bigint {
  if (value === undefined || !/^[0-9]{1,20}$/.test(value)) {
    throw framingError(`header ${name} missing or not a decimal u64: ${value}`, streamSeq);
  }
  const parsed = BigInt(value);
  if (parsed > u64Max) throw framingError(`header ${name} out of range: ${value}`, streamSeq);
  return parsed;
}

function parseCount(value: string | undefined, name: string, max: number, seq: number): number {
  if (value === undefined || !/^[0-9]{1,10}$/.test(value)) {
    throw framingError(`header ${name} missing or not a decimal count: ${value}`, seq);
  }
  const parsed = Number(value);
  if (parsed > max) throw framingError(`header ${name} ${parsed} exceeds maximum ${max}`, seq);
  return parsed;
}

/**
 * Parses and range-checks the replication headers of one message. `get`
 * returns a header's value or `undefined`. Throws {@link ReplicaVerificationError}
 * (`ERR_REPLICA_FRAMING`) on anything missing or malformed.
 */
export function parseChunkHeader(
  get: (name: string) => string | undefined,
  streamSeq: number,
): ChunkHeader {
  const { databaseId, epoch, prevEpoch } = parseEpochIdentity(get, streamSeq);
  const { chunk, chunks, chunkCrc } = parseChunkPosition(get, streamSeq, epoch);
  const { segmentBytes, certificateBytes, digest } = parseEpochObject(get, streamSeq, epoch);
  return {
    databaseId,
    epoch,
    prevEpoch,
    chunk,
    chunks,
    chunkCrc,
    segmentBytes,
    certificateBytes,
    digest,
  };
}

/** The wire version, database, epoch and predecessor headers (the predecessor must be below the epoch). */
function parseEpochIdentity(
  get: (name: string) => string | undefined,
  streamSeq: number,
): Pick<ChunkHeader, 'databaseId' | 'epoch' | 'prevEpoch'> {
  const wire = get(ReplicationHeader.wire);
  if (wire !== String(REPLICATION_WIRE_VERSION)) {
    throw framingError(`unsupported replication wire version: ${wire}`, streamSeq);
  }
  const databaseId = get(ReplicationHeader.database) ?? '';
  if (!DATABASE_ID_PATTERN.test(databaseId)) {
    throw framingError(`header ${ReplicationHeader.database} invalid: ${databaseId}`, streamSeq);
  }
  const epoch = parseU64(get(ReplicationHeader.epoch), ReplicationHeader.epoch, streamSeq);
  const prevText = get(ReplicationHeader.prevEpoch);
  const prevEpoch =
    prevText === NO_EPOCH ? null : parseU64(prevText, ReplicationHeader.prevEpoch, streamSeq);
  if (prevEpoch !== null && prevEpoch >= epoch) {
    throw framingError(
      `epoch ${epoch} names a predecessor ${prevEpoch} not below it`,
      streamSeq,
      epoch,
    );
  }
  return { databaseId, epoch, prevEpoch };
}

/** The chunk index, chunk count and chunk CRC headers (the index must be below the count). */
function parseChunkPosition(
  get: (name: string) => string | undefined,
  streamSeq: number,
  epoch: bigint,
): Pick<ChunkHeader, 'chunk' | 'chunks' | 'chunkCrc'> {
  const chunks = parseCount(get(ReplicationHeader.chunks), 'chunks', chunksPerEpochMax, streamSeq);
  const chunk = parseCount(get(ReplicationHeader.chunk), 'chunk', chunksPerEpochMax, streamSeq);
  if (chunks < 1 || chunk >= chunks) {
    throw framingError(`chunk ${chunk} of ${chunks} is out of range`, streamSeq, epoch);
  }
  const crcText = get(ReplicationHeader.chunkCrc) ?? '';
  if (!/^[0-9a-f]{8}$/.test(crcText)) {
    throw framingError(
      `header ${ReplicationHeader.chunkCrc} invalid: ${crcText}`,
      streamSeq,
      epoch,
    );
  }
  return { chunk, chunks, chunkCrc: Number.parseInt(crcText, 16) };
}

/** The epoch object's segment and certificate sizes (bounded together) and its digest. */
function parseEpochObject(
  get: (name: string) => string | undefined,
  streamSeq: number,
  epoch: bigint,
): Pick<ChunkHeader, 'segmentBytes' | 'certificateBytes' | 'digest'> {
  const segmentBytes = parseCount(
    get(ReplicationHeader.segmentBytes),
    'segment bytes',
    epochObjectBytesMax,
    streamSeq,
  );
  const certificateBytes = parseCount(
    get(ReplicationHeader.certificateBytes),
    'certificate bytes',
    epochObjectBytesMax,
    streamSeq,
  );
  if (segmentBytes + certificateBytes > epochObjectBytesMax) {
    throw framingError(
      `epoch object of ${segmentBytes + certificateBytes} bytes is too large`,
      streamSeq,
      epoch,
    );
  }
  const digest = get(ReplicationHeader.digest) ?? '';
  if (!/^[0-9a-f]{64}$/.test(digest)) {
    throw framingError(`header ${ReplicationHeader.digest} invalid`, streamSeq, epoch);
  }
  return { segmentBytes, certificateBytes, digest };
}
