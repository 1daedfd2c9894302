/**
 * Point-in-time restore: rebuilds a database from its JetStream stream into
 * an empty location, verifying every chunk and epoch (see
 * {@link EpochAssembler}) and stopping at the first gap or bad epoch, or
 * after `untilEpoch`.
 *
 * When the stream's object store holds a base snapshot at or below the
 * target epoch, the newest such snapshot becomes the database file (and its
 * store header), verified by length and SHA-256, and only the epochs after
 * it are read from the stream: a database whose stream began after it had
 * checkpointed data is restored whole, and a long stream is not replayed
 * from its start. Without a snapshot the stream must begin at the
 * database's beginning; a stream that starts above a base it does not have
 * is reported as a gap, never restored in part silently.
 *
 * Every restored segment is written with the durable segment protocol, so
 * the result opens like any local log (`PageStore.open` folds the segments
 * above the snapshot into the file).
 */
import * as nodePath from 'node:path';
import { decodeSegment } from '../format/segment.js';
import { fileSize } from '../storage/file-size.js';
import { nodeFileSystem, type WalFileSystem } from '../storage/fs.js';
import { type FsyncPolicy, listSegments, writeSegmentFile } from '../storage/segment-files.js';
import { recordShippedJump } from '../storage/skipped-epochs.js';
import { STORE_META_PAGE_ID } from '../store/commit-meta.js';
import { storeHeaderPath, validatePageSize } from '../store/header.js';
import { ReplicaStore } from '../store/replica-store.js';
import {
  type CertificateVerifier,
  type DuplicateMessage,
  EpochAssembler,
  type VerifiedEpoch,
} from './assembler.js';
import { verifyShippedCertificate } from './certificates.js';
import { apiTimeoutMsDefault, type ReplicaClient, withApiRetries } from './client.js';
import {
  ReplicaErrorCode,
  ReplicationError,
  ReplicationErrorCode,
  ReplicaVerificationError,
} from './errors.js';
import { type NatsConnection, NatsReplicaClient } from './nats/client.js';
import { downloadSnapshotFrom, latestSnapshotIn } from './snapshot.js';
import type { SnapshotMeta } from './snapshot-meta.js';
import { firstSeqAboveEpoch } from './stream-seek.js';

/** Duplicates listed individually in a result (the count is always exact). */
export const duplicatesListedMax = 100;

/** Options of {@link restoreFromStream}. */
export interface RestoreOptions {
  /** NATS server URL(s); ignored when `connection` is given. */
  servers?: string | readonly string[];
  /** An existing connection (left open). */
  connection?: NatsConnection;
  stream: string;
  /** Database file path of the restored database (must have no segments yet). */
  dbPath: string;
  /** Restore epochs up to and including this one (default: all). */
  untilEpoch?: bigint;
  /** Only accept this database's messages (default: the stream's first). */
  databaseId?: string;
  /** Start from the newest base snapshot at or below the target epoch (default true). */
  useSnapshot?: boolean;
  /** Segment write durability (default `full`). */
  fsync?: FsyncPolicy;
  /** Certificate check (default {@link verifyShippedCertificate}); `null` disables it. */
  verifyCertificate?: CertificateVerifier | null;
  /** Wait for one connection attempt, ms. */
  connectTimeoutMs?: number;
  /** Called after each stream message read: its sequence and the range being read. */
  onProgress?: (progress: { streamSeq: number; fromSeq: number; lastSeq: number }) => void;
  /** Wait for one JetStream API request, ms (default 5 s). */
  apiTimeoutMs?: number;
  fs?: WalFileSystem;
}

/** What a restore did. */
export interface RestoreResult {
  databaseId: string | null;
  /** Epochs written, in order. */
  epochsRestored: number;
  /** The last restored epoch (`null`: none). */
  lastEpoch: bigint | null;
  /** Segment bytes written. */
  bytesRestored: number;
  /** The base snapshot the restore started from (`null`: the stream alone). */
  snapshot: { epoch: bigint; bytes: number; dbSizePages: number; pageSize: number } | null;
  /** Messages skipped because the snapshot holds their epoch. */
  messagesBeforeSnapshot: number;
  /** Messages skipped as exact duplicates of verified ones. */
  duplicateCount: number;
  /** The first {@link duplicatesListedMax} of them. */
  duplicates: DuplicateMessage[];
  /** Stream sequence of the last message read. */
  lastStreamSeq: number;
  /**
   * Why the restore stopped before the stream's end: the first gap or bad
   * epoch (`null` when it reached the end or `untilEpoch`). Everything before
   * it is restored and verified.
   */
  stoppedBy: ReplicaVerificationError | null;
  /** True when a partial epoch was left at the end of the stream (not restored). */
  incompleteTail: boolean;
  /**
   * The page size of the restored database: the snapshot's, else the length
   * of the first page image restored when it is a valid page size (`null`:
   * unknown — no page image, or not a page store's log).
   */
  pageSize: number | null;
}

