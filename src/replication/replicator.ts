/**
 * Ships every sealed, durable epoch of one database to a NATS JetStream
 * stream, in epoch order, without gaps or duplicates.
 *
 * The log tells the replicator how far it is durable ({@link Replicator.notifyDurable},
 * wired to the engine's durable hook). One background loop lists the segment
 * files in (shipped, durable], reads each one's bytes (and its certificate
 * when the control plane provides a reader), cuts it into chunks
 * ({@link encodeEpochChunks}) and publishes them, pipelined up to
 * {@link ReplicatorOptions.maxInFlightMessages}.
 *
 * Why the stream never holds a gap or a duplicate:
 * - every message carries `Nats-Expected-Last-Sequence` = the sequence its
 *   predecessor got (predicted while pipelining). If a message is lost, every
 *   later one is rejected by the server instead of landing after a hole;
 * - every message carries `Nats-Msg-Id` = database id + epoch + chunk, so a
 *   retry of a message that did land (lost ack) is acknowledged as a
 *   duplicate and not stored twice;
 * - after any failure the loop *resyncs*: it reads the stream's last message
 *   and continues exactly after it (even a partly shipped epoch resumes at its
 *   next chunk), so a retry after the duplicate window cannot duplicate either.
 *
 * The replicated watermark {@link Replicator.replicatedEpoch} moves only when
 * the cluster acknowledged the last chunk of an epoch (with R3, after a
 * majority stored it). A store must not delete segments above it.
 */

import { randomBytes } from 'node:crypto';
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { type Deferred, createDeferred as deferred } from '../engine/deferred.js';
import { type LoggableStats, loggableStats } from '../stats-json.js';
import { nodeFileSystem, type WalFileSystem } from '../storage/fs.js';
import { listSegments, segmentPath } from '../storage/segment-files.js';
import { ReplicationError, ReplicationErrorCode, ReplicationTimeoutError } from './errors.js';
import {
  apiTimeoutMsDefault,
  chunkPayloadBytesFor,
  connectBounded,
  connectTimeoutMsDefault,
  defaultStreamName,
  defaultSubject,
  duplicateWindowMsDefault,
  ensureStream,
  isApiError,
  managerFor,
  messageBytesMaxDefault,
  streamReplicasDefault,
} from './nats.js';
import { loadedNats, loadNats } from './nats-peer.js';
import { sleepUnless } from './sleep.js';
import {
  type ReplicationState,
  readReplicationState,
  writeReplicationState,
} from './state-file.js';
import {
  assertDatabaseId,
  type ChunkMessage,
  encodeEpochChunks,
  parseChunkHeader,
  ReplicationHeader,
} from './wire.js';

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

interface Waiter {
  epoch: bigint;
  done: Deferred<void>;
  timer: NodeJS.Timeout;
}

interface InFlight {
  ack: Promise<{ ok: true; seq: number; duplicate: boolean } | { ok: false; error: unknown }>;
  expectedSeq: number;
  epoch: bigint;
  lastOfEpoch: boolean;
  bytes: number;
}

/** Where the stream ends, as last read or acknowledged. */
interface StreamPosition {
  /** Sequence of the stream's last message. */
  lastSeq: number;
  /** Last epoch whose every chunk is in the stream (0n for none). */
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

function errorSummary(error: unknown): { code: string; message: string } {
  const code = (error as { code?: unknown })?.code;
  return {
    code: typeof code === 'string' || typeof code === 'number' ? String(code) : 'ERR_UNKNOWN',
    message: error instanceof Error ? error.message : String(error),
  };
}

/** Ships a database's durable epochs to its JetStream stream. */
export class Replicator {
  private readonly fs: WalFileSystem;
  private readonly publishTimeoutMs: number;
  private readonly maxInFlight: number;
  private durable: bigint | null;
  private replicated: bigint | null;
  private position: StreamPosition | null = null;
  private nc: NatsConnection | null;
  private readonly ownsConnection: boolean;
  private js: JetStreamClient | null = null;
  private jsm: JetStreamManager | null = null;
  private chunkPayloadBytes = 0;
  private state: ReplicatorState = 'connecting';
  private failure: ReplicationError | null = null;
  private lastError: { code: string; message: string } | null = null;
  private closing = false;
  private wake: Deferred<void> = deferred();
  private readonly closeSignal: Deferred<void> = deferred();
  private stateWrites: Promise<void> = Promise.resolve();
  private readonly waiters = new Set<Waiter>();
  /** Epochs announced with a segment since the last directory listing, ascending. */
  private announced: bigint[] = [];
  /** List the directory on the next round (after open, a failure, or an unannotated notification). */
  private listingNeeded = true;
  private loop: Promise<void> = Promise.resolve();
  private lastStateWrite = 0;
  private readonly counters = {
    epochsShipped: 0,
    messagesPublished: 0,
    bytesShipped: 0,
    duplicateAcks: 0,
    failures: 0,
    resyncs: 0,
    basesEnsured: 0,
  };

