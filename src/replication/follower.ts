/**
 * A follower keeps a read-only replica of a database current from its
 * JetStream stream: it reads the stream from just after its own durable
 * position, verifies every epoch ({@link EpochAssembler}), and applies epochs
 * strictly in order — segment file written durably, then the optional
 * `apply` hook (e.g. fold into a page store), then the position file
 * (`<db>-pwal-follow.json`) replaced durably. A crash between these steps
 * re-applies the same epoch on restart, which is idempotent (the same bytes
 * under the same name).
 *
 * New messages are noticed through a core subscription on the database's
 * subject (a doorbell) and, as a fallback, a poll every
 * {@link FOLLOW_POLL_INTERVAL_MS}. A verification failure stops the follower
 * at the last good epoch (state `failed`): it never applies E+1 without E.
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { nodeFileSystem, type WalFileSystem } from '../storage/fs.js';
import { type FsyncPolicy, writeSegmentFile } from '../storage/segment-files.js';
import { type CertificateVerifier, EpochAssembler, type VerifiedEpoch } from './assembler.js';
import { verifyShippedCertificate } from './certificates.js';
import { type Deferred, deferred, sleepUnless } from './deferred.js';
import { ReplicationError, ReplicationErrorCode, ReplicaVerificationError } from './errors.js';
import { connectBounded, DEFAULT_API_TIMEOUT_MS, managerFor, streamInfoOrNull } from './nats.js';
import { type FollowPosition, readFollowPosition, writeFollowPosition } from './state-file.js';
import { readStreamRange } from './stream-reader.js';

/** Fallback poll period when no doorbell message arrives. */
export const FOLLOW_POLL_INTERVAL_MS = 250;
/** First pause after a failed read; doubles per consecutive failure. */
export const FOLLOW_RETRY_DELAY_MIN_MS = 50;
/** Longest pause between read retries. */
export const FOLLOW_RETRY_DELAY_MAX_MS = 2_000;

/** Options of {@link Follower.start}. */
export interface FollowerOptions {
  servers?: string | readonly string[];
  /** An existing connection (left open at close). */
  connection?: NatsConnection;
  stream: string;
  /** Database file path of the replica. */
  dbPath: string;
  /** Only follow this database (default: the stream's, fixed by the first epoch applied). */
  databaseId?: string;
  /** Segment write durability (default `full`). */
  fsync?: FsyncPolicy;
  /** Certificate check (default {@link verifyShippedCertificate}); `null` disables it. */
  verifyCertificate?: CertificateVerifier | null;
  /** Called after an epoch's segment is durable and before the position moves past it. */
  apply?: (epoch: VerifiedEpoch) => Promise<void>;
  connectTimeoutMs?: number;
  apiTimeoutMs?: number;
  fs?: WalFileSystem;
}

/** The follower's loop state. */
export type FollowerState = 'connecting' | 'catchingUp' | 'current' | 'failed' | 'closed';

/** Counters of a {@link Follower}. */
export interface FollowerStats {
  state: FollowerState;
  /** Last applied epoch (durable position; `null`: none). */
  epoch: bigint | null;
  /** Stream sequence of the last applied epoch's last message. */
  streamSeq: number;
  epochsApplied: number;
  duplicatesSkipped: number;
  readFailures: number;
  /** The verification failure that stopped the follower, if any. */
  failure: { code: string; message: string } | null;
}

/** Keeps a replica current; see the module comment. */
export class Follower {
  private readonly fs: WalFileSystem;
  private nc: NatsConnection | null;
  private jsm: JetStreamManager | null = null;
  private doorbell: Subscription | null = null;
  private position: FollowPosition;
  private assembler: EpochAssembler;
  private state: FollowerState = 'connecting';
  private failure: ReplicaVerificationError | ReplicationError | null = null;
  private closing = false;
  private readonly closeSignal: Deferred<void> = deferred();
  private wake: Deferred<void> = deferred();
  private loop: Promise<void> = Promise.resolve();
  private readonly progressWaiters = new Set<{
    epoch: bigint;
    done: Deferred<void>;
    timer: NodeJS.Timeout;
  }>();
  private readonly counters = { epochsApplied: 0, duplicatesSkipped: 0, readFailures: 0 };

  private constructor(
    private readonly options: FollowerOptions,
    position: FollowPosition,
  ) {
    this.fs = options.fs ?? nodeFileSystem;
    this.nc = options.connection ?? null;
    this.position = position;
    this.assembler = this.newAssembler();
  }

