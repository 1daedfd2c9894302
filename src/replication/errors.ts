/**
 * Typed errors of the replication layer (epochs shipped to a NATS JetStream
 * stream, restore, followers). Callers branch on `code`; people read the
 * message.
 */
import { WalError } from '../errors.js';

/** Stable codes of {@link ReplicationError}. */
export const ReplicationErrorCode = {
  /** A `durability: 'replicated'` commit is locally durable but the cluster did not acknowledge it in time. */
  timeout: 'ERR_REPLICATION_TIMEOUT',
  /** The replicator was closed while a caller waited for an epoch to be replicated. */
  closed: 'ERR_REPLICATION_CLOSED',
  /** The stream holds data that does not continue this database's log (another writer, a lost local tail). */
  conflict: 'ERR_REPLICATION_CONFLICT',
  /** A durable epoch that must be shipped has no segment file any more. */
  segmentMissing: 'ERR_REPLICATION_SEGMENT_MISSING',
  /** The cluster could not be reached within the bounded connect time (restore, follow). */
  unavailable: 'ERR_REPLICATION_UNAVAILABLE',
  /** The stream does not exist or is not usable for this database. */
  stream: 'ERR_REPLICATION_STREAM',
  /** The follower's durable position file is unreadable or belongs to another stream. */
  position: 'ERR_REPLICATION_POSITION',
  /** An optional peer dependency replication needs (a `@nats-io/*` package) is not installed. */
  peerMissing: 'ERR_REPLICATION_PEER_MISSING',
} as const;

/** One of the {@link ReplicationErrorCode} values. */
export type ReplicationErrorCodeValue =
  (typeof ReplicationErrorCode)[keyof typeof ReplicationErrorCode];

/** An error of the replicator, the restore or the follower. */
export class ReplicationError extends WalError {
  declare readonly code: ReplicationErrorCodeValue;

  constructor(code: ReplicationErrorCodeValue, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/**
 * A commit asked for `durability: 'replicated'`; its epoch is durable on the
 * local disk but the cluster did not acknowledge it within the commit's
 * timeout. Never a silent downgrade: the caller learns exactly what holds.
 */
export class ReplicationTimeoutError extends ReplicationError {
  /** The commit's epoch (locally durable). */
  readonly epoch: bigint;
  /** The replicated watermark when the wait gave up (`null`: nothing replicated). */
  readonly replicatedEpoch: bigint | null;

  constructor(epoch: bigint, replicatedEpoch: bigint | null, timeoutMs: number, cause?: unknown) {
    super(
      ReplicationErrorCode.timeout,
      `epoch ${epoch} is durable locally but was not acknowledged by the cluster within ${timeoutMs} ms (replicated up to epoch ${replicatedEpoch ?? 'none'})`,
      cause === undefined ? undefined : { cause },
    );
    this.epoch = epoch;
    this.replicatedEpoch = replicatedEpoch;
  }
}

/**
 * Replication was used but the NATS client packages it needs are not
 * installed: they are optional peer dependencies, so that an application that
 * never replicates installs nothing from NATS. The message names each missing
 * package and the install command.
 */
export class ReplicationPeerMissingError extends ReplicationError {
  /** The missing package names, e.g. `['@nats-io/transport-node']`. */
  readonly missing: readonly string[];

  constructor(missing: readonly string[], installCommand: string, cause?: unknown) {
    super(
      ReplicationErrorCode.peerMissing,
      `replication needs the optional peer dependenc${missing.length === 1 ? 'y' : 'ies'} ${missing.join(', ')}, not installed here; install with: ${installCommand}`,
      cause === undefined ? undefined : { cause },
    );
    this.missing = [...missing];
  }
}

/** Stable codes of {@link ReplicaVerificationError}: what a reader of the stream found wrong. */
export const ReplicaErrorCode = {
  /** An epoch whose predecessor is not the last verified epoch, or a missing stream message. */
  gap: 'ERR_REPLICA_GAP',
  /** A second, different copy of an epoch or chunk already seen. */
  conflictingDuplicate: 'ERR_REPLICA_CONFLICTING_DUPLICATE',
  /** Missing, malformed or inconsistent replication headers; chunks out of order. */
  framing: 'ERR_REPLICA_FRAMING',
  /** A chunk's CRC-32C does not match its bytes. */
  chunkChecksum: 'ERR_REPLICA_CHUNK_CHECKSUM',
  /** The reassembled epoch's length or SHA-256 digest does not match its headers. */
  digest: 'ERR_REPLICA_DIGEST',
  /** The reassembled segment is not a valid segment of the announced epoch. */
  segment: 'ERR_REPLICA_SEGMENT',
  /** The epoch's commit certificate is invalid or does not chain to its predecessor. */
  certificate: 'ERR_REPLICA_CERTIFICATE',
  /** A message of another database. */
  foreignDatabase: 'ERR_REPLICA_FOREIGN_DATABASE',
  /**
   * A base snapshot in the object store is gone, was replaced since it was
   * listed, has malformed metadata, or its bytes do not match its length or
   * SHA-256 digest.
   */
  snapshot: 'ERR_REPLICA_SNAPSHOT',
} as const;

/** One of the {@link ReplicaErrorCode} values. */
export type ReplicaErrorCodeValue = (typeof ReplicaErrorCode)[keyof typeof ReplicaErrorCode];

/**
 * The stream does not continue the verified prefix: restore and follow stop
 * before the epoch named here (point-in-time semantics: never apply E+1
 * without E).
 */
export class ReplicaVerificationError extends WalError {
  declare readonly code: ReplicaErrorCodeValue;
  /** The epoch being verified when the check failed (0n when unknown). */
  readonly epoch: bigint;
  /** The stream sequence of the offending message (0 when unknown). */
  readonly streamSeq: number;

  constructor(
    code: ReplicaErrorCodeValue,
    message: string,
    where: { epoch?: bigint; streamSeq?: number; cause?: unknown } = {},
  ) {
    super(code, message, where.cause === undefined ? undefined : { cause: where.cause });
    this.epoch = where.epoch ?? 0n;
    this.streamSeq = where.streamSeq ?? 0;
  }
}