  private constructor(
    private readonly options: ReplicatorOptions,
    readonly databaseId: string,
    readonly stream: string,
    readonly subject: string,
    initialDurable: bigint | null,
    initialReplicated: bigint | null,
  ) {
    this.fs = options.fs ?? nodeFileSystem;
    this.publishTimeoutMs = options.publishTimeoutMs ?? publishTimeoutMsDefault;
    this.maxInFlight = Math.max(1, options.maxInFlightMessages ?? inFlightMessagesMaxDefault);
    this.durable = initialDurable;
    this.replicated = initialReplicated;
    this.nc = options.connection ?? null;
    this.ownsConnection = options.connection === undefined;
  }

  /**
   * Opens a replicator for a database and starts shipping in the background.
   * Never waits for the cluster: an unreachable cluster only delays shipping.
   * The database id is created once and stored durably next to the database.
   */
  static async open(options: ReplicatorOptions): Promise<Replicator> {
    // A missing NATS package fails here, typed, not later in the background.
    await loadNats();
    if (options.connection === undefined && options.servers === undefined) {
      throw new ReplicationError(
        ReplicationErrorCode.stream,
        'replicator needs servers or a connection',
      );
    }
    const fs = options.fs ?? nodeFileSystem;
    const saved = await readReplicationState(options.dbPath, fs);
    const databaseId = options.databaseId ?? saved?.databaseId ?? randomBytes(8).toString('hex');
    assertDatabaseId(databaseId);
    const stream = options.stream ?? saved?.stream ?? defaultStreamName(databaseId);
    const subject = options.subject ?? saved?.subject ?? defaultSubject(databaseId);
    const replicated = savedWatermark(saved, databaseId, stream);
    // Segments on disk passed recovery; the saved watermark was durable when
    // it was acknowledged (its segments may be checkpointed away since).
    let durable = options.initialDurableEpoch ?? null;
    if (options.initialDurableEpoch === undefined) {
      const segments = await listSegments(options.dbPath, { fs });
      durable = segments.at(-1)?.epoch ?? null;
    }
    durable = maxEpoch(durable, replicated);
    const replicator = new Replicator(options, databaseId, stream, subject, durable, replicated);
    if (saved === null || saved.databaseId !== databaseId || saved.stream !== stream) {
      await replicator.saveState();
    }
    replicator.loop = replicator.run();
    return replicator;
  }

  /**
   * The engine's durable hook: the local log is durable up to `epoch`.
   * `segmentWritten` (from the engine's `DurableEpochInfo`) says whether the
   * epoch has a segment file; when every notification says so, the
   * replicator ships from these notifications and lists the directory only
   * after opening and after a failure. Without it, each round lists the
   * directory.
   */
  notifyDurable(epoch: bigint, segmentWritten?: boolean): void {
    if (this.durable !== null && epoch <= this.durable) return;
    this.durable = epoch;
    if (segmentWritten === undefined) this.listingNeeded = true;
    else if (segmentWritten) this.announced.push(epoch);
    this.wake.resolve();
  }

