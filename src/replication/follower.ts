/**
 * A follower keeps a replica of a database current from its JetStream
 * stream: it reads the stream from just after its own durable position,
 * verifies every epoch ({@link EpochAssembler}), and applies epochs strictly
 * in order. Two kinds of replica:
 *
 * - `store` (default): a read-only page store ({@link ReplicaStore}) at
 *   `dbPath`, readable while it follows (`follower.replica.read(…)`). Applied
 *   epochs are visible at once; every {@link FollowerOptions.flushEveryEpochs}
 *   epochs (and whenever it has caught up) they are folded into the
 *   database file durably, and only then the position file
 *   (`<db>-pwal-follow.json`) moves. An empty replica starts from the newest
 *   base snapshot of the stream's object store when there is one, then
 *   applies the epochs after it.
 * - `log`: the verified segment files themselves, one durable file per epoch
 *   (the position moves after each) — a copy of the log, e.g. of a
 *   `ReplicatedWal` that is not a page store.
 *
 * A crash between folding and moving the position leaves the position
 * behind the file: on restart the file is the base, and the epochs it holds
 * are skipped (in log mode, the same segment bytes land under the same name
 * again, which is idempotent).
 *
 * New messages are noticed through a core subscription on the database's
 * subject (a doorbell) and, as a fallback, a poll every
 * {@link FOLLOW_POLL_INTERVAL_MS}. A verification failure stops the follower
 * at the last good epoch (state `failed`): it never applies E+1 without E.
 */
import { type Deferred, createDeferred as deferred } from '../engine/deferred.js';
import { type LoggableStats, loggableStats } from '../stats-json.js';
import { nodeFileSystem, type WalFileSystem } from '../storage/fs.js';
import { writeSegmentFile } from '../storage/segment-files.js';
import { recordShippedJump } from '../storage/skipped-epochs.js';
import { ReplicaStore } from '../store/replica-store.js';
import { EpochAssembler, type VerifiedEpoch } from './assembler.js';
import { verifyShippedCertificate } from './certificates.js';
import { apiTimeoutMsDefault, type ReplicaClient } from './client.js';
import {
  ReplicaErrorCode,
  ReplicationError,
  ReplicationErrorCode,
  ReplicaVerificationError,
} from './errors.js';
import {
  FOLLOW_FLUSH_INTERVAL_MS,
  FOLLOW_POLL_INTERVAL_MS,
  FOLLOW_QUIET_FLUSH_MS,
  type FollowerOptions,
  type FollowerState,
  type FollowerStats,
  followFlushEveryEpochsDefault,
  followFlushPendingBytesDefault,
  followRetryDelayMsMax,
  followRetryDelayMsMin,
} from './follower-options.js';
import { NatsReplicaClient, requireNatsPeers } from './nats/client.js';
import { sleepUnless } from './sleep.js';
import { downloadSnapshotFrom, latestSnapshotIn } from './snapshot.js';
import type { SnapshotMeta } from './snapshot-meta.js';
import { type FollowPosition, readFollowPosition, writeFollowPosition } from './state-file.js';
import { firstSeqAboveEpoch } from './stream-seek.js';
import { parseChunkHeader } from './wire.js';

/** Keeps a replica current; see the module comment. */
export class Follower {
  private readonly fs: WalFileSystem;
  private client: ReplicaClient | null = null;
  private doorbell: { stop(): void } | null = null;
  /** The durable position (what the files hold). */
  private position: FollowPosition;
  /** The last applied epoch and where it ended (ahead of `position` in store mode). */
  private applied: FollowPosition;
  private assembler: EpochAssembler;
  /** Store mode, empty replica: look for a base snapshot before reading the stream. */
  private needsBootstrap: boolean;
  private state: FollowerState = 'connecting';
  private failure: ReplicaVerificationError | ReplicationError | null = null;
  private closing = false;
  private readonly closeSignal: Deferred<void> = deferred();
  private wake: Deferred<void> = deferred();
  private loop: Promise<void> = Promise.resolve();
  private unflushedEpochs = 0;
  private lastFlushAt = performance.now();
  private snapshot: { epoch: bigint; bytes: number } | null = null;
  private readonly progressWaiters = new Set<{
    epoch: bigint;
    done: Deferred<void>;
    timer: NodeJS.Timeout;
  }>();
  private readonly counters = {
    epochsApplied: 0,
    epochsAlreadyHeld: 0,
    duplicatesSkipped: 0,
    messagesBeforeBase: 0,
    readFailures: 0,
    reseeds: 0,
  };

