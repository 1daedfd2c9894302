/**
 * The layering rules of `.dependency-cruiser.cjs` (run on `src/` by
 * `npm run lint`): `src/` passes them, and a tree with a deliberate
 * back-arrow and a stray `@nats-io` import fails them, naming both.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));
const depcruise = `${root}node_modules/.bin/depcruise`;
const config = `${root}.dependency-cruiser.cjs`;

/**
 * Runs the rules on `src` under `cwd` exactly as `npm run lint` does; the
 * exit status and the violations reported (`rule: from -> to`).
 */
function cruise(cwd: string): { status: number | null; violations: string[] } {
  const result = spawnSync(depcruise, ['src', '--config', config], { cwd, encoding: 'utf8' });
  if (result.error !== undefined) throw result.error;
  const violations = [...result.stdout.matchAll(/^\s*error (\S+): (\S+) → (\S+)$/gm)].map(
    ([, rule, from, to]) => `${rule}: ${from} -> ${to!.replace(/^.*node_modules\//, '')}`,
  );
  return { status: result.status, violations };
}

describe('layers only point down', () => {
  it('src/ has no back-arrow and no @nats-io import outside src/replication/nats/', () => {
    const { status, violations } = cruise(root);
    expect(violations).toEqual([]);
    expect(status).toBe(0);
  });

  it('reports a back-arrow and a stray @nats-io import, and fails', () => {
    const { status, violations } = cruise(`${root}test/fixtures/layers`);
    expect(violations.sort()).toEqual([
      'nats-only-in-its-client: src/replication/leak.ts -> @nats-io/jetstream/lib/mod.js',
      'no-back-arrow-from-format: src/format/back-arrow.ts -> src/store/limits.ts',
    ]);
    expect(status).not.toBe(0);
  });
});