  /** Highest locally durable epoch the replicator knows of (`null`: none). */
  localDurableEpoch(): bigint | null {
    return this.durable;
  }

  /**
   * Highest epoch acknowledged by the cluster: every segment at or below it
   * is in the stream (`null`: nothing yet). Stores consult it before
   * deleting segments: only segments at or below it may go.
   */
  replicatedEpoch(): bigint | null {
    return this.replicated;
  }

  /** Snapshot of watermarks and counters. */
  stats(): LoggableStats<ReplicatorStats> {
    return loggableStats({
      state: this.state,
      databaseId: this.databaseId,
      stream: this.stream,
      subject: this.subject,
      localDurableEpoch: this.durable,
      replicatedEpoch: this.replicated,
      streamSeq: this.position?.lastSeq ?? 0,
      chunkPayloadBytes: this.chunkPayloadBytes,
      ...this.counters,
      waiters: this.waiters.size,
      lastError: this.lastError,
    });
  }

  /**
   * Resolves when `epoch` is replicated; rejects with
   * {@link ReplicationTimeoutError} after `timeoutMs`, or with the
   * replicator's failure or closing.
   */
  waitForReplicated(epoch: bigint, timeoutMs = replicationTimeoutMsDefault): Promise<void> {
    if (this.replicated !== null && epoch <= this.replicated) return Promise.resolve();
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(this.closedError());
    const done = deferred<void>();
    const waiter: Waiter = {
      epoch,
      done,
      timer: setTimeout(() => {
        this.waiters.delete(waiter);
        const cause = this.lastError === null ? undefined : this.lastError;
        done.reject(new ReplicationTimeoutError(epoch, this.replicated, timeoutMs, cause));
      }, timeoutMs),
    };
    this.waiters.add(waiter);
    return done.promise;
  }

  /** Waits until everything locally durable now is replicated (bounded). */
  flush(timeoutMs = replicationTimeoutMsDefault): Promise<void> {
    if (this.durable === null) return Promise.resolve();
    return this.waitForReplicated(this.durable, timeoutMs);
  }

  /**
   * Stops shipping: the loop finishes its current step (bounded by the
   * publish and connect timeouts), waiters are rejected with
   * `ERR_REPLICATION_CLOSED`, the state file is written, and an owned
   * connection is closed. Idempotent.
   */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.closing = true;
    this.closeSignal.resolve();
    this.wake.resolve();
    await this.loop;
    this.state = 'closed';
    this.settleWaiters(this.closedError());
    this.queueStateWrite();
    await this.stateWrites;
    if (this.ownsConnection && this.nc !== null && !this.nc.isClosed()) await this.nc.close();
  }

