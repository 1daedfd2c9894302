import { describe, expect, it } from 'vitest';
import {
  type ControllerDecision,
  type ControllerEvidence,
  controllerPolicyDefault,
  DECISION_ACTIONS,
  decide,
  evidenceAgeMs,
  SealController,
} from '../../src/control/controller.js';
import { LaneStager } from '../../src/control/lane-stager.js';

const NOW = 1_000_000;

/** A steady, well-measured log: 500 µs fsyncs, 10 000 commits/s, 4 of 4 lanes busy. */
function evidence(overrides: Partial<ControllerEvidence> = {}): ControllerEvidence {
  return {
    nowMs: NOW,
    fsyncEwmaMicros: 500,
    fsyncSamples: 100,
    lastFsyncAtMs: NOW - 1,
    arrivalRatePerSec: 10_000,
    pendingCommits: 10,
    epochBytes: 40_960,
    oldestPendingAgeMs: 0.5,
    syncInFlightSinceMs: null,
    backlogFrames: 10,
    overflowEvents: 0,
    contentionEvents: 0,
    intervalMs: 10,
    activeLanes: 4,
    laneBudget: 4,
    laneBudgetMax: 4,
    fallbackActive: false,
    ...overrides,
  };
}

/** A sync started 0.1 ms ago: the disk is busy for ≈ 400 µs more. */
const busy = { syncInFlightSinceMs: NOW - 0.1 };

function checkRecord(decision: ControllerDecision): void {
  const r = decision.record;
  expect(r.action).toBe(decision.action);
  expect(r.confidenceBps).toBeGreaterThanOrEqual(0);
  expect(r.confidenceBps).toBeLessThanOrEqual(10_000);
  expect(Number.isInteger(r.expectedLossMicros)).toBe(true);
  expect(r.topEvidenceTerms.length).toBeGreaterThan(0);
  expect(r.topEvidenceTerms.length).toBeLessThanOrEqual(3);
  expect(r.counterfactualRegretMicros).toBeGreaterThanOrEqual(0);
  expect(r.policyId).toBe('expected_loss_seal');
}

