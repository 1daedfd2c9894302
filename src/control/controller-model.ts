/**
 * The sealing controller's vocabulary: its actions, the evidence it decides
 * on, the loss model's tunables and their measured defaults, and the shape of
 * a decision and of a lane-budget change. The model itself is in
 * `decide.ts`; the state kept between decisions in `controller.ts`.
 */

import type { FallbackReason } from './surface.js';
import type { DecisionRecord } from './trace.js';

/** The controller's actions (docs/design.md#sealing-controller). */
export type DecisionAction =
  | 'keepCurrent'
  | 'sealEpochNow'
  | 'increaseLaneBudget'
  | 'decreaseLaneBudget'
  | 'forceConservative';

/**
 * Every action, in tie-break order (earlier wins an exact tie). `keepCurrent`
 * first: when sealing early gains nothing (no arrivals expected while the
 * disk is busy), doing nothing costs no extra epoch and no extra fsync.
 */
export const DECISION_ACTIONS: readonly DecisionAction[] = [
  'keepCurrent',
  'sealEpochNow',
  'increaseLaneBudget',
  'decreaseLaneBudget',
  'forceConservative',
];

/** Policy identity written into decision records. */
export const CONTROLLER_POLICY_ID = 'expected_loss_seal';
export const CONTROLLER_POLICY_VERSION = '1';

/** Measured evidence at one decision point. Times in ms (wall) or µs (latencies). */
export interface ControllerEvidence {
  nowMs: number;
  /** EWMA of segment write + fsync latency; `null` before the first sample. */
  fsyncEwmaMicros: number | null;
  /** Fsync samples taken so far (confidence grows with them). */
  fsyncSamples: number;
  /** When the last fsync sample completed; `null` if none yet. */
  lastFsyncAtMs: number | null;
  /** Commit arrival rate (EWMA), per second. */
  arrivalRatePerSec: number;
  /** Commits waiting in the open (unsealed) epoch. */
  pendingCommits: number;
  /** Bytes in the open epoch. */
  epochBytes: number;
  /** Age of the oldest commit waiting in the open epoch; 0 when none. */
  oldestPendingAgeMs: number;
  /** When the segment write + sync now in flight started; `null` when the disk is idle. */
  syncInFlightSinceMs: number | null;
  /** Frames staged and not yet flushed. */
  backlogFrames: number;
  /** Lane overflow events since the previous decision. */
  overflowEvents: number;
  /** Appends that found their lane busy since the previous decision. */
  contentionEvents: number;
  /** Time since the previous decision (≥ 0). */
  intervalMs: number;
  /**
   * Lanes that received appends within the averaging window (and since the
   * previous decision): decisions come every fraction of a millisecond, far
   * too often for every lane of a busy log to see a commit in between. The
   * whole budget until the controller has watched for one window.
   */
  activeLanes: number;
  laneBudget: number;
  laneBudgetMax: number;
  /**
   * Bytes a lane's active buffer may hold before appends overflow (the lane
   * byte budget); absent when the controller does not manage it.
   */
  laneByteBudget?: number;
  /** Least lane byte budget (the one the controller started from). */
  laneByteBudgetMin?: number;
  /** Most lane byte budget: the engine's lane capacity (`bufferCapacityBytes`). */
  laneByteBudgetMax?: number;
  /** Open-epoch bytes per active lane at this decision point. */
  laneFillBytes?: number;
  /**
   * Largest open-epoch bytes per active lane seen at decision points over
   * the last one to two `laneFillWindowMs` (the current point included).
   */
  laneFillPeakBytes?: number;
  /**
   * False within one averaging window of the last lane added to the budget:
   * the new lane has not had time to carry commits, so it must not count as
   * idle (no lane is removed then). Absent: true.
   */
  laneCountSettled?: boolean;
  /**
   * The engine seals the open epoch at this point whatever the decision
   * (its own seal on an idle disk): `keepCurrent` is not offered, the seal
   * guards are moot, and the lane-budget actions are scored as sealing plus
   * their effect. Absent: false.
   */
  sealingAnyway?: boolean;
  /** The log is on the conservative path already. */
  fallbackActive: boolean;
}