  /** `await using` support. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private closedError(): ReplicationError {
    return new ReplicationError(ReplicationErrorCode.closed, 'replicator closed');
  }

  // -------------------------------------------------------------------------
  // The shipping loop

  private async run(): Promise<void> {
    let consecutiveFailures = 0;
    while (!this.closing) {
      try {
        await this.ensureSession();
        const shipped = await this.shipAvailable();
        consecutiveFailures = 0;
        this.lastError = null;
        if (!shipped && !this.closing) {
          this.state = 'idle';
          await Promise.race([this.wake.promise, this.closeSignal.promise]);
        }
      } catch (error) {
        this.lastError = errorSummary(error);
        this.counters.failures += 1;
        if (error instanceof ReplicationError && isFatal(error)) {
          this.fail(error);
          return;
        }
        // Whatever happened, the stream's tail decides where to continue,
        // and the directory which segments exist.
        this.position = null;
        this.listingNeeded = true;
        consecutiveFailures += 1;
        await this.sleep(retryDelayMs(consecutiveFailures));
      }
      if (this.wake.settled) this.wake = deferred();
    }
  }

  private fail(error: ReplicationError): void {
    this.state = 'failed';
    this.failure = error;
    this.settleWaiters(error);
  }

  private settleWaiters(error: Error): void {
    for (const waiter of this.waiters) {
      clearTimeout(waiter.timer);
      waiter.done.reject(error);
    }
    this.waiters.clear();
  }

  private async sleep(ms: number): Promise<void> {
    // A durable notification does not cut a backoff short; closing does.
    await sleepUnless(ms, [this.closeSignal.promise]);
  }

  private async ensureSession(): Promise<void> {
    if (this.nc === null || this.nc.isClosed()) {
      this.state = 'connecting';
      if (!this.ownsConnection) {
        throw new ReplicationError(
          ReplicationErrorCode.unavailable,
          'the given NATS connection is closed',
        );
      }
      this.nc = await connectBounded(this.options.servers ?? [], {
        connectTimeoutMs: this.options.connectTimeoutMs ?? connectTimeoutMsDefault,
        name: `pwal-replicator-${this.databaseId}`,
      });
      this.js = null;
      this.jsm = null;
    }
    const nc = this.nc;
    if (this.jsm === null || this.js === null) {
      const { jetstream } = await loadNats();
      this.jsm = await managerFor(nc, this.options.apiTimeoutMs ?? apiTimeoutMsDefault);
      this.js = jetstream.jetstream(nc, { timeout: this.publishTimeoutMs });
      this.position = null;
    }
    if (this.position === null) {
      const info = await ensureStream(
        this.jsm,
        { stream: this.stream, subject: this.subject },
        {
          create: this.options.createStream ?? true,
          replicas: this.options.replicas ?? streamReplicasDefault,
          maxMessageBytes: this.options.maxMessageBytes ?? messageBytesMaxDefault,
          duplicateWindowMs: this.options.duplicateWindowMs ?? duplicateWindowMsDefault,
        },
      );
      this.chunkPayloadBytes = chunkPayloadBytesFor(info, nc);
      await this.resync(info.state.last_seq);
    }
  }

  /** Reads the stream's tail and sets where shipping continues. */
  private async resync(streamLastSeq: number): Promise<void> {
    this.counters.resyncs += 1;
    const jsm = this.jsm!;
    const tail = await jsm.streams.getMessage(this.stream, { last_by_subj: this.subject });
    if (tail === null) {
      const base = this.options.baseEpoch ?? null;
      if (base !== null && this.options.ensureBase !== undefined) {
        await this.options.ensureBase({
          connection: this.nc!,
          baseEpoch: base,
          databaseId: this.databaseId,
          stream: this.stream,
        });
        this.counters.basesEnsured += 1;
      }
      this.position = { lastSeq: streamLastSeq, lastEpoch: base, partial: null };
      return;
    }
    if (tail.seq !== streamLastSeq) {
      throw new ReplicationError(
        ReplicationErrorCode.conflict,
        `stream ${this.stream} has messages after this database's last one (sequence ${tail.seq} < ${streamLastSeq}): one subject per stream is required`,
      );
    }
    const header = parseChunkHeader(
      (name) => (tail.header?.has(name) ? tail.header.get(name) : undefined),
      tail.seq,
    );
    if (header.databaseId !== this.databaseId) {
      throw new ReplicationError(
        ReplicationErrorCode.conflict,
        `stream ${this.stream} holds database ${header.databaseId}, not ${this.databaseId}`,
      );
    }
    if (this.durable === null || header.epoch > this.durable) {
      throw new ReplicationError(
        ReplicationErrorCode.conflict,
        `stream ${this.stream} is ahead of the local log: it holds epoch ${header.epoch}, the log is durable up to ${this.durable ?? 'none'}`,
      );
    }
    const complete = header.chunk === header.chunks - 1;
    this.position = {
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
    if (complete) this.markReplicated(header.epoch);
  }

  /**
   * Publishes every durable segment above the stream's position. Returns
   * false when there was nothing to ship.
   */
  private async shipAvailable(): Promise<boolean> {
    const position = this.position!;
    const durable = this.durable;
    if (durable === null) return false;
    const from = position.partial !== null ? position.partial.prevEpoch : position.lastEpoch;
    const pending = (await this.segmentsUpTo(durable)).filter(
      (s) => from === null || s.epoch > from,
    );
    const partial = position.partial;
    if (partial !== null && pending[0]?.epoch !== partial.epoch) {
      throw new ReplicationError(
        ReplicationErrorCode.segmentMissing,
        `epoch ${partial.epoch} is partly in stream ${this.stream} but its segment is gone`,
      );
    }
    if (pending.length === 0) {
      // Every segment up to the durable epoch is in the stream (empty epochs
      // write no segment), so the durable epoch is replicated.
      this.markReplicated(durable);
      return false;
    }
    this.state = 'shipping';
    const inFlight: InFlight[] = [];
    let predictedSeq = position.lastSeq;
    let prevEpoch = from;
    let completed = false;
    try {
      for (const segment of pending) {
        if (this.closing) break;
        const messages = await this.encodeEpoch(segment.path, segment.epoch, prevEpoch);
        const first = this.firstChunkToSend(segment.epoch, messages);
        for (let chunk = first; chunk < messages.length; chunk++) {
          while (inFlight.length >= this.maxInFlight) await this.settleOldest(inFlight);
          predictedSeq += 1;
          const last = chunk === messages.length - 1;
          inFlight.push(this.publish(messages[chunk]!, predictedSeq, segment.epoch, last));
        }
        prevEpoch = segment.epoch;
      }
      while (inFlight.length > 0) await this.settleOldest(inFlight);
      completed = !this.closing;
    } finally {
      // Never leave an acknowledgement promise unobserved.
      await Promise.all(inFlight.map((f) => f.ack));
    }
    if (completed) this.markReplicated(durable);
    return true;
  }

  /**
   * Segments with epochs at or below `durable`: from a directory listing when
   * needed, else from the engine's announcements (a listing per round costs
   * a readdir of a directory that grows until the next checkpoint).
   */
  private async segmentsUpTo(durable: bigint): Promise<{ epoch: bigint; path: string }[]> {
    if (this.listingNeeded) {
      this.listingNeeded = false;
      // Announcements at or below `durable` are covered by the listing: a
      // segment is renamed into place before its epoch is announced durable.
      this.announced = this.announced.filter((e) => e > durable);
      const listed = await listSegments(this.options.dbPath, { fs: this.fs });
      return listed.filter((s) => s.epoch <= durable);
    }
    const ready = this.announced.filter((e) => e <= durable);
    this.announced = this.announced.filter((e) => e > durable);
    return ready.map((epoch) => ({ epoch, path: segmentPath(this.options.dbPath, epoch) }));
  }

  private async encodeEpoch(
    path: string,
    epoch: bigint,
    prevEpoch: bigint | null,
  ): Promise<ChunkMessage[]> {
    let segment: Uint8Array;
    try {
      segment = await this.fs.readFile(path);
    } catch (error) {
      throw new ReplicationError(
        ReplicationErrorCode.segmentMissing,
        `durable epoch ${epoch} cannot be shipped: ${(error as Error).message}`,
        { cause: error },
      );
    }
    const certificate = (await this.options.readCertificate?.(epoch)) ?? null;
    return encodeEpochChunks(
      { databaseId: this.databaseId, epoch, prevEpoch, segment, certificate },
      this.chunkPayloadBytes,
    );
  }

  /** 0, or where a partly shipped epoch continues (after checking it is the same epoch). */
  private firstChunkToSend(epoch: bigint, messages: ChunkMessage[]): number {
    const partial = this.position!.partial;
    if (partial === null || partial.epoch !== epoch) return 0;
    const digest = messages[0]!.headers.get(ReplicationHeader.digest);
    if (messages.length !== partial.chunks || digest !== partial.digest) {
      throw new ReplicationError(
        ReplicationErrorCode.conflict,
        `stream ${this.stream} holds a different partial copy of epoch ${epoch}`,
      );
    }
    return partial.nextChunk;
  }

  private publish(
    message: ChunkMessage,
    expectedSeq: number,
    epoch: bigint,
    lastOfEpoch: boolean,
  ): InFlight {
    // Loaded: `this.js` exists only after loadNats().
    const hdrs = loadedNats()!.transport.headers();
    for (const [name, value] of message.headers) hdrs.set(name, value);
    const ack = this.js!.publish(this.subject, message.data, {
      msgID: message.msgId,
      headers: hdrs,
      timeout: this.publishTimeoutMs,
      expect: { lastSequence: expectedSeq - 1 },
    }).then(
      (pubAck) => ({ ok: true as const, seq: pubAck.seq, duplicate: pubAck.duplicate }),
      (error: unknown) => ({ ok: false as const, error }),
    );
    return { ack, expectedSeq, epoch, lastOfEpoch, bytes: message.data.length };
  }

  private async settleOldest(inFlight: InFlight[]): Promise<void> {
    const oldest = inFlight[0]!;
    const result = await oldest.ack;
    if (!result.ok) {
      const codes = loadedNats()!.jetstream.JetStreamApiCodes;
      if (isApiError(result.error, codes.StreamWrongLastSequence)) {
        throw new ReplicationError(
          ReplicationErrorCode.unavailable,
          `stream ${this.stream} moved on under a pipelined publish; resyncing`,
          { cause: result.error },
        );
      }
      throw result.error;
    }
    if (result.seq !== oldest.expectedSeq) {
      // A duplicate acknowledged at another position, or a foreign writer.
      throw new ReplicationError(
        ReplicationErrorCode.unavailable,
        `epoch ${oldest.epoch} landed at stream sequence ${result.seq}, expected ${oldest.expectedSeq}; resyncing`,
      );
    }
    inFlight.shift();
    const position = this.position!;
    position.lastSeq = result.seq;
    this.counters.messagesPublished += 1;
    this.counters.bytesShipped += oldest.bytes;
    if (result.duplicate) this.counters.duplicateAcks += 1;
    if (oldest.lastOfEpoch) {
      position.lastEpoch = oldest.epoch;
      position.partial = null;
      this.counters.epochsShipped += 1;
      this.markReplicated(oldest.epoch);
    }
  }

  private markReplicated(epoch: bigint): void {
    if (this.replicated !== null && epoch <= this.replicated) return;
    this.replicated = epoch;
    for (const waiter of this.waiters) {
      if (waiter.epoch <= epoch) {
        clearTimeout(waiter.timer);
        this.waiters.delete(waiter);
        waiter.done.resolve();
      }
    }
    const now = Date.now();
    if (now - this.lastStateWrite >= STATE_WRITE_INTERVAL_MS) {
      this.lastStateWrite = now;
      this.queueStateWrite();
    }
  }

  /** Serialises state-file writes so an older watermark never overwrites a newer one. */
  private queueStateWrite(): void {
    this.stateWrites = this.stateWrites
      .then(() => this.saveState())
      .catch(() => {
        // Informational file (the stream is the source of truth); rewritten
        // on the next progress or at close.
      });
  }

  private saveState(): Promise<void> {
    const state: ReplicationState = {
      databaseId: this.databaseId,
      stream: this.stream,
      subject: this.subject,
      replicatedEpoch: this.replicated,
      streamSeq: this.position?.lastSeq ?? 0,
      updatedAt: new Date().toISOString(),
    };
    return writeReplicationState(this.options.dbPath, state, this.fs);
  }
}

/**
 * The saved watermark when the state file is of this database and stream.
 * It is never ahead of what the cluster acknowledged, so it may protect
 * segments from deletion (and floor the log's epochs) before the first contact.
 */
function savedWatermark(
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

function maxEpoch(a: bigint | null, b: bigint | null): bigint | null {
  if (a === null) return b;
  if (b === null) return a;
  return a > b ? a : b;
}

function isFatal(error: ReplicationError): boolean {
  return (
    error.code === ReplicationErrorCode.conflict ||
    error.code === ReplicationErrorCode.segmentMissing ||
    error.code === ReplicationErrorCode.stream
  );
}

function retryDelayMs(consecutiveFailures: number): number {
  const exp = retryDelayMsMin * 2 ** Math.min(consecutiveFailures - 1, 10);
  return Math.min(retryDelayMsMax, exp);
}