describe('decide', () => {
  it('seals at once when the disk is idle and commits wait', () => {
    const decision = decide(
      evidence({ pendingCommits: 1, epochBytes: 4096, arrivalRatePerSec: 50 }),
    );
    expect(decision.action).toBe('sealEpochNow');
    expect(decision.record.counterfactualAction).toBe('keepCurrent');
    expect(
      decision.lossesMicros.keepCurrent! - decision.lossesMicros.sealEpochNow!,
    ).toBeGreaterThan(0);
    checkRecord(decision);
  });

  it('lets the epoch fill while a sync is in flight', () => {
    const decision = decide(evidence(busy));
    expect(decision.action).toBe('keepCurrent');
    expect(decision.record.counterfactualAction).toBe('sealEpochNow');
    // seal − keep = λ·D·(F − W(n)) = 0.01/µs × 400 µs × (500 − 124) µs ≈ 1504 µs.
    expect(decision.record.counterfactualRegretMicros).toBeGreaterThan(1490);
    expect(decision.record.counterfactualRegretMicros).toBeLessThan(1520);
    expect(decision.record.topEvidenceTerms[0]).toBe('diskBusyMicros=400');
    checkRecord(decision);
  });

  it('seals early while the disk is busy once writing the epoch costs more than the fsync', () => {
    // 100 commits of 64 KiB: W(n) ≈ 19.9 ms > F = 0.5 ms. Pipelining wins.
    const decision = decide(evidence({ ...busy, pendingCommits: 100, epochBytes: 100 * 65536 }));
    expect(decision.action).toBe('sealEpochNow');
    expect(decision.guard).toBeNull();
  });

  it('waits one tick on an idle disk when commits arrive far faster than one per fsync', () => {
    const decision = decide(
      evidence({ pendingCommits: 1, epochBytes: 4096, arrivalRatePerSec: 100_000 }),
    );
    expect(decision.action).toBe('keepCurrent');
    // seal − keep = s·(λ·(F − s) − n·(1 + λ·W(1))) = 200 × (0.1 × 300 − 2.24) ≈ 5552 µs.
    const margin = decision.lossesMicros.sealEpochNow! - decision.lossesMicros.keepCurrent!;
    expect(margin).toBeGreaterThan(5500);
    expect(margin).toBeLessThan(5600);
  });

  it('keeps the current epoch when nothing waits', () => {
    const decision = decide(evidence({ pendingCommits: 0, epochBytes: 0, oldestPendingAgeMs: 0 }));
    expect(decision.action).toBe('keepCurrent');
    expect(decision.lossesMicros.sealEpochNow).toBeNull();
  });

  it('seals when the oldest commit reaches maxFlushDelayMs, even with the disk busy', () => {
    const decision = decide(evidence({ ...busy, oldestPendingAgeMs: 10 }));
    expect(decision.action).toBe('sealEpochNow');
    expect(decision.guard).toBe('maxFlushDelay');
    expect(decision.record.confidenceBps).toBe(10_000);
  });

  it('seals when the epoch passes its byte cap', () => {
    const decision = decide(evidence({ ...busy, epochBytes: 2_000_000 }), {
      ...controllerPolicyDefault,
      epochByteCap: 1_000_000,
    });
    expect(decision.action).toBe('sealEpochNow');
    expect(decision.guard).toBe('epochByteCap');
  });

  it('declares the evidence lost when work waits without any fsync sample', () => {
    const stale = evidence({
      ...busy,
      syncInFlightSinceMs: NOW - 5_000,
      lastFsyncAtMs: NOW - 5_000,
    });
    expect(evidenceAgeMs(stale)).toBe(5_000);
    const decision = decide(stale);
    expect(decision.action).toBe('forceConservative');
    expect(decision.fallbackReason).toBe('controllerEvidenceLost');
    expect(decision.guard).toBe('staleEvidence');
    checkRecord(decision);
  });

  it('does not call an idle log stale, however old its last sample', () => {
    const idle = evidence({ pendingCommits: 0, lastFsyncAtMs: NOW - 60_000 });
    expect(evidenceAgeMs(idle)).toBe(0);
    expect(decide(idle).action).toBe('keepCurrent');
    // New work measures staleness from its own arrival, not from the old sample.
    const fresh = evidence({
      pendingCommits: 1,
      oldestPendingAgeMs: 3,
      lastFsyncAtMs: NOW - 60_000,
    });
    expect(evidenceAgeMs(fresh)).toBe(3);
    expect(decide(fresh).fallbackReason).toBeNull();
  });

  it('adds a lane when contention costs more than a lane', () => {
    const decision = decide(
      evidence({ ...busy, laneBudget: 2, activeLanes: 2, contentionEvents: 1000 }),
    );
    expect(decision.action).toBe('increaseLaneBudget');
    expect(decision.record.topEvidenceTerms[0]).toBe('contentionEvents=1000');
    checkRecord(decision);
  });

  it('removes a lane when lanes sat idle without contention', () => {
    const decision = decide(evidence({ ...busy, laneBudget: 4, activeLanes: 1 }));
    expect(decision.action).toBe('decreaseLaneBudget');
    expect(decision.lossesMicros.increaseLaneBudget).toBeNull();
  });

  it('forces the conservative path when overflow costs more than serializing', () => {
    const decision = decide(evidence({ ...busy, overflowEvents: 50 }));
    expect(decision.action).toBe('forceConservative');
    expect(decision.fallbackReason).toBe('laneOverflow');
    expect(decision.record.topEvidenceTerms[0]).toMatch(/^overflowEvents=50/);
    checkRecord(decision);
  });

  it('offers no lane or fallback actions once on the conservative path', () => {
    const decision = decide(
      evidence({ ...busy, fallbackActive: true, overflowEvents: 50, activeLanes: 1 }),
    );
    expect(decision.lossesMicros.forceConservative).toBeNull();
    expect(decision.lossesMicros.decreaseLaneBudget).toBeNull();
    expect(decision.record.fallbackActive).toBe(true);
  });

  it('is deterministic and scores only applicable actions', () => {
    const input = evidence({ ...busy, contentionEvents: 30, activeLanes: 3 });
    const first = decide(input, controllerPolicyDefault, 7n);
    expect(decide({ ...input }, { ...controllerPolicyDefault }, 7n)).toEqual(first);
    expect(first.record.decisionId).toBe(7n);
    for (const action of DECISION_ACTIONS) {
      const loss = first.lossesMicros[action];
      if (loss !== null) expect(loss).toBeGreaterThanOrEqual(first.lossesMicros[first.action]!);
    }
  });

  it('is less confident before it has measured the disk', () => {
    const measured = decide(evidence({ pendingCommits: 1, arrivalRatePerSec: 50 }));
    const unmeasured = decide(
      evidence({
        pendingCommits: 1,
        arrivalRatePerSec: 50,
        fsyncEwmaMicros: null,
        fsyncSamples: 0,
      }),
    );
    expect(unmeasured.action).toBe(measured.action);
    expect(unmeasured.record.confidenceBps).toBeLessThanOrEqual(5000);
    expect(measured.record.confidenceBps).toBeGreaterThan(unmeasured.record.confidenceBps);
  });
});

