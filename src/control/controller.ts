/**
 * The sealing controller (docs/design.md#group-commit, docs/design.md#sealing-controller
 * decision records): at each seal decision point it scores every action by
 * expected loss — the commit latency (µs, summed over affected commits) the
 * action is expected to add — from measured evidence, and picks the cheapest.
 *
 * {@link decide} is a pure, deterministic function of its inputs; the
 * {@link SealController} class around it keeps the evidence (EWMAs, counters)
 * and the lane budget between decisions.
 *
 * Model (one serial disk; F = fsync EWMA, W(k) = write time of k commits'
 * bytes at the measured bandwidth, λ = arrivals per µs, n = commits waiting
 * in the open epoch, D = time until the disk is free). Both schedules are
 * scored on the same commits: the n waiting ones and the R = λ·s "riders"
 * expected before the keep schedule would seal (s = D while a write is in
 * flight, one tick when the disk is idle):
 *
 *   keepCurrent:  seal at s; all finish at Ek = max(s, D) + F + W(n + R)
 *                 loss = n·Ek + R·(Ek − s/2)
 *   sealEpochNow: the n finish at E1 = D + F + W(n); the riders are sealed
 *                 when the disk frees and finish at E2 = E1 + F + W(R)
 *                 loss = n·E1 + R·(E2 − s/2)
 *
 * With the disk busy, seal − keep = λ·D·(F − W(n)): keep filling while the
 * fsync costs more than writing the open epoch, seal early (pipelining) once
 * writing it costs more. With the disk idle, seal − keep =
 * s·(λ·(F − s) − n·(1 + λ·W(1))): seal at once at low load, wait one tick
 * only when commits arrive much faster than one per fsync. Bounds
 * (`maxFlushDelayMs`, an epoch byte cap) and stale evidence are hard guards.
 * Lane-budget actions are `keepCurrent` plus the contention they save or
 * add; `forceConservative` trades the overflow cost of the parallel path for
 * the serialization cost of one lane and a fixed switch cost.
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
const LANE_BYTE_BUDGET_STEP = 2;
/**
 * The byte budget shrinks only while the fullest lane's open epoch stayed
 * below budget / this for a whole window: a halved budget then still holds
 * twice the peak, so a shrink never causes the contention that would regrow it.
 */
const LANE_FILL_SHRINK_DIVISOR = 4;
/** Budget changes kept for inspection (oldest dropped first). */
export const budgetChangesKeptMax = 256;

interface Term {
  name: string;
  value: number;
  weightMicros: number;
}

const round = (x: number): number => Math.round(x);

/** Expected losses (µs) of keeping and of sealing now, on the same commits (see the module comment). */
function scheduleLosses(
  pending: number,
  ridersAt: number,
  diskFree: number,
  lambda: number,
  fsync: number,
  writePerCommit: number,
): { keep: number; seal: number } {
  const riders = lambda * ridersAt;
  const keepEnd = Math.max(ridersAt, diskFree) + fsync + writePerCommit * (pending + riders);
  const firstEnd = diskFree + fsync + writePerCommit * pending;
  const ridersEnd = firstEnd + fsync + writePerCommit * riders;
  return {
    keep: pending * keepEnd + riders * (keepEnd - ridersAt / 2),
    seal: pending * firstEnd + riders * (ridersEnd - ridersAt / 2),
  };
}

/** Milliseconds since work became pending and no fsync completed; 0 when no work is pending. */
export function evidenceAgeMs(e: ControllerEvidence): number {
  const pendingSince =
    e.pendingCommits > 0 ? e.nowMs - e.oldestPendingAgeMs : Number.POSITIVE_INFINITY;
  const syncSince = e.syncInFlightSinceMs ?? Number.POSITIVE_INFINITY;
  const workSince = Math.min(pendingSince, syncSince);
  if (!Number.isFinite(workSince)) return 0;
  const since = Math.max(workSince, e.lastFsyncAtMs ?? Number.NEGATIVE_INFINITY);
  return Math.max(0, e.nowMs - since);
}

function record(
  decisionId: bigint,
  action: DecisionAction,
  confidenceBps: number,
  lossMicros: number,
  terms: string[],
  counterfactual: DecisionAction,
  regretMicros: number,
  fallbackActive: boolean,
): DecisionRecord {
  return {
    policyId: CONTROLLER_POLICY_ID,
    policyVersion: CONTROLLER_POLICY_VERSION,
    decisionId,
    action,
    confidenceBps,
    expectedLossMicros: round(lossMicros),
    topEvidenceTerms: terms,
    counterfactualAction: counterfactual,
    counterfactualRegretMicros: round(regretMicros),
    fallbackActive,
  };
}