/**
 * Restores segments from `options.stream` into `options.dbPath`.
 * @throws {ReplicationError} `ERR_REPLICATION_UNAVAILABLE` / `ERR_REPLICATION_STREAM`
 * when the stream cannot be read; `ERR_INVALID_ARGUMENT`-style misuse when the
 * target already has segments.
 */
export async function restoreFromStream(options: RestoreOptions): Promise<RestoreResult> {
  const fs = options.fs ?? nodeFileSystem;
  const existing = await listSegments(options.dbPath, { fs }).catch((error: unknown) => {
    if ((error as { code?: unknown }).code === 'ERR_IO') return [];
    throw error;
  });
  if (existing.length > 0) {
    throw new ReplicationError(
      ReplicationErrorCode.position,
      `restore target ${options.dbPath} already has ${existing.length} segment(s); restore into a fresh location`,
    );
  }
  // Another database (file or store header) there would be mixed with the
  // restored one: refuse it as well.
  for (const path of [options.dbPath, storeHeaderPath(options.dbPath)]) {
    if ((await fileSize(path, fs)) !== null) {
      throw new ReplicationError(
        ReplicationErrorCode.position,
        `restore target ${options.dbPath} already holds a database (${path} exists); restore into a fresh location`,
      );
    }
  }
  await fs.mkdir(nodePath.dirname(options.dbPath), { recursive: true });
  const client = await NatsReplicaClient.connect({
    ...(options.connection === undefined
      ? { servers: options.servers ?? [] }
      : { connection: options.connection }),
    ...(options.connectTimeoutMs === undefined
      ? {}
      : { connectTimeoutMs: options.connectTimeoutMs }),
    apiTimeoutMs: options.apiTimeoutMs ?? apiTimeoutMsDefault,
    name: 'pwal-restore',
  });
  try {
    return await restoreWith(client, options, fs);
  } finally {
    await client.close();
  }
}

/** Reads the stream into `options.dbPath`: the base snapshot (when one fits), then every verified epoch above it. */
async function restoreWith(
  client: ReplicaClient,
  options: RestoreOptions,
  fs: WalFileSystem,
): Promise<RestoreResult> {
  const info = await withApiRetries(() => client.streamState(options.stream));
  if (info === null) {
    throw new ReplicationError(
      ReplicationErrorCode.stream,
      `stream ${options.stream} does not exist`,
    );
  }
  const verify =
    options.verifyCertificate === null
      ? undefined
      : (options.verifyCertificate ?? verifyShippedCertificate);
  const result = emptyRestoreResult(options);
  const until = options.untilEpoch;
  const meta =
    options.useSnapshot === false
      ? null
      : await withApiRetries(() =>
          latestSnapshotIn(client, options.stream, {
            ...(options.databaseId === undefined ? {} : { databaseId: options.databaseId }),
            ...(until === undefined ? {} : { untilEpoch: until }),
          }),
        );
  if (meta !== null) await installBaseSnapshot(client, options, fs, meta, result);
  const assembler = new EpochAssembler({
    databaseId: meta?.databaseId ?? options.databaseId,
    baseEpoch: meta?.epoch ?? null,
    previousCertificate:
      meta?.certificate == null ? null : { epoch: meta.epoch, certificate: meta.certificate },
    verifyCertificate: verify,
  });
  const { firstSeq, lastSeq, messages } = info;
  if (messages === 0 || (until !== undefined && meta !== null && meta.epoch >= until)) {
    return checkConsistent(result, meta);
  }
  const from =
    meta === null
      ? firstSeq
      : await withApiRetries(() =>
          firstSeqAboveEpoch(client, options.stream, meta.epoch, firstSeq, lastSeq),
        );
  await restoreRange(client, options, fs, assembler, result, from, lastSeq);
  result.databaseId = assembler.database ?? null;
  result.incompleteTail = result.stoppedBy === null && assembler.inEpoch;
  return checkConsistent(result, meta);
}

/** A result before anything is restored. */
function emptyRestoreResult(options: RestoreOptions): RestoreResult {
  return {
    databaseId: options.databaseId ?? null,
    epochsRestored: 0,
    lastEpoch: null,
    bytesRestored: 0,
    snapshot: null,
    messagesBeforeSnapshot: 0,
    pageSize: null,
    duplicateCount: 0,
    duplicates: [],
    lastStreamSeq: 0,
    stoppedBy: null,
    incompleteTail: false,
  };
}

