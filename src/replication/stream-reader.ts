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
/** Attempts per message before a read fails (a stream leader election stalls requests for seconds). */
export const STREAM_READ_ATTEMPTS = 4;
/** Pause before the first retry of a failed message read; doubles per attempt. */
export const STREAM_READ_RETRY_DELAY_MS = 250;

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Yields the messages with sequence `fromSeq ..= toSeq` in order. Every
 * request is bounded by the manager's API timeout and retried up to
 * {@link STREAM_READ_ATTEMPTS} times; a final failure ends the iteration with
 * that error (after the requests in flight settled).
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
  const request = async (seq: number): Promise<Result> => {
    for (let attempt = 1; ; attempt++) {
      try {
        const stored = await jsm.streams.getMessage(stream, { seq });
        return { ok: true, message: stored === null ? null : toStreamMessage(stored) };
      } catch (error) {
        if (attempt >= STREAM_READ_ATTEMPTS) return { ok: false, error };
        await delay(STREAM_READ_RETRY_DELAY_MS * 2 ** (attempt - 1));
      }
    }
  };
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
