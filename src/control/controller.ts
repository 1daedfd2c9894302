/**
 * The sealing controller's state between decisions (docs/design.md#sealing-controller):
 * fsync and arrival-rate averages, overflow and contention counters, active
 * lanes, and the lane budget (lanes and bytes). At each seal decision point it
 * hands the evidence to {@link decide} (decide.ts, the loss model) and applies
 * a lane-budget change itself.
 */

import type { SealPointInfo } from '../engine/control-hooks.js';
import {
  budgetChangesKeptMax,
  type ControllerDecision,
  type ControllerEvidence,
  type ControllerPolicy,
  controllerPolicyDefault,
  LANE_BYTE_BUDGET_STEP,
  type LaneBudgetChange,
} from './controller-model.js';
import { decide } from './decide.js';

export * from './controller-model.js';
export { decide, evidenceAgeMs } from './decide.js';

/** Options of {@link SealController}. */
export interface SealControllerOptions {
  policy?: Partial<ControllerPolicy>;
  /** Most lanes the controller may keep active (see `laneBudgetMax` of the control surface). */
  laneBudgetMax: number;
  /** Starting lane budget; default `laneBudgetMax`. */
  initialLaneBudget?: number;
  /**
   * Manage the lane byte budget too (`policy.laneByteBudgetStartBytes` up to
   * the lane capacity the engine reports at seal points). Default false.
   */
  laneByteBudget?: boolean;
  /** Time constant of the fsync and arrival-rate averages. Default 100 ms. */
  averagingWindowMs?: number;
  /** Receives one decision record per decision. */
  onDecision?: (decision: ControllerDecision) => void;
  /**
   * A `keepCurrent` decision stands for this long: decision points within it
   * (every commit while a write is in flight) reuse it unless a guard bound
   * is reached. Default 0.25 ms; 0 decides every time.
   */
  minDecisionIntervalMs?: number;
}

/**
 * What the engine knows about its open epoch at a decision point: the
 * engine's {@link SealPointInfo} (its contention total is counted through
 * {@link SealController.observeContention} instead), plus whether the log is
 * on the conservative path already.
 */
export type SealPointState = Omit<SealPointInfo, 'contentionTotal'> & {
  fallbackActive: boolean;
};

/**
 * Keeps the evidence between decisions — fsync latency and arrival-rate
 * averages (exponentially time-weighted), overflow and contention counters,
 * active lanes — and the lane budget, and calls {@link decide} at each seal
 * decision point.
 */
export class SealController {
  readonly policy: ControllerPolicy;
  readonly #laneBudgetMax: number;
  readonly #windowMs: number;
  readonly #onDecision: ((decision: ControllerDecision) => void) | undefined;
  #laneBudget: number;
  #fsyncEwmaMicros: number | null = null;
  #fsyncSamples = 0;
  #lastFsyncAtMs: number | null = null;
  #arrivalRatePerSec = 0;
  #commitsSinceDecision = 0;
  #overflowSinceDecision = 0;
  #contentionSinceDecision = 0;
  readonly #activeLanes = new Set<number>();
  /** When each lane last carried a commit (as of a decision), for `activeLanes`. */
  readonly #laneSeenAtMs = new Map<number, number>();
  #lastDecisionAtMs: number | null = null;
  #firstDecisionAtMs: number | null = null;
  #nextDecisionId = 1n;
  readonly #minIntervalMs: number;
  #standing: ControllerDecision | null = null;
  #standingSinceMs = 0;
  #reused = 0;
  /** The lane byte budget; `null` when not managed. */
  #laneByteBudget: number | null;
  #laneByteBudgetMin = 0;
  #laneByteBudgetMax = 0;
  /** The fullest lane's peak in the current fill window and in the one before. */
  #fillPeakBytes = 0;
  #fillPeakPreviousBytes = 0;
  #fillWindowStartMs: number | null = null;
  #laneAddedAtMs = Number.NEGATIVE_INFINITY;
  readonly #budgetChanges: LaneBudgetChange[] = [];
  #budgetChangeCount = 0;

  constructor(options: SealControllerOptions) {
    this.policy = { ...controllerPolicyDefault, ...options.policy };
    this.#laneBudgetMax = Math.max(1, options.laneBudgetMax);
    this.#laneBudget = Math.min(
      this.#laneBudgetMax,
      Math.max(1, options.initialLaneBudget ?? this.#laneBudgetMax),
    );
    this.#windowMs = options.averagingWindowMs ?? 100;
    this.#onDecision = options.onDecision;
    this.#minIntervalMs = options.minDecisionIntervalMs ?? 0.25;
    this.#laneByteBudget =
      options.laneByteBudget === true ? this.policy.laneByteBudgetStartBytes : null;
    this.#laneByteBudgetMin = this.#laneByteBudget ?? 0;
    this.#laneByteBudgetMax = this.#laneByteBudget ?? 0;
  }

