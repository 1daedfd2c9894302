/**
 * The control surface of the parallel log (docs/design.md#control-surface): operating mode, lane
 * count, budgets, and the shadow-compare sampling gate, resolved from code and
 * from the seed's environment variables.
 *
 * Pure: no I/O except reading `os.availableParallelism()` for the default lane count.
 */
import os from 'node:os';
import { laneCountMax } from '../engine/limits.js';
import { WalArgumentError } from '../errors.js';

/** `auto` (many lanes), `conservative` (one lane, serialized), `shadowCompare` (both, compared). */
export type OperatingMode = 'auto' | 'conservative' | 'shadowCompare';

/** Why the log left the parallel path (docs/design.md#fallback). */
export type FallbackReason =
  | 'operatorForced'
  | 'laneOverflow'
  | 'certificateGap'
  | 'certificateChecksumMismatch'
  | 'publicationMismatch'
  | 'recoveryGap'
  | 'checkpointConflict'
  | 'controllerEvidenceLost';

/** Every {@link FallbackReason}, in the seed's declaration order. */
export const FALLBACK_REASONS: readonly FallbackReason[] = [
  'operatorForced',
  'laneOverflow',
  'certificateGap',
  'certificateChecksumMismatch',
  'publicationMismatch',
  'recoveryGap',
  'checkpointConflict',
  'controllerEvidenceLost',
];

/** Outcome of comparing a batch's parallel result with the conservative one. */
export type ShadowVerdict = 'notRun' | 'clean' | 'diverged';

/** The operator's knobs. Every field but `mode` is optional; absent means "default". */
export interface ControlSurface {
  mode: OperatingMode;
  /** Lanes to use in `auto`/`shadowCompare`; clamped to 1 ..= `laneCountMax`. */
  laneCountOverride?: number | undefined;
  /**
   * Lanes beyond the first that the controller may keep active
   * (lane budget ≤ 1 + helperLaneBudget, and ≤ the lane count).
   */
  helperLaneBudget?: number | undefined;
  /** A commit batch larger than this takes the serialized path (`lane_overflow`). */
  maxParallelCommitBytes?: number | undefined;
  /** The longest a commit may wait for its epoch to be sealed. */
  maxFlushDelayMs?: number | undefined;
  /** In `auto`: shadow-compare this many batches out of every 1000 (capped at 1000). */
  shadowCompareSamplingPerMille?: number | undefined;
}

export { laneCountMax } from '../engine/limits.js';
/**
 * The seed's lane policy version (`PARALLEL_WAL_LANE_POLICY_VERSION`):
 * `thread_slot_v1` — a commit goes to the lane of its thread's slot
 * (`threadId % laneCount`), as `ParallelWal.commit` places it. Writers
 * that open their own lane (`openWriter`, worker lanes) lease one instead.
 */
export const parallelWalLanePolicyVersion = 'thread_slot_v1';
/**
 * The seed's compatibility selector (`PARALLEL_WAL_COMPATIBILITY_SELECTOR`):
 * the checks a consumer of traces should run against a database the parallel
 * log wrote — WAL invariants, `PRAGMA integrity_check`, row-level compare.
 */
export const parallelWalCompatibilitySelector = 'wal_invariant,integrity_check,row_level';
/**
 * The seed's trace scenario id for staging a batch into a lane
 * (`PARALLEL_WAL_STAGE_SCENARIO_ID`): the `scenarioId` of stage trace records.
 */
export const parallelWalStageScenarioId = 'parallel_wal_lane_stage';
/**
 * The seed's trace scenario id for flushing lanes into a segment
 * (`PARALLEL_WAL_FLUSH_SCENARIO_ID`): the `scenarioId` of flush trace records.
 */
export const parallelWalFlushScenarioId = 'parallel_wal_lane_flush';

/** Environment variable names (the seed's, kept for compatibility). */
export const ENV_MODE = 'FSQLITE_PARALLEL_WAL_MODE';
export const ENV_LANES = 'FSQLITE_PARALLEL_WAL_LANES';
export const ENV_MAX_BATCH_BYTES = 'FSQLITE_PARALLEL_WAL_MAX_BATCH_BYTES';
export const ENV_MAX_FLUSH_DELAY_MS = 'FSQLITE_PARALLEL_WAL_MAX_FLUSH_DELAY_MS';
export const ENV_SHADOW_COMPARE_PER_MILLE = 'FSQLITE_PARALLEL_WAL_SHADOW_COMPARE_PER_MILLE';

const u16Max = 0xffffn;
const u64Max = (1n << 64n) - 1n;
/** `usize` on the 64-bit targets the seed runs on. */
const usizeMax = u64Max;

/** The default control surface of code (`auto`, everything else default), as in the seed. */
export function defaultControlSurface(): ControlSurface {
  return { mode: 'auto' };
}

