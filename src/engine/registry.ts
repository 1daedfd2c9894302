/**
 * The process-wide registry: one {@link ParallelWal} per database path
 * (resolved to an absolute path), as the seed's
 * `parallel_wal_coordinator_for_path`. Opening is asynchronous, so concurrent
 * callers share one pending open.
 */
import * as nodePath from 'node:path';
import { WalArgumentError } from '../errors.js';
import { ParallelWal, type ParallelWalConfig } from './wal.js';

const coordinators = new Map<string, Promise<ParallelWal>>();

function keyOf(dbPath: string): string {
  if (typeof dbPath !== 'string' || dbPath.length === 0) {
    throw new WalArgumentError('dbPath must be a non-empty string');
  }
  return nodePath.resolve(dbPath);
}

/**
 * The coordinator of `dbPath`, opened with `config` on first use. Later calls
 * (and concurrent ones) get the same instance; their `config` is ignored. A
 * failed open is not cached: the next call tries again.
 */
export function parallelWalForPath(
  dbPath: string,
  config?: ParallelWalConfig,
): Promise<ParallelWal> {
  let key: string;
  try {
    key = keyOf(dbPath);
  } catch (error) {
    return Promise.reject(error);
  }
  const existing = coordinators.get(key);
  if (existing !== undefined) return existing;
  const opening = ParallelWal.open(dbPath, config);
  coordinators.set(key, opening);
  opening.catch(() => {
    if (coordinators.get(key) === opening) coordinators.delete(key);
  });
  return opening;
}

/**
 * Removes the coordinator of `dbPath` from the registry, then — outside the
 * registry, so other paths are never held up — stops and closes it (flushing
 * what it holds). Does nothing when there is none.
 */
export async function removeParallelWal(dbPath: string): Promise<void> {
  const key = keyOf(dbPath);
  const entry = coordinators.get(key);
  if (entry === undefined) return;
  coordinators.delete(key);
  let wal: ParallelWal;
  try {
    wal = await entry;
  } catch {
    return; // its open failed: nothing to stop
  }
  await wal.close();
}
