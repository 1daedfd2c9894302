/**
 * Reads a stream's messages by sequence number, in order, for restore and the
 * follower. Deleted sequence numbers are skipped (the assembler notices when a
 * skipped message mattered: the next epoch's predecessor or chunk index does
 * not match).
 *
 * The reader is a JetStream ordered consumer (ephemeral, one replica, memory
 * storage, no acks) that starts at `fromSeq`, is pulled in batches and is
 * deleted when the range is read. Per-message `STREAM.MSG.GET` requests — one
 * round trip per message, 32 in flight — read 20,000 4 KiB epochs 3.3x slower
 * (21 vs 69 MB/s on a loopback cluster, `bench/restore.ts`); they remain only
 * as the fallback for a stream that refuses new consumers (its
 * `max_consumers`, permissions, a server without the consumers API) and for
 * the benchmark's comparison.
 *
 * Ordered consumers re-create themselves after a gap in delivery (a leader
 * change, a reconnect). The reader does not rely on that alone: it yields a
 * sequence only when it is above the last one yielded and within the range,
 * and on any other delivery, or when no message arrives within the stall
 * bound, it discards the consumer and creates a new one at the next expected
 * sequence.
 */
import type { JetStreamManager, JsMsg } from '@nats-io/jetstream';
import type { StreamMessage } from '../assembler.js';
import { apiTimeoutMsDefault, messageBytesMaxDefault } from '../client.js';
import { ReplicationError, ReplicationErrorCode } from '../errors.js';
import { toStreamMessage } from './jetstream.js';
import { loadedNats, loadNats } from './peer.js';

/** Message requests in flight at once in the per-message fallback. */
export const STREAM_READ_WINDOW = 32;
/**
 * Consecutive attempts without progress before a read fails: consumer
 * creations or deliveries (ordered reader), requests per message (fallback).
 * A stream leader election stalls both for a few seconds.
 */
export const STREAM_READ_ATTEMPTS = 4;
/** Pause before the first retry of a failed attempt; doubles per attempt. */
export const STREAM_READ_RETRY_DELAY_MS = 250;
/**
 * Bytes the ordered reader asks for ahead of the caller: a pull asks for this
 * budget divided by the stream's largest message. Measured on loopback with
 * 1 MiB messages, 64 of them in flight got the connection cut as a slow
 * consumer by the server (its 64 MiB pending limit) and stalled the read for
 * 45 s; 16 read at 300 MB/s.
 */
export const STREAM_READ_BUFFER_BYTES = 16 * 1024 * 1024;
/** Fewest messages one pull asks for, whatever the stream's message size. */
export const streamReadBatchMessagesMin = 8;
/**
 * Most messages one pull asks for (small messages): beyond this, larger
 * batches were not measurably faster.
 */
export const streamReadBatchMessagesMax = 256;