/** The evidence term each action turns on: it leads the list; the rest follow by weight. */
const PRIMARY_TERM: Record<DecisionAction, string> = {
  sealEpochNow: 'pendingCommits',
  keepCurrent: 'diskBusyMicros',
  increaseLaneBudget: 'contentionEvents',
  decreaseLaneBudget: 'activeLanes',
  forceConservative: 'overflowEvents',
};

function topTerms(
  terms: Term[],
  action: DecisionAction,
  primary = PRIMARY_TERM[action],
  limit = 3,
): string[] {
  return [...terms]
    .filter((t) => t.name === primary || t.weightMicros > 0)
    .sort(
      (a, b) =>
        Number(b.name === primary) - Number(a.name === primary) ||
        b.weightMicros - a.weightMicros ||
        (a.name < b.name ? -1 : 1),
    )
    .slice(0, limit)
    .map((t) => `${t.name}=${round(t.value * 100) / 100}`);
}

/**
 * Chooses the action of least expected loss. Deterministic: the same
 * evidence, policy and id always give the same decision.
 */
export function decide(
  e: ControllerEvidence,
  policy: ControllerPolicy = controllerPolicyDefault,
  decisionId = 0n,
): ControllerDecision {
  const F = e.fsyncEwmaMicros ?? policy.priorFsyncMicros;
  const lambda = Math.max(0, e.arrivalRatePerSec) / 1e6;
  const W = e.epochBytes / policy.bandwidthBytesPerMicro;
  const avgCommitBytes = e.pendingCommits > 0 ? e.epochBytes / e.pendingCommits : 0;
  /** Write time of one commit's bytes. */
  const Wc = avgCommitBytes / policy.bandwidthBytesPerMicro;
  const inFlightMicros =
    e.syncInFlightSinceMs === null ? 0 : (e.nowMs - e.syncInFlightSinceMs) * 1000;
  const D = e.syncInFlightSinceMs === null ? 0 : Math.max(0, F - inFlightMicros);
  const intervalMicros = Math.max(1, e.intervalMs * 1000);
  const horizonMicros = D + F + W;
  const n = e.pendingCommits;
  const none: Record<DecisionAction, number | null> = {
    keepCurrent: null,
    sealEpochNow: null,
    increaseLaneBudget: null,
    decreaseLaneBudget: null,
    forceConservative: null,
  };

  // Guard 1: stale evidence. Work has waited for an fsync sample too long.
  // At the engine's own seal the disk is idle and about to write: work that
  // waited for that seal (`autoFlush: false`) is not a stuck disk.
  const age = evidenceAgeMs(e);
  const idleSeal = e.sealingAnyway === true && e.syncInFlightSinceMs === null;
  if (!idleSeal && age > policy.staleEvidenceMs) {
    return {
      action: 'forceConservative',
      record: record(
        decisionId,
        'forceConservative',
        10_000,
        n * age * 1000,
        [
          `evidenceAgeMs=${round(age)}`,
          `pendingCommits=${n}`,
          `staleEvidenceMs=${policy.staleEvidenceMs}`,
        ],
        'keepCurrent',
        0,
        e.fallbackActive,
      ),
      lossesMicros: none,
      fallbackReason: 'controllerEvidenceLost',
      guard: 'staleEvidence',
      budgetDimension: null,
    };
  }

  // Guard 2 and 3: latency and size bounds force a seal (moot where the
  // engine seals anyway).
  if (
    n > 0 &&
    e.sealingAnyway !== true &&
    (e.oldestPendingAgeMs >= policy.maxFlushDelayMs || e.epochBytes >= policy.epochByteCap)
  ) {
    const byDelay = e.oldestPendingAgeMs >= policy.maxFlushDelayMs;
    const loss = scheduleLosses(n, D > 0 ? D : policy.idleTickMicros, D, lambda, F, Wc).seal;
    return {
      action: 'sealEpochNow',
      record: record(
        decisionId,
        'sealEpochNow',
        10_000,
        loss,
        byDelay
          ? [
              `oldestPendingAgeMs=${e.oldestPendingAgeMs}`,
              `maxFlushDelayMs=${policy.maxFlushDelayMs}`,
            ]
          : [`epochBytes=${e.epochBytes}`, `epochByteCap=${policy.epochByteCap}`],
        'keepCurrent',
        0,
        e.fallbackActive,
      ),
      lossesMicros: { ...none, sealEpochNow: loss },
      fallbackReason: null,
      guard: byDelay ? 'maxFlushDelay' : 'epochByteCap',
      budgetDimension: null,
    };
  }

  const losses: Record<DecisionAction, number | null> = { ...none };
  const overflowLoss =
    (e.overflowEvents / intervalMicros) * horizonMicros * policy.overflowCostMicros;
  const contentionRate = e.contentionEvents / intervalMicros;
  const contentionLoss = contentionRate * horizonMicros * policy.contentionCostMicros;
  const parallel = !e.fallbackActive && e.laneBudgetMax > 1;

  const keepAt = D > 0 ? D : policy.idleTickMicros;
  const schedules = scheduleLosses(n, keepAt, D, lambda, F, Wc);
  // At the engine's own seal the epoch is sealed whatever is decided: the
  // choice is only what comes with it (a budget change, the conservative
  // path), so every action is scored on the sealing schedule.
  const sealing = e.sealingAnyway === true && n > 0;
  const keep = (sealing ? schedules.seal : schedules.keep) + overflowLoss;
  if (!sealing) losses.keepCurrent = keep;
  if (n > 0) losses.sealEpochNow = schedules.seal + overflowLoss;
  // More lanes only help against contention; fewer only when some lanes sat idle.
  // With every lane of the budget in use, contention (appends that found
  // their buffer full) asks for more bytes per lane instead; bytes go back
  // only once the fullest lane used under a quarter of them for a window.
  // The byte budget matters with one lane too: only the fallback rules it out.
  const increase = increaseDimension(e, !e.fallbackActive);
  const decrease = decreaseDimension(e, !e.fallbackActive);
  if (increase === 'lanes') {
    const saved = contentionLoss / (e.laneBudget + 1);
    losses.increaseLaneBudget = keep - saved + policy.laneCostMicros;
  } else if (increase === 'bytes') {
    // A budget change lasts beyond one epoch: at least the overflow seen
    // since the last decision (one epoch, at the engine's own seal) recurs.
    const expected = Math.max(contentionRate * horizonMicros, e.contentionEvents);
    const saved = expected * policy.laneFullCostMicros;
    losses.increaseLaneBudget = keep - saved + policy.laneCostMicros;
  }
  if (decrease === 'lanes') {
    const added = contentionLoss / (e.laneBudget - 1);
    losses.decreaseLaneBudget = keep + added - policy.laneCostMicros;
  } else if (decrease === 'bytes') {
    losses.decreaseLaneBudget = keep - policy.laneCostMicros;
  }
  if (parallel) {
    const arrivals = lambda * horizonMicros + n;
    const serialization =
      arrivals * policy.serializationCostMicros * ((e.laneBudget - 1) / e.laneBudget) +
      contentionLoss * e.laneBudget;
    losses.forceConservative =
      keep - overflowLoss + serialization + policy.conservativeSwitchCostMicros;
  }

  // Least loss first; an exact tie goes to the action listed first in DECISION_ACTIONS.
  const ranked = DECISION_ACTIONS.filter((a) => losses[a] !== null).sort(
    (a, b) => losses[a]! - losses[b]! || DECISION_ACTIONS.indexOf(a) - DECISION_ACTIONS.indexOf(b),
  );
  const best = ranked[0]!;
  const second = ranked[1] ?? null;

  const bestLoss = losses[best]!;
  const regret = second === null ? 0 : losses[second]! - bestLoss;
  let confidence = round(5000 + (5000 * regret) / (regret + Math.abs(bestLoss) + 1));
  if (e.fsyncEwmaMicros === null || e.fsyncSamples < 4) {
    confidence = Math.min(confidence, 5000 + 1000 * Math.min(4, e.fsyncSamples));
  }
  const terms: Term[] = [
    { name: 'fsyncEwmaMicros', value: F, weightMicros: n * F },
    { name: 'diskBusyMicros', value: D, weightMicros: lambda * D * F },
    { name: 'arrivalRatePerSec', value: e.arrivalRatePerSec, weightMicros: lambda * F * F },
    { name: 'pendingCommits', value: n, weightMicros: n * (keepAt + W) },
    { name: 'epochBytes', value: e.epochBytes, weightMicros: n * W },
    { name: 'backlogFrames', value: e.backlogFrames, weightMicros: e.backlogFrames * 0.01 },
    { name: 'overflowEvents', value: e.overflowEvents, weightMicros: overflowLoss },
    { name: 'contentionEvents', value: e.contentionEvents, weightMicros: contentionLoss },
    { name: 'activeLanes', value: e.activeLanes, weightMicros: 0 },
    { name: 'laneByteBudget', value: e.laneByteBudget ?? 0, weightMicros: 0 },
    { name: 'laneFillPeakBytes', value: e.laneFillPeakBytes ?? 0, weightMicros: 0 },
    { name: 'laneFillBytes', value: e.laneFillBytes ?? 0, weightMicros: 0 },
  ];
  const dimension =
    best === 'increaseLaneBudget' ? increase : best === 'decreaseLaneBudget' ? decrease : null;
  const primary =
    dimension === 'bytes' && best === 'decreaseLaneBudget'
      ? 'laneFillPeakBytes'
      : PRIMARY_TERM[best];
  const shown = topTerms(terms, best, primary);
  // A byte-budget record names the budget it moved from.
  if (dimension === 'bytes') {
    const fill =
      best === 'increaseLaneBudget' ? [`laneFillBytes=${round(e.laneFillBytes ?? 0)}`] : [];
    shown.splice(1, 0, `laneByteBudget=${e.laneByteBudget}`, ...fill);
  }
  return {
    action: best,
    record: record(
      decisionId,
      best,
      Math.min(10_000, Math.max(0, confidence)),
      bestLoss,
      shown.slice(0, 3),
      second ?? best,
      regret,
      e.fallbackActive,
    ),
    lossesMicros: losses,
    fallbackReason: best === 'forceConservative' ? 'laneOverflow' : null,
    guard: null,
    budgetDimension: dimension,
  };
}

