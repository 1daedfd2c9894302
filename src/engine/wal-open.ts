/**
 * Opening a {@link ParallelWal} (docs/design.md#recovery): the steps before
 * the log exists — validate the configuration, take the writer lock, adopt
 * or remove temporary files and validate every segment (`open-scan.ts`),
 * verify the certificate chain — with the lock given back if any of them
 * fails.
 */

import { WalArgumentError } from '../errors.js';
import { RecoveryGapError } from '../storage/errors.js';
import { nodeFileSystem, type WalFileSystem } from '../storage/fs.js';
import { acquireLock, type LockHandle } from '../storage/lockfile.js';
import type { EngineControl } from './control-hooks.js';
import { type OpenPlan, planOpen } from './open-scan.js';
import type { ParallelWal } from './wal.js';
import {
  type ParallelWalConfig,
  type ResolvedParallelWalConfig,
  resolveParallelWalConfig,
} from './wal-config.js';

/** Everything a {@link ParallelWal} is built from, once its log was found sound. */
export interface OpenedLog {
  dbPath: string;
  config: ResolvedParallelWalConfig;
  fs: WalFileSystem;
  /** The writer lock (`null`: `lock: false`). */
  lock: LockHandle | null;
  /** Where numbering continues, and what was adopted. */
  plan: OpenPlan;
  /** The control plane (`null`: none). */
  control: EngineControl | null;
}

/**
 * Runs the steps of {@link ParallelWal.open} that come before the log
 * exists; see there for what they guarantee.
 * @throws {WalArgumentError} for a bad path or configuration; the storage
 * layer's errors (corrupt segment, missing epoch, I/O, lock) as they come.
 */
export async function openLog(dbPath: string, config: ParallelWalConfig): Promise<OpenedLog> {
  if (typeof dbPath !== 'string' || dbPath.length === 0) {
    throw new WalArgumentError('dbPath must be a non-empty string');
  }
  const resolved = resolveParallelWalConfig(config);
  const fs = config.fs ?? nodeFileSystem;
  const lock = resolved.lock
    ? await acquireLock(dbPath, { fs, lockTimeoutMs: resolved.lockTimeoutMs })
    : null;
  try {
    const plan = await planOpen(dbPath, {
      fs,
      skipCorrupt: resolved.skipCorrupt,
      allowEpochGaps: resolved.allowEpochGaps,
      locked: lock !== null,
      firstEpoch: resolved.firstEpoch,
      firstCommitSeq: resolved.firstCommitSeq,
      ...(config.firstEpoch === undefined ? {} : { floorEpoch: resolved.firstEpoch }),
      ...(config.firstCommitSeq === undefined || resolved.firstCommitSeq === 0n
        ? {}
        : { floorCommitSeq: resolved.firstCommitSeq - 1n }),
    });
    // Certificates on: the chain on disk holds, or the open fails closed
    // (or falls back, if the control plane is told to) before any write.
    await config.controlPlane?.verifyAtOpen?.(dbPath, { fs });
    return { dbPath, config: resolved, fs, lock, plan, control: config.controlPlane ?? null };
  } catch (error) {
    // A missing epoch: the control plane latches recovery_gap (the open
    // still fails closed).
    if (error instanceof RecoveryGapError) {
      config.controlPlane?.reportFallback?.('recoveryGap', error.message);
    }
    await lock?.release().catch(() => {});
    throw error;
  }
}
