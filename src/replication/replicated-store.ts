/**
 * A page store whose log is shipped to a NATS JetStream stream: the store's
 * log (`store.log`) feeds a {@link Replicator} through its durable hook, and
 * the store's checkpoints and recovery keep every segment the cluster has not
 * acknowledged yet (`retainSegmentsAbove` = the replicated epoch), so a
 * checkpoint never deletes the only copy of an epoch the stream still needs.
 *
 * Before the replicator is open (and before its first contact) the watermark
 * saved beside the database is used: it is never ahead of the cluster. With
 * no watermark at all (nothing replicated yet) no segment is deleted.
 *
 * Base snapshots: a database that already holds checkpointed data when its
 * stream starts empty publishes a snapshot of its database file (the state
 * through its checkpoint epoch) to the stream's object store before the
 * first epoch is shipped, and the stream starts above it — so a restore or a
 * new follower gets the whole database. {@link ReplicatedStore.snapshot}
 * publishes a fresh one at any time (e.g. before trimming the stream), so
 * restoring does not need to replay the stream from its start.
 */

import { nodeFileSystem, type WalFileSystem } from '../storage/fs.js';
import { PageStore, type PageStoreOptions, type StoreCloseOptions } from '../store/page-store.js';
import { apiTimeoutMsDefault, type ReplicaClient } from './client.js';
import { ReplicationError, ReplicationErrorCode } from './errors.js';
import { type NatsConnection, NatsReplicaClient, requireNatsPeers } from './nats/client.js';
import { Replicator } from './replicator.js';
import { type ReplicatorOptions, savedReplicatedEpoch } from './replicator-options.js';
import { listSnapshotsIn, pruneSnapshotsIn, publishSnapshotTo } from './snapshot.js';
import type { SnapshotMeta } from './snapshot-meta.js';
import { firstSeqAboveEpoch } from './stream-seek.js';

/** Default bound of the catch-up wait in {@link ReplicatedStore.close}, in milliseconds. */
export const storeCloseFlushTimeoutMsDefault = 5_000;

/** Options of {@link openReplicatedStore}. */
export interface ReplicatedStoreOptions extends PageStoreOptions {
  /** Where and how to ship epochs (`dbPath`, `fs` and the durable epoch come from the store). */
  replication: Omit<ReplicatorOptions, 'dbPath' | 'fs' | 'initialDurableEpoch'>;
  /** At close, wait at most this long for shipping to catch up (default 5 s; 0: do not wait). */
  closeFlushTimeoutMs?: number;
}

/** Options of {@link ReplicatedStore.snapshot}. */
export interface SnapshotOptions {
  /** Checkpoint first, so the snapshot is as recent as possible (default true). */
  checkpoint?: boolean;
  /** Then delete all but the newest `keep` snapshots of the database. */
  keep?: number;
  /**
   * Then purge the stream's messages of epochs every kept snapshot holds
   * (below the oldest kept snapshot; the stream's last message always
   * stays), so the stream does not grow forever. Restores and new followers
   * start from a snapshot; a point in time before the oldest kept snapshot
   * is no longer restorable, and a follower whose position is below the
   * purge point stops with a gap error and must be rebuilt (a fresh replica
   * starts from the newest snapshot).
   */
  trimStream?: boolean;
}

/** What {@link trimStreamBelow} purged. */
export interface StreamTrim {
  /** Messages purged. */
  purged: number;
  /** The stream's first sequence afterwards. */
  firstSeq: number;
}

/** A page store plus the replicator shipping its log. */
export interface ReplicatedStore extends AsyncDisposable {
  readonly store: PageStore;
  readonly replicator: Replicator;
  /**
   * Publishes a base snapshot: checkpoints (unless `checkpoint: false`), then
   * copies the database file — stable while checkpoints are held off; commits
   * keep flowing — to the stream's object store, as the state through the
   * checkpoint epoch. With `keep`, older snapshots beyond the newest `keep`
   * are deleted afterwards.
   * @throws {ReplicationError} when the cluster cannot be reached; the store's
   * checkpoint errors.
   */
  snapshot(options?: SnapshotOptions): Promise<SnapshotMeta | null>;
  /**
   * Closes the store (checkpointing if asked: retention still applies), waits
   * a bounded time for shipping to catch up, then closes the replicator.
   */
  close(options?: StoreCloseOptions): Promise<void>;
}

