/**
 * What a base snapshot is, as stored: the names of its bucket and objects,
 * and its metadata (`pwal-*` keys of the object, see {@link SnapshotMeta})
 * with the checks that make a listed object a snapshot a restore may use.
 * No I/O; the operations are in `snapshot.ts`.
 */
import { WalArgumentError } from '../errors.js';
import { u32Max, u64Max } from '../format/types.js';
import { pageSizeBytesMax, pageSizeBytesMin } from '../store/header.js';
import type { ObjectEntry } from './client.js';
import { ReplicaErrorCode, ReplicaVerificationError } from './errors.js';

/** Appended to the stream name to name its snapshot bucket. */
export const SNAPSHOT_BUCKET_SUFFIX = '_snapshots';
/** Longest bucket name: JetStream names are at most 255 characters, less the `OBJ_` prefix. */
export const snapshotBucketNameCharsMax = 251;
/** Largest commit certificate carried in a snapshot's metadata, bytes. */
export const snapshotCertificateBytesMax = 16 * 1024;
/** Digits of the zero-padded epoch in an object name (u64 max has 20). */
export const SNAPSHOT_EPOCH_DIGITS = 20;
/** Value of the `pwal-snapshot` metadata key: the metadata layout version. */
export const SNAPSHOT_FORMAT_VERSION = '1';

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

export function snapshotError(name: string, reason: string): ReplicaVerificationError {
  return new ReplicaVerificationError(ReplicaErrorCode.snapshot, `snapshot ${name}: ${reason}`);
}

export function checkDatabaseId(databaseId: string): void {
  if (typeof databaseId !== 'string' || !DATABASE_ID_PATTERN.test(databaseId)) {
    throw new WalArgumentError(
      `invalid database id ${JSON.stringify(databaseId)}: expected 1..64 characters of [A-Za-z0-9_-]`,
    );
  }
}

export function isPageSize(value: unknown): value is number {
  return (
    typeof value === 'number' &&
    Number.isInteger(value) &&
    value >= pageSizeBytesMin &&
    value <= pageSizeBytesMax &&
    (value & (value - 1)) === 0
  );
}

export function isPageCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= u32Max;
}

export function encodeMeta(meta: SnapshotMeta): Record<string, string> {
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

/** A parsed snapshot object, or why it is not one. */
export type Parsed = { ok: true; meta: SnapshotMeta } | { ok: false; reason: string };

/** A live object's snapshot metadata, checked for consistency with itself and the object. */
export function parseSnapshotObject(object: ObjectEntry): Parsed {
  const fail = (reason: string): Parsed => ({ ok: false, reason });
  if (object.link === true) return fail('a link, not a snapshot');
  const md = object.metadata;
  if (typeof md !== 'object' || md === null) return fail('no pwal snapshot metadata');
  const get = (key: string): string | undefined => {
    const value = (md as Record<string, unknown>)[key];
    return typeof value === 'string' ? value : undefined;
  };
  const version = get(Key.version);
  if (version === undefined) return fail('no pwal snapshot metadata');
  if (version !== SNAPSHOT_FORMAT_VERSION) return fail(`unsupported snapshot format ${version}`);
  const databaseId = get(Key.database) ?? '';
  if (!DATABASE_ID_PATTERN.test(databaseId)) return fail(`invalid ${Key.database} ${databaseId}`);
  const epoch = u64Of(get(Key.epoch));
  const consistentEpoch = u64Of(get(Key.consistentEpoch));
  const commitSeq = u64Of(get(Key.commitSeq));
  if (epoch === null) return fail(`invalid ${Key.epoch} ${get(Key.epoch)}`);
  if (consistentEpoch === null || consistentEpoch < epoch) {
    return fail(`invalid ${Key.consistentEpoch} ${get(Key.consistentEpoch)}`);
  }
  if (commitSeq === null) return fail(`invalid ${Key.commitSeq} ${get(Key.commitSeq)}`);
  const geometry = parseGeometry(get, object.size);
  if (!geometry.ok) return geometry;
  const { pageSize, dbSizePages, bytes } = geometry.value;
  const sha256 = get(Key.sha256) ?? '';
  if (!SHA256_HEX.test(sha256)) return fail(`invalid ${Key.sha256} ${sha256}`);
  const certificate = parseCertificate(get(Key.certificate));
  if (!certificate.ok) return certificate;
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
      certificate: certificate.value,
      createdAt,
    },
  };
}

/** One checked metadata field, or why it is invalid. */
type Checked<T> = { ok: true; value: T } | { ok: false; reason: string };

/** The u64 a metadata value spells in decimal, or `null` when it is absent or not one. */
function u64Of(text: string | undefined): bigint | null {
  if (text === undefined || !U64_TEXT.test(text)) return null;
  const value = BigInt(text);
  return value <= u64Max ? value : null;
}

/** Page size, page count and byte length, checked against each other and the object's size. */
function parseGeometry(
  get: (key: string) => string | undefined,
  objectSize: unknown,
): Checked<{ pageSize: number; dbSizePages: number; bytes: number }> {
  const fail = (reason: string): Checked<never> => ({ ok: false, reason });
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
  if (objectSize !== bytes)
    return fail(`the object holds ${String(objectSize)} bytes, not ${bytes}`);
  return { ok: true, value: { pageSize, dbSizePages, bytes } };
}

/** The base64 certificate of a snapshot (`null` when absent), bounded by {@link snapshotCertificateBytesMax}. */
function parseCertificate(text: string | undefined): Checked<Uint8Array | null> {
  if (text === undefined) return { ok: true, value: null };
  if (!BASE64.test(text) || text.length % 4 !== 0) {
    return { ok: false, reason: `invalid ${Key.certificate} (not base64)` };
  }
  const certificate = new Uint8Array(Buffer.from(text, 'base64'));
  if (certificate.length > snapshotCertificateBytesMax) {
    return {
      ok: false,
      reason: `${Key.certificate} exceeds ${snapshotCertificateBytesMax} bytes`,
    };
  }
  return { ok: true, value: certificate };
}

/** The first field (other than `createdAt`) in which two snapshot metas differ, or `null`. */
export function differingField(a: SnapshotMeta, b: SnapshotMeta): string | null {
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
export function storeDigestHex(digest: string): string {
  if (!digest.startsWith(DIGEST_PREFIX)) return '';
  const raw = Buffer.from(digest.slice(DIGEST_PREFIX.length).replace(/=+$/, ''), 'base64url');
  return raw.length === 32 ? raw.toString('hex') : '';
}

export function compareBigint(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