/** `auto` | `conservative` | `shadow_compare` (the seed's names). */
export function modeName(mode: OperatingMode): 'auto' | 'conservative' | 'shadow_compare' {
  switch (mode) {
    case 'auto':
      return 'auto';
    case 'conservative':
      return 'conservative';
    case 'shadowCompare':
      return 'shadow_compare';
  }
}

/** The seed's snake_case name of a fallback reason; `null` (no fallback) is `none`. */
export function fallbackReasonName(reason: FallbackReason | null): string {
  switch (reason) {
    case null:
      return 'none';
    case 'operatorForced':
      return 'operator_forced';
    case 'laneOverflow':
      return 'lane_overflow';
    case 'certificateGap':
      return 'certificate_gap';
    case 'certificateChecksumMismatch':
      return 'certificate_checksum_mismatch';
    case 'publicationMismatch':
      return 'publication_mismatch';
    case 'recoveryGap':
      return 'recovery_gap';
    case 'checkpointConflict':
      return 'checkpoint_conflict';
    case 'controllerEvidenceLost':
      return 'controller_evidence_lost';
  }
}

/** `not_run` | `clean` | `diverged`. */
export function shadowVerdictName(verdict: ShadowVerdict): 'not_run' | 'clean' | 'diverged' {
  switch (verdict) {
    case 'notRun':
      return 'not_run';
    case 'clean':
      return 'clean';
    case 'diverged':
      return 'diverged';
  }
}

// Rust's `char::is_whitespace` (Unicode White_Space), which `str::trim` strips.
// JavaScript's `String#trim` differs: it strips U+FEFF and keeps U+0085.
const RUST_WHITESPACE =
  '\\u0009-\\u000D\\u0020\\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000';
const RUST_TRIM = new RegExp(`^[${RUST_WHITESPACE}]+|[${RUST_WHITESPACE}]+$`, 'g');

/** Rust's `str::trim`. */
export function rustTrim(raw: string): string {
  return raw.replace(RUST_TRIM, '');
}

/** Rust's `str::to_ascii_lowercase`: only A-Z change. */
function asciiLowercase(raw: string): string {
  return raw.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32));
}

/**
 * Rust's `str::parse::<uN>()` for an unsigned type whose maximum is `max`:
 * optional single leading `+`, then one or more ASCII digits (leading zeros
 * allowed), value ≤ `max`. Anything else (empty, `-`, spaces, overflow) is `null`.
 */
export function parseRustUnsigned(raw: string, max: bigint): bigint | null {
  if (!/^\+?[0-9]+$/.test(raw)) return null;
  const value = BigInt(raw.startsWith('+') ? raw.slice(1) : raw);
  return value <= max ? value : null;
}

/** A u64 as a JavaScript number, saturating at 2^53-1 (9 PB or 285 000 years: "unbounded"). */
function saturatingNumber(value: bigint): number {
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(value);
}

type Env = Readonly<Record<string, string | undefined>>;

/**
 * The control surface from the environment, with the seed's rules exactly:
 * - `FSQLITE_PARALLEL_WAL_MODE`, trimmed and ASCII-lowercased: `auto`;
 *   `conservative` | `serialized` | `single_lane`; `shadow` | `shadow_compare`.
 *   Unset or anything else gives `conservative`.
 * - `FSQLITE_PARALLEL_WAL_LANES` (usize, at least 1), `…_MAX_BATCH_BYTES` (u64, at least 1),
 *   `…_MAX_FLUSH_DELAY_MS` (u64), `…_SHADOW_COMPARE_PER_MILLE` (u16): trimmed and parsed
 *   like Rust's `parse` (digits, optional `+`, in range); an unparsable value is ignored.
 *
 * u64 values above 2^53-1 are kept as 2^53-1 (indistinguishable from unbounded).
 */
export function controlSurfaceFromEnv(env: Env = process.env): ControlSurface {
  const control: ControlSurface = { mode: 'conservative' };
  const mode = env[ENV_MODE];
  if (mode !== undefined) {
    switch (asciiLowercase(rustTrim(mode))) {
      case 'auto':
        control.mode = 'auto';
        break;
      case 'conservative':
      case 'serialized':
      case 'single_lane':
        control.mode = 'conservative';
        break;
      case 'shadow':
      case 'shadow_compare':
        control.mode = 'shadowCompare';
        break;
      default:
        break;
    }
  }
  const lanes = parseEnvUnsigned(env[ENV_LANES], usizeMax);
  if (lanes !== null) control.laneCountOverride = saturatingNumber(lanes > 1n ? lanes : 1n);
  const maxBytes = parseEnvUnsigned(env[ENV_MAX_BATCH_BYTES], u64Max);
  if (maxBytes !== null) {
    control.maxParallelCommitBytes = saturatingNumber(maxBytes > 1n ? maxBytes : 1n);
  }
  const delay = parseEnvUnsigned(env[ENV_MAX_FLUSH_DELAY_MS], u64Max);
  if (delay !== null) control.maxFlushDelayMs = saturatingNumber(delay);
  const perMille = parseEnvUnsigned(env[ENV_SHADOW_COMPARE_PER_MILLE], u16Max);
  if (perMille !== null) control.shadowCompareSamplingPerMille = Number(perMille);
  return control;
}