/**
 * Opens the page store at `path` with its log replicated. A `retainSegmentsAbove`
 * given in `options` is combined with the replicator's (the lower epoch wins).
 * @throws everything {@link PageStore.open} and {@link Replicator.open} throw.
 */
export async function openReplicatedStore(
  path: string,
  options: ReplicatedStoreOptions,
): Promise<ReplicatedStore> {
  // A missing NATS package fails before the store is opened.
  await requireNatsPeers();
  const fs = options.fs ?? nodeFileSystem;
  const saved = await savedReplicatedEpoch({ ...options.replication, dbPath: path, fs });
  let replicator: Replicator | null = null;
  const own = options.retainSegmentsAbove;
  const retainSegmentsAbove = (): bigint | null => {
    const replicated = replicator === null ? saved : replicator.replicatedEpoch();
    if (own === undefined || replicated === null) return replicated;
    const theirs = own();
    return theirs === null || theirs < replicated ? theirs : replicated;
  };
  const { replication, closeFlushTimeoutMs, ...storeOptions } = options;
  const store = await PageStore.open(path, { ...storeOptions, retainSegmentsAbove });
  let unsubscribe = (): void => {};
  try {
    replicator = await openStoreReplicator(store, path, fs, replication);
    const shipping = replicator;
    unsubscribe = store.log.onDurable((info) =>
      shipping.notifyDurable(info.epoch, info.segmentWritten),
    );
  } catch (error) {
    unsubscribe();
    await store.close().catch(() => undefined);
    throw error;
  }
  const opened = replicator;
  const flushMs = closeFlushTimeoutMs ?? storeCloseFlushTimeoutMsDefault;
  const close = closeOnce(store, opened, unsubscribe, flushMs);
  const snapshot = (snapshotOptions: SnapshotOptions = {}): Promise<SnapshotMeta | null> =>
    snapshotStore(store, opened, replication, snapshotOptions);
  return { store, replicator: opened, close, snapshot, [Symbol.asyncDispose]: () => close() };
}

/** Where and how a replicated store ships its epochs. */
type StoreReplication = ReplicatedStoreOptions['replication'];

/** Opens the replicator of `store` above its durable epoch, with a base snapshot when needed. */
async function openStoreReplicator(
  store: PageStore,
  path: string,
  fs: WalFileSystem,
  replication: StoreReplication,
): Promise<Replicator> {
  // The log's durable epoch covers folded (and retained) segments too.
  const durable = store.log.durableEpoch();
  return await Replicator.open({
    ...replication,
    dbPath: path,
    fs,
    ...(durable === null ? {} : { initialDurableEpoch: durable }),
    baseEpoch: store.checkpointEpoch,
    ensureBase: async ({ connection, databaseId, stream }) => {
      const client = await NatsReplicaClient.connect({
        connection,
        ...(replication.apiTimeoutMs === undefined
          ? {}
          : { apiTimeoutMs: replication.apiTimeoutMs }),
      });
      await publishStoreSnapshot(store, client, {
        databaseId,
        stream,
        replicas: replication.replicas,
        apiTimeoutMs: replication.apiTimeoutMs,
      });
    },
  });
}

/** The store's `close`, run once: store, then up to `flushMs` of shipping, then the replicator. */
function closeOnce(
  store: PageStore,
  replicator: Replicator,
  unsubscribe: () => void,
  flushMs: number,
): (closeOptions?: StoreCloseOptions) => Promise<void> {
  let closing: Promise<void> | null = null;
  return (closeOptions?: StoreCloseOptions): Promise<void> => {
    closing ??= (async () => {
      try {
        await store.close(closeOptions);
      } finally {
        unsubscribe();
        if (flushMs > 0) {
          await replicator.flush(flushMs).catch(() => {
            // Not caught up in time: the next open ships the rest (retained).
          });
        }
        await replicator.close();
      }
    })();
    return closing;
  };
}

