import os from 'node:os';
import { describe, expect, it } from 'vitest';
import {
  type ControlSurface,
  controlSurfaceFromEnv,
  FALLBACK_REASONS,
  fallbackReasonName,
  laneBudgetMax,
  laneCount,
  laneCountMax,
  modeName,
  parseRustUnsigned,
  resolveControlSurface,
  rustTrim,
  shadowVerdictName,
  shouldShadowCompare,
} from '../../src/control/surface.js';
import { isWalError } from '../../src/errors.js';

const MODE = 'FSQLITE_PARALLEL_WAL_MODE';
const LANES = 'FSQLITE_PARALLEL_WAL_LANES';
const BYTES = 'FSQLITE_PARALLEL_WAL_MAX_BATCH_BYTES';
const DELAY = 'FSQLITE_PARALLEL_WAL_MAX_FLUSH_DELAY_MS';
const PER_MILLE = 'FSQLITE_PARALLEL_WAL_SHADOW_COMPARE_PER_MILLE';

describe('names', () => {
  it('names every mode as the seed does', () => {
    expect(modeName('auto')).toBe('auto');
    expect(modeName('conservative')).toBe('conservative');
    expect(modeName('shadowCompare')).toBe('shadow_compare');
  });

  it('names every fallback reason as the seed does, and no reason as none', () => {
    expect(fallbackReasonName(null)).toBe('none');
    expect(FALLBACK_REASONS.map(fallbackReasonName)).toEqual([
      'operator_forced',
      'lane_overflow',
      'certificate_gap',
      'certificate_checksum_mismatch',
      'publication_mismatch',
      'recovery_gap',
      'checkpoint_conflict',
      'controller_evidence_lost',
    ]);
  });

  it('names every shadow verdict as the seed does', () => {
    expect(shadowVerdictName('notRun')).toBe('not_run');
    expect(shadowVerdictName('clean')).toBe('clean');
    expect(shadowVerdictName('diverged')).toBe('diverged');
  });
});

describe('controlSurfaceFromEnv', () => {
  it('defaults to conservative with nothing set, as the seed does', () => {
    expect(controlSurfaceFromEnv({})).toEqual({ mode: 'conservative' });
  });

  it('accepts every mode spelling, trimmed and case-insensitive', () => {
    const cases: [string, ControlSurface['mode']][] = [
      ['auto', 'auto'],
      ['  AUTO \n', 'auto'],
      ['conservative', 'conservative'],
      ['Serialized', 'conservative'],
      ['SINGLE_LANE', 'conservative'],
      ['shadow', 'shadowCompare'],
      ['\tShadow_Compare ', 'shadowCompare'],
      ['\u0085auto\u3000', 'auto'],
    ];
    for (const [raw, mode] of cases) expect(controlSurfaceFromEnv({ [MODE]: raw }).mode).toBe(mode);
  });

  it('falls back to conservative for an unknown or empty mode', () => {
    for (const raw of ['', 'parallel', 'auto2', 'shadow-compare', '\ufeffauto', 'a uto']) {
      expect(controlSurfaceFromEnv({ [MODE]: raw }).mode).toBe('conservative');
    }
  });

  it('lowercases only ASCII letters, like to_ascii_lowercase', () => {
    // U+212A KELVIN SIGN lowercases to "k" in JavaScript but not in Rust's ASCII lowercase.
    expect(controlSurfaceFromEnv({ [MODE]: 'AUTO' }).mode).toBe('auto');
    expect(controlSurfaceFromEnv({ [MODE]: 'shadow_compare\u212a' }).mode).toBe('conservative');
  });

  it('parses the numeric knobs like Rust parse, clamping lanes and bytes to at least 1', () => {
    const control = controlSurfaceFromEnv({
      [MODE]: 'auto',
      [LANES]: ' 0 ',
      [BYTES]: '+0',
      [DELAY]: '007',
      [PER_MILLE]: '65535',
    });
    expect(control).toEqual({
      mode: 'auto',
      laneCountOverride: 1,
      maxParallelCommitBytes: 1,
      maxFlushDelayMs: 7,
      shadowCompareSamplingPerMille: 65535,
    });
  });

  it('ignores unparsable numeric values', () => {
    for (const raw of ['', '-1', '-0', '+', '++1', '1.5', '1e3', '0x10', '12 3', 'ten', '١٢']) {
      expect(
        controlSurfaceFromEnv({ [LANES]: raw, [BYTES]: raw, [DELAY]: raw, [PER_MILLE]: raw }),
      ).toEqual({ mode: 'conservative' });
    }
  });

  it('range-checks each knob by its Rust type', () => {
    expect(controlSurfaceFromEnv({ [PER_MILLE]: '65536' }).shadowCompareSamplingPerMille).toBe(
      undefined,
    );
    expect(controlSurfaceFromEnv({ [DELAY]: '18446744073709551616' }).maxFlushDelayMs).toBe(
      undefined,
    );
    expect(controlSurfaceFromEnv({ [DELAY]: '18446744073709551615' }).maxFlushDelayMs).toBe(
      Number.MAX_SAFE_INTEGER,
    );
    expect(controlSurfaceFromEnv({ [LANES]: '18446744073709551615' }).laneCountOverride).toBe(
      Number.MAX_SAFE_INTEGER,
    );
  });

  it('reads process.env when no environment is passed', () => {
    const saved = process.env[MODE];
    process.env[MODE] = 'shadow';
    try {
      expect(controlSurfaceFromEnv().mode).toBe('shadowCompare');
    } finally {
      if (saved === undefined) delete process.env[MODE];
      else process.env[MODE] = saved;
    }
  });
});

