/**
 * The control plane's result and statistics types. The types of the
 * calls the engine makes (`StageBatchInput`, `PrepareEpochInput`,
 * `PreparedEpochWrite`, `SealPointInfo`) are the engine's
 * (`engine/control-hooks.ts`), defined once there.
 */
import type { PreparedEpochWrite } from '../engine/control-hooks.js';
import type { CommitCertificate } from './certificate.js';
import type { ShadowOutcome } from './shadow.js';

/** What to write for an epoch, and whether it may be acknowledged. */
export interface PreparedEpoch extends PreparedEpochWrite {
  epoch: bigint;
  certificate: CommitCertificate | null;
  shadow: ShadowOutcome | null;
  /**
   * True when the parallel result diverged and `chunks` are the conservative
   * result instead (the diverged bytes are never written or acknowledged).
   */
  substituted: boolean;
}

/** Counters and state for `stats()`. */
export interface ControlPlaneStats {
  mode: string;
  laneCount: number;
  laneBudget: number;
  /** The controller's lane byte budget; `null` without a controller. */
  laneByteBudget: number | null;
  fallbackActive: boolean;
  /** Seed name of the active reason (`none` when inactive). */
  fallbackReason: string;
  fallbackCounts: Record<string, number>;
  fallbackClears: number;
  batchesStaged: number;
  shadow: { compared: number; clean: number; diverged: number; substituted: number };
  certificates: { issued: number; lastEpoch: bigint | null; lastCrc32c: number | null };
  decisions: { total: number; byAction: Record<string, number> };
}