/**
 * True when the contention seen asks for more lane room: with the byte
 * budget managed, only while the lanes hold at least half their budget now
 * (an append that found its buffer sealed, not full, does not count).
 */
function contentionFromFullLanes(e: ControllerEvidence): boolean {
  if (e.contentionEvents <= 0) return false;
  if (e.laneByteBudget === undefined) return true;
  return (e.laneFillBytes ?? 0) * LANE_BYTE_BUDGET_STEP >= e.laneByteBudget;
}

/**
 * What `increaseLaneBudget` would move; `null`: not applicable. Contention
 * with every lane of the budget in use asks for another lane; contention
 * with lanes of the budget idle (writers do not spread, e.g. one thread's
 * commits all go to one lane) asks for more bytes per lane.
 */
function increaseDimension(e: ControllerEvidence, parallel: boolean): LaneBudgetDimension | null {
  if (!parallel || !contentionFromFullLanes(e)) return null;
  if (e.laneBudget < e.laneBudgetMax && e.activeLanes >= e.laneBudget) return 'lanes';
  const bytes = e.laneByteBudget;
  if (bytes !== undefined && bytes < (e.laneByteBudgetMax ?? 0)) return 'bytes';
  return null;
}

/**
 * What `decreaseLaneBudget` would move; `null`: not applicable. Lanes of the
 * budget that sat idle for a window go first; bytes go back once the fullest
 * lane used under a quarter of them for a whole fill window.
 */
