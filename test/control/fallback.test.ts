import { describe, expect, it } from 'vitest';
import { FallbackState, type FallbackTransition } from '../../src/control/fallback.js';
import { FALLBACK_REASONS } from '../../src/control/surface.js';

const clean = { pendingEpochs: 0, chainVerified: true, operatorForced: false };

describe('FallbackState', () => {
  it('starts on the parallel path with every reason counted at zero', () => {
    const state = new FallbackState();
    expect(state.active).toBe(false);
    expect(state.reason).toBeNull();
    expect(Object.values(state.counts())).toEqual(FALLBACK_REASONS.map(() => 0));
  });

  it('latches the first reason and counts every reason that fires', () => {
    const state = new FallbackState();
    expect(state.enter('laneOverflow')).toBe(true);
    expect(state.enter('publicationMismatch')).toBe(false);
    expect(state.enter('laneOverflow')).toBe(false);
    expect(state.active).toBe(true);
    expect(state.reason).toBe('laneOverflow');
    expect(state.reasonsSinceClear).toEqual(['laneOverflow', 'publicationMismatch']);
    expect(state.counts().laneOverflow).toBe(2);
    expect(state.counts().publicationMismatch).toBe(1);
  });

  it('accepts every reason listed in docs/design.md#fallback', () => {
    const state = new FallbackState();
    for (const reason of FALLBACK_REASONS) state.enter(reason);
    expect(Object.values(state.counts())).toEqual(FALLBACK_REASONS.map(() => 1));
  });

  it('returns to the parallel path only after a clean state', () => {
    const state = new FallbackState();
    state.enter('certificateGap');
    expect(state.clearAfterCleanState({ ...clean, pendingEpochs: 2 })).toEqual({
      cleared: false,
      blockedBy: 'pendingEpochs',
    });
    expect(state.clearAfterCleanState({ ...clean, chainVerified: false })).toEqual({
      cleared: false,
      blockedBy: 'chainUnverified',
    });
    expect(state.clearAfterCleanState({ ...clean, operatorForced: true })).toEqual({
      cleared: false,
      blockedBy: 'operatorForced',
    });
    expect(state.active).toBe(true);
    expect(state.clearAfterCleanState(clean)).toEqual({ cleared: true, reason: 'certificateGap' });
    expect(state.active).toBe(false);
    expect(state.clears).toBe(1);
    expect(state.counts().certificateGap).toBe(1);
  });

  it('treats clearing an inactive state as a no-op', () => {
    const state = new FallbackState();
    expect(state.clearAfterCleanState({ ...clean, pendingEpochs: 5 })).toEqual({
      cleared: true,
      reason: null,
    });
    expect(state.clears).toBe(0);
  });

  it('reports every transition to its listener', () => {
    const seen: FallbackTransition[] = [];
    const state = new FallbackState((t) => seen.push(t));
    state.enter('recoveryGap');
    state.enter('checkpointConflict');
    state.clearAfterCleanState(clean);
    expect(seen).toEqual([
      { kind: 'enter', reason: 'recoveryGap', wasActive: false },
      { kind: 'enter', reason: 'checkpointConflict', wasActive: true },
      { kind: 'clear', reason: 'recoveryGap', wasActive: true },
    ]);
  });
});