/** Tuning of {@link readStreamRange}; the defaults suit restore and the follower. */
export interface StreamReadOptions {
  /**
   * Longest wait for the next message before the consumer is re-created at
   * the next expected sequence, ms (default: the manager's API timeout).
   */
  stallTimeoutMs?: number;
  /** Default {@link STREAM_READ_ATTEMPTS}. */
  attempts?: number;
  /** Default {@link STREAM_READ_BUFFER_BYTES}. */
  bufferBytes?: number;
  /** Requests in flight of the per-message fallback (default {@link STREAM_READ_WINDOW}). */
  window?: number;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function retryDelayMs(attempt: number): number {
  return STREAM_READ_RETRY_DELAY_MS * 2 ** (attempt - 1);
}

/** The typed error a read ends with after its last attempt failed. */
function readFailure(stream: string, seq: number, cause: unknown): ReplicationError {
  const jetstream = loadedNats()?.jetstream;
  const missing =
    jetstream !== undefined &&
    cause instanceof jetstream.JetStreamApiError &&
    cause.code === jetstream.JetStreamApiCodes.StreamNotFound;
  return new ReplicationError(
    missing ? ReplicationErrorCode.stream : ReplicationErrorCode.unavailable,
    `cannot read stream ${stream} at sequence ${seq}: ${(cause as Error)?.message ?? String(cause)}`,
    { cause },
  );
}

/**
 * Yields the messages with sequence `fromSeq ..= toSeq` in order, each at most
 * once; sequences deleted (or absent) when the read reaches them are skipped.
 * Every wait is bounded: a consumer creation by the manager's API timeout, a
 * delivery by `stallTimeoutMs`; after {@link STREAM_READ_ATTEMPTS} attempts in
 * a row without progress the iteration ends with a {@link ReplicationError}
 * (`ERR_REPLICATION_STREAM` when the stream does not exist,
 * `ERR_REPLICATION_UNAVAILABLE` otherwise). Stopping early (`break`,
 * `return`) closes and deletes the consumer before the loop goes on.
 */
export async function* readStreamRange(
  jsm: JetStreamManager,
  stream: string,
  fromSeq: number,
  toSeq: number,
  options: StreamReadOptions = {},
): AsyncGenerator<StreamMessage> {
  if (fromSeq > toSeq) return;
  let batchMessages: number | null = null;
  const open = async (startSeq: number): Promise<DeliverySession> => {
    batchMessages ??= batchMessagesFor(
      (await jsm.streams.info(stream)).config.max_msg_size,
      options.bufferBytes ?? STREAM_READ_BUFFER_BYTES,
    );
    return ConsumerSession.open(jsm, stream, startSeq, batchMessages);
  };
  yield* readOrdered(open, fromSeq, toSeq, {
    stallTimeoutMs: options.stallTimeoutMs ?? jsm.getOptions().timeout ?? apiTimeoutMsDefault,
    attempts: options.attempts ?? STREAM_READ_ATTEMPTS,
    stream,
    firstAtOrAfter: async (seq) => {
      // STREAM.MSG.GET is answered by the stream leader. The server takes
      // `next_by_subj` there too (2.9+), though the client types list it for
      // direct gets only; `>` matches every subject of the stream.
      const query = { seq, next_by_subj: '>' };
      const stored = await jsm.streams.getMessage(stream, query);
      return stored === null ? null : toStreamMessage(stored);
    },
    fallback: (from) => readStreamRangeByRequest(jsm, stream, from, toSeq, options.window),
  });
}

/** Messages per pull for a stream whose messages are at most `maxMessageBytes`. */
export function batchMessagesFor(maxMessageBytes: number | undefined, bufferBytes: number): number {
  const largest =
    maxMessageBytes !== undefined && maxMessageBytes > 0 ? maxMessageBytes : messageBytesMaxDefault;
  const fit = Math.floor(bufferBytes / largest);
  return Math.min(streamReadBatchMessagesMax, Math.max(streamReadBatchMessagesMin, fit));
}

/**
 * What one ordered delivery session handed over next.
 * @internal exported for the reader's tests.
 */
export type Delivery =
  | { kind: 'message'; message: StreamMessage; pending: number }
  | { kind: 'stalled' }
  | { kind: 'ended'; error: unknown };

/**
 * One ordered consumer from a start sequence.
 * @internal exported for the reader's tests.
 */
export interface DeliverySession {
  /** Messages at or after the start sequence when the consumer was created. */
  readonly pendingAtStart: number;
  /** The next delivery, or `stalled` when none came within `timeoutMs`. */
  next(timeoutMs: number): Promise<Delivery>;
  /** Stops deliveries, settles everything in flight and deletes the consumer. */
  close(): Promise<void>;
}

/** @internal Limits and helpers of {@link readOrdered}. */
export interface OrderedReadPlan {
  stallTimeoutMs: number;
  attempts: number;
  /** For error messages. */
  stream: string;
  /**
   * The stream leader's first message at or after `seq` (`null`: none): the
   * authoritative answer when a consumer runs dry before the range's end.
   */
  firstAtOrAfter: (seq: number) => Promise<StreamMessage | null>;
  /** Reads `from ..= toSeq` another way when consumers are refused. */
  fallback: (from: number) => AsyncGenerator<StreamMessage>;
}

/**
 * The reader's loop over ordered delivery sessions: yields strictly
 * increasing sequences within `fromSeq ..= toSeq`, re-creating the session at
 * the next expected sequence after a stall, an early end or any delivery that
 * is not above the last sequence yielded.
 *
 * A consumer with nothing more to deliver does not end the read by itself:
 * the server places it on any replica of the stream, and a replica that is
 * catching up (after a restart, say) has only a prefix of the stream — one
 * reported 100 pending messages where the leader had 3,100. So the leader is
 * asked for the next message; only when it has none within the range is the
 * rest of the range deleted. Otherwise that message is yielded and a new
 * consumer (most likely on another replica) continues after it.
 * @internal exported for the reader's tests.
 */
export async function* readOrdered(
  open: (startSeq: number) => Promise<DeliverySession>,
  fromSeq: number,
  toSeq: number,
  plan: OrderedReadPlan,
): AsyncGenerator<StreamMessage> {
  const { transport } = await loadNats();
  const position: ReadPosition = { next: fromSeq, failures: 0 };
  const failed = async (cause: unknown): Promise<void> => {
    position.failures += 1;
    if (position.failures >= plan.attempts) throw readFailure(plan.stream, position.next, cause);
    await delay(retryDelayMs(position.failures));
  };
  while (position.next <= toSeq) {
    let session: DeliverySession;
    try {
      session = await open(position.next);
    } catch (error) {
      if (error instanceof transport.errors.ClosedConnectionError)
        throw readFailure(plan.stream, position.next, error);
      if (consumersRefused(error)) {
        yield* plan.fallback(position.next);
        return;
      }
      await failed(error);
      continue;
    }
    let end: SessionEnd;
    try {
      end = yield* drainSession(session, position, toSeq, plan.stallTimeoutMs);
    } finally {
      await session.close();
    }
    if (end.kind === 'done') return;
    if (end.kind === 'broken') {
      await failed(end.cause);
      continue;
    }
    let leaders: StreamMessage | null;
    try {
      leaders = await plan.firstAtOrAfter(position.next);
    } catch (error) {
      await failed(error);
      continue;
    }
    if (leaders === null || leaders.seq > toSeq) return;
    if (leaders.seq < position.next) {
      await failed(
        new Error(`the leader answered sequence ${leaders.seq} for ${position.next} or later`),
      );
      continue;
    }
    yield leaders;
    position.next = leaders.seq + 1;
    position.failures = 0;
  }
}

/** Where an ordered read stands: the next sequence it wants, and the failures in a row since the last message. */
interface ReadPosition {
  next: number;
  failures: number;
}

/** How a delivery session ended: range done, consumer dry, or broken (stall, early end, out of order). */
type SessionEnd = { kind: 'done' } | { kind: 'dry' } | { kind: 'broken'; cause: unknown };

/** Yields one session's deliveries in order, advancing `position`, until it ends (see {@link SessionEnd}). */
async function* drainSession(
  session: DeliverySession,
  position: ReadPosition,
  toSeq: number,
  stallTimeoutMs: number,
): AsyncGenerator<StreamMessage, SessionEnd> {
  let dry = session.pendingAtStart === 0;
  while (!dry) {
    const delivery = await session.next(stallTimeoutMs);
    if (delivery.kind === 'stalled') {
      return { kind: 'broken', cause: new Error(`no message within ${stallTimeoutMs} ms`) };
    }
    if (delivery.kind === 'ended') {
      return {
        kind: 'broken',
        cause: delivery.error ?? new Error('the consumer stopped delivering'),
      };
    }
    const { message, pending } = delivery;
    if (message.seq < position.next) {
      return {
        kind: 'broken',
        cause: new Error(`sequence ${message.seq} delivered after ${position.next - 1}`),
      };
    }
    if (message.seq > toSeq) return { kind: 'done' };
    yield message;
    position.next = message.seq + 1;
    position.failures = 0;
    if (position.next > toSeq) return { kind: 'done' };
    dry = pending === 0;
  }
  return { kind: 'dry' };
}

/**
 * True when the server answered that this stream will not get a consumer
 * (limits, permissions, no consumers API), as opposed to a timeout or an
 * unavailable cluster, which are retried.
 */
function consumersRefused(error: unknown): boolean {
  const { transport, jetstream } = loadedNats()!;
  if (error instanceof transport.errors.PermissionViolationError) return true;
  if (error instanceof jetstream.JetStreamApiError) {
    return error.status < 500 && error.code !== jetstream.JetStreamApiCodes.StreamNotFound;
  }
  // The client's own check of the server version throws a plain Error.
  return error instanceof Error && error.constructor === Error && /consumers/i.test(error.message);
}

function fromJsMsg(m: JsMsg): StreamMessage {
  const headers = m.headers;
  return {
    seq: m.seq,
    header: (name) => (headers?.has(name) ? headers.get(name) : undefined),
    data: m.data,
  };
}

/** An ordered pull consumer and the one iteration over its messages. */
class ConsumerSession implements DeliverySession {
  private inflight: Promise<IteratorResult<JsMsg>> | null = null;

