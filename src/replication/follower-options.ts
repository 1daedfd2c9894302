/**
 * What a {@link Follower} is started with and reports, and the pace it keeps
 * (polling, retries, how often a store replica folds into its file).
 */
import type { WalFileSystem } from '../storage/fs.js';
import type { FsyncPolicy } from '../storage/segment-files.js';
import type { CertificateVerifier } from './assembler.js';
import type { verifyShippedCertificate } from './certificates.js';
import type { Follower } from './follower.js';
import type { NatsConnection } from './nats/client.js';

/** Fallback poll period when no doorbell message arrives. */
export const FOLLOW_POLL_INTERVAL_MS = 250;
/** First pause after a failed read; doubles per consecutive failure. */
export const followRetryDelayMsMin = 50;
/** Longest pause between read retries. */
export const followRetryDelayMsMax = 2_000;
/** A store replica folds applied epochs into its file at least every this many epochs. */
export const followFlushEveryEpochsDefault = 512;
/** A store replica caught up with the stream folds once no new message came for this long… */
export const FOLLOW_QUIET_FLUSH_MS = 100;
/** …and at least this often while messages keep coming. */
export const FOLLOW_FLUSH_INTERVAL_MS = 1_000;
/** …or once this many bytes of pages wait in memory. */
export const followFlushPendingBytesDefault = 64 * 1024 * 1024;

/** Options of {@link Follower.start}. */
export interface FollowerOptions {
  servers?: string | readonly string[];
  /** An existing connection (left open at close). */
  connection?: NatsConnection;
  stream: string;
  /** Database file path of the replica. */
  dbPath: string;
  /** `store` (default): a readable page store replica; `log`: segment files. */
  mode?: 'store' | 'log';
  /** Store mode: the primary's page size (default: learned from the stream or snapshot). */
  pageSize?: number;
  /** Store mode: start an empty replica from the newest base snapshot (default true). */
  useSnapshot?: boolean;
  /**
   * Store mode: when the stream was trimmed below the replica's position,
   * replace the replica's content with the newest snapshot and go on from
   * there (default true); `false`: stop with a gap error.
   */
  reseed?: boolean;
  /** Store mode: fold into the file at least every N applied epochs (default 512). */
  flushEveryEpochs?: number;
  /** Only follow this database (default: the stream's, fixed by the first epoch applied). */
  databaseId?: string;
  /** Log mode: segment write durability (default `full`). */
  fsync?: FsyncPolicy;
  /** Certificate check (default {@link verifyShippedCertificate}); `null` disables it. */
  verifyCertificate?: CertificateVerifier | null;
  connectTimeoutMs?: number;
  apiTimeoutMs?: number;
  fs?: WalFileSystem;
}

/** The follower's loop state. */
export type FollowerState = 'connecting' | 'catchingUp' | 'current' | 'failed' | 'closed';

/** Counters of a {@link Follower}. */
export interface FollowerStats {
  state: FollowerState;
  /** Last applied epoch — what reads of a store replica see (`null`: none). */
  epoch: bigint | null;
  /** Last epoch of the durable position (where a restart resumes; `null`: none). */
  durableEpoch: bigint | null;
  /** Stream sequence of the last applied epoch's last message. */
  streamSeq: number;
  epochsApplied: number;
  /** Epochs read again after a restart that the replica already held. */
  epochsAlreadyHeld: number;
  /** Messages skipped because the base snapshot holds their epoch. */
  messagesBeforeBase: number;
  /** Times the replica was re-seeded from a snapshot after the stream was trimmed past it. */
  reseeds: number;
  /** The base snapshot the replica started from, if any. */
  snapshot: { epoch: bigint; bytes: number } | null;
  duplicatesSkipped: number;
  readFailures: number;
  /** The verification failure that stopped the follower, if any. */
  failure: { code: string; message: string } | null;
}