  private constructor(
    private readonly options: FollowerOptions,
    position: FollowPosition,
    /** The store replica (store mode), readable while following. */
    private readonly store: ReplicaStore | null,
  ) {
    this.fs = options.fs ?? nodeFileSystem;
    this.position = position;
    this.applied = position;
    this.needsBootstrap =
      store?.isEmpty === true && position.epoch === null && options.useSnapshot !== false;
    this.assembler = this.newAssembler();
  }

  /**
   * Opens the replica, loads the durable position (if any) and starts
   * following in the background.
   * @throws {ReplicationError} `ERR_REPLICATION_POSITION` when the position
   * file belongs to another stream or database; the replica's open errors
   * (`ERR_LOCKED` when a primary or another follower holds the database, …).
   */
  static async start(options: FollowerOptions): Promise<Follower> {
    // A missing NATS package fails before anything is opened.
    await requireNatsPeers();
    if (options.connection === undefined && options.servers === undefined) {
      throw new ReplicationError(
        ReplicationErrorCode.stream,
        'follower needs servers or a connection',
      );
    }
    const fs = options.fs ?? nodeFileSystem;
    const saved = await readFollowPosition(options.dbPath, fs);
    if (saved !== null && saved.stream !== options.stream) {
      throw new ReplicationError(
        ReplicationErrorCode.position,
        `${options.dbPath} follows stream ${saved.stream}, not ${options.stream}`,
      );
    }
    if (
      saved !== null &&
      options.databaseId !== undefined &&
      saved.databaseId !== '' &&
      saved.databaseId !== options.databaseId
    ) {
      throw new ReplicationError(
        ReplicationErrorCode.position,
        `${options.dbPath} follows database ${saved.databaseId}, not ${options.databaseId}`,
      );
    }
    const store =
      (options.mode ?? 'store') === 'store'
        ? await ReplicaStore.open(options.dbPath, {
            fs,
            ...(options.pageSize === undefined ? {} : { pageSize: options.pageSize }),
          })
        : null;
    const fresh: FollowPosition = {
      databaseId: saved?.databaseId ?? options.databaseId ?? '',
      stream: options.stream,
      epoch: null,
      streamSeq: 0,
      certificate: null,
      updatedAt: new Date().toISOString(),
    };
    let position = saved ?? fresh;
    if (store !== null) {
      const durable = store.durableEpoch();
      // The position moves only after the file: it can lag the file, never
      // lead it. When it lags (a crash between the two, or a re-seed), the
      // file is the base: epochs at or below it are skipped, reading from the
      // position's stream sequence. A replica whose position is missing or
      // ahead (files copied or replaced) restarts from its own file as a
      // base, finding its place in the stream by epoch.
      const usable =
        saved !== null &&
        (saved.epoch === null ? durable === null : durable !== null && saved.epoch <= durable);
      if (!usable) {
        position =
          durable === null ? fresh : { ...fresh, epoch: durable, base: true, streamSeq: 0 };
      } else if (saved.epoch !== null && durable !== null && saved.epoch < durable) {
        position = { ...saved, epoch: durable, base: true, certificate: null };
      }
    }
    const hold = saved?.consistentEpoch ?? null;
    if (store !== null && hold !== null) store.holdReadsUntil(hold);
    const follower = new Follower(options, position, store);
    follower.loop = follower.run();
    return follower;
  }

  private newAssembler(): EpochAssembler {
    const verify =
      this.options.verifyCertificate === null
        ? undefined
        : (this.options.verifyCertificate ?? verifyShippedCertificate);
    const at = this.applied;
    const cert = at.certificate;
    const previousCertificate =
      cert === null ? null : { epoch: cert.epoch, certificate: Buffer.from(cert.bytes, 'base64') };
    const databaseId = at.databaseId === '' ? this.options.databaseId : at.databaseId;
    return new EpochAssembler({
      databaseId,
      ...(at.base === true ? { baseEpoch: at.epoch } : { afterEpoch: at.epoch }),
      previousCertificate,
      verifyCertificate: verify,
    });
  }

  /**
   * The store replica, readable while following (`read`, `readPages`:
   * consistent as of one applied epoch). `null` in `log` mode.
   */
  get replica(): ReplicaStore | null {
    return this.store;
  }

