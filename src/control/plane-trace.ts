/**
 * The control plane's trace records: one method per event the plane traces,
 * each a no-op while tracing is off. The fields of every record are chosen
 * here, so the plane's own code reads as decisions, not as trace plumbing.
 */

import type { StageBatchInput } from '../engine/control-hooks.js';
import type { CommitCertificate } from './certificate.js';
import type { ChainOnDiskReport } from './chain-files.js';
import type { ControllerDecision } from './controller.js';
import type { FallbackState, FallbackTransition } from './fallback.js';
import type { ShadowOutcome } from './shadow.js';
import {
  type FallbackReason,
  parallelWalFlushScenarioId,
  parallelWalStageScenarioId,
} from './surface.js';
import type { Tracer } from './trace.js';

/** Emits the control plane's trace records through `tracer`, with the fallback state of the moment. */
export class PlaneTrace {
  readonly #tracer: Tracer;
  readonly #fallback: () => FallbackState;

  /** `fallback` is read at each record (the plane creates it after its tracer). */
  constructor(tracer: Tracer, fallback: () => FallbackState) {
    this.#tracer = tracer;
    this.#fallback = fallback;
  }

  get #state(): { fallbackActive: boolean; fallbackReason: FallbackReason | null } {
    const fallback = this.#fallback();
    return { fallbackActive: fallback.active, fallbackReason: fallback.reason };
  }

  /** A component reported a fallback reason. */
  reported(reason: FallbackReason, detail: string): void {
    if (!this.#tracer.enabled) return;
    this.#tracer.trace({
      component: 'fallback',
      event: 'reported',
      fallbackActive: true,
      fallbackReason: reason,
      detail,
    });
  }

  /** A lane refused a batch. */
  laneRefused(laneId: number): void {
    if (!this.#tracer.enabled) return;
    this.#tracer.trace({
      component: 'lane',
      event: 'refused',
      laneId,
      fallbackReason: 'laneOverflow',
    });
  }

  /** A placed batch (scenario `parallel_wal_lane_stage`). */
  staged(input: StageBatchInput): void {
    if (!this.#tracer.enabled) return;
    let bytes = 0;
    for (const r of input.records) bytes += r.afterImage.length + r.beforeImage.length;
    this.#tracer.trace({
      component: 'stager',
      event: 'staged',
      scenarioId: parallelWalStageScenarioId,
      laneId: input.laneId,
      epoch: input.epoch,
      commitSeqLo: input.commitSeq,
      commitSeqHi: input.commitSeq,
      bytes,
      ...this.#state,
    });
  }

  /** The staged batches of `epoch` could not be taken in order: nothing to compare. */
  stagingMismatch(epoch: bigint): void {
    if (!this.#tracer.enabled) return;
    this.#tracer.trace({ component: 'shadow', event: 'staging_mismatch', epoch });
  }

  /** A shadow comparison's outcome (`event`: clean, diverged_substituted, diverged_unrepairable). */
  shadow(epoch: bigint, shadow: ShadowOutcome, event: string): void {
    if (!this.#tracer.enabled) return;
    this.#tracer.trace({
      component: 'shadow',
      event,
      epoch,
      shadowVerdict: shadow.verdict,
      ...this.#state,
    });
  }

  /** An epoch became durable (scenario `parallel_wal_flush`). */
  durable(
    epoch: bigint,
    cert: CommitCertificate | null,
    shadow: ShadowOutcome | null,
    latencyMicros: number,
  ): void {
    if (!this.#tracer.enabled) return;
    this.#tracer.trace({
      component: 'flush',
      event: 'epoch_durable',
      scenarioId: parallelWalFlushScenarioId,
      epoch,
      commitSeqLo: cert?.commitSeqLo ?? null,
      commitSeqHi: cert?.commitSeqHi ?? null,
      commitCertificate: cert?.certificateCrc32c ?? null,
      ...this.#state,
      latencyMicros,
      ...(shadow === null ? {} : { shadowVerdict: shadow.verdict }),
    });
  }

  /** An epoch's write failed. */
  failed(epoch: bigint, cause: unknown): void {
    if (!this.#tracer.enabled) return;
    this.#tracer.trace({
      component: 'flush',
      event: 'epoch_failed',
      epoch,
      detail: cause instanceof Error ? cause.message : String(cause),
      ...this.#state,
    });
  }

  /** The certificate chain on disk was checked. */
  chain(report: ChainOnDiskReport): void {
    if (!this.#tracer.enabled) return;
    this.#tracer.trace({
      component: 'recovery',
      event: report.failure === null ? 'chain_ok' : 'chain_broken',
      recoveryEpoch: report.lastGoodEpoch,
      fallbackReason: report.failure?.reason ?? null,
      fallbackActive: report.failure !== null || this.#fallback().active,
    });
  }

  /** The fallback latched a reason or cleared. */
  fallback(t: FallbackTransition): void {
    if (!this.#tracer.enabled) return;
    this.#tracer.trace({
      component: 'fallback',
      event: t.kind === 'enter' ? (t.wasActive ? 'reason_added' : 'enter') : 'clear',
      fallbackActive: t.kind === 'enter',
      fallbackReason: t.reason,
    });
  }

  /** The sealing controller decided (its decision record, then a trace record). */
  decision(d: ControllerDecision): void {
    if (!this.#tracer.enabled) return;
    this.#tracer.decision(d.record);
    this.#tracer.trace({
      component: 'controller',
      event: d.action,
      decisionId: d.record.decisionId,
      policyId: d.record.policyId,
      policyVersion: d.record.policyVersion,
      ...this.#state,
    });
  }
}
