/**
 * Base snapshots: copies of a page store's database file in a JetStream
 * Object Store bucket beside the database's stream, so that a stream begun
 * after the database already held checkpointed data still restores it:
 * restore = the newest fitting snapshot + the stream's epochs above it.
 *
 * One bucket per stream ({@link snapshotBucketName}); one object per
 * database and epoch, named `<databaseId>.<epoch, 20 digits>` so names sort
 * by epoch. Everything a reader needs is in the object's metadata
 * (`pwal-*` keys, see {@link SnapshotMeta}), including our own SHA-256 of the
 * image, checked on every download independently of the store's digest.
 *
 * Bounded memory both ways: publishing reads the image in
 * {@link SNAPSHOT_READ_BYTES} pieces on demand (the object store client pulls
 * from a zero-high-water-mark stream); downloading fetches one chunk message
 * at a time (one more prefetched) by subject, instead of the client's push
 * consumer, which would queue the whole object if the writer is slow. The
 * chunks and metadata live where the object store's wire format puts them
 * (NATS ADR-20): stream `OBJ_<bucket>`, metadata on
 * `$O.<bucket>.M.<base64url(name)>` (one rolled-up message per object),
 * chunks on `$O.<bucket>.C.<nuid>`.
 *
 * Every request is bounded by the API timeout; connection-level failures
 * become `ERR_REPLICATION_UNAVAILABLE`, JetStream API rejections
 * `ERR_REPLICATION_STREAM`, and anything wrong with a snapshot itself
 * {@link ReplicaVerificationError} `ERR_REPLICA_SNAPSHOT`.
 */
import { createHash } from 'node:crypto';
import type {
  JetStreamClient,
  JetStreamManager,
  MsgRequest,
  NextMsgRequest,
  StoredMsg,
  StreamInfo,
} from '@nats-io/jetstream';
import type { ObjectStore } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import { WalArgumentError, WalError } from '../errors.js';
import { isU64, u32Max, u64Max } from '../format/types.js';
import {
  ReplicaErrorCode,
  ReplicationError,
  ReplicationErrorCode,
  ReplicaVerificationError,
} from './errors.js';
import { apiTimeoutMsDefault, isApiError, streamReplicasDefault, withApiRetries } from './nats.js';
import { loadedNats, loadNats } from './nats-peer.js';

/** Appended to the stream name to name its snapshot bucket. */
export const SNAPSHOT_BUCKET_SUFFIX = '_snapshots';
/** Longest bucket name: JetStream names are at most 255 characters, less the `OBJ_` prefix. */
export const snapshotBucketNameCharsMax = 251;
/** Bytes of the image read at once while publishing (twice: digest, then upload). */
export const SNAPSHOT_READ_BYTES = 1024 * 1024;
/** Object store chunk size of a snapshot, bytes (one stream message each). */
export const SNAPSHOT_CHUNK_BYTES = 256 * 1024;
/** Metadata messages fetched at once while listing a bucket. */
export const SNAPSHOT_LIST_WINDOW = 16;
/** Largest commit certificate carried in a snapshot's metadata, bytes. */
export const snapshotCertificateBytesMax = 16 * 1024;
/** Digits of the zero-padded epoch in an object name (u64 max has 20). */
export const SNAPSHOT_EPOCH_DIGITS = 20;
/** Value of the `pwal-snapshot` metadata key: the metadata layout version. */
export const SNAPSHOT_FORMAT_VERSION = '1';

// The page store's limits (store/header.ts, a higher layer than this one).
const pageSizeBytesMin = 512;
const pageSizeBytesMax = 65536;
const DATABASE_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
const BUCKET_PATTERN = /^[-\w]+$/;
const U64_TEXT = /^(0|[1-9][0-9]{0,19})$/;
const SHA256_HEX = /^[0-9a-f]{64}$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const DIGEST_PREFIX = 'SHA-256=';

