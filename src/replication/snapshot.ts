/**
 * Base snapshots: copies of a page store's database file in a bucket of
 * objects beside the database's stream, so that a stream begun after the
 * database already held checkpointed data still restores it:
 * restore = the newest fitting snapshot + the stream's epochs above it.
 *
 * One bucket per stream ({@link snapshotBucketName}); one object per
 * database and epoch, named `<databaseId>.<epoch, 20 digits>` so names sort
 * by epoch. Everything a reader needs is in the object's metadata
 * (`snapshot-meta.ts`), including our own SHA-256 of the image, checked on
 * every download independently of the store's digest.
 *
 * Bounded memory both ways: publishing reads the image in
 * {@link SNAPSHOT_READ_BYTES} pieces on demand (the client pulls from a
 * zero-high-water-mark stream); downloading takes one chunk at a time from
 * {@link ReplicaClient.readObject}.
 *
 * The operations are written against {@link ReplicaClient}; the exported
 * functions that take a NATS connection wrap it in the NATS client. Anything
 * wrong with a snapshot itself is a {@link ReplicaVerificationError}
 * `ERR_REPLICA_SNAPSHOT`.
 */
import { createHash } from 'node:crypto';
import { WalArgumentError } from '../errors.js';
import { isU64 } from '../format/types.js';
import { pageSizeBytesMax, pageSizeBytesMin } from '../store/header.js';
import { apiTimeoutMsDefault, type ReplicaClient, streamReplicasDefault } from './client.js';
import type { ReplicationError, ReplicaVerificationError } from './errors.js';
import { type NatsConnection, NatsReplicaClient } from './nats/client.js';
import {
  checkDatabaseId,
  compareBigint,
  differingField,
  encodeMeta,
  isPageCount,
  isPageSize,
  parseSnapshotObject,
  type SnapshotMeta,
  snapshotBucketName,
  snapshotCertificateBytesMax,
  snapshotError,
  snapshotObjectName,
  storeDigestHex,
} from './snapshot-meta.js';

/** Bytes of the image read at once while publishing (twice: digest, then upload). */
export const SNAPSHOT_READ_BYTES = 1024 * 1024;
/** Object store chunk size of a snapshot, bytes (one stream message each). */
export const SNAPSHOT_CHUNK_BYTES = 256 * 1024;

/**
 * The bytes to publish: a page store's `CheckpointImage` (held still by
 * `PageStore.withCheckpointImage`) fits, once its `epoch` is known not null.
 */
