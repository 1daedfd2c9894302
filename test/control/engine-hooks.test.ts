/**
 * The hook interface proposed for the engine (`src/engine/control-hooks.ts`,
 * to be added with the integration): the engine declares what it calls, in its
 * own layer, and the control plane satisfies it structurally — the engine never
 * imports from `control/`. This file pins that a ControlPlane fits.
 */
import { describe, expect, it } from 'vitest';
import { ControlPlane } from '../../src/control/plane.js';
import type { LaneRecordInput } from '../../src/engine/lane.js';

/** Proposed `EngineControl` (engine layer). */
interface EngineControl {
  laneCount(): number;
  route(batchBytes: number, laneId: number): 'parallel' | 'serialized';
  noteLaneRefused(laneId: number): void;
  readonly stagingBatches: boolean;
  stageBatch(input: {
    laneId: number;
    epoch: bigint;
    commitSeq: bigint;
    dbSizePages: number;
    records: readonly LaneRecordInput[];
  }): unknown;
  onSealPoint(state: {
    nowMs: number;
    pendingCommits: number;
    epochBytes: number;
    oldestPendingAgeMs: number;
    syncInFlightSinceMs: number | null;
    backlogFrames: number;
    contentionTotal?: number;
  }): { action: string } | null;
  prepareEpoch(input: {
    epoch: bigint;
    chunks: readonly Uint8Array[];
    recordCount: number;
    laneIds: readonly number[];
    recordsPerCore: readonly number[];
    dbSizePages: number;
    externalChunks?: readonly Uint8Array[];
  }): { chunks: Uint8Array[]; acknowledge: boolean };
  epochDurable(
    prepared: { chunks: Uint8Array[]; acknowledge: boolean },
    latencyMicros: number,
  ): void;
  epochFailed(epoch: bigint, cause: unknown): void;
  serializedPathRequired(): boolean;
}

describe('engine hook interface', () => {
  it('is satisfied by a ControlPlane without the engine importing control/', () => {
    const control: EngineControl = new ControlPlane({
      control: { mode: 'auto', laneCountOverride: 2 },
      env: {},
    });
    expect(control.laneCount()).toBe(2);
    expect(control.route(1, 0)).toBe('parallel');
    const prepared = control.prepareEpoch({
      epoch: 1n,
      chunks: [],
      recordCount: 0,
      laneIds: [],
      recordsPerCore: [],
      dbSizePages: 0,
    });
    expect(prepared).toMatchObject({ chunks: [], acknowledge: true });
    control.epochDurable(prepared, 100);
  });
});