  /** The last applied epoch (`null`: none yet). */
  appliedEpoch(): bigint | null {
    return this.applied.epoch;
  }

  /** The last epoch of the durable position (`null`: none yet). */
  durableEpoch(): bigint | null {
    return this.position.epoch;
  }

  /** Snapshot of the follower's state. */
  stats(): LoggableStats<FollowerStats> {
    return loggableStats({
      state: this.state,
      epoch: this.applied.epoch,
      durableEpoch: this.position.epoch,
      streamSeq: this.applied.streamSeq,
      ...this.counters,
      snapshot: this.snapshot,
      failure:
        this.failure === null ? null : { code: this.failure.code, message: this.failure.message },
    });
  }

  /** The error that stopped the follower, or null. */
  get stoppedBy(): ReplicaVerificationError | ReplicationError | null {
    return this.failure;
  }

  /**
   * Resolves once the replica has applied `epoch` (or a later one) — for a
   * store replica, once reads see it; rejects on timeout, failure or close.
   */
  waitForEpoch(epoch: bigint, timeoutMs: number): Promise<void> {
    if (this.applied.epoch !== null && this.applied.epoch >= epoch) return Promise.resolve();
    if (this.failure !== null) return Promise.reject(this.failure);
    const done = deferred<void>();
    const waiter = {
      epoch,
      done,
      timer: setTimeout(() => {
        this.progressWaiters.delete(waiter);
        done.reject(
          new ReplicationError(
            ReplicationErrorCode.timeout,
            `follower did not reach epoch ${epoch} within ${timeoutMs} ms (at ${this.applied.epoch ?? 'none'})`,
          ),
        );
      }, timeoutMs),
    };
    this.progressWaiters.add(waiter);
    return done.promise;
  }

