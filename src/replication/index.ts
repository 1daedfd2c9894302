/**
 * `parallel-wal/replication`: shipping durable epochs to a NATS JetStream
 * stream, replicated commits, base snapshots, restore and read-only
 * followers.
 *
 * The NATS client packages (`@nats-io/transport-node`, `@nats-io/jetstream`,
 * `@nats-io/obj`) are optional peer dependencies: install them to replicate.
 * Importing this entry never loads them; the first call that talks to NATS
 * does, and fails with {@link ReplicationPeerMissingError}
 * (`ERR_REPLICATION_PEER_MISSING`) naming any that is missing.
 *
 * @packageDocumentation
 */

export type {
  CertificateVerifier,
  DuplicateMessage,
} from './assembler.js';
export { verifyShippedCertificate } from './certificates.js';
export { streamReplicasDefault } from './client.js';
export {
  ReplicaErrorCode,
  type ReplicaErrorCodeValue,
  ReplicationError,
  ReplicationErrorCode,
  type ReplicationErrorCodeValue,
  ReplicationPeerMissingError,
  ReplicationTimeoutError,
  ReplicaVerificationError,
} from './errors.js';
export { Follower } from './follower.js';
export type {
  FollowerOptions,
  FollowerState,
  FollowerStats,
} from './follower-options.js';
export { NATS_PEER_PACKAGES } from './nats/peer.js';
export {
  openReplicatedStore,
  type ReplicatedStore,
  type ReplicatedStoreOptions,
  type SnapshotOptions,
  type StreamTrim,
  storeCloseFlushTimeoutMsDefault,
  trimStreamBelow,
} from './replicated-store.js';
export {
  type CommitDurability,
  type ReplicatedCommitOptions,
  type ReplicatedCommitResult,
  ReplicatedWal,
  type ReplicatedWalConfig,
  type ReplicatedWalStats,
} from './replicated-wal.js';
export { Replicator } from './replicator.js';
export {
  type ReplicatorOptions,
  type ReplicatorState,
  type ReplicatorStats,
  savedReplicatedEpoch,
} from './replicator-options.js';
export {
  duplicatesListedMax,
  type RestoreOptions,
  type RestoreResult,
  restoreFromStream,
} from './restore.js';
export {
  type DownloadSnapshotOptions,
  downloadSnapshot,
  type LatestSnapshotOptions,
  type ListSnapshotsOptions,
  latestSnapshot,
  listSnapshots,
  type PruneSnapshotsOptions,
  type PublishSnapshotOptions,
  pruneSnapshots,
  publishSnapshot,
  type SkippedSnapshot,
  SNAPSHOT_READ_BYTES,
  type SnapshotImage,
} from './snapshot.js';
export { type SnapshotMeta, snapshotBucketName, snapshotObjectName } from './snapshot-meta.js';
export {
  type FollowPosition,
  followPositionPath,
  type ReplicationState,
  readFollowPosition,
  readReplicationState,
  replicationStatePath,
} from './state-file.js';