  /**
   * Bytes a lane's active buffer may hold before appends overflow; `null`
   * when the controller does not manage it. Starts at
   * `policy.laneByteBudgetStartBytes` (clamped to the lane capacity once the
   * engine reports it), doubles on `increaseLaneBudget` (bytes) up to the
   * capacity, halves on `decreaseLaneBudget` (bytes) down to the start.
   */
  get laneByteBudget(): number | null {
    return this.#laneByteBudget;
  }

  /** The last lane-budget changes (at most {@link budgetChangesKeptMax}), oldest first. */
  budgetChanges(): readonly LaneBudgetChange[] {
    return this.#budgetChanges;
  }

  /** Lane-budget changes applied so far (also those no longer kept). */
  get budgetChangeCount(): number {
    return this.#budgetChangeCount;
  }

  /** The engine reported its lane capacity: the byte budget's bounds follow it. */
  #noteLaneCapacity(capacityBytes: number | undefined): void {
    if (this.#laneByteBudget === null || capacityBytes === undefined) return;
    this.#laneByteBudgetMax = capacityBytes;
    this.#laneByteBudgetMin = Math.min(this.policy.laneByteBudgetStartBytes, capacityBytes);
    this.#laneByteBudget = Math.min(
      capacityBytes,
      Math.max(this.#laneByteBudgetMin, this.#laneByteBudget),
    );
  }

