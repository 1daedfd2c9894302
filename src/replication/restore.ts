/**
 * Point-in-time restore: rebuilds a database's segment files from its
 * JetStream stream into an empty location, verifying every chunk and epoch
 * (see {@link EpochAssembler}) and stopping at the first gap or bad epoch, or
 * after `untilEpoch`. Every restored segment is written with the durable
 * segment protocol, so the result opens like any local log.
 */
import * as nodePath from 'node:path';
import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { nodeFileSystem, type WalFileSystem } from '../storage/fs.js';
import { type FsyncPolicy, listSegments, writeSegmentFile } from '../storage/segment-files.js';
import { type CertificateVerifier, type DuplicateMessage, EpochAssembler } from './assembler.js';
import { verifyShippedCertificate } from './certificates.js';
import { ReplicationError, ReplicationErrorCode, ReplicaVerificationError } from './errors.js';
import {
  connectBounded,
  DEFAULT_API_TIMEOUT_MS,
  managerFor,
  streamInfoOrNull,
  withApiRetries,
} from './nats.js';
import { readStreamRange } from './stream-reader.js';

/** Duplicates listed individually in a result (the count is always exact). */
export const DUPLICATES_LISTED_MAX = 100;

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
  /** Segment write durability (default `full`). */
  fsync?: FsyncPolicy;
  /** Certificate check (default {@link verifyShippedCertificate}); `null` disables it. */
  verifyCertificate?: CertificateVerifier | null;
  /** Wait for one connection attempt, ms. */
  connectTimeoutMs?: number;
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
  /** Messages skipped as exact duplicates of verified ones. */
  duplicateCount: number;
  /** The first {@link DUPLICATES_LISTED_MAX} of them. */
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
  await fs.mkdir(nodePath.dirname(options.dbPath), { recursive: true });
  const nc =
    options.connection ??
    (await connectBounded(options.servers ?? [], {
      connectTimeoutMs: options.connectTimeoutMs,
      name: 'pwal-restore',
    }));
  try {
    const jsm = await withApiRetries(() =>
      managerFor(nc, options.apiTimeoutMs ?? DEFAULT_API_TIMEOUT_MS),
    );
    return await restoreWith(jsm, options, fs);
  } finally {
    if (options.connection === undefined) await nc.close();
  }
}

async function restoreWith(
  jsm: JetStreamManager,
  options: RestoreOptions,
  fs: WalFileSystem,
): Promise<RestoreResult> {
  const info = await withApiRetries(() => streamInfoOrNull(jsm, options.stream));
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
  const assembler = new EpochAssembler({
    databaseId: options.databaseId,
    verifyCertificate: verify,
  });
  const result: RestoreResult = {
    databaseId: options.databaseId ?? null,
    epochsRestored: 0,
    lastEpoch: null,
    bytesRestored: 0,
    duplicateCount: 0,
    duplicates: [],
    lastStreamSeq: 0,
    stoppedBy: null,
    incompleteTail: false,
  };
  const until = options.untilEpoch;
  const { first_seq: firstSeq, last_seq: lastSeq, messages } = info.state;
  if (messages === 0) return result;
  try {
    for await (const message of readStreamRange(jsm, options.stream, firstSeq, lastSeq)) {
      result.lastStreamSeq = message.seq;
      const event = assembler.push(message);
      if (event.kind === 'duplicate') {
        result.duplicateCount += 1;
        if (result.duplicates.length < DUPLICATES_LISTED_MAX)
          result.duplicates.push(event.duplicate);
      } else if (event.kind === 'epoch') {
        const verified = event.epoch;
        if (until !== undefined && verified.epoch > until) break;
        await writeSegmentFile(options.dbPath, verified.epoch, [verified.segment], {
          fsync: options.fsync ?? 'full',
          fs,
        });
        result.epochsRestored += 1;
        result.lastEpoch = verified.epoch;
        result.bytesRestored += verified.segment.length;
        if (until !== undefined && verified.epoch >= until) break;
      }
    }
  } catch (error) {
    if (!(error instanceof ReplicaVerificationError)) throw error;
    result.stoppedBy = error;
  }
  result.databaseId = assembler.database ?? null;
  result.incompleteTail = result.stoppedBy === null && assembler.inEpoch;
  return result;
}