describe('SealController', () => {
  it('averages fsync latency and counts samples', () => {
    const controller = new SealController({ laneBudgetMax: 2 });
    expect(controller.fsyncEwmaMicros).toBeNull();
    controller.observeFsync(400, 1);
    controller.observeFsync(800, 2);
    expect(controller.fsyncEwmaMicros).toBe(500);
    const e = controller.evidence({
      nowMs: 3,
      pendingCommits: 0,
      epochBytes: 0,
      oldestPendingAgeMs: 0,
      syncInFlightSinceMs: null,
      backlogFrames: 0,
      fallbackActive: false,
    });
    expect(e.fsyncSamples).toBe(2);
    expect(e.lastFsyncAtMs).toBe(2);
  });

  it('measures the arrival rate between decisions and resets its counters', () => {
    const decisions: ControllerDecision[] = [];
    const controller = new SealController({
      laneBudgetMax: 4,
      onDecision: (d) => decisions.push(d),
    });
    const state = {
      pendingCommits: 0,
      epochBytes: 0,
      oldestPendingAgeMs: 0,
      syncInFlightSinceMs: null,
      backlogFrames: 0,
      fallbackActive: false,
    };
    controller.decideAt({ ...state, nowMs: 0 });
    for (let i = 0; i < 10; i++) {
      controller.observeCommits(100, i % 2);
      controller.observeOverflow(1);
      controller.decideAt({ ...state, nowMs: (i + 1) * 100 });
    }
    const e = controller.evidence({ ...state, nowMs: 1000 });
    // 100 commits per 100 ms = 1000/s, reached within a few time constants.
    expect(e.arrivalRatePerSec).toBeGreaterThan(990);
    expect(e.arrivalRatePerSec).toBeLessThanOrEqual(1000);
    expect(e.overflowEvents).toBe(0);
    expect(decisions.map((d) => d.record.decisionId)).toEqual(
      Array.from({ length: 11 }, (_, i) => BigInt(i + 1)),
    );
  });

  it('counts a lane as active for the averaging window: decisions closer together than every lane commits do not shrink the budget', () => {
    const decisions: ControllerDecision[] = [];
    const controller = new SealController({
      laneBudgetMax: 4,
      averagingWindowMs: 100,
      minDecisionIntervalMs: 0,
      onDecision: (d) => decisions.push(d),
    });
    const state = {
      pendingCommits: 0,
      epochBytes: 0,
      oldestPendingAgeMs: 0,
      syncInFlightSinceMs: null,
      backlogFrames: 0,
      fallbackActive: false,
    };
    // All four lanes carry commits, round-robin, one lane between two
    // decisions 0.5 ms apart: every lane is busy within any 2 ms.
    for (let i = 0; i < 40; i++) {
      controller.observeCommits(1, i % 4);
      controller.decideAt({ ...state, nowMs: 10 + i * 0.5 });
    }
    expect(controller.evidence({ ...state, nowMs: 30 }).activeLanes).toBe(4);
    expect(decisions.filter((d) => d.action === 'decreaseLaneBudget')).toEqual([]);
    expect(controller.laneBudget).toBe(4);
    // Lanes 1-3 go quiet: once they have been idle for a whole window the
    // budget shrinks towards the one lane still in use.
    for (let i = 0; i < 40; i++) {
      controller.observeCommits(1, 0);
      controller.decideAt({ ...state, nowMs: 40 + i * 10 });
    }
    expect(controller.evidence({ ...state, nowMs: 440 }).activeLanes).toBe(1);
    expect(controller.laneBudget).toBe(1);
  });

  it('lets a keepCurrent decision stand briefly, but never past a guard', () => {
    const decisions: ControllerDecision[] = [];
    const controller = new SealController({
      laneBudgetMax: 1,
      minDecisionIntervalMs: 1,
      onDecision: (d) => decisions.push(d),
    });
    controller.observeFsync(500, 0);
    const busyState = (nowMs: number, oldestPendingAgeMs: number) => ({
      nowMs,
      pendingCommits: 10,
      epochBytes: 40_960,
      oldestPendingAgeMs,
      syncInFlightSinceMs: nowMs - 0.1,
      backlogFrames: 0,
      fallbackActive: false,
    });
    const first = controller.decideAt(busyState(10, 0.1));
    expect(first.action).toBe('keepCurrent');
    expect(controller.decideAt(busyState(10.5, 0.6))).toBe(first);
    expect(controller.reusedDecisions).toBe(1);
    // Within the window, but the oldest commit reached maxFlushDelayMs: decide afresh.
    expect(controller.decideAt(busyState(10.9, 10)).action).toBe('sealEpochNow');
    expect(decisions).toHaveLength(2);
  });

  it('applies the lane budget it decides, within 1..=laneBudgetMax, and the stager follows it', () => {
    const controller = new SealController({ laneBudgetMax: 3, initialLaneBudget: 3 });
    const stager = new LaneStager<number>({ mode: 'auto', laneCountOverride: 3 });
    const state = {
      pendingCommits: 10,
      epochBytes: 40_960,
      oldestPendingAgeMs: 0.1,
      backlogFrames: 0,
      fallbackActive: false,
    };
    controller.observeFsync(500, 0);
    controller.decideAt({ ...state, nowMs: 0, syncInFlightSinceMs: null });
    // One lane active for a while (past one averaging window, 100 ms), disk
    // busy: the budget shrinks to 1, never below.
    for (let t = 101; t <= 105; t++) {
      controller.observeFsync(500, t);
      controller.observeCommits(100, 0);
      const decision = controller.decideAt({ ...state, nowMs: t, syncInFlightSinceMs: t - 0.1 });
      stager.setLaneBudget(controller.laneBudget);
      expect(['decreaseLaneBudget', 'keepCurrent']).toContain(decision.action);
    }
    expect(controller.laneBudget).toBe(1);
    expect([stager.currentLaneId({}), stager.currentLaneId({})]).toEqual([0, 0]);
  });
});

