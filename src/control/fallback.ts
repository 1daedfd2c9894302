/**
 * The fallback latch of the control plane (docs/design.md#fallback): once any reason
 * fires, the log takes the conservative (single-lane, serialized) path, and it
 * returns to the parallel path only through {@link FallbackState.clearAfterCleanState}.
 */
import { FALLBACK_REASONS, type FallbackReason } from './surface.js';

/** A change of the fallback state, for traces and stats. */
export interface FallbackTransition {
  kind: 'enter' | 'clear';
  reason: FallbackReason;
  /** Whether the state was already active before an `enter`. */
  wasActive: boolean;
}

/** What the caller asserts about the log when asking to return to the parallel path. */
export interface CleanStateEvidence {
  /** Epochs sealed or staged batches not yet durable. Must be 0: nothing of the fallback period is in flight. */
  pendingEpochs: number;
  /** The certificate chain up to the durable epoch verified (true when certificates are off). */
  chainVerified: boolean;
  /** The operator still asks for `conservative`. */
  operatorForced: boolean;
}

/** Result of `FallbackState.clearAfterCleanState`. */
export type ClearOutcome =
  | { cleared: true; reason: FallbackReason | null }
  | { cleared: false; blockedBy: 'pendingEpochs' | 'chainUnverified' | 'operatorForced' };

/**
 * The fallback latch: inactive, or active with the first reason that fired
 * (later reasons are counted and remembered, but the active reason stays the
 * root cause until cleared).
 */
export class FallbackState {
  #reason: FallbackReason | null = null;
  readonly #counts = new Map<FallbackReason, number>();
  readonly #seen = new Set<FallbackReason>();
  #clears = 0;
  readonly #listener: ((transition: FallbackTransition) => void) | undefined;

  /** @param listener called on every enter and clear (for traces). */
  constructor(listener?: (transition: FallbackTransition) => void) {
    this.#listener = listener;
  }

  /** True while the log must take the conservative path. */
  get active(): boolean {
    return this.#reason !== null;
  }

  /** The reason that made the state active; `null` when inactive. */
  get reason(): FallbackReason | null {
    return this.#reason;
  }

  /** Every reason that fired since the last clear, first one first. */
  get reasonsSinceClear(): FallbackReason[] {
    return [...this.#seen];
  }

  /**
   * Records that `reason` fired and latches the conservative path. Returns true
   * when this made the state active (it was inactive before).
   */
  enter(reason: FallbackReason): boolean {
    this.#counts.set(reason, (this.#counts.get(reason) ?? 0) + 1);
    this.#seen.add(reason);
    const wasActive = this.#reason !== null;
    if (!wasActive) this.#reason = reason;
    this.#listener?.({ kind: 'enter', reason, wasActive });
    return !wasActive;
  }

  /** How many times each reason fired (all reasons present, 0 if never). */
  counts(): Record<FallbackReason, number> {
    const out = {} as Record<FallbackReason, number>;
    for (const reason of FALLBACK_REASONS) out[reason] = this.#counts.get(reason) ?? 0;
    return out;
  }

  /** Times the state went back to the parallel path. */
  get clears(): number {
    return this.#clears;
  }

  /**
   * The only way back to the parallel path: succeeds when nothing of the
   * fallback period is in flight, the certificate chain verified, and the
   * operator no longer forces `conservative`. Clearing an inactive state is a
   * successful no-op.
   */
  clearAfterCleanState(evidence: CleanStateEvidence): ClearOutcome {
    if (this.#reason === null) return { cleared: true, reason: null };
    if (evidence.operatorForced) return { cleared: false, blockedBy: 'operatorForced' };
    if (evidence.pendingEpochs > 0) return { cleared: false, blockedBy: 'pendingEpochs' };
    if (!evidence.chainVerified) return { cleared: false, blockedBy: 'chainUnverified' };
    const reason = this.#reason;
    this.#reason = null;
    this.#seen.clear();
    this.#clears++;
    this.#listener?.({ kind: 'clear', reason, wasActive: true });
    return { cleared: true, reason };
  }
}
