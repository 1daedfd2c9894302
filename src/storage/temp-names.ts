/**
 * The names of the log's own temporary files: which shapes it creates (and
 * so may delete), and which of them may hold an acknowledged epoch that
 * recovery adopts (`adoption.ts`).
 */
import { databaseName, TEMP_NAME_INFIX } from './segment-files.js';

/**
 * The exact shapes of the temporary names the log itself creates:
 * `<db>-wal-tmp-<16 hex epoch>-<12 hex random>` (segment-files.ts),
 * `<db>-wal-tmp-next-<12 hex random>` (the precreate sink's next file),
 * `<db>-wal-tmp-ack-<12 hex random>` (the early-acknowledgement sink's
 * pre-created files) and `<db>-wal-tmp-pool-<16 hex floor epoch>-<12 hex
 * random>` (the pool sink's reusable files). Anything else that merely
 * starts with the infix belongs to someone else.
 */
const OWNED_TEMP_SUFFIX = /^(?:[0-9a-f]{16}|next|ack|pool-[0-9a-f]{16})-[0-9a-f]{12}$/;

/**
 * The tag of temporary files written by a protocol that may acknowledge an
 * epoch before its rename (the engine's `earlyAck` sink). These and pool
 * files ({@link POOL_TEMP_TAG}) are the only ones ever adopted: the other
 * shapes are renamed before anything is acknowledged, so a leftover one
 * holds an epoch nobody was told is durable (possibly one whose commits
 * were rejected), and it is removed as before.
 */
export const EARLY_ACK_TEMP_TAG = 'ack';

/**
 * The tag of the pool sink's reusable segment files. The name carries a
 * floor epoch: the file entered the pool when every epoch below the floor
 * was already written elsewhere (or folded), so any segment below it that
 * the file still holds is a stale leftover of an earlier life, never a
 * candidate.
 */
export const POOL_TEMP_TAG = 'pool';

const ADOPTABLE_TEMP_SUFFIX = new RegExp(
  `^(?:${EARLY_ACK_TEMP_TAG}|${POOL_TEMP_TAG}-([0-9a-f]{16}))-[0-9a-f]{12}$`,
);

/** True when `name` is a temporary file the log created for `dbPath` (and may delete). */
export function isOwnedTemporaryName(dbPath: string, name: string): boolean {
  const prefix = `${databaseName(dbPath)}${TEMP_NAME_INFIX}`;
  return name.startsWith(prefix) && OWNED_TEMP_SUFFIX.test(name.slice(prefix.length));
}

/** The pool file name for `dbPath` with floor epoch `floor` and random part `random` (12 hex digits). */
export function poolFileName(dbPath: string, floor: bigint, random: string): string {
  return `${databaseName(dbPath)}${TEMP_NAME_INFIX}${POOL_TEMP_TAG}-${floor.toString(16).padStart(16, '0')}-${random}`;
}

/**
 * Whether an owned temporary file `name` of `dbPath` may hold an
 * acknowledged epoch: `null` when its shape is renamed before anything is
 * acknowledged (never adopted); else the floor epoch its name carries (a
 * pool file's), `null` floor for an early-acknowledgement file.
 */
export function adoptableShape(dbPath: string, name: string): { floor: bigint | null } | null {
  const suffix = ADOPTABLE_TEMP_SUFFIX.exec(
    name.slice(databaseName(dbPath).length + TEMP_NAME_INFIX.length),
  );
  if (suffix === null) return null;
  return { floor: suffix[1] === undefined ? null : BigInt(`0x${suffix[1]}`) };
}