/** Metadata keys of a snapshot object (values are strings). */
const Key = {
  version: 'pwal-snapshot',
  database: 'pwal-database',
  epoch: 'pwal-epoch',
  consistentEpoch: 'pwal-consistent-epoch',
  pageSize: 'pwal-page-size',
  dbSizePages: 'pwal-db-size-pages',
  commitSeq: 'pwal-commit-seq',
  bytes: 'pwal-bytes',
  sha256: 'pwal-sha256',
  certificate: 'pwal-certificate',
  createdAt: 'pwal-created-at',
} as const;

/** A base snapshot as listed: everything in its object's metadata. */
export interface SnapshotMeta {
  /** Object name: `<databaseId>.<epoch zero-padded to 20 digits>`. */
  name: string;
  databaseId: string;
  /**
   * The base: every epoch `<= epoch` is in the image; a restore replays the
   * stream's epochs above it.
   */
  epoch: bigint;
  /**
   * The image may already hold pages of commits up to this epoch (a memory
   * checkpoint writes each page's newest image; see `CheckpointImage` in
   * `store/page-store.ts`). The image plus the stream's epochs
   * `epoch + 1 ..= consistentEpoch` is exactly the database as of
   * `consistentEpoch`; a state between `epoch` and it cannot be restored
   * from this snapshot, and a restore that cannot reach it must not use it.
   * Equals `epoch` when the image is exact.
   */
  consistentEpoch: bigint;
  pageSize: number;
  /** Database size in pages (the image is pages `1 ..= dbSizePages`). */
  dbSizePages: number;
  /** Highest commit sequence in the image (`0n`: none). */
  commitSeq: bigint;
  /** `dbSizePages * pageSize`. */
  bytes: number;
  /** Lowercase hex SHA-256 of the image bytes (ours, checked on download). */
  sha256: string;
  /** Commit certificate of `epoch` when the publisher knew it. */
  certificate: Uint8Array | null;
  /** ISO-8601 time of publication. */
  createdAt: string;
}

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
 * The Object Store bucket of a stream's snapshots: `<stream>_snapshots`.
 * @throws {WalArgumentError} when the stream name has characters a bucket
 * name cannot (only `A-Z a-z 0-9 _ -`) or is too long for one.
 */
export function snapshotBucketName(stream: string): string {
  const bucket = `${stream}${SNAPSHOT_BUCKET_SUFFIX}`;
  if (typeof stream !== 'string' || stream.length === 0 || !BUCKET_PATTERN.test(stream)) {
    throw new WalArgumentError(
      `stream ${JSON.stringify(stream)} cannot name a snapshot bucket: only A-Z, a-z, 0-9, _ and - are allowed`,
    );
  }
  if (bucket.length > snapshotBucketNameCharsMax) {
    throw new WalArgumentError(
      `stream name ${stream} is too long for a snapshot bucket (${bucket.length} > ${snapshotBucketNameCharsMax} characters)`,
    );
  }
  return bucket;
}