function decreaseDimension(e: ControllerEvidence, parallel: boolean): LaneBudgetDimension | null {
  if (!parallel) return null;
  if (e.laneBudget > 1 && e.activeLanes < e.laneBudget && (e.laneCountSettled ?? true)) {
    return 'lanes';
  }
  const bytes = e.laneByteBudget;
  const peak = e.laneFillPeakBytes;
  if (
    bytes !== undefined &&
    peak !== undefined &&
    e.contentionEvents === 0 &&
    bytes > (e.laneByteBudgetMin ?? bytes) &&
    peak * LANE_FILL_SHRINK_DIVISOR < bytes
  ) {
    return 'bytes';
  }
  return null;
}

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

/** What the engine knows about its open epoch at a decision point. */
export interface SealPointState {
  nowMs: number;
  pendingCommits: number;
  epochBytes: number;
  oldestPendingAgeMs: number;
  syncInFlightSinceMs: number | null;
  backlogFrames: number;
  fallbackActive: boolean;
  /** The open epoch, for the budget-change log. */
  openEpoch?: bigint;
  /** The engine seals the open epoch here whatever the decision (see {@link ControllerEvidence.sealingAnyway}). */
  sealing?: boolean;
  /** The engine's lane capacity (`bufferCapacityBytes`): the most the lane byte budget can grow to. */
  laneCapacityBytes?: number;
}

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