describe('rust-compatible parsing helpers', () => {
  it('trims Rust whitespace, not JavaScript whitespace', () => {
    expect(rustTrim('\u0085 x \u2028')).toBe('x');
    expect(rustTrim('\ufeffx')).toBe('\ufeffx');
  });

  it('accepts digits with one optional plus sign', () => {
    expect(parseRustUnsigned('+42', 100n)).toBe(42n);
    expect(parseRustUnsigned('0000', 100n)).toBe(0n);
    expect(parseRustUnsigned('101', 100n)).toBeNull();
    expect(parseRustUnsigned(' 1', 100n)).toBeNull();
  });
});

describe('resolveControlSurface', () => {
  it('lets every field given in code win over the environment', () => {
    const env = { [MODE]: 'shadow', [LANES]: '8', [PER_MILLE]: '5' };
    expect(resolveControlSurface({ mode: 'auto', laneCountOverride: 3 }, env)).toEqual({
      mode: 'auto',
      laneCountOverride: 3,
      shadowCompareSamplingPerMille: 5,
    });
  });

  it('takes the environment for fields the code leaves undefined', () => {
    const env = { [MODE]: 'auto', [BYTES]: '4096' };
    expect(resolveControlSurface({ laneCountOverride: undefined }, env)).toEqual({
      mode: 'auto',
      maxParallelCommitBytes: 4096,
    });
    expect(resolveControlSurface(undefined, {})).toEqual({ mode: 'conservative' });
  });

  it('rejects malformed code configuration with a typed error', () => {
    const bad: Partial<ControlSurface>[] = [
      { mode: 'parallel' as ControlSurface['mode'] },
      { laneCountOverride: 1.5 },
      { shadowCompareSamplingPerMille: 70000 },
      { maxParallelCommitBytes: 0 },
      { maxFlushDelayMs: -1 },
    ];
    for (const code of bad) {
      expect(() => resolveControlSurface(code, {})).toThrow(
        expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }),
      );
    }
    try {
      resolveControlSurface({ helperLaneBudget: -2 }, {});
      expect.unreachable();
    } catch (error) {
      expect(isWalError(error, 'ERR_INVALID_ARGUMENT')).toBe(true);
    }
  });
});

describe('laneCount', () => {
  it('collapses conservative to one lane whatever the override', () => {
    expect(laneCount({ mode: 'conservative', laneCountOverride: 8 })).toBe(1);
  });

  it('uses the override in auto and shadowCompare, clamped to 1..=65535', () => {
    expect(laneCount({ mode: 'auto', laneCountOverride: 4 })).toBe(4);
    expect(laneCount({ mode: 'shadowCompare', laneCountOverride: 0 })).toBe(1);
    expect(laneCount({ mode: 'auto', laneCountOverride: laneCountMax + 1 })).toBe(laneCountMax);
  });

  it("uses the machine's parallelism without an override", () => {
    expect(laneCount({ mode: 'auto' })).toBe(Math.max(1, os.availableParallelism()));
  });

  it('bounds the lane budget by the helper budget and the lane count', () => {
    expect(laneBudgetMax({ mode: 'auto', laneCountOverride: 8, helperLaneBudget: 2 })).toBe(3);
    expect(laneBudgetMax({ mode: 'auto', laneCountOverride: 2, helperLaneBudget: 10 })).toBe(2);
    expect(laneBudgetMax({ mode: 'auto', laneCountOverride: 6 })).toBe(6);
    expect(laneBudgetMax({ mode: 'conservative', helperLaneBudget: 10 })).toBe(1);
  });
});

describe('shouldShadowCompare', () => {
  it('samples auto deterministically by batch window', () => {
    const control: ControlSurface = { mode: 'auto', shadowCompareSamplingPerMille: 2 };
    expect(shouldShadowCompare(control, 1n)).toBe(true);
    expect(shouldShadowCompare(control, 2n)).toBe(true);
    expect(shouldShadowCompare(control, 3n)).toBe(false);
    expect(shouldShadowCompare(control, 1_001n)).toBe(true);
    expect(shouldShadowCompare(control, 1_002n)).toBe(true);
    expect(shouldShadowCompare(control, 1_003n)).toBe(false);
  });

  it('ignores the sampling gate in shadowCompare mode', () => {
    const control: ControlSurface = { mode: 'shadowCompare', shadowCompareSamplingPerMille: 0 };
    expect(shouldShadowCompare(control, 1n)).toBe(true);
    expect(shouldShadowCompare(control, 7n)).toBe(true);
  });

  it('never samples in conservative mode', () => {
    const control: ControlSurface = { mode: 'conservative', shadowCompareSamplingPerMille: 1_000 };
    expect(shouldShadowCompare(control, 1n)).toBe(false);
    expect(shouldShadowCompare(control, 1_000n)).toBe(false);
  });

  it('caps the rate at 1000 per mille, samples nothing at 0 or unset, and saturates batch 0', () => {
    const all: ControlSurface = { mode: 'auto', shadowCompareSamplingPerMille: 5000 };
    for (const id of [1n, 500n, 999n, 1000n, (1n << 64n) - 1n]) {
      expect(shouldShadowCompare(all, id)).toBe(true);
    }
    expect(shouldShadowCompare({ mode: 'auto', shadowCompareSamplingPerMille: 0 }, 1n)).toBe(false);
    expect(shouldShadowCompare({ mode: 'auto' }, 1n)).toBe(false);
    expect(shouldShadowCompare({ mode: 'auto', shadowCompareSamplingPerMille: 1 }, 0n)).toBe(true);
  });

  it('samples exactly perMille batches of every thousand', () => {
    const control: ControlSurface = { mode: 'auto', shadowCompareSamplingPerMille: 10 };
    let sampled = 0;
    for (let id = 1n; id <= 3000n; id++) if (shouldShadowCompare(control, id)) sampled++;
    expect(sampled).toBe(30);
  });
});