  /**
   * Stops following (bounded by the API timeout of a request in flight),
   * makes what was applied durable (file, then position) and closes the
   * replica. Idempotent.
   */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.closing = true;
    this.closeSignal.resolve();
    this.wake.resolve();
    await this.loop;
    this.state = 'closed';
    this.rejectWaiters(new ReplicationError(ReplicationErrorCode.closed, 'follower closed'));
    this.doorbell?.stop();
    try {
      await this.makeDurable();
    } finally {
      await this.store?.close();
      await this.client?.close();
    }
  }

  /** `await using` support. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private rejectWaiters(error: Error): void {
    for (const waiter of this.progressWaiters) {
      clearTimeout(waiter.timer);
      waiter.done.reject(error);
    }
    this.progressWaiters.clear();
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.closing) {
      try {
        await this.ensureSession();
        if (this.needsBootstrap) await this.bootstrap();
        const caughtUp = await this.readNew();
        failures = 0;
        if (caughtUp && !this.closing) {
          this.state = 'current';
          if (this.unflushedEpochs === 0) {
            await this.idle(FOLLOW_POLL_INTERVAL_MS);
          } else if (performance.now() - this.lastFlushAt >= FOLLOW_FLUSH_INTERVAL_MS) {
            await this.makeDurable();
          } else if (!(await this.idle(FOLLOW_QUIET_FLUSH_MS))) {
            // Quiet: nothing new arrived; make what was applied durable.
            await this.makeDurable();
          }
        }
      } catch (error) {
        if (error instanceof ReplicaVerificationError || isFatal(error)) {
          this.failure = error as ReplicaVerificationError | ReplicationError;
          this.state = 'failed';
          this.rejectWaiters(this.failure);
          return;
        }
        this.counters.readFailures += 1;
        failures += 1;
        // Partial epochs are re-read from the last applied one.
        this.assembler = this.newAssembler();
        await this.idle(
          Math.min(followRetryDelayMsMax, followRetryDelayMsMin * 2 ** Math.min(failures, 10)),
        );
      }
    }
  }

  /** Sleeps `ms` unless woken (new message, close); true when woken. */
  private async idle(ms: number): Promise<boolean> {
    await sleepUnless(ms, [this.wake.promise, this.closeSignal.promise]);
    const woken = this.wake.settled || this.closing;
    if (this.wake.settled) this.wake = deferred();
    return woken;
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
      this.client = await NatsReplicaClient.connect({
        ...(this.options.connection === undefined
          ? { servers: this.options.servers ?? [] }
          : { connection: this.options.connection }),
        ...(this.options.connectTimeoutMs === undefined
          ? {}
          : { connectTimeoutMs: this.options.connectTimeoutMs }),
        apiTimeoutMs: this.options.apiTimeoutMs ?? apiTimeoutMsDefault,
        name: 'pwal-follower',
      });
      this.doorbell = null;
    }
  }

  /** An empty store replica starts from the newest base snapshot, when there is one. */
  private async bootstrap(): Promise<void> {
    const store = this.store!;
    const databaseId = this.applied.databaseId === '' ? undefined : this.applied.databaseId;
    const meta = await latestSnapshotIn(this.client!, this.options.stream, { databaseId });
    if (meta !== null) {
      this.state = 'catchingUp';
      await store.installSnapshot(
        {
          epoch: meta.epoch,
          pageSize: meta.pageSize,
          dbSizePages: meta.dbSizePages,
          commitSeq: meta.commitSeq,
          consistentEpoch: meta.consistentEpoch,
        },
        (write) => downloadSnapshotFrom(this.client!, this.options.stream, meta, write),
      );
      this.adoptSnapshot(meta);
      await this.makeDurable();
      this.assembler = this.newAssembler();
    }
    this.needsBootstrap = false;
  }

  /** Reads and applies everything in the stream after the position; true when caught up. */
  private async readNew(): Promise<boolean> {
    const client = this.client!;
    const info = await client.streamState(this.options.stream);
    if (info === null) {
      throw new ReplicationError(
        ReplicationErrorCode.stream,
        `stream ${this.options.stream} does not exist`,
      );
    }
    if (this.doorbell === null) {
      const subject = info.subjects[0];
      if (subject !== undefined) {
        this.doorbell = client.watch(subject, () => this.wake.resolve());
      }
    }
    if (await this.trimmedPast(client, info.firstSeq)) {
      if (await this.reseedFromSnapshot()) return false;
      throw new ReplicaVerificationError(
        ReplicaErrorCode.gap,
        `stream ${this.options.stream} no longer holds the epochs after ${this.applied.epoch} (trimmed to sequence ${info.firstSeq}) and no newer snapshot can re-seed the replica${this.options.reseed === false ? ' (re-seeding is off)' : ''}: rebuild the replica in a fresh location`,
        { epoch: this.applied.epoch ?? 0n, streamSeq: info.firstSeq },
      );
    }
    let from = Math.max(this.applied.streamSeq + 1, info.firstSeq);
    const to = info.lastSeq;
    if (this.applied.base === true && this.applied.epoch !== null && this.applied.streamSeq === 0) {
      // Starting from a snapshot: skip straight to the first epoch above it.
      from = await firstSeqAboveEpoch(client, this.options.stream, this.applied.epoch, from, to);
    }
    if (from > to) return true;
    this.state = 'catchingUp';
    for await (const message of client.readRange(this.options.stream, from, to)) {
      if (this.closing) return false;
      const event = this.assembler.push(message);
      if (event.kind === 'duplicate') this.counters.duplicatesSkipped += 1;
      else if (event.kind === 'beforeBase') this.counters.messagesBeforeBase += 1;
      else if (event.kind === 'epoch') await this.applyEpoch(event.epoch);
    }
    return true;
  }

  /**
   * True when the stream was trimmed below the replica's position (see
   * `ReplicatedStore.snapshot({ trimStream })`): its first message is of an
   * epoch above ours that follows another epoch above ours.
   */
  private async trimmedPast(client: ReplicaClient, firstSeq: number): Promise<boolean> {
    const at = this.applied;
    if (at.epoch === null || at.streamSeq + 1 >= firstSeq) return false;
    const head = await client.message(this.options.stream, firstSeq);
    if (head === null) return false;
    const header = parseChunkHeader(head.header, firstSeq);
    return header.epoch > at.epoch && header.prevEpoch !== null && header.prevEpoch > at.epoch;
  }

  /**
   * Replaces a store replica left behind a trimmed stream with the newest
   * snapshot (newer than what it holds); false when that is not possible.
   */
  private async reseedFromSnapshot(): Promise<boolean> {
    const store = this.store;
    if (store === null || this.options.reseed === false || this.options.useSnapshot === false) {
      return false;
    }
    const at = this.applied;
    const databaseId = at.databaseId === '' ? undefined : at.databaseId;
    const meta = await latestSnapshotIn(this.client!, this.options.stream, { databaseId });
    if (meta === null || (at.epoch !== null && meta.epoch <= at.epoch)) return false;
    this.state = 'catchingUp';
    await this.makeDurable();
    await store.reseed(
      {
        epoch: meta.epoch,
        pageSize: meta.pageSize,
        dbSizePages: meta.dbSizePages,
        commitSeq: meta.commitSeq,
        consistentEpoch: meta.consistentEpoch,
      },
      (write) => downloadSnapshotFrom(this.client!, this.options.stream, meta, write),
    );
    this.adoptSnapshot(meta);
    this.counters.reseeds += 1;
    await this.makeDurable();
    this.assembler = this.newAssembler();
    return true;
  }

  /** The replica now holds `meta`: continue from it as a base. */
  private adoptSnapshot(meta: SnapshotMeta): void {
    this.snapshot = { epoch: meta.epoch, bytes: meta.bytes };
    this.applied = {
      databaseId: meta.databaseId,
      stream: this.options.stream,
      epoch: meta.epoch,
      streamSeq: 0,
      certificate:
        meta.certificate === null
          ? null
          : { epoch: meta.epoch, bytes: Buffer.from(meta.certificate).toString('base64') },
      base: true,
      consistentEpoch: meta.consistentEpoch > meta.epoch ? meta.consistentEpoch : null,
      updatedAt: new Date().toISOString(),
    };
    this.unflushedEpochs = 1;
  }

  private async applyEpoch(epoch: VerifiedEpoch): Promise<void> {
    if (this.store !== null) {
      const fresh = await this.store.applyEpoch(epoch.epoch, epoch.segment);
      if (!fresh) this.counters.epochsAlreadyHeld += 1;
    } else {
      // Epochs the stream jumps over never arrive: not a gap in the copy.
      await recordShippedJump(this.options.dbPath, epoch.prevEpoch, epoch.epoch, epoch.segment, {
        fs: this.fs,
      });
      await writeSegmentFile(this.options.dbPath, epoch.epoch, [epoch.segment], {
        fsync: this.options.fsync ?? 'full',
        fs: this.fs,
      });
    }
    const previousCert = this.applied.certificate;
    const hold = this.applied.consistentEpoch ?? null;
    this.applied = {
      consistentEpoch: hold !== null && hold > epoch.epoch ? hold : null,
      databaseId: epoch.databaseId,
      stream: this.options.stream,
      epoch: epoch.epoch,
      streamSeq: epoch.lastSeq,
      certificate:
        epoch.chainCertificate === null
          ? previousCert
          : { epoch: epoch.epoch, bytes: Buffer.from(epoch.chainCertificate).toString('base64') },
      updatedAt: new Date().toISOString(),
    };
    this.counters.epochsApplied += 1;
    this.unflushedEpochs += 1;
    for (const waiter of this.progressWaiters) {
      if (waiter.epoch <= epoch.epoch) {
        clearTimeout(waiter.timer);
        this.progressWaiters.delete(waiter);
        waiter.done.resolve();
      }
    }
    const store = this.store;
    if (
      store === null ||
      this.unflushedEpochs >= (this.options.flushEveryEpochs ?? followFlushEveryEpochsDefault) ||
      store.stats().pendingBytes >= followFlushPendingBytesDefault
    ) {
      await this.makeDurable();
    }
  }

  /** Folds what was applied into the replica's file, then moves the position. */
  private async makeDurable(): Promise<void> {
    if (this.unflushedEpochs === 0) return;
    await this.store?.flush();
    const target = { ...this.applied, updatedAt: new Date().toISOString() };
    await writeFollowPosition(this.options.dbPath, target, this.fs);
    this.position = target;
    this.unflushedEpochs = 0;
    this.lastFlushAt = performance.now();
  }
}

function isFatal(error: unknown): boolean {
  if (error instanceof ReplicationError) {
    // A missing stream may still be created: keep retrying. A position file
    // of another stream or database never fixes itself.
    return error.code === ReplicationErrorCode.position;
  }
  // The replica refused an epoch (another page size, a malformed size
  // record) or cannot write its files: retrying reads cannot fix that.
  return (
    (error as { code?: unknown })?.code !== undefined &&
    String((error as { code: unknown }).code).startsWith('ERR_STORE_')
  );
}