  /** Loads the durable position (if any) and starts following in the background. */
  static async start(options: FollowerOptions): Promise<Follower> {
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
      saved.databaseId !== options.databaseId
    ) {
      throw new ReplicationError(
        ReplicationErrorCode.position,
        `${options.dbPath} follows database ${saved.databaseId}, not ${options.databaseId}`,
      );
    }
    const position: FollowPosition = saved ?? {
      databaseId: options.databaseId ?? '',
      stream: options.stream,
      epoch: null,
      streamSeq: 0,
      certificate: null,
      updatedAt: new Date().toISOString(),
    };
    const follower = new Follower(options, position);
    follower.loop = follower.run();
    return follower;
  }

  private newAssembler(): EpochAssembler {
    const verify =
      this.options.verifyCertificate === null
        ? undefined
        : (this.options.verifyCertificate ?? verifyShippedCertificate);
    const cert = this.position.certificate;
    return new EpochAssembler({
      databaseId:
        this.position.databaseId === '' ? this.options.databaseId : this.position.databaseId,
      afterEpoch: this.position.epoch,
      previousCertificate:
        cert === null
          ? null
          : { epoch: cert.epoch, certificate: Buffer.from(cert.bytes, 'base64') },
      verifyCertificate: verify,
    });
  }

  /** The last applied epoch (`null`: none yet). */
  appliedEpoch(): bigint | null {
    return this.position.epoch;
  }

  /** Snapshot of the follower's state. */
  stats(): FollowerStats {
    return {
      state: this.state,
      epoch: this.position.epoch,
      streamSeq: this.position.streamSeq,
      ...this.counters,
      failure:
        this.failure === null ? null : { code: this.failure.code, message: this.failure.message },
    };
  }

  /** The error that stopped the follower, or null. */
  get stoppedBy(): ReplicaVerificationError | ReplicationError | null {
    return this.failure;
  }

  /**
   * Resolves once the replica has applied `epoch` (or a later one); rejects
   * on timeout, failure or close.
   */
  waitForEpoch(epoch: bigint, timeoutMs: number): Promise<void> {
    if (this.position.epoch !== null && this.position.epoch >= epoch) return Promise.resolve();
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
            `follower did not reach epoch ${epoch} within ${timeoutMs} ms (at ${this.position.epoch ?? 'none'})`,
          ),
        );
      }, timeoutMs),
    };
    this.progressWaiters.add(waiter);
    return done.promise;
  }

  /** Stops following (bounded by the API timeout of a request in flight). Idempotent. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.closing = true;
    this.closeSignal.resolve();
    this.wake.resolve();
    await this.loop;
    this.state = 'closed';
    this.rejectWaiters(new ReplicationError(ReplicationErrorCode.closed, 'follower closed'));
    this.doorbell?.unsubscribe();
    if (this.options.connection === undefined && this.nc !== null && !this.nc.isClosed()) {
      await this.nc.close();
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
        const caughtUp = await this.readNew();
        failures = 0;
        if (caughtUp && !this.closing) {
          this.state = 'current';
          await this.idle(FOLLOW_POLL_INTERVAL_MS);
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
        // Partial epochs are re-read from the durable position.
        this.assembler = this.newAssembler();
        await this.idle(
          Math.min(
            FOLLOW_RETRY_DELAY_MAX_MS,
            FOLLOW_RETRY_DELAY_MIN_MS * 2 ** Math.min(failures, 10),
          ),
        );
      }
    }
  }

  private async idle(ms: number): Promise<void> {
    await sleepUnless(ms, [this.wake.promise, this.closeSignal.promise]);
    if (this.wake.settled) this.wake = deferred();
  }

  private async ensureSession(): Promise<void> {
    if (this.nc === null || this.nc.isClosed()) {
      this.state = 'connecting';
      if (this.options.connection !== undefined) {
        throw new ReplicationError(
          ReplicationErrorCode.unavailable,
          'the given NATS connection is closed',
        );
      }
      this.nc = await connectBounded(this.options.servers ?? [], {
        connectTimeoutMs: this.options.connectTimeoutMs,
        name: 'pwal-follower',
      });
      this.jsm = null;
      this.doorbell = null;
    }
    if (this.jsm === null) {
      this.jsm = await managerFor(this.nc, this.options.apiTimeoutMs ?? DEFAULT_API_TIMEOUT_MS);
    }
  }

  /** Reads and applies everything in the stream after the position; true when caught up. */
  private async readNew(): Promise<boolean> {
    const jsm = this.jsm!;
    const info = await streamInfoOrNull(jsm, this.options.stream);
    if (info === null) {
      throw new ReplicationError(
        ReplicationErrorCode.stream,
        `stream ${this.options.stream} does not exist`,
      );
    }
    if (this.doorbell === null) {
      const subject = info.config.subjects?.[0];
      if (subject !== undefined) {
        this.doorbell = this.nc!.subscribe(subject, { callback: () => this.wake.resolve() });
      }
    }
    const from = Math.max(this.position.streamSeq + 1, info.state.first_seq);
    const to = info.state.last_seq;
    if (from > to) return true;
    this.state = 'catchingUp';
    for await (const message of readStreamRange(jsm, this.options.stream, from, to)) {
      if (this.closing) return false;
      const event = this.assembler.push(message);
      if (event.kind === 'duplicate') this.counters.duplicatesSkipped += 1;
      else if (event.kind === 'epoch') await this.applyEpoch(event.epoch);
    }
    return true;
  }

  private async applyEpoch(epoch: VerifiedEpoch): Promise<void> {
    await writeSegmentFile(this.options.dbPath, epoch.epoch, [epoch.segment], {
      fsync: this.options.fsync ?? 'full',
      fs: this.fs,
    });
    await this.options.apply?.(epoch);
    const previousCert = this.position.certificate;
    this.position = {
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
    await writeFollowPosition(this.options.dbPath, this.position, this.fs);
    this.counters.epochsApplied += 1;
    for (const waiter of this.progressWaiters) {
      if (waiter.epoch <= epoch.epoch) {
        clearTimeout(waiter.timer);
        this.progressWaiters.delete(waiter);
        waiter.done.resolve();
      }
    }
  }
}

function isFatal(error: unknown): boolean {
  return (
    error instanceof ReplicationError &&
    // A missing stream may still be created: keep retrying. A position file
    // of another stream or database never fixes itself.
    error.code === ReplicationErrorCode.position
  );
}
