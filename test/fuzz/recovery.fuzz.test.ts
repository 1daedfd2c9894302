import { describe, expect, it } from 'vitest';
import { seededRng } from '../support/rng.js';
import { checkHostileCli, checkHostileDirectory } from './recovery-fuzz.js';

describe('recovery, open and the CLI under hostile directories', () => {
  it('recovers or refuses with a typed error, never drops a segment silently, never touches foreign files', async () => {
    const rng = seededRng(99);
    const outcomes = { opened: 0, refused: 0 };
    for (let i = 0; i < 400; i++) {
      try {
        outcomes[await checkHostileDirectory(rng)] += 1;
      } catch (error) {
        throw new Error(`case ${i} (seed 99): ${String(error)}`);
      }
    }
    console.log(`hostile directories: ${JSON.stringify(outcomes)}`);
    expect(outcomes.opened).toBeGreaterThan(0);
    expect(outcomes.refused).toBeGreaterThan(0);
  });

  it('answers hostile argument vectors with exit 0/1/2 and a typed one-line error', async () => {
    const rng = seededRng(4242);
    const codes = new Map<number, number>();
    for (let i = 0; i < 600; i++) {
      const code = await checkHostileCli(rng).catch((error: unknown) => {
        throw new Error(`case ${i} (seed 4242): ${String(error)}`);
      });
      codes.set(code, (codes.get(code) ?? 0) + 1);
    }
    expect(codes.get(0) ?? 0).toBeGreaterThan(0);
    expect(codes.get(1) ?? 0).toBeGreaterThan(0);
    expect(codes.get(2) ?? 0).toBeGreaterThan(0);
  });
});