  /** Tracks the fullest lane's open-epoch bytes over the last one to two fill windows. */
  #noteFill(state: SealPointState): void {
    const windowMs = this.policy.laneFillWindowMs;
    this.#fillWindowStartMs ??= state.nowMs;
    const elapsed = state.nowMs - this.#fillWindowStartMs;
    if (elapsed >= windowMs) {
      // A window with no decision point at all counts as an empty one.
      this.#fillPeakPreviousBytes = elapsed >= 2 * windowMs ? 0 : this.#fillPeakBytes;
      this.#fillPeakBytes = 0;
      this.#fillWindowStartMs = state.nowMs;
    }
    this.#fillPeakBytes = Math.max(this.#fillPeakBytes, this.#laneFill(state));
  }

  /** Open-epoch bytes per lane that carried commits since the previous decision. */
  #laneFill(state: SealPointState): number {
    return state.epochBytes / Math.max(1, this.#activeLanes.size);
  }

  /** Decision points answered by a standing `keepCurrent` decision. */
  get reusedDecisions(): number {
    return this.#reused;
  }

  /** Lanes the engine should keep active (1 ..= laneBudgetMax). */
  get laneBudget(): number {
    return this.#laneBudget;
  }

  /** Current fsync latency average (µs), or `null` before the first sample. */
  get fsyncEwmaMicros(): number | null {
    return this.#fsyncEwmaMicros;
  }

  /** A segment write + fsync of `latencyMicros` completed at `atMs`. */
  observeFsync(latencyMicros: number, atMs: number): void {
    const previous = this.#fsyncEwmaMicros;
    // Fixed weight per sample: one slow sync moves the average a quarter of the way.
    this.#fsyncEwmaMicros =
      previous === null ? latencyMicros : previous + 0.25 * (latencyMicros - previous);
    this.#fsyncSamples++;
    this.#lastFsyncAtMs = atMs;
  }

  /** `count` commits arrived on `laneId`. */
  observeCommits(count = 1, laneId?: number): void {
    this.#commitsSinceDecision += count;
    if (laneId !== undefined) this.#activeLanes.add(laneId);
  }

  /** A lane overflowed (or a batch exceeded `maxParallelCommitBytes`). */
  observeOverflow(count = 1): void {
    this.#overflowSinceDecision += count;
  }

  /** Appends that found their lane busy. */
  observeContention(count: number): void {
    this.#contentionSinceDecision += count;
  }

  /**
   * Lanes with a commit since the previous decision or within the averaging
   * window before `nowMs`. Until the controller has watched for one whole
   * window, no lane is known idle: every lane of the budget counts.
   */
  #activeLaneCount(nowMs: number): number {
    const since = this.#firstDecisionAtMs;
    if (since === null || nowMs - since < this.#windowMs) {
      return Math.max(this.#laneBudget, this.#activeLanes.size);
    }
    let count = this.#activeLanes.size;
    for (const [laneId, seenAtMs] of this.#laneSeenAtMs) {
      if (seenAtMs >= nowMs - this.#windowMs && !this.#activeLanes.has(laneId)) count++;
    }
    return count;
  }

  /** The evidence {@link decide} would see at `state` (counters since the last decision). */
  evidence(state: SealPointState): ControllerEvidence {
    const intervalMs =
      this.#lastDecisionAtMs === null ? 0 : Math.max(0, state.nowMs - this.#lastDecisionAtMs);
    let rate = this.#arrivalRatePerSec;
    if (intervalMs > 0) {
      const weight = 1 - Math.exp(-intervalMs / this.#windowMs);
      rate += weight * ((this.#commitsSinceDecision * 1000) / intervalMs - rate);
    }
    return {
      nowMs: state.nowMs,
      fsyncEwmaMicros: this.#fsyncEwmaMicros,
      fsyncSamples: this.#fsyncSamples,
      lastFsyncAtMs: this.#lastFsyncAtMs,
      arrivalRatePerSec: rate,
      pendingCommits: state.pendingCommits,
      epochBytes: state.epochBytes,
      oldestPendingAgeMs: state.oldestPendingAgeMs,
      syncInFlightSinceMs: state.syncInFlightSinceMs,
      backlogFrames: state.backlogFrames,
      overflowEvents: this.#overflowSinceDecision,
      contentionEvents: this.#contentionSinceDecision,
      intervalMs,
      activeLanes: this.#activeLaneCount(state.nowMs),
      laneBudget: this.#laneBudget,
      laneBudgetMax: this.#laneBudgetMax,
      laneCountSettled: state.nowMs - this.#laneAddedAtMs >= this.#windowMs,
      ...(state.sealing === true ? { sealingAnyway: true } : {}),
      ...this.#byteEvidence(state),
      fallbackActive: state.fallbackActive,
    };
  }

  #byteEvidence(state: SealPointState): Partial<ControllerEvidence> {
    if (this.#laneByteBudget === null) return {};
    return {
      laneByteBudget: this.#laneByteBudget,
      laneByteBudgetMin: this.#laneByteBudgetMin,
      laneByteBudgetMax: this.#laneByteBudgetMax,
      laneFillBytes: this.#laneFill(state),
      laneFillPeakBytes: Math.max(this.#fillPeakBytes, this.#fillPeakPreviousBytes),
    };
  }

  /**
   * Decides at a seal decision point: commit arrival, fsync completion or
   * ticker. Applies a lane-budget change itself; the engine carries out
   * `sealEpochNow` (seal the open epoch), and `forceConservative` (latch
   * `decision.fallbackReason`, then seal the open epoch on the serialized path).
   */
  decideAt(state: SealPointState): ControllerDecision {
    const standing = this.#standing;
    if (
      standing !== null &&
      state.nowMs - this.#standingSinceMs < this.#minIntervalMs &&
      state.oldestPendingAgeMs < this.policy.maxFlushDelayMs &&
      state.epochBytes < this.policy.epochByteCap &&
      state.sealing !== true &&
      state.fallbackActive === standing.record.fallbackActive
    ) {
      // Measured: a full decision costs ≈ 4 µs; at tens of thousands of commits/s
      // while a write is in flight, deciding at every commit cost ≈ 10% throughput.
      this.#reused++;
      return standing;
    }
    this.#firstDecisionAtMs ??= state.nowMs;
    this.#noteLaneCapacity(state.laneCapacityBytes);
    this.#noteFill(state);
    const evidence = this.evidence(state);
    const decision = decide(evidence, this.policy, this.#nextDecisionId++);
    if (evidence.intervalMs > 0 || this.#lastDecisionAtMs === null) {
      this.#arrivalRatePerSec = evidence.arrivalRatePerSec;
      this.#commitsSinceDecision = 0;
      this.#overflowSinceDecision = 0;
      this.#contentionSinceDecision = 0;
      for (const laneId of this.#activeLanes) this.#laneSeenAtMs.set(laneId, state.nowMs);
      this.#activeLanes.clear();
      for (const [laneId, seenAtMs] of this.#laneSeenAtMs) {
        if (seenAtMs < state.nowMs - this.#windowMs) this.#laneSeenAtMs.delete(laneId);
      }
      this.#lastDecisionAtMs = state.nowMs;
    }
    if (decision.budgetDimension !== null) this.#applyBudget(decision, state);
    this.#standing = decision.action === 'keepCurrent' ? decision : null;
    this.#standingSinceMs = state.nowMs;
    this.#onDecision?.(decision);
    return decision;
  }

  #applyBudget(decision: ControllerDecision, state: SealPointState): void {
    const up = decision.action === 'increaseLaneBudget';
    const lanesBefore = this.#laneBudget;
    const bytesBefore = this.#laneByteBudget;
    if (decision.budgetDimension === 'lanes') {
      if (up) this.#laneAddedAtMs = state.nowMs;
      this.#laneBudget = up
        ? Math.min(this.#laneBudgetMax, this.#laneBudget + 1)
        : Math.max(1, this.#laneBudget - 1);
    } else if (bytesBefore !== null) {
      this.#laneByteBudget = up
        ? Math.min(this.#laneByteBudgetMax, bytesBefore * LANE_BYTE_BUDGET_STEP)
        : Math.max(this.#laneByteBudgetMin, Math.floor(bytesBefore / LANE_BYTE_BUDGET_STEP));
    }
    this.#budgetChangeCount++;
    if (this.#budgetChanges.length === budgetChangesKeptMax) this.#budgetChanges.shift();
    this.#budgetChanges.push({
      record: decision.record,
      dimension: decision.budgetDimension!,
      lanesBefore,
      lanesAfter: this.#laneBudget,
      bytesBefore,
      bytesAfter: this.#laneByteBudget,
      epoch: state.openEpoch ?? null,
      atMs: state.nowMs,
    });
  }
}