/** Object name of a database's snapshot at `epoch`: `<databaseId>.<epoch, 20 digits>`. */
export function snapshotObjectName(databaseId: string, epoch: bigint): string {
  return `${databaseId}.${epoch.toString().padStart(SNAPSHOT_EPOCH_DIGITS, '0')}`;
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
  const timeoutMs = options.apiTimeoutMs ?? apiTimeoutMsDefault;
  const handle = await ensureBucket(
    nc,
    bucket,
    timeoutMs,
    options.replicas ?? streamReplicasDefault,
  );
  const upload = uploadSource(image, bytes, meta);
  try {
    const info = await handle.os.put(
      {
        name: meta.name,
        description: `pwal base snapshot of database ${meta.databaseId} at epoch ${meta.epoch}`,
        metadata: encodeMeta(meta),
        options: { max_chunk_size: SNAPSHOT_CHUNK_BYTES },
      },
      upload.stream,
      { timeout: timeoutMs },
    );
    if (info.size !== bytes) {
      throw snapshotError(meta.name, `the object store stored ${info.size} bytes of ${bytes}`);
    }
  } catch (error) {
    if (upload.failure() !== null) throw upload.failure();
    throw asReplicationError(error, `publishing snapshot ${meta.name} to bucket ${bucket}`);
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
  const bucket = snapshotBucketName(stream);
  const streamName = bucketStreamName(bucket);
  const { jsm } = await clientsFor(nc, options.apiTimeoutMs);
  const info = await nats(`listing snapshot bucket ${bucket}`, () =>
    metaSubjectsOrNull(jsm, streamName, `$O.${bucket}.M.>`),
  );
  if (info === null) return [];
  const subjects = Object.keys(info.state.subjects ?? {});
  const found: SnapshotMeta[] = [];
  for (let i = 0; i < subjects.length; i += SNAPSHOT_LIST_WINDOW) {
    const messages = await Promise.all(
      subjects
        .slice(i, i + SNAPSHOT_LIST_WINDOW)
        .map((subject) =>
          nats(`reading snapshot metadata ${subject}`, () =>
            jsm.streams.getMessage(streamName, { last_by_subj: subject }),
          ),
        ),
    );
    for (const message of messages) {
      if (message === null) continue; // purged meanwhile
      const object = objectInfoOf(message);
      if (object === null) {
        options.onSkipped?.({ name: message.subject, reason: 'metadata is not object store JSON' });
        continue;
      }
      if (object.deleted === true) continue;
      const parsed = parseSnapshotObject(object);
      if (!parsed.ok) {
        options.onSkipped?.({ name: String(object.name), reason: parsed.reason });
        continue;
      }
      if (options.databaseId !== undefined && parsed.meta.databaseId !== options.databaseId)
        continue;
      found.push(parsed.meta);
    }
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
  const { untilEpoch, ...listOptions } = options;
  const all = await listSnapshots(nc, stream, listOptions);
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
  const bucket = snapshotBucketName(stream);
  const streamName = bucketStreamName(bucket);
  const handle = await openBucket(nc, bucket, options.apiTimeoutMs ?? apiTimeoutMsDefault);
  if (handle === null) throw snapshotError(meta.name, `bucket ${bucket} does not exist`);
  const info = await nats(`reading snapshot ${meta.name} in bucket ${bucket}`, () =>
    handle.os.info(meta.name),
  );
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
  const subject = `$O.${bucket}.C.${info.nuid}`;
  // The stream leader's MSG.GET takes `next_by_subj` too (nats-server
  // >= 2.9); the client types it only for direct gets, which any replica may
  // answer from a possibly stale copy.
  const fetch = (seq: number): Promise<StoredMsg | null> => {
    const request: NextMsgRequest = { next_by_subj: subject, seq };
    return nats(`reading snapshot ${meta.name} in bucket ${bucket}`, () =>
      handle.jsm.streams.getMessage(streamName, request as unknown as MsgRequest),
    );
  };
  const hash = createHash('sha256');
  let offset = 0;
  // One chunk prefetched while the previous one is written: two in memory.
  let next: Promise<StoredMsg | null> | null = info.chunks > 0 ? fetch(1) : null;
  try {
    for (let chunk = 1; chunk <= info.chunks; chunk++) {
      const message = await next!;
      next = null;
      if (message === null || message.subject !== subject) {
        throw snapshotError(
          meta.name,
          `chunk ${chunk} of ${info.chunks} is missing (replaced or deleted while it was read)`,
        );
      }
      if (chunk < info.chunks) next = fetch(message.seq + 1);
      const data = message.data;
      if (offset + data.length > meta.bytes) {
        throw snapshotError(meta.name, `its chunks hold more than ${meta.bytes} bytes`);
      }
      hash.update(data);
      await write(data, offset);
      offset += data.length;
    }
  } finally {
    // Never leave the prefetch unobserved when a write or check failed.
    await next?.catch(() => undefined);
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
  if (!Number.isSafeInteger(options.keep) || options.keep < 0) {
    throw new WalArgumentError(`keep must be a non-negative integer, got ${options.keep}`);
  }
  checkDatabaseId(options.databaseId);
  const bucket = snapshotBucketName(stream);
  const all = await listSnapshots(nc, stream, {
    databaseId: options.databaseId,
    ...(options.apiTimeoutMs === undefined ? {} : { apiTimeoutMs: options.apiTimeoutMs }),
  });
  const doomed = all.slice(0, Math.max(0, all.length - options.keep));
  if (doomed.length === 0) return 0;
  const handle = await openBucket(nc, bucket, options.apiTimeoutMs ?? apiTimeoutMsDefault);
  if (handle === null) return 0;
  for (const meta of doomed) {
    await nats(`deleting snapshot ${meta.name} from bucket ${bucket}`, () =>
      handle.os.delete(meta.name),
    );
  }
  return doomed.length;
}

// ---------------------------------------------------------------------------

interface BucketHandle {
  os: ObjectStore;
  jsm: JetStreamManager;
}

function bucketStreamName(bucket: string): string {
  return `OBJ_${bucket}`;
}

/** A JetStream client and manager whose requests time out after `apiTimeoutMs`. */
async function clientsFor(
  nc: NatsConnection,
  apiTimeoutMs = apiTimeoutMsDefault,
): Promise<{ js: JetStreamClient; jsm: JetStreamManager }> {
  // checkAPI false: no account-info round trip; a JetStream that is down
  // shows up in the first real request (bounded like every other).
  const { jetstream } = await loadNats();
  const js = jetstream.jetstream(nc, { timeout: apiTimeoutMs, checkAPI: false });
  return { js, jsm: await js.jetstreamManager(false) };
}

/** The bucket, or `null` when it does not exist. */
async function openBucket(
  nc: NatsConnection,
  bucket: string,
  apiTimeoutMs: number,
): Promise<BucketHandle | null> {
  const { js, jsm } = await clientsFor(nc, apiTimeoutMs);
  const what = `opening snapshot bucket ${bucket}`;
  const exists = await nats(what, async () => {
    try {
      await jsm.streams.info(bucketStreamName(bucket));
      return true;
    } catch (error) {
      if (isApiError(error, loadedNats()!.jetstream.JetStreamApiCodes.StreamNotFound)) {
        return false;
      }
      throw error;
    }
  });
  if (!exists) return null;
  const { obj } = await loadNats();
  return { os: await nats(what, () => new obj.Objm(js).open(bucket, false)), jsm };
}

/**
 * The bucket, created with `replicas` when missing (an existing bucket is
 * used as it is). Two publishers creating it at once both succeed: the
 * server accepts an identical stream configuration again.
 */
async function ensureBucket(
  nc: NatsConnection,
  bucket: string,
  apiTimeoutMs: number,
  replicas: number,
): Promise<BucketHandle> {
  const existing = await openBucket(nc, bucket, apiTimeoutMs);
  if (existing !== null) return existing;
  const { js, jsm } = await clientsFor(nc, apiTimeoutMs);
  const { obj, jetstream } = await loadNats();
  const os = await nats(`creating snapshot bucket ${bucket}`, () =>
    new obj.Objm(js).create(bucket, {
      replicas,
      storage: jetstream.StorageType.File,
      description: 'pwal base snapshots of the databases of one stream',
    }),
  );
  return { os, jsm };
}

/** Stream info with the subjects matching `filter`, or `null` when the stream does not exist. */
async function metaSubjectsOrNull(
  jsm: JetStreamManager,
  streamName: string,
  filter: string,
): Promise<StreamInfo | null> {
  try {
    return await jsm.streams.info(streamName, { subjects_filter: filter });
  } catch (error) {
    if (isApiError(error, loadedNats()!.jetstream.JetStreamApiCodes.StreamNotFound)) return null;
    throw error;
  }
}

/**
 * A NATS call with the API retries of {@link withApiRetries}; a final
 * failure becomes a {@link ReplicationError} naming `what`.
 */
async function nats<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await withApiRetries(call);
  } catch (error) {
    throw asReplicationError(error, what);
  }
}

/** Our own errors pass; JetStream rejections are `stream`, everything else `unavailable`. */
function asReplicationError(error: unknown, what: string): Error {
  if (error instanceof WalError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const jetstream = loadedNats()?.jetstream;
  const code =
    jetstream !== undefined && error instanceof jetstream.JetStreamApiError
      ? ReplicationErrorCode.stream
      : ReplicationErrorCode.unavailable;
  return new ReplicationError(code, `${what}: ${message}`, { cause: error });
}

function snapshotError(name: string, reason: string): ReplicaVerificationError {
  return new ReplicaVerificationError(ReplicaErrorCode.snapshot, `snapshot ${name}: ${reason}`);
}

function checkDatabaseId(databaseId: string): void {
  if (typeof databaseId !== 'string' || !DATABASE_ID_PATTERN.test(databaseId)) {
    throw new WalArgumentError(
      `invalid database id ${JSON.stringify(databaseId)}: expected 1..64 characters of [A-Za-z0-9_-]`,
    );
  }
}

function isPageSize(value: unknown): value is number {
  return (
    typeof value === 'number' &&
    Number.isInteger(value) &&
    value >= pageSizeBytesMin &&
    value <= pageSizeBytesMax &&
    (value & (value - 1)) === 0
  );
}

function isPageCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= u32Max;
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

function encodeMeta(meta: SnapshotMeta): Record<string, string> {
  const out: Record<string, string> = {
    [Key.version]: SNAPSHOT_FORMAT_VERSION,
    [Key.database]: meta.databaseId,
    [Key.epoch]: meta.epoch.toString(),
    [Key.consistentEpoch]: meta.consistentEpoch.toString(),
    [Key.pageSize]: String(meta.pageSize),
    [Key.dbSizePages]: String(meta.dbSizePages),
    [Key.commitSeq]: meta.commitSeq.toString(),
    [Key.bytes]: String(meta.bytes),
    [Key.sha256]: meta.sha256,
    [Key.createdAt]: meta.createdAt,
  };
  if (meta.certificate !== null) {
    out[Key.certificate] = Buffer.from(meta.certificate).toString('base64');
  }
  return out;
}

/** The fields of an object's info this module reads. */
interface ObjectInfoLike {
  name?: unknown;
  size?: unknown;
  deleted?: unknown;
  metadata?: unknown;
  options?: { link?: unknown } | undefined;
}

/** The object store's JSON info of a metadata message, or `null` when it is not JSON. */
function objectInfoOf(message: StoredMsg): ObjectInfoLike | null {
  try {
    const value: unknown = JSON.parse(new TextDecoder().decode(message.data));
    return typeof value === 'object' && value !== null ? (value as ObjectInfoLike) : null;
  } catch {
    return null;
  }
}

type Parsed = { ok: true; meta: SnapshotMeta } | { ok: false; reason: string };

/** A live object's snapshot metadata, checked for consistency with itself and the object. */
function parseSnapshotObject(object: ObjectInfoLike): Parsed {
  const fail = (reason: string): Parsed => ({ ok: false, reason });
  if (object.options?.link !== undefined && object.options.link !== null) {
    return fail('a link, not a snapshot');
  }
  const md = object.metadata;
  if (typeof md !== 'object' || md === null) return fail('no pwal snapshot metadata');
  const get = (key: string): string | undefined => {
    const value = (md as Record<string, unknown>)[key];
    return typeof value === 'string' ? value : undefined;
  };
  const version = get(Key.version);
  if (version === undefined) return fail('no pwal snapshot metadata');
  if (version !== SNAPSHOT_FORMAT_VERSION) return fail(`unsupported snapshot format ${version}`);
  const u64 = (key: string): bigint | null => {
    const text = get(key);
    if (text === undefined || !U64_TEXT.test(text)) return null;
    const value = BigInt(text);
    return value <= u64Max ? value : null;
  };
  const databaseId = get(Key.database) ?? '';
  if (!DATABASE_ID_PATTERN.test(databaseId)) return fail(`invalid ${Key.database} ${databaseId}`);
  const epoch = u64(Key.epoch);
  const consistentEpoch = u64(Key.consistentEpoch);
  const commitSeq = u64(Key.commitSeq);
  if (epoch === null) return fail(`invalid ${Key.epoch} ${get(Key.epoch)}`);
  if (consistentEpoch === null || consistentEpoch < epoch) {
    return fail(`invalid ${Key.consistentEpoch} ${get(Key.consistentEpoch)}`);
  }
  if (commitSeq === null) return fail(`invalid ${Key.commitSeq} ${get(Key.commitSeq)}`);
  const pageSize = Number(get(Key.pageSize));
  if (!isPageSize(pageSize)) return fail(`invalid ${Key.pageSize} ${get(Key.pageSize)}`);
  const dbSizePages = Number(get(Key.dbSizePages));
  if (!isPageCount(dbSizePages) || get(Key.dbSizePages) !== String(dbSizePages)) {
    return fail(`invalid ${Key.dbSizePages} ${get(Key.dbSizePages)}`);
  }
  const bytes = dbSizePages * pageSize;
  if (get(Key.bytes) !== String(bytes)) {
    return fail(`${Key.bytes} ${get(Key.bytes)} is not ${dbSizePages} pages of ${pageSize} bytes`);
  }
  if (object.size !== bytes)
    return fail(`the object holds ${String(object.size)} bytes, not ${bytes}`);
  const sha256 = get(Key.sha256) ?? '';
  if (!SHA256_HEX.test(sha256)) return fail(`invalid ${Key.sha256} ${sha256}`);
  const certificateText = get(Key.certificate);
  let certificate: Uint8Array | null = null;
  if (certificateText !== undefined) {
    if (!BASE64.test(certificateText) || certificateText.length % 4 !== 0) {
      return fail(`invalid ${Key.certificate} (not base64)`);
    }
    certificate = new Uint8Array(Buffer.from(certificateText, 'base64'));
    if (certificate.length > snapshotCertificateBytesMax) {
      return fail(`${Key.certificate} exceeds ${snapshotCertificateBytesMax} bytes`);
    }
  }
  const createdAt = get(Key.createdAt) ?? '';
  if (Number.isNaN(Date.parse(createdAt))) return fail(`invalid ${Key.createdAt} ${createdAt}`);
  const name = snapshotObjectName(databaseId, epoch);
  if (object.name !== name) {
    return fail(`named ${String(object.name)}, but its metadata says ${name}`);
  }
  return {
    ok: true,
    meta: {
      name,
      databaseId,
      epoch,
      consistentEpoch,
      pageSize,
      dbSizePages,
      commitSeq,
      bytes,
      sha256,
      certificate,
      createdAt,
    },
  };
}

/** The first field (other than `createdAt`) in which two snapshot metas differ, or `null`. */
function differingField(a: SnapshotMeta, b: SnapshotMeta): string | null {
  const keys = [
    'name',
    'databaseId',
    'epoch',
    'consistentEpoch',
    'pageSize',
    'dbSizePages',
    'commitSeq',
    'bytes',
    'sha256',
  ] as const;
  for (const key of keys) if (a[key] !== b[key]) return key;
  const ca = a.certificate;
  const cb = b.certificate;
  if (ca === null || cb === null) return ca === cb ? null : 'certificate';
  return Buffer.from(ca).equals(Buffer.from(cb)) ? null : 'certificate';
}

/** The object store's `SHA-256=<base64url>` digest as lowercase hex (`''` when unreadable). */
function storeDigestHex(digest: string): string {
  if (!digest.startsWith(DIGEST_PREFIX)) return '';
  const raw = Buffer.from(digest.slice(DIGEST_PREFIX.length).replace(/=+$/, ''), 'base64url');
  return raw.length === 32 ? raw.toString('hex') : '';
}

function compareBigint(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
