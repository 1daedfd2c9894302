/**
 * Small JSON files replication keeps next to the database, written with the
 * same durable protocol as segments (temp name, write, fdatasync, rename,
 * directory fsync) so a crash leaves the old or the new file, never a torn one:
 *
 * - `<db>-pwal-replication.json`: the database id the replicator ships under
 *   (created once, durably), its stream and subject, and the last replicated
 *   watermark it saw acknowledged (informational; `pwal inspect` shows it).
 * - `<db>-pwal-follow.json`: a follower's durable position (last applied
 *   epoch, stream sequence and certificate), from which it resumes.
 */
import { nodeFileSystem, type WalFileSystem } from '../storage/fs.js';
import { writeFileDurably } from '../storage/small-file.js';
import { ReplicationError, ReplicationErrorCode } from './errors.js';

/** Largest state file read back (they hold a few hundred bytes). */
export const stateFileBytesMax = 64 * 1024;

/** Path of the replicator's state file of a database. */
export function replicationStatePath(dbPath: string): string {
  return `${dbPath}-pwal-replication.json`;
}

/** Path of a follower's position file. */
export function followPositionPath(dbPath: string): string {
  return `${dbPath}-pwal-follow.json`;
}

/** What the replicator records about a database (see {@link replicationStatePath}). */
export interface ReplicationState {
  databaseId: string;
  stream: string;
  subject: string;
  /** Highest epoch acknowledged by the cluster when the file was written (`null`: none). */
  replicatedEpoch: bigint | null;
  /** Stream sequence of the last acknowledged message. */
  streamSeq: number;
  /** ISO time of the write. */
  updatedAt: string;
}

/** A follower's durable position (see {@link followPositionPath}). */
export interface FollowPosition {
  databaseId: string;
  stream: string;
  /** Last epoch written to the replica (`null`: none yet). */
  epoch: bigint | null;
  /** Stream sequence of the last message of that epoch (0 = none). */
  streamSeq: number;
  /** Certificate of the last certified epoch, base64 (chain anchor), or null. */
  certificate: { epoch: bigint; bytes: string } | null;
  /**
   * True when `epoch` came from a snapshot, not from the stream: the next
   * epoch may follow any epoch at or below it (see the assembler's base).
   */
  base?: boolean;
  /**
   * Set while the replica holds a snapshot whose pages may be newer than its
   * epoch: reads wait until this epoch is applied.
   */
  consistentEpoch?: bigint | null;
  updatedAt: string;
}

async function readJson(path: string, fs: WalFileSystem): Promise<Record<string, unknown> | null> {
  let bytes: Uint8Array;
  try {
    const stat = await fs.stat(path);
    if (stat.size > stateFileBytesMax) throw new Error(`${stat.size} bytes is too large`);
    bytes = await fs.readFile(path);
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT') return null;
    throw new ReplicationError(
      ReplicationErrorCode.position,
      `cannot read ${path}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  try {
    const parsed: unknown = JSON.parse(new TextDecoder().decode(bytes));
    if (typeof parsed !== 'object' || parsed === null) throw new Error('not an object');
    return parsed as Record<string, unknown>;
  } catch (error) {
    throw new ReplicationError(
      ReplicationErrorCode.position,
      `${path} is not valid JSON: ${(error as Error).message}`,
      { cause: error },
    );
  }
}

function str(obj: Record<string, unknown>, key: string, path: string): string {
  const value = obj[key];
  if (typeof value !== 'string') {
    throw new ReplicationError(ReplicationErrorCode.position, `${path}: field ${key} missing`);
  }
  return value;
}

function u64(obj: Record<string, unknown>, key: string, path: string): bigint {
  const text = str(obj, key, path);
  if (!/^[0-9]{1,20}$/.test(text)) {
    throw new ReplicationError(ReplicationErrorCode.position, `${path}: field ${key} is not a u64`);
  }
  return BigInt(text);
}

function u64OrNull(obj: Record<string, unknown>, key: string, path: string): bigint | null {
  return obj[key] === null ? null : u64(obj, key, path);
}

function seqOf(obj: Record<string, unknown>, key: string, path: string): number {
  const value = obj[key];
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new ReplicationError(ReplicationErrorCode.position, `${path}: field ${key} invalid`);
  }
  return value;
}

/** Reads a database's replication state, or `null` when replication never ran there. */
export async function readReplicationState(
  dbPath: string,
  fs: WalFileSystem = nodeFileSystem,
): Promise<ReplicationState | null> {
  const path = replicationStatePath(dbPath);
  const obj = await readJson(path, fs);
  if (obj === null) return null;
  return {
    databaseId: str(obj, 'databaseId', path),
    stream: str(obj, 'stream', path),
    subject: str(obj, 'subject', path),
    replicatedEpoch: u64OrNull(obj, 'replicatedEpoch', path),
    streamSeq: seqOf(obj, 'streamSeq', path),
    updatedAt: str(obj, 'updatedAt', path),
  };
}

/** Writes a database's replication state durably. */
export async function writeReplicationState(
  dbPath: string,
  state: ReplicationState,
  fs: WalFileSystem = nodeFileSystem,
): Promise<void> {
  const text = JSON.stringify(
    { ...state, replicatedEpoch: state.replicatedEpoch?.toString() ?? null },
    null,
    2,
  );
  await writeFileDurably(replicationStatePath(dbPath), new TextEncoder().encode(`${text}\n`), fs);
}

/** Reads a follower's position, or `null` when it never applied anything. */
export async function readFollowPosition(
  dbPath: string,
  fs: WalFileSystem = nodeFileSystem,
): Promise<FollowPosition | null> {
  const path = followPositionPath(dbPath);
  const obj = await readJson(path, fs);
  if (obj === null) return null;
  const cert = obj.certificate;
  let certificate: FollowPosition['certificate'] = null;
  if (cert !== null && cert !== undefined) {
    if (typeof cert !== 'object') {
      throw new ReplicationError(ReplicationErrorCode.position, `${path}: certificate invalid`);
    }
    const c = cert as Record<string, unknown>;
    certificate = { epoch: u64(c, 'epoch', path), bytes: str(c, 'bytes', path) };
  }
  return {
    databaseId: str(obj, 'databaseId', path),
    stream: str(obj, 'stream', path),
    epoch: u64OrNull(obj, 'epoch', path),
    streamSeq: seqOf(obj, 'streamSeq', path),
    certificate,
    base: obj.base === true,
    consistentEpoch:
      obj.consistentEpoch === undefined ? null : u64OrNull(obj, 'consistentEpoch', path),
    updatedAt: str(obj, 'updatedAt', path),
  };
}

/** Writes a follower's position durably. */
export async function writeFollowPosition(
  dbPath: string,
  position: FollowPosition,
  fs: WalFileSystem = nodeFileSystem,
): Promise<void> {
  const text = JSON.stringify(
    {
      ...position,
      epoch: position.epoch?.toString() ?? null,
      consistentEpoch: position.consistentEpoch?.toString() ?? null,
      certificate:
        position.certificate === null
          ? null
          : { epoch: position.certificate.epoch.toString(), bytes: position.certificate.bytes },
    },
    null,
    2,
  );
  await writeFileDurably(followPositionPath(dbPath), new TextEncoder().encode(`${text}\n`), fs);
}
