import os from 'node:os';
import { describe, expect, it } from 'vitest';
import * as api from '../../src/index.js';

describe("the seed's public constants", () => {
  it('are exported from the package root under their camelCase names, with the seed values', () => {
    expect(api.parallelWalLanePolicyVersion).toBe('thread_slot_v1');
    expect(api.parallelWalCompatibilitySelector).toBe('wal_invariant,integrity_check,row_level');
    expect(api.parallelWalStageScenarioId).toBe('parallel_wal_lane_stage');
    expect(api.parallelWalFlushScenarioId).toBe('parallel_wal_lane_flush');
    expect(api.defaultParallelWalLaneCount()).toBe(Math.max(1, os.availableParallelism()));
  });

  it('name what the log writes: flush trace records carry the flush scenario id', async () => {
    const sink = api.memoryTraceSink();
    const plane = new api.ControlPlane({
      control: { mode: 'auto' },
      trace: sink,
      controller: false,
    });
    const prepared = plane.prepareEpoch({
      epoch: 0n,
      chunks: [],
      recordCount: 0,
      laneIds: [],
      recordsPerCore: [],
      dbSizePages: 0,
    });
    plane.epochDurable(prepared, 10);
    const flush = sink.events.find((e) => e.kind === 'trace' && e.component === 'flush');
    expect(flush).toMatchObject({ scenarioId: api.parallelWalFlushScenarioId });
  });
});
