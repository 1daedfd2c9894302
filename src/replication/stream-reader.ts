/**
 * Reads a stream's messages by sequence number, a bounded window of requests
 * ahead, in order. Deleted sequence numbers are skipped (the assembler notices
 * when a skipped message mattered: the next epoch's predecessor or chunk
 * index does not match).
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import type { StreamMessage } from './assembler.js';
import { toStreamMessage } from './nats.js';

/** Message requests in flight at once while reading a stream. */
export const STREAM_READ_WINDOW = 32;

/**
 * Yields the messages with sequence `fromSeq ..= toSeq` in order. Every
 * request is bounded by the manager's API timeout; a failure ends the
 * iteration with that error (after the requests in flight settled).
 */
export async function* readStreamRange(
  jsm: JetStreamManager,
  stream: string,
  fromSeq: number,
  toSeq: number,
  window = STREAM_READ_WINDOW,
): AsyncGenerator<StreamMessage> {
  type Result = { ok: true; message: StreamMessage | null } | { ok: false; error: unknown };
  const pending: Promise<Result>[] = [];
  let next = fromSeq;
  const request = (seq: number): Promise<Result> =>
    jsm.streams.getMessage(stream, { seq }).then(
      (stored) => ({
        ok: true as const,
        message: stored === null ? null : toStreamMessage(stored),
      }),
      (error: unknown) => ({ ok: false as const, error }),
    );
  try {
    while (next <= toSeq || pending.length > 0) {
      while (next <= toSeq && pending.length < window) pending.push(request(next++));
      const result = await pending.shift()!;
      if (!result.ok) throw result.error;
      if (result.message !== null) yield result.message;
    }
  } finally {
    // Never leave a request unobserved, also when the consumer stops early.
    await Promise.all(pending);
  }
}