  private constructor(
    private readonly consumer: { delete(): Promise<boolean> },
    private readonly messages: { stop(err?: Error): void },
    private readonly iterator: AsyncIterator<JsMsg>,
    readonly pendingAtStart: number,
  ) {}

  static async open(
    jsm: JetStreamManager,
    stream: string,
    startSeq: number,
    batchMessages: number,
  ): Promise<ConsumerSession> {
    const consumer = await jsm.jetstream().consumers.get(stream, { opt_start_seq: startSeq });
    try {
      const info = await consumer.info(true);
      // `max_messages` bounds a pull by count only: a byte bound (`max_bytes`)
      // made this client stall for heartbeats whenever the next message did
      // not fit the pull (measured: seconds per stall).
      const messages = await consumer.consume({ max_messages: batchMessages });
      return new ConsumerSession(
        consumer,
        messages,
        messages[Symbol.asyncIterator](),
        info.num_pending,
      );
    } catch (error) {
      await consumer.delete().catch(() => false);
      throw error;
    }
  }

  async next(timeoutMs: number): Promise<Delivery> {
    this.inflight ??= this.iterator.next();
    let timer: NodeJS.Timeout | undefined;
    const stalled = new Promise<'stalled'>((resolve) => {
      timer = setTimeout(() => resolve('stalled'), timeoutMs);
    });
    const settled = this.inflight.then(
      (result) => ({ result }),
      (error: unknown) => ({ error }),
    );
    const outcome = await Promise.race([settled, stalled]);
    clearTimeout(timer);
    // A stalled request stays in flight: close() settles it.
    if (outcome === 'stalled') return { kind: 'stalled' };
    this.inflight = null;
    if ('error' in outcome) return { kind: 'ended', error: outcome.error };
    if (outcome.result.done === true) return { kind: 'ended', error: null };
    const m = outcome.result.value;
    return { kind: 'message', message: fromJsMsg(m), pending: m.info.pending };
  }

