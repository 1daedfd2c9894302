/**
 * The sealing controller (docs/design.md#group-commit, docs/design.md#sealing-controller
 * decision records): at each seal decision point it scores every action by
 * expected loss — the commit latency (µs, summed over affected commits) the
 * action is expected to add — from measured evidence, and picks the cheapest.
 *
 * {@link decide} is a pure, deterministic function of its inputs; the
 * `SealController` class around it (controller.ts) keeps the evidence (EWMAs,
 * counters) and the lane budget between decisions.
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

import {
  CONTROLLER_POLICY_ID,
  CONTROLLER_POLICY_VERSION,
  type ControllerDecision,
  type ControllerEvidence,
  type ControllerPolicy,
  controllerPolicyDefault,
  DECISION_ACTIONS,
  type DecisionAction,
  LANE_BYTE_BUDGET_STEP,
  LANE_FILL_SHRINK_DIVISOR,
  type LaneBudgetDimension,
} from './controller-model.js';
import type { DecisionRecord } from './trace.js';

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

/** The loss model's quantities at one decision point (names as in the module comment). */
interface Model {
  /** Fsync latency F (µs). */
  F: number;
  /** Arrivals per µs. */
  lambda: number;
  /** Write time of the open epoch's bytes (µs). */
  W: number;
  /** Write time of one commit's bytes (µs). */
  Wc: number;
  /** Time until the disk is free (µs). */
  D: number;
  intervalMicros: number;
  horizonMicros: number;
  /** Commits waiting in the open epoch. */
  n: number;
}

function model(e: ControllerEvidence, policy: ControllerPolicy): Model {
  const F = e.fsyncEwmaMicros ?? policy.priorFsyncMicros;
  const W = e.epochBytes / policy.bandwidthBytesPerMicro;
  const avgCommitBytes = e.pendingCommits > 0 ? e.epochBytes / e.pendingCommits : 0;
  const inFlightMicros =
    e.syncInFlightSinceMs === null ? 0 : (e.nowMs - e.syncInFlightSinceMs) * 1000;
  const D = e.syncInFlightSinceMs === null ? 0 : Math.max(0, F - inFlightMicros);
  return {
    F,
    lambda: Math.max(0, e.arrivalRatePerSec) / 1e6,
    W,
    Wc: avgCommitBytes / policy.bandwidthBytesPerMicro,
    D,
    intervalMicros: Math.max(1, e.intervalMs * 1000),
    horizonMicros: D + F + W,
    n: e.pendingCommits,
  };
}

function noLosses(): Record<DecisionAction, number | null> {
  return {
    keepCurrent: null,
    sealEpochNow: null,
    increaseLaneBudget: null,
    decreaseLaneBudget: null,
    forceConservative: null,
  };
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
  const m = model(e, policy);
  const guarded =
    staleEvidenceGuard(e, policy, m, decisionId) ?? boundsGuard(e, policy, m, decisionId);
  if (guarded !== null) return guarded;
  const scored = scoreActions(e, policy, m);
  return leastLoss(e, m, scored, decisionId);
}

/**
 * Guard 1: stale evidence. Work has waited for an fsync sample too long.
 * At the engine's own seal the disk is idle and about to write: work that
 * waited for that seal (`autoFlush: false`) is not a stuck disk.
 */
function staleEvidenceGuard(
  e: ControllerEvidence,
  policy: ControllerPolicy,
  m: Model,
  decisionId: bigint,
): ControllerDecision | null {
  const age = evidenceAgeMs(e);
  const idleSeal = e.sealingAnyway === true && e.syncInFlightSinceMs === null;
  if (idleSeal || age <= policy.staleEvidenceMs) return null;
  return {
    action: 'forceConservative',
    record: record(
      decisionId,
      'forceConservative',
      10_000,
      m.n * age * 1000,
      [
        `evidenceAgeMs=${round(age)}`,
        `pendingCommits=${m.n}`,
        `staleEvidenceMs=${policy.staleEvidenceMs}`,
      ],
      'keepCurrent',
      0,
      e.fallbackActive,
    ),
    lossesMicros: noLosses(),
    fallbackReason: 'controllerEvidenceLost',
    guard: 'staleEvidence',
    budgetDimension: null,
  };
}

/** Guards 2 and 3: latency and size bounds force a seal (moot where the engine seals anyway). */
function boundsGuard(
  e: ControllerEvidence,
  policy: ControllerPolicy,
  m: Model,
  decisionId: bigint,
): ControllerDecision | null {
  const byDelay = e.oldestPendingAgeMs >= policy.maxFlushDelayMs;
  if (m.n === 0 || e.sealingAnyway === true || !(byDelay || e.epochBytes >= policy.epochByteCap)) {
    return null;
  }
  const ridersAt = m.D > 0 ? m.D : policy.idleTickMicros;
  const loss = scheduleLosses(m.n, ridersAt, m.D, m.lambda, m.F, m.Wc).seal;
  const terms = byDelay
    ? [`oldestPendingAgeMs=${e.oldestPendingAgeMs}`, `maxFlushDelayMs=${policy.maxFlushDelayMs}`]
    : [`epochBytes=${e.epochBytes}`, `epochByteCap=${policy.epochByteCap}`];
  return {
    action: 'sealEpochNow',
    record: record(
      decisionId,
      'sealEpochNow',
      10_000,
      loss,
      terms,
      'keepCurrent',
      0,
      e.fallbackActive,
    ),
    lossesMicros: { ...noLosses(), sealEpochNow: loss },
    fallbackReason: null,
    guard: byDelay ? 'maxFlushDelay' : 'epochByteCap',
    budgetDimension: null,
  };
}