function parseEnvUnsigned(raw: string | undefined, max: bigint): bigint | null {
  return raw === undefined ? null : parseRustUnsigned(rustTrim(raw), max);
}

function checkOptionalInteger(name: string, value: unknown, min: number, max: number): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new WalArgumentError(
      `${name} must be an integer in ${min}..=${max}, got ${String(value)}`,
    );
  }
}

/**
 * Throws {@link WalArgumentError} unless `control` is a well-formed surface:
 * a known mode; integers; `shadowCompareSamplingPerMille` a u16;
 * `maxParallelCommitBytes` at least 1. `laneCountOverride` may exceed {@link laneCountMax} (it is clamped).
 */
export function validateControlSurface(control: Partial<ControlSurface>): void {
  if (
    control.mode !== undefined &&
    control.mode !== 'auto' &&
    control.mode !== 'conservative' &&
    control.mode !== 'shadowCompare'
  ) {
    throw new WalArgumentError(`unknown parallel WAL mode: ${String(control.mode)}`);
  }
  const big = Number.MAX_SAFE_INTEGER;
  checkOptionalInteger('laneCountOverride', control.laneCountOverride, 0, big);
  checkOptionalInteger('helperLaneBudget', control.helperLaneBudget, 0, big);
  checkOptionalInteger('maxParallelCommitBytes', control.maxParallelCommitBytes, 1, big);
  checkOptionalInteger('maxFlushDelayMs', control.maxFlushDelayMs, 0, big);
  checkOptionalInteger(
    'shadowCompareSamplingPerMille',
    control.shadowCompareSamplingPerMille,
    0,
    0xffff,
  );
}

/**
 * The effective surface: every field given in `code` (not `undefined`) wins;
 * the rest comes from the environment (see {@link controlSurfaceFromEnv}, whose
 * mode defaults to `conservative` when `FSQLITE_PARALLEL_WAL_MODE` is unset).
 * @throws {WalArgumentError} if `code` is malformed.
 */
export function resolveControlSurface(
  code: Partial<ControlSurface> = {},
  env: Env = process.env,
): ControlSurface {
  validateControlSurface(code);
  const resolved = controlSurfaceFromEnv(env);
  for (const key of Object.keys(code) as (keyof ControlSurface)[]) {
    const value = code[key];
    if (value !== undefined) (resolved as unknown as Record<string, unknown>)[key] = value;
  }
  return resolved;
}

/**
 * The seed's `default_parallel_wal_lane_count()`: the machine's parallelism
 * (at least 1), the lane count in `auto` without an override (then clamped
 * to `laneCountMax` by `laneCount`).
 */
export function defaultParallelWalLaneCount(): number {
  return Math.max(1, os.availableParallelism());
}

/**
 * Lanes the log runs with: 1 in `conservative` (the serialized path); otherwise
 * `laneCountOverride` or the machine's parallelism, clamped to 1 ..=
 * `laneCountMax` (the engine's `slotCount` maximum: the result always opens).
 */
export function laneCount(control: ControlSurface): number {
  if (control.mode === 'conservative') return 1;
  const wanted = control.laneCountOverride ?? defaultParallelWalLaneCount();
  return Math.min(laneCountMax, Math.max(1, Math.floor(wanted)));
}

/**
 * The most lanes the controller may keep active: `min(laneCount, 1 + helperLaneBudget)`
 * (all lanes when no helper budget is set).
 */
export function laneBudgetMax(control: ControlSurface): number {
  const lanes = laneCount(control);
  const helpers = control.helperLaneBudget;
  return helpers === undefined ? lanes : Math.min(lanes, 1 + Math.max(0, helpers));
}

/**
 * The seed's deterministic sampling: `conservative` never, `shadowCompare`
 * always, `auto` iff `rate = min(perMille, 1000) > 0` and `(batchId - 1) mod 1000 < rate`
 * (`batchId - 1` saturating at 0, as in the seed).
 */
export function shouldShadowCompare(control: ControlSurface, batchId: bigint): boolean {
  switch (control.mode) {
    case 'conservative':
      return false;
    case 'shadowCompare':
      return true;
    case 'auto': {
      const perMille = control.shadowCompareSamplingPerMille;
      if (perMille === undefined) return false;
      const rate = BigInt(Math.min(perMille, 1000));
      const window = batchId > 0n ? (batchId - 1n) % 1000n : 0n;
      return rate > 0n && window < rate;
    }
  }
}
