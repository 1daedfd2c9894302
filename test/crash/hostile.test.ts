/**
 * One round of the hostile-input campaign (`test/crash/hostile.ts`; the long
 * run is `npm run hostile`): every case once, each must end with typed
 * errors or working logs and no acknowledged commit lost.
 */
import { describe, expect, it } from 'vitest';
import { HOSTILE_CASES, runHostileCampaign, unshareAvailable } from './hostile.js';

const namespaces = unshareAvailable();

describe('hostile inputs (one round of the campaign)', () => {
  for (const c of HOSTILE_CASES) {
    const needsNamespaces = c.name.includes('PID namespace');
    it.skipIf(needsNamespaces && !namespaces)(
      `finding ${c.finding}: ${c.name}${needsNamespaces && !namespaces ? ' (skipped: unshare -p is not permitted here)' : ''}`,
      async () => {
        const stats = await runHostileCampaign({ rounds: 1, seed: 13, filter: c.name });
        expect(stats.skips).toEqual([]);
        expect(stats.tried).toBe(1);
        expect(stats.violations).toEqual([]);
        expect(stats.lost).toBe(0);
      },
      120_000,
    );
  }
});