export interface SnapshotImage {
  /** Last epoch folded into the image. */
  epoch: bigint;
  /** See {@link SnapshotMeta.consistentEpoch}; absent or `null`: `epoch`. */
  consistentEpoch?: bigint | null;
  pageSize: number;
  dbSizePages: number;
  commitSeq: bigint;
  /** Exactly `length` bytes from `offset`. */
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** Options of {@link publishSnapshot}. */
export interface PublishSnapshotOptions {
  /** The database's stream; the bucket is {@link snapshotBucketName}(stream). */
  stream: string;
  databaseId: string;
  /** Replicas of the bucket when it is created (default {@link streamReplicasDefault}). */
  replicas?: number;
  /** Timeout of one JetStream request or chunk publish, ms (default 5 s). */
  apiTimeoutMs?: number;
  image: SnapshotImage;
  /** Commit certificate of `image.epoch`, when known. */
  certificate?: Uint8Array | null;
}

/** An object of the bucket that {@link listSnapshots} did not return, and why. */
export interface SkippedSnapshot {
  name: string;
  reason: string;
}

/** Options of {@link listSnapshots}. */
export interface ListSnapshotsOptions {
  /** Only this database's snapshots (a bucket may hold several databases'). */
  databaseId?: string;
  /** Timeout of one JetStream request, ms (default 5 s). */
  apiTimeoutMs?: number;
  /**
   * Told about every live object that is not a valid snapshot (foreign
   * objects, malformed or inconsistent metadata, a size that does not match).
   * Such objects are never returned, so one bad object cannot block restores
   * (they fall back to an older snapshot, or the stream alone).
   */
  onSkipped?: (skipped: SkippedSnapshot) => void;
}

/** Options of {@link latestSnapshot}. */
export interface LatestSnapshotOptions extends ListSnapshotsOptions {
  /**
   * Only snapshots that can restore the state as of this epoch: those whose
   * {@link SnapshotMeta.consistentEpoch} (and so `epoch`) is `<= untilEpoch`.
   */
  untilEpoch?: bigint;
}

/** Options of {@link downloadSnapshot}. */
export interface DownloadSnapshotOptions {
  /** Timeout of one JetStream request, ms (default 5 s). */
  apiTimeoutMs?: number;
}

/** Options of {@link pruneSnapshots}. */
export interface PruneSnapshotsOptions {
  databaseId: string;
  /** How many of the newest snapshots to keep (>= 0). */
  keep: number;
  /** Timeout of one JetStream request, ms (default 5 s). */
  apiTimeoutMs?: number;
}

/**
 * Publishes the image as the database's snapshot at `image.epoch` (creating
 * the bucket when missing). Reads the image twice, {@link SNAPSHOT_READ_BYTES}
 * at a time: once for its SHA-256 (which goes into the metadata), once to
 * upload it — and refuses to finish the upload if the bytes changed in
 * between. Re-publishing the same database and epoch replaces the object
 * (readers see the old one or the new one, never a mix). Not retried as a
 * whole: on failure nothing new is visible and the caller may call again.
 * @throws {WalArgumentError} for invalid arguments (also `image.epoch` null);
 * {@link ReplicationError} `ERR_REPLICATION_UNAVAILABLE` /
 * `ERR_REPLICATION_STREAM` when the cluster cannot take it;
 * {@link ReplicaVerificationError} `ERR_REPLICA_SNAPSHOT` when the image
 * changed while it was published; whatever `image.read` throws.
 */
export async function publishSnapshot(
  nc: NatsConnection,
  options: PublishSnapshotOptions,
): Promise<SnapshotMeta> {
  return publishSnapshotTo(await clientOver(nc, options.apiTimeoutMs), options);
}

/** {@link publishSnapshot} through a replica client. */
export async function publishSnapshotTo(
  client: ReplicaClient,
  options: PublishSnapshotOptions,
): Promise<SnapshotMeta> {
  const bucket = snapshotBucketName(options.stream);
  const { image } = options;
  checkPublishArguments(options);
  const bytes = image.dbSizePages * image.pageSize;
  const certificate = options.certificate ?? null;
  const meta: SnapshotMeta = {
    name: snapshotObjectName(options.databaseId, image.epoch),
    databaseId: options.databaseId,
    epoch: image.epoch,
    consistentEpoch: image.consistentEpoch ?? image.epoch,
    pageSize: image.pageSize,
    dbSizePages: image.dbSizePages,
    commitSeq: image.commitSeq,
    bytes,
    sha256: await digestImage(image, bytes),
    certificate: certificate === null ? null : Uint8Array.from(certificate),
    createdAt: new Date().toISOString(),
  };
  const upload = uploadSource(image, bytes, meta);
  let stored: { size: number };
  try {
    stored = await client.putObject(
      bucket,
      {
        name: meta.name,
        description: `pwal base snapshot of database ${meta.databaseId} at epoch ${meta.epoch}`,
        metadata: encodeMeta(meta),
        chunkBytes: SNAPSHOT_CHUNK_BYTES,
      },
      upload.stream,
      {
        replicas: options.replicas ?? streamReplicasDefault,
        timeoutMs: options.apiTimeoutMs ?? apiTimeoutMsDefault,
      },
    );
  } catch (error) {
    if (upload.failure() !== null) throw upload.failure();
    throw error;
  }
  if (stored.size !== bytes) {
    throw snapshotError(meta.name, `the object store stored ${stored.size} bytes of ${bytes}`);
  }
  return meta;
}

/**
 * The snapshots in the stream's bucket, ascending by epoch (then name);
 * `[]` when the bucket does not exist. Deleted objects are ignored; objects
 * that are not valid snapshots are skipped and reported to `onSkipped`.
 * @throws {ReplicationError} `ERR_REPLICATION_UNAVAILABLE` /
 * `ERR_REPLICATION_STREAM` when the bucket cannot be read.
 */
export async function listSnapshots(
  nc: NatsConnection,
  stream: string,
  options: ListSnapshotsOptions = {},
): Promise<SnapshotMeta[]> {
  return listSnapshotsIn(await clientOver(nc, options.apiTimeoutMs), stream, options);
}

/** {@link listSnapshots} through a replica client. */
export async function listSnapshotsIn(
  client: ReplicaClient,
  stream: string,
  options: ListSnapshotsOptions = {},
): Promise<SnapshotMeta[]> {
  const bucket = snapshotBucketName(stream);
  const entries = await client.listObjects(bucket, (where) =>
    options.onSkipped?.({ name: where, reason: 'metadata is not object store JSON' }),
  );
  const found: SnapshotMeta[] = [];
  for (const object of entries ?? []) {
    if (object.deleted === true) continue;
    const parsed = parseSnapshotObject(object);
    if (!parsed.ok) {
      options.onSkipped?.({ name: String(object.name), reason: parsed.reason });
      continue;
    }
    if (options.databaseId !== undefined && parsed.meta.databaseId !== options.databaseId) continue;
    found.push(parsed.meta);
  }
  return found.sort(
    (a, b) => compareBigint(a.epoch, b.epoch) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
}

/**
 * The newest snapshot (highest epoch) that fits, or `null`. Give
 * `databaseId` when the bucket may hold several databases' snapshots.
 * @throws like {@link listSnapshots}.
 */
export async function latestSnapshot(
  nc: NatsConnection,
  stream: string,
  options: LatestSnapshotOptions = {},
): Promise<SnapshotMeta | null> {
  return latestSnapshotIn(await clientOver(nc, options.apiTimeoutMs), stream, options);
}

/** {@link latestSnapshot} through a replica client. */
export async function latestSnapshotIn(
  client: ReplicaClient,
  stream: string,
  options: LatestSnapshotOptions = {},
): Promise<SnapshotMeta | null> {
  const { untilEpoch, ...listOptions } = options;
  const all = await listSnapshotsIn(client, stream, listOptions);
  const fitting =
    untilEpoch === undefined ? all : all.filter((meta) => meta.consistentEpoch <= untilEpoch);
  return fitting[fitting.length - 1] ?? null;
}

/**
 * Streams a snapshot's bytes to `write(chunk, offset)` in order, one chunk
 * message at a time, then checks the total length and the SHA-256 against
 * `meta`. `write` sees the bytes BEFORE the final check: write into a
 * location that is discarded when this throws. Before reading, the object's
 * current metadata must match `meta` (not replaced since it was listed) and
 * the store's own digest must agree with `meta.sha256`.
 * @throws {ReplicaVerificationError} `ERR_REPLICA_SNAPSHOT` naming the
 * snapshot: gone, replaced, a chunk missing, wrong length or digest;
 * {@link ReplicationError} `ERR_REPLICATION_UNAVAILABLE` /
 * `ERR_REPLICATION_STREAM` when the bucket cannot be read; whatever `write`
 * throws.
 */
export async function downloadSnapshot(
  nc: NatsConnection,
  stream: string,
  meta: SnapshotMeta,
  write: (chunk: Uint8Array, offset: number) => Promise<void>,
  options: DownloadSnapshotOptions = {},
): Promise<void> {
  await downloadSnapshotFrom(await clientOver(nc, options.apiTimeoutMs), stream, meta, write);
}

/** {@link downloadSnapshot} through a replica client. */
export async function downloadSnapshotFrom(
  client: ReplicaClient,
  stream: string,
  meta: SnapshotMeta,
  write: (chunk: Uint8Array, offset: number) => Promise<void>,
): Promise<void> {
  const bucket = snapshotBucketName(stream);
  const found = await client.findObject(bucket, meta.name);
  if (!found.bucket) throw snapshotError(meta.name, `bucket ${bucket} does not exist`);
  const info = found.object;
  if (info === null || info.deleted) {
    throw snapshotError(meta.name, `it no longer exists in bucket ${bucket} (deleted or pruned)`);
  }
  const current = parseSnapshotObject(info);
  if (!current.ok) throw snapshotError(meta.name, current.reason);
  const changed = differingField(current.meta, meta);
  if (changed !== null) {
    throw snapshotError(meta.name, `it was replaced since it was listed (${changed} differs)`);
  }
  if (storeDigestHex(info.digest) !== meta.sha256) {
    throw snapshotError(
      meta.name,
      `the object store's digest ${info.digest} does not match the snapshot's SHA-256 ${meta.sha256}`,
    );
  }
  const hash = createHash('sha256');
  let offset = 0;
  let chunk = 0;
  for await (const data of client.readObject(bucket, info)) {
    chunk += 1;
    if (data === null) {
      throw snapshotError(
        meta.name,
        `chunk ${chunk} of ${info.chunks} is missing (replaced or deleted while it was read)`,
      );
    }
    if (offset + data.length > meta.bytes) {
      throw snapshotError(meta.name, `its chunks hold more than ${meta.bytes} bytes`);
    }
    hash.update(data);
    await write(data, offset);
    offset += data.length;
  }
  if (offset !== meta.bytes) {
    throw snapshotError(meta.name, `it holds ${offset} bytes, its metadata says ${meta.bytes}`);
  }
  const digest = hash.digest('hex');
  if (digest !== meta.sha256) {
    throw snapshotError(meta.name, `its bytes have SHA-256 ${digest}, expected ${meta.sha256}`);
  }
}

/**
 * Deletes all but the newest `keep` snapshots of a database (other
 * databases' objects and invalid objects are left alone).
 * @returns how many were deleted.
 * @throws {WalArgumentError} for a `keep` that is not a non-negative
 * integer; like {@link listSnapshots} otherwise.
 */
export async function pruneSnapshots(
  nc: NatsConnection,
  stream: string,
  options: PruneSnapshotsOptions,
): Promise<number> {
  return pruneSnapshotsIn(await clientOver(nc, options.apiTimeoutMs), stream, options);
}

/** {@link pruneSnapshots} through a replica client. */
export async function pruneSnapshotsIn(
  client: ReplicaClient,
  stream: string,
  options: PruneSnapshotsOptions,
): Promise<number> {
  if (!Number.isSafeInteger(options.keep) || options.keep < 0) {
    throw new WalArgumentError(`keep must be a non-negative integer, got ${options.keep}`);
  }
  checkDatabaseId(options.databaseId);
  const bucket = snapshotBucketName(stream);
  const all = await listSnapshotsIn(client, stream, { databaseId: options.databaseId });
  const doomed = all.slice(0, Math.max(0, all.length - options.keep));
  let deleted = 0;
  for (const meta of doomed) {
    if (!(await client.deleteObject(bucket, meta.name))) return deleted;
    deleted += 1;
  }
  return deleted;
}

/** The replica client over a caller's connection (left open). */
function clientOver(nc: NatsConnection, apiTimeoutMs: number | undefined): Promise<ReplicaClient> {
  return NatsReplicaClient.connect({
    connection: nc,
    ...(apiTimeoutMs === undefined ? {} : { apiTimeoutMs }),
  });
}

function checkPublishArguments(options: PublishSnapshotOptions): void {
  checkDatabaseId(options.databaseId);
  const { image } = options;
  if (!isU64(image.epoch)) {
    throw new WalArgumentError(`image.epoch must be a u64 bigint, got ${String(image.epoch)}`);
  }
  const consistent = image.consistentEpoch ?? image.epoch;
  if (!isU64(consistent) || consistent < image.epoch) {
    throw new WalArgumentError(
      `image.consistentEpoch must be a u64 bigint >= epoch ${image.epoch}, got ${String(consistent)}`,
    );
  }
  if (!isPageSize(image.pageSize)) {
    throw new WalArgumentError(
      `image.pageSize must be a power of two in ${pageSizeBytesMin}..=${pageSizeBytesMax}, got ${image.pageSize}`,
    );
  }
  if (!isPageCount(image.dbSizePages)) {
    throw new WalArgumentError(`image.dbSizePages must be a u32, got ${image.dbSizePages}`);
  }
  if (!isU64(image.commitSeq)) {
    throw new WalArgumentError(
      `image.commitSeq must be a u64 bigint, got ${String(image.commitSeq)}`,
    );
  }
  const replicas = options.replicas ?? streamReplicasDefault;
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 5) {
    throw new WalArgumentError(`replicas must be 1..=5, got ${replicas}`);
  }
  const certificate = options.certificate ?? null;
  if (certificate !== null && certificate.length > snapshotCertificateBytesMax) {
    throw new WalArgumentError(
      `certificate of ${certificate.length} bytes exceeds ${snapshotCertificateBytesMax}`,
    );
  }
}

/** Exactly `length` bytes of the image at `offset` (a short read is an error). */
async function readImage(
  image: SnapshotImage,
  offset: number,
  length: number,
): Promise<Uint8Array> {
  const data = await image.read(offset, length);
  if (data.length !== length) {
    throw new WalArgumentError(
      `image.read(${offset}, ${length}) returned ${data.length} bytes; it must return exactly the length asked for`,
    );
  }
  return data;
}

/** Hex SHA-256 of the image's `bytes` bytes, read {@link SNAPSHOT_READ_BYTES} at a time. */
async function digestImage(image: SnapshotImage, bytes: number): Promise<string> {
  const hash = createHash('sha256');
  for (let offset = 0; offset < bytes; offset += SNAPSHOT_READ_BYTES) {
    hash.update(await readImage(image, offset, Math.min(SNAPSHOT_READ_BYTES, bytes - offset)));
  }
  return hash.digest('hex');
}

/**
 * A pull-only stream of the image for the object store client: one read per
 * pull (high-water mark 0: nothing read ahead). At the end the bytes' digest
 * must equal the one already in the metadata, else the stream errors and the
 * client drops the upload before its metadata (the object) becomes visible.
 */
function uploadSource(
  image: SnapshotImage,
  bytes: number,
  meta: SnapshotMeta,
): { stream: ReadableStream<Uint8Array>; failure(): unknown } {
  const hash = createHash('sha256');
  let offset = 0;
  let failure: unknown = null;
  const stream = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          if (offset >= bytes) {
            const digest = hash.digest('hex');
            if (digest !== meta.sha256) {
              throw snapshotError(
                meta.name,
                `the image changed while it was published (SHA-256 ${meta.sha256}, then ${digest}): hold it still (PageStore.withCheckpointImage)`,
              );
            }
            controller.close();
            return;
          }
          const length = Math.min(SNAPSHOT_READ_BYTES, bytes - offset);
          const data = await readImage(image, offset, length);
          hash.update(data);
          offset += length;
          controller.enqueue(data);
        } catch (error) {
          failure = error;
          controller.error(error);
        }
      },
    },
    { highWaterMark: 0 },
  );
  return { stream, failure: () => failure };
}
