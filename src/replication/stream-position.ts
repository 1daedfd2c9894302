/**
 * Where a database's stream ends, read from its last message: the position
 * the replicator continues shipping from after opening or any failure
 * (`Replicator` resyncs), and the checks that the stream really is this
 * database's and not ahead of the local log.
 */
import type { StreamMessage } from './assembler.js';
import { ReplicationError, ReplicationErrorCode } from './errors.js';
import { type ChunkMessage, parseChunkHeader, ReplicationHeader } from './wire.js';

/** Where the stream ends, as last read or acknowledged. */
export interface StreamPosition {
  /** Sequence of the stream's last message. */
  lastSeq: number;
  /** Last epoch whose every chunk is in the stream (`null` for none). */
  lastEpoch: bigint | null;
  /** An epoch partly in the stream: resume it at `nextChunk`. */
  partial: {
    epoch: bigint;
    prevEpoch: bigint | null;
    nextChunk: number;
    chunks: number;
    digest: string;
  } | null;
}

/** What the stream's tail must agree with. */
export interface TailExpectation {
  stream: string;
  databaseId: string;
  /** The local log's durable epoch (`null`: none). */
  durable: bigint | null;
}

/**
 * The position after `tail`, the last message on the database's subject.
 * @throws {ReplicationError} `ERR_REPLICATION_CONFLICT` when the stream has
 * messages after it (another subject), holds another database, or is ahead
 * of the local log.
 */
export function positionAfterTail(
  tail: StreamMessage,
  streamLastSeq: number,
  expected: TailExpectation,
): StreamPosition {
  const { stream, databaseId, durable } = expected;
  if (tail.seq !== streamLastSeq) {
    throw new ReplicationError(
      ReplicationErrorCode.conflict,
      `stream ${stream} has messages after this database's last one (sequence ${tail.seq} < ${streamLastSeq}): one subject per stream is required`,
    );
  }
  const header = parseChunkHeader(tail.header, tail.seq);
  if (header.databaseId !== databaseId) {
    throw new ReplicationError(
      ReplicationErrorCode.conflict,
      `stream ${stream} holds database ${header.databaseId}, not ${databaseId}`,
    );
  }
  if (durable === null || header.epoch > durable) {
    throw new ReplicationError(
      ReplicationErrorCode.conflict,
      `stream ${stream} is ahead of the local log: it holds epoch ${header.epoch}, the log is durable up to ${durable ?? 'none'}`,
    );
  }
  const complete = header.chunk === header.chunks - 1;
  return {
    lastSeq: tail.seq,
    lastEpoch: complete ? header.epoch : header.prevEpoch,
    partial: complete
      ? null
      : {
          epoch: header.epoch,
          prevEpoch: header.prevEpoch,
          nextChunk: header.chunk + 1,
          chunks: header.chunks,
          digest: header.digest,
        },
  };
}

/**
 * The first chunk of `epoch` to publish: 0, or where a partly shipped epoch
 * continues (after checking the stream's part is of the same bytes).
 * @throws {ReplicationError} `ERR_REPLICATION_CONFLICT` when the stream
 * holds a different partial copy of the epoch.
 */
export function resumeChunk(
  position: StreamPosition,
  stream: string,
  epoch: bigint,
  messages: readonly ChunkMessage[],
): number {
  const partial = position.partial;
  if (partial === null || partial.epoch !== epoch) return 0;
  const digest = messages[0]!.headers.get(ReplicationHeader.digest);
  if (messages.length !== partial.chunks || digest !== partial.digest) {
    throw new ReplicationError(
      ReplicationErrorCode.conflict,
      `stream ${stream} holds a different partial copy of epoch ${epoch}`,
    );
  }
  return partial.nextChunk;
}