describe('lane byte budget rule', () => {
  const MiB = 1024 * 1024;
  /** Every lane of the budget in use, the byte budget managed (start 4 MiB, lane capacity 64 MiB). */
  const bytes = {
    ...busy,
    laneBudget: 4,
    laneBudgetMax: 4,
    activeLanes: 4,
    laneByteBudget: 4 * MiB,
    laneByteBudgetMin: 4 * MiB,
    laneByteBudgetMax: 64 * MiB,
    laneFillBytes: 3 * MiB,
    laneFillPeakBytes: 3 * MiB,
  };

  it('grows the byte budget when appends overflow lanes filled past half their budget', () => {
    const decision = decide(evidence({ ...bytes, contentionEvents: 100 }));
    expect(decision.action).toBe('increaseLaneBudget');
    expect(decision.budgetDimension).toBe('bytes');
    expect(decision.record.topEvidenceTerms).toEqual([
      'contentionEvents=100',
      `laneByteBudget=${4 * MiB}`,
      `laneFillBytes=${3 * MiB}`,
    ]);
    checkRecord(decision);
  });

  it('does not grow it for appends that found a sealed buffer while the lanes are nearly empty', () => {
    const decision = decide(
      evidence({ ...bytes, contentionEvents: 100, laneFillBytes: 64 * 1024 }),
    );
    expect(decision.lossesMicros.increaseLaneBudget).toBeNull();
    expect(decision.budgetDimension).toBeNull();
  });

  it('grows bytes, not lanes, when writers leave lanes of the budget idle (one thread, one lane)', () => {
    const decision = decide(
      evidence({
        ...bytes,
        laneBudget: 1,
        laneBudgetMax: 4,
        activeLanes: 1,
        contentionEvents: 100,
      }),
    );
    // Every lane of a budget of 1 is in use: another lane comes first.
    expect(decision.budgetDimension).toBe('lanes');
    const spreadNot = decide(
      evidence({
        ...bytes,
        laneBudget: 2,
        laneBudgetMax: 4,
        activeLanes: 1,
        contentionEvents: 100,
      }),
    );
    expect(spreadNot.action).toBe('increaseLaneBudget');
    expect(spreadNot.budgetDimension).toBe('bytes');
  });

  it('stops growing at the lane capacity', () => {
    const decision = decide(
      evidence({
        ...bytes,
        laneByteBudget: 64 * MiB,
        laneFillBytes: 60 * MiB,
        contentionEvents: 100,
      }),
    );
    expect(decision.lossesMicros.increaseLaneBudget).toBeNull();
  });

  it('gives bytes back once the fullest lane used under a quarter of them, never below the start', () => {
    const shrink = decide(
      evidence({ ...bytes, laneByteBudget: 16 * MiB, laneFillBytes: MiB, laneFillPeakBytes: MiB }),
    );
    expect(shrink.action).toBe('decreaseLaneBudget');
    expect(shrink.budgetDimension).toBe('bytes');
    expect(shrink.record.topEvidenceTerms.slice(0, 2)).toEqual([
      `laneFillPeakBytes=${MiB}`,
      `laneByteBudget=${16 * MiB}`,
    ]);
    const stillUsed = decide(
      evidence({
        ...bytes,
        laneByteBudget: 16 * MiB,
        laneFillBytes: MiB,
        laneFillPeakBytes: 5 * MiB,
      }),
    );
    expect(stillUsed.lossesMicros.decreaseLaneBudget).toBeNull();
    const atStart = decide(evidence({ ...bytes, laneFillBytes: 0, laneFillPeakBytes: 0 }));
    expect(atStart.lossesMicros.decreaseLaneBudget).toBeNull();
  });

  it("does not take work that waited for the engine's own seal on an idle disk for stale evidence", () => {
    const waited = {
      ...bytes,
      syncInFlightSinceMs: null,
      lastFsyncAtMs: NOW - 60_000,
      oldestPendingAgeMs: 5_000,
    };
    expect(decide(evidence(waited)).fallbackReason).toBe('controllerEvidenceLost');
    const atSeal = decide(evidence({ ...waited, sealingAnyway: true }));
    expect(atSeal.guard).toBeNull();
    expect(atSeal.fallbackReason).toBeNull();
  });

  it("at the engine's own seal scores the budget change with the seal and offers no keepCurrent", () => {
    const decision = decide(
      evidence({
        ...bytes,
        syncInFlightSinceMs: null,
        sealingAnyway: true,
        contentionEvents: 20,
        intervalMs: 50,
        arrivalRatePerSec: 100_000,
      }),
    );
    expect(decision.lossesMicros.keepCurrent).toBeNull();
    expect(decision.action).toBe('increaseLaneBudget');
    expect(decision.lossesMicros.increaseLaneBudget!).toBeLessThan(
      decision.lossesMicros.sealEpochNow!,
    );
  });
});