/** Tunables of the loss model and its guards (all named with units). */
export interface ControllerPolicy {
  /** Pending work with no fsync sample for this long → `controller_evidence_lost`. */
  staleEvidenceMs: number;
  /** A commit never waits longer than this for its epoch to be sealed (guard). */
  maxFlushDelayMs: number;
  /** Seal when the open epoch holds this many bytes (guard). */
  epochByteCap: number;
  /** Fsync latency assumed before the first sample. */
  priorFsyncMicros: number;
  /** Write bandwidth for W(b). */
  bandwidthBytesPerMicro: number;
  /** How long `keepCurrent` defers when the disk is idle (the next decision point). */
  idleTickMicros: number;
  /** Latency one contention event costs its writer. */
  contentionCostMicros: number;
  /** Per-lane flush overhead per epoch (begin/complete, one more chunk). */
  laneCostMicros: number;
  /** Cost of one overflow event (copy to the overflow list, latch risk). */
  overflowCostMicros: number;
  /**
   * Cost of one append that found its lane buffer full, for the lane byte
   * budget: the batch is copied to a fresh allocation, copied again for the
   * write, and garbage collected.
   */
  laneFullCostMicros: number;
  /** Lane byte budget the controller starts from and never goes below (clamped to the lane capacity). */
  laneByteBudgetStartBytes: number;
  /**
   * The fullest lane's peak is kept over one to two of these windows: the
   * byte budget grows at the first full lane but shrinks only after this
   * long of small epochs (memory can wait; a regrowth costs overflow copies).
   */
  laneFillWindowMs: number;
  /** Extra cost per commit of encoding on the owner thread in `conservative`. */
  serializationCostMicros: number;
  /**
   * Fixed cost of latching the conservative path: it holds until a clean-state
   * transition, far longer than one epoch, so one decision must not take it lightly.
   */
  conservativeSwitchCostMicros: number;
}

/** Defaults measured on the project machine (append+fdatasync ≈ 0.2–0.6 ms, ≈ 330 MB/s). */
export const controllerPolicyDefault: Readonly<ControllerPolicy> = Object.freeze({
  staleEvidenceMs: 2_000,
  maxFlushDelayMs: 10,
  epochByteCap: 8 * 1024 * 1024,
  priorFsyncMicros: 500,
  bandwidthBytesPerMicro: 330,
  idleTickMicros: 200,
  contentionCostMicros: 5,
  laneCostMicros: 20,
  overflowCostMicros: 2_000,
  // Measured: 64 committers x 16-page commits ran 1.15-1.75x slower with
  // 1 MiB lanes than with 4 MiB lanes, ≈ 50 µs per overflowed 64 KiB commit.
  laneFullCostMicros: 50,
  laneByteBudgetStartBytes: 4 * 1024 * 1024,
  laneFillWindowMs: 500,
  serializationCostMicros: 3,
  conservativeSwitchCostMicros: 5_000,
});

/** One decision: the action, its record, and what the engine must do beyond the action. */
export interface ControllerDecision {
  action: DecisionAction;
  record: DecisionRecord;
  /** Expected loss of every action; `null` where the action does not apply. */
  lossesMicros: Record<DecisionAction, number | null>;
  /** With `forceConservative`: the fallback reason to latch. */
  fallbackReason: FallbackReason | null;
  /** A hard guard that forced the action (`maxFlushDelay`, `epochByteCap`, `staleEvidence`), else `null`. */
  guard: string | null;
  /**
   * What a lane-budget action moves: `lanes` (the lanes writers are spread
   * over) or `bytes` (the lane byte budget); `null` for other actions.
   */
  budgetDimension: LaneBudgetDimension | null;
}

/** What a lane-budget action moves. */
export type LaneBudgetDimension = 'lanes' | 'bytes';

/** A lane-budget change the controller applied (kept by {@link SealController.budgetChanges}). */
export interface LaneBudgetChange {
  record: DecisionRecord;
  dimension: LaneBudgetDimension;
  lanesBefore: number;
  lanesAfter: number;
  /** `null` when the controller does not manage the lane byte budget. */
  bytesBefore: number | null;
  bytesAfter: number | null;
  /** The open epoch at the decision, when the engine reported it. */
  epoch: bigint | null;
  atMs: number;
}

/** The lane byte budget doubles on an increase and halves on a decrease. */
export const LANE_BYTE_BUDGET_STEP = 2;
/**
 * The byte budget shrinks only while the fullest lane's open epoch stayed
 * below budget / this for a whole window: a halved budget then still holds
 * twice the peak, so a shrink never causes the contention that would regrow it.
 */
export const LANE_FILL_SHRINK_DIVISOR = 4;
/** Budget changes kept for inspection (oldest dropped first). */
export const budgetChangesKeptMax = 256;
