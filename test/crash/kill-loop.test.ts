import { describe, expect, it } from 'vitest';
import { runKillLoops } from './kill-loop.js';

describe('ParallelWal under SIGKILL (real processes)', () => {
  it('keeps every acknowledged commit whole across 100 kills at random moments', async () => {
    const stats = await runKillLoops({
      kills: 100,
      parallel: 4,
      seed: 1234,
      writers: 3,
      workers: 2,
      maxLifeMs: 120,
      freshDbEvery: 8,
    });
    console.log(
      `SIGKILL loop: ${stats.kills} kills (${stats.killsBeforeReady} during start-up), ${stats.acked} acked, ` +
        `lost ${stats.lost}, partial ${stats.partial}, workers ${stats.workersUsed ? 'yes' : 'not available'}`,
    );
    expect(stats.violations).toEqual([]);
    expect(stats.kills).toBe(100);
    // A floor that holds on a loaded machine: most children live only ~100 ms after start-up.
    expect(stats.acked).toBeGreaterThan(20);
    expect(stats.lost).toBe(0);
    expect(stats.partial).toBe(0);
    expect(stats.unknown).toBe(0);
    expect(stats.misordered).toBe(0);
  }, 240_000);
});