/** {@link ReplicatedStore.snapshot}: checkpoint, publish, then prune snapshots and trim the stream as asked. */
async function snapshotStore(
  store: PageStore,
  opened: Replicator,
  replication: StoreReplication,
  snapshotOptions: SnapshotOptions,
): Promise<SnapshotMeta | null> {
  if (snapshotOptions.checkpoint !== false) await store.checkpoint();
  const client = await NatsReplicaClient.connect({
    ...(replication.connection === undefined
      ? { servers: replication.servers ?? [] }
      : { connection: replication.connection }),
    ...(replication.connectTimeoutMs === undefined
      ? {}
      : { connectTimeoutMs: replication.connectTimeoutMs }),
    ...(replication.apiTimeoutMs === undefined ? {} : { apiTimeoutMs: replication.apiTimeoutMs }),
    name: `pwal-snapshot-${opened.databaseId}`,
  });
  try {
    const meta = await publishStoreSnapshot(store, client, {
      databaseId: opened.databaseId,
      stream: opened.stream,
      replicas: replication.replicas,
      apiTimeoutMs: replication.apiTimeoutMs,
    });
    if (snapshotOptions.keep !== undefined) {
      await pruneSnapshotsIn(client, opened.stream, {
        databaseId: opened.databaseId,
        keep: snapshotOptions.keep,
      });
    }
    if (snapshotOptions.trimStream === true) {
      const oldest = (
        await listSnapshotsIn(client, opened.stream, { databaseId: opened.databaseId })
      )[0];
      if (oldest !== undefined) {
        await trimStreamIn(client, opened.stream, oldest.epoch);
      }
    }
    return meta;
  } finally {
    await client.close();
  }
}

/**
 * Purges a database stream's messages of epochs `<= epoch` (all held by a
 * snapshot of that epoch or a later one), keeping at least the stream's last
 * message: the replicator resumes from the tail, and an empty stream would
 * look like one never shipped to.
 */
export async function trimStreamBelow(
  nc: NatsConnection,
  stream: string,
  epoch: bigint,
  apiTimeoutMs = apiTimeoutMsDefault,
): Promise<StreamTrim> {
  return trimStreamIn(
    await NatsReplicaClient.connect({ connection: nc, apiTimeoutMs }),
    stream,
    epoch,
  );
}

/** {@link trimStreamBelow} through a replica client. */
async function trimStreamIn(
  client: ReplicaClient,
  stream: string,
  epoch: bigint,
): Promise<StreamTrim> {
  const info = await client.streamState(stream);
  if (info === null) {
    throw new ReplicationError(ReplicationErrorCode.stream, `stream ${stream} does not exist`);
  }
  const { firstSeq, lastSeq, messages } = info;
  if (messages === 0) return { purged: 0, firstSeq };
  const above = await firstSeqAboveEpoch(client, stream, epoch, firstSeq, lastSeq);
  const keepFrom = Math.min(above, lastSeq);
  if (keepFrom <= firstSeq) return { purged: 0, firstSeq };
  const purged = await client.purgeBelow(stream, keepFrom);
  return { purged, firstSeq: keepFrom };
}

/**
 * Copies the store's database file (stable: checkpoints held off) to the
 * stream's object store. `null` when nothing was ever checkpointed (the
 * stream alone rebuilds such a database).
 */
async function publishStoreSnapshot(
  store: PageStore,
  client: ReplicaClient,
  target: { databaseId: string; stream: string; replicas?: number; apiTimeoutMs?: number },
): Promise<SnapshotMeta | null> {
  return store.withCheckpointImage(async (image) => {
    if (image.epoch === null) return null;
    return publishSnapshotTo(client, {
      stream: target.stream,
      databaseId: target.databaseId,
      ...(target.replicas === undefined ? {} : { replicas: target.replicas }),
      ...(target.apiTimeoutMs === undefined ? {} : { apiTimeoutMs: target.apiTimeoutMs }),
      image: { ...image, epoch: image.epoch },
    });
  });
}
