/**
 * Ships every sealed, durable epoch of one database to its stream (through
 * the {@link ReplicaClient}: NATS JetStream), in epoch order, without gaps or
 * duplicates.
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
import { type Deferred, createDeferred as deferred } from '../engine/deferred.js';
import { type LoggableStats, loggableStats } from '../stats-json.js';
import { nodeFileSystem, type WalFileSystem } from '../storage/fs.js';
import { listSegments, segmentPath } from '../storage/segment-files.js';
import {
  apiTimeoutMsDefault,
  connectTimeoutMsDefault,
  defaultStreamName,
  defaultSubject,
  duplicateWindowMsDefault,
  messageBytesMaxDefault,
  type PublishedChunk,
  type ReplicaClient,
  streamReplicasDefault,
} from './client.js';
import { ReplicationError, ReplicationErrorCode, ReplicationTimeoutError } from './errors.js';
import { type NatsConnection, NatsReplicaClient, requireNatsPeers } from './nats/client.js';
import {
  inFlightMessagesMaxDefault,
  publishTimeoutMsDefault,
  type ReplicatorOptions,
  type ReplicatorState,
  type ReplicatorStats,
  replicationTimeoutMsDefault,
  retryDelayMsMax,
  retryDelayMsMin,
  STATE_WRITE_INTERVAL_MS,
  savedWatermark,
} from './replicator-options.js';
import { sleepUnless } from './sleep.js';
import {
  type ReplicationState,
  readReplicationState,
  writeReplicationState,
} from './state-file.js';
import { positionAfterTail, resumeChunk, type StreamPosition } from './stream-position.js';
import { assertDatabaseId, type ChunkMessage, encodeEpochChunks } from './wire.js';

interface Waiter {
  epoch: bigint;
  done: Deferred<void>;
  timer: NodeJS.Timeout;
}

interface InFlight {
  ack: Promise<({ ok: true } & PublishedChunk) | { ok: false; error: unknown }>;
  expectedSeq: number;
  epoch: bigint;
  lastOfEpoch: boolean;
  bytes: number;
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
  private client: ReplicaClient | null = null;
  /** The client's connection, handed to {@link ReplicatorOptions.ensureBase}. */
  private connection: NatsConnection | null = null;
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
  }

  /**
   * Opens a replicator for a database and starts shipping in the background.
   * Never waits for the cluster: an unreachable cluster only delays shipping.
   * The database id is created once and stored durably next to the database.
   */
  static async open(options: ReplicatorOptions): Promise<Replicator> {
    // A missing NATS package fails here, typed, not later in the background.
    await requireNatsPeers();
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
    await this.client?.close();
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
    if (this.client === null || this.client.isClosed()) {
      this.state = 'connecting';
      if (this.options.connection?.isClosed() === true) {
        throw new ReplicationError(
          ReplicationErrorCode.unavailable,
          'the given NATS connection is closed',
        );
      }
      const client = await NatsReplicaClient.connect({
        ...(this.options.connection === undefined
          ? { servers: this.options.servers ?? [] }
          : { connection: this.options.connection }),
        connectTimeoutMs: this.options.connectTimeoutMs ?? connectTimeoutMsDefault,
        apiTimeoutMs: this.options.apiTimeoutMs ?? apiTimeoutMsDefault,
        name: `pwal-replicator-${this.databaseId}`,
      });
      this.client = client;
      this.connection = client.connection;
      this.position = null;
    }
    if (this.position === null) {
      const stream = await this.client.ensureStream(
        { stream: this.stream, subject: this.subject },
        {
          create: this.options.createStream ?? true,
          replicas: this.options.replicas ?? streamReplicasDefault,
          maxMessageBytes: this.options.maxMessageBytes ?? messageBytesMaxDefault,
          duplicateWindowMs: this.options.duplicateWindowMs ?? duplicateWindowMsDefault,
        },
      );
      this.chunkPayloadBytes = stream.chunkPayloadBytes;
      await this.resync(stream.state.lastSeq);
    }
  }

  /** Reads the stream's tail and sets where shipping continues. */
  private async resync(streamLastSeq: number): Promise<void> {
    this.counters.resyncs += 1;
    const tail = await this.client!.lastMessage(this.stream, this.subject);
    if (tail === null) {
      const base = this.options.baseEpoch ?? null;
      if (base !== null && this.options.ensureBase !== undefined) {
        await this.options.ensureBase({
          connection: this.connection!,
          baseEpoch: base,
          databaseId: this.databaseId,
          stream: this.stream,
        });
        this.counters.basesEnsured += 1;
      }
      this.position = { lastSeq: streamLastSeq, lastEpoch: base, partial: null };
      return;
    }
    this.position = positionAfterTail(tail, streamLastSeq, {
      stream: this.stream,
      databaseId: this.databaseId,
      durable: this.durable,
    });
    if (this.position.partial === null && this.position.lastEpoch !== null) {
      this.markReplicated(this.position.lastEpoch);
    }
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
        const first = resumeChunk(this.position!, this.stream, segment.epoch, messages);
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

  private publish(
    message: ChunkMessage,
    expectedSeq: number,
    epoch: bigint,
    lastOfEpoch: boolean,
  ): InFlight {
    const ack = this.client!.publish({
      stream: this.stream,
      subject: this.subject,
      message,
      expectedLastSeq: expectedSeq - 1,
      timeoutMs: this.publishTimeoutMs,
    }).then(
      (published) => ({ ok: true as const, ...published }),
      (error: unknown) => ({ ok: false as const, error }),
    );
    return { ack, expectedSeq, epoch, lastOfEpoch, bytes: message.data.length };
  }

  private async settleOldest(inFlight: InFlight[]): Promise<void> {
    const oldest = inFlight[0]!;
    const result = await oldest.ack;
    // A publish the stream refused for its expected last sequence is a
    // ReplicationError `unavailable`: resync from the tail.
    if (!result.ok) throw result.error;
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