  async close(): Promise<void> {
    // Stopping wakes a pending next() (it ends, or hands over a message that
    // was already queued); return() then ends the iteration for good.
    this.messages.stop();
    await this.inflight?.catch(() => undefined);
    this.inflight = null;
    await this.iterator.return?.()?.catch(() => undefined);
    // Bounded by the API timeout; an orphan is removed by the server after
    // the consumer's inactivity threshold.
    await this.consumer.delete().catch(() => false);
  }
}

/**
 * The per-message reader: one `STREAM.MSG.GET` request per sequence, `window`
 * in flight, each retried up to {@link STREAM_READ_ATTEMPTS} times. The
 * fallback of {@link readStreamRange}, kept exported for `bench/restore.ts`.
 * Same contract; a final failure ends the iteration with a
 * {@link ReplicationError} after the requests in flight settled.
 */
export async function* readStreamRangeByRequest(
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
        await delay(retryDelayMs(attempt));
      }
    }
  };
  try {
    while (next <= toSeq || pending.length > 0) {
      while (next <= toSeq && pending.length < window) pending.push(request(next++));
      const seq = next - pending.length;
      const result = await pending.shift()!;
      if (!result.ok) throw readFailure(stream, seq, result.error);
      if (result.message !== null) yield result.message;
    }
  } finally {
    // Never leave a request unobserved, also when the consumer stops early.
    await Promise.all(pending);
  }
}