/** Installs the base snapshot `meta` as the database file and store header, and records it in `result`. */
async function installBaseSnapshot(
  client: ReplicaClient,
  options: RestoreOptions,
  fs: WalFileSystem,
  meta: SnapshotMeta,
  result: RestoreResult,
): Promise<void> {
  const replica = await ReplicaStore.open(options.dbPath, { fs });
  try {
    await replica.installSnapshot(
      {
        epoch: meta.epoch,
        pageSize: meta.pageSize,
        dbSizePages: meta.dbSizePages,
        commitSeq: meta.commitSeq,
        consistentEpoch: meta.consistentEpoch,
      },
      (write) => downloadSnapshotFrom(client, options.stream, meta, write),
    );
  } finally {
    await replica.close({ flush: false });
  }
  result.snapshot = {
    epoch: meta.epoch,
    bytes: meta.bytes,
    dbSizePages: meta.dbSizePages,
    pageSize: meta.pageSize,
  };
  result.databaseId = meta.databaseId;
  result.lastEpoch = meta.epoch;
  result.pageSize = meta.pageSize;
}

/**
 * Reads stream messages `from`..`lastSeq` through the assembler, writing each
 * verified epoch up to `untilEpoch`; the first gap or bad epoch ends it as
 * `result.stoppedBy`.
 */
async function restoreRange(
  client: ReplicaClient,
  options: RestoreOptions,
  fs: WalFileSystem,
  assembler: EpochAssembler,
  result: RestoreResult,
  from: number,
  lastSeq: number,
): Promise<void> {
  const until = options.untilEpoch;
  try {
    for await (const message of client.readRange(options.stream, from, lastSeq)) {
      result.lastStreamSeq = message.seq;
      options.onProgress?.({ streamSeq: message.seq, fromSeq: from, lastSeq });
      const event = assembler.push(message);
      if (event.kind === 'beforeBase') {
        result.messagesBeforeSnapshot += 1;
      } else if (event.kind === 'duplicate') {
        result.duplicateCount += 1;
        if (result.duplicates.length < duplicatesListedMax) result.duplicates.push(event.duplicate);
      } else if (event.kind === 'epoch') {
        const verified = event.epoch;
        if (until !== undefined && verified.epoch > until) break;
        await writeRestoredEpoch(options, fs, verified, result);
        if (until !== undefined && verified.epoch >= until) break;
      }
    }
  } catch (error) {
    if (!(error instanceof ReplicaVerificationError)) throw error;
    result.stoppedBy = error;
  }
}

/** Writes one verified epoch as a durable segment and counts it in `result`. */
async function writeRestoredEpoch(
  options: RestoreOptions,
  fs: WalFileSystem,
  verified: VerifiedEpoch,
  result: RestoreResult,
): Promise<void> {
  // Epochs the stream jumps over never arrive: not a gap in the copy.
  await recordShippedJump(options.dbPath, verified.prevEpoch, verified.epoch, verified.segment, {
    fs,
  });
  await writeSegmentFile(options.dbPath, verified.epoch, [verified.segment], {
    fsync: options.fsync ?? 'full',
    fs,
  });
  result.epochsRestored += 1;
  result.lastEpoch = verified.epoch;
  result.pageSize ??= pageSizeOf(verified.segment);
  result.bytesRestored += verified.segment.length;
}

/** The page size a segment's first committed page image shows, when it is a valid one. */
function pageSizeOf(segment: Uint8Array): number | null {
  for (const record of decodeSegment(segment, { copyImages: false }).records) {
    if (record.endSeq === null || record.pageId === STORE_META_PAGE_ID) continue;
    try {
      validatePageSize(record.afterImage.length);
      return record.afterImage.length;
    } catch {
      return null;
    }
  }
  return null;
}

/**
 * A snapshot whose image may hold pages newer than its epoch is exact only
 * once the epochs up to its consistent epoch are applied on top: a restore
 * that did not reach it says so.
 */
function checkConsistent(result: RestoreResult, meta: SnapshotMeta | null): RestoreResult {
  if (meta === null || result.stoppedBy !== null) return result;
  const reached = result.lastEpoch ?? meta.epoch;
  if (reached >= meta.consistentEpoch) return result;
  result.stoppedBy = new ReplicaVerificationError(
    ReplicaErrorCode.snapshot,
    `the stream ends at epoch ${reached}, before epoch ${meta.consistentEpoch}: snapshot ${meta.name} may hold pages up to that epoch, so the restored database is not exact yet`,
    { epoch: meta.consistentEpoch, streamSeq: result.lastStreamSeq },
  );
  return result;
}