describe('SealController lane byte budget', () => {
  const MiB = 1024 * 1024;
  const seal = (nowMs: number, epochBytes: number) => ({
    nowMs,
    pendingCommits: 64,
    epochBytes,
    oldestPendingAgeMs: 1,
    syncInFlightSinceMs: null,
    backlogFrames: 0,
    fallbackActive: false,
    sealing: true,
    openEpoch: BigInt(nowMs),
    laneCapacityBytes: 16 * MiB,
  });

  it('doubles the budget up to the lane capacity, halves it back to the start, and logs each change', () => {
    const controller = new SealController({ laneBudgetMax: 1, laneByteBudget: true });
    expect(controller.laneByteBudget).toBe(4 * MiB);
    controller.observeFsync(500, 0);
    // Epochs of 6 MiB on one lane overflow a 4 MiB, then an 8 MiB budget.
    for (const [t, epochBytes] of [
      [10, 6 * MiB],
      [20, 12 * MiB],
      [30, 20 * MiB],
    ] as const) {
      controller.observeCommits(64, 0);
      controller.observeContention(10);
      controller.decideAt(seal(t, epochBytes));
    }
    expect(controller.laneByteBudget).toBe(16 * MiB);
    // Then small epochs for over two fill windows (500 ms each): back to 4 MiB, not below.
    for (let t = 40; t <= 1_600; t += 10) {
      controller.observeCommits(1, 0);
      controller.decideAt(seal(t, 4096));
    }
    expect(controller.laneByteBudget).toBe(4 * MiB);
    const changes = controller.budgetChanges().map((c) => ({
      action: c.record.action,
      dimension: c.dimension,
      before: c.bytesBefore,
      after: c.bytesAfter,
      epoch: c.epoch,
    }));
    expect(changes).toEqual([
      {
        action: 'increaseLaneBudget',
        dimension: 'bytes',
        before: 4 * MiB,
        after: 8 * MiB,
        epoch: 10n,
      },
      {
        action: 'increaseLaneBudget',
        dimension: 'bytes',
        before: 8 * MiB,
        after: 16 * MiB,
        epoch: 20n,
      },
      expect.objectContaining({ action: 'decreaseLaneBudget', before: 16 * MiB, after: 8 * MiB }),
      expect.objectContaining({ action: 'decreaseLaneBudget', before: 8 * MiB, after: 4 * MiB }),
    ]);
    // Not before the 20 MiB epoch's peak left the two windows it is kept in.
    expect(controller.budgetChanges()[2]!.atMs).toBeGreaterThanOrEqual(1_000);
    expect(controller.budgetChangeCount).toBe(4);
  });

  it('does not manage bytes unless asked', () => {
    const controller = new SealController({ laneBudgetMax: 1 });
    controller.observeContention(10);
    controller.observeCommits(64, 0);
    expect(controller.decideAt(seal(10, 6 * MiB)).budgetDimension).toBeNull();
    expect(controller.laneByteBudget).toBeNull();
  });
});