/** Every applicable action's expected loss, and what the lane-budget actions would move. */
interface Scored {
  losses: Record<DecisionAction, number | null>;
  increase: LaneBudgetDimension | null;
  decrease: LaneBudgetDimension | null;
  keepAt: number;
  overflowLoss: number;
  contentionLoss: number;
}

function scoreActions(e: ControllerEvidence, policy: ControllerPolicy, m: Model): Scored {
  const losses = noLosses();
  const overflowLoss =
    (e.overflowEvents / m.intervalMicros) * m.horizonMicros * policy.overflowCostMicros;
  const contentionRate = e.contentionEvents / m.intervalMicros;
  const contentionLoss = contentionRate * m.horizonMicros * policy.contentionCostMicros;

  const keepAt = m.D > 0 ? m.D : policy.idleTickMicros;
  const schedules = scheduleLosses(m.n, keepAt, m.D, m.lambda, m.F, m.Wc);
  // At the engine's own seal the epoch is sealed whatever is decided: the
  // choice is only what comes with it (a budget change, the conservative
  // path), so every action is scored on the sealing schedule.
  const sealing = e.sealingAnyway === true && m.n > 0;
  const keep = (sealing ? schedules.seal : schedules.keep) + overflowLoss;
  if (!sealing) losses.keepCurrent = keep;
  if (m.n > 0) losses.sealEpochNow = schedules.seal + overflowLoss;
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
    const expected = Math.max(contentionRate * m.horizonMicros, e.contentionEvents);
    losses.increaseLaneBudget = keep - expected * policy.laneFullCostMicros + policy.laneCostMicros;
  }
  if (decrease === 'lanes') {
    const added = contentionLoss / (e.laneBudget - 1);
    losses.decreaseLaneBudget = keep + added - policy.laneCostMicros;
  } else if (decrease === 'bytes') {
    losses.decreaseLaneBudget = keep - policy.laneCostMicros;
  }
  if (!e.fallbackActive && e.laneBudgetMax > 1) {
    const arrivals = m.lambda * m.horizonMicros + m.n;
    const serialization =
      arrivals * policy.serializationCostMicros * ((e.laneBudget - 1) / e.laneBudget) +
      contentionLoss * e.laneBudget;
    losses.forceConservative =
      keep - overflowLoss + serialization + policy.conservativeSwitchCostMicros;
  }
  return { losses, increase, decrease, keepAt, overflowLoss, contentionLoss };
}

/** The action of least loss, with its confidence, regret and leading evidence terms. */
function leastLoss(
  e: ControllerEvidence,
  m: Model,
  scored: Scored,
  decisionId: bigint,
): ControllerDecision {
  const { losses, increase, decrease } = scored;
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
  const dimension =
    best === 'increaseLaneBudget' ? increase : best === 'decreaseLaneBudget' ? decrease : null;
  return {
    action: best,
    record: record(
      decisionId,
      best,
      Math.min(10_000, Math.max(0, confidence)),
      bestLoss,
      shownTerms(e, m, scored, best, dimension),
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

/** The three evidence terms a decision record shows: the action's own first, then by weight. */
function shownTerms(
  e: ControllerEvidence,
  m: Model,
  scored: Scored,
  best: DecisionAction,
  dimension: LaneBudgetDimension | null,
): string[] {
  const { F, D, W, lambda, n } = m;
  const terms: Term[] = [
    { name: 'fsyncEwmaMicros', value: F, weightMicros: n * F },
    { name: 'diskBusyMicros', value: D, weightMicros: lambda * D * F },
    { name: 'arrivalRatePerSec', value: e.arrivalRatePerSec, weightMicros: lambda * F * F },
    { name: 'pendingCommits', value: n, weightMicros: n * (scored.keepAt + W) },
    { name: 'epochBytes', value: e.epochBytes, weightMicros: n * W },
    { name: 'backlogFrames', value: e.backlogFrames, weightMicros: e.backlogFrames * 0.01 },
    { name: 'overflowEvents', value: e.overflowEvents, weightMicros: scored.overflowLoss },
    { name: 'contentionEvents', value: e.contentionEvents, weightMicros: scored.contentionLoss },
    { name: 'activeLanes', value: e.activeLanes, weightMicros: 0 },
    { name: 'laneByteBudget', value: e.laneByteBudget ?? 0, weightMicros: 0 },
    { name: 'laneFillPeakBytes', value: e.laneFillPeakBytes ?? 0, weightMicros: 0 },
    { name: 'laneFillBytes', value: e.laneFillBytes ?? 0, weightMicros: 0 },
  ];
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
  return shown.slice(0, 3);
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
