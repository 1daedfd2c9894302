/**
 * The control plane as one object the engine talks to through a handful of
 * calls (see the integration notes in the report / README):
 *
 * ```text
 * open      plane = new ControlPlane({ control, certificates, controller, trace, anchor })
 *           slotCount = plane.laneCount()
 * place     if (plane.route(batchBytes, laneId) === 'serialized') → serialized path
 *           lane refused the batch         → plane.noteLaneRefused(laneId)
 *           after placement (if plane.stagingBatches) → plane.stageBatch({...})
 * seal      plane.onSealPoint(state)  → decision.action: sealEpochNow | forceConservative → seal
 * flush     prepared = plane.prepareEpoch({...});  write prepared.chunks;
 *           success → plane.epochDurable(prepared, latencyMicros)  (then acknowledge)
 *           failure → plane.epochFailed(epoch, cause)
 * recovery  await plane.verifyChainOnDisk(dbPath, { fs, skipCorrupt })
 * stats     plane.stats()
 * ```
 *
 * It also implements the store's `CheckpointControl` (`serializedPathRequired`,
 * `reportFallback`).
 */
import type { PrepareEpochInput, SealPointInfo, StageBatchInput } from '../engine/control-hooks.js';
import { WalArgumentError } from '../errors.js';
import { encodeRecordFrames } from '../format/frames.js';
import { encodeSegmentHeader } from '../format/segment.js';
import type { FormatVersion } from '../format/types.js';
import type { WalFileSystem } from '../storage/fs.js';
import type { CertificateLink, CommitCertificate } from './certificate.js';
import { buildCommitCertificate } from './certify.js';
import { type ChainOnDiskReport, verifyCertificateChainOnDisk } from './chain-files.js';
import { type ControllerDecision, type ControllerPolicy, SealController } from './controller.js';
import { CertificateChainError } from './errors.js';
import { type ClearOutcome, FallbackState } from './fallback.js';
import { LaneStager } from './lane-stager.js';
import { EpochStaging, type StagedBatch } from './plane-staging.js';
import { PlaneTrace } from './plane-trace.js';
import type { ControlPlaneStats, PreparedEpoch } from './plane-types.js';
import { CERTIFIED_SEGMENT_VERSION, encodeCertificateTrailer } from './segment-v3.js';
import { type ShadowBatch, shadowCompare } from './shadow.js';
import {
  type ControlSurface,
  FALLBACK_REASONS,
  type FallbackReason,
  fallbackReasonName,
  laneBudgetMax,
  laneCount,
  modeName,
  resolveControlSurface,
} from './surface.js';
import { Tracer, type TraceSink, traceSinkFromEnv } from './trace.js';

/** Options of {@link ControlPlane}. */
export interface ControlPlaneOptions {
  /** Knobs given in code; they win over the environment. */
  control?: Partial<ControlSurface>;
  /** Environment for `FSQLITE_PARALLEL_WAL_*` and `PWAL_TRACE` (default `process.env`). */
  env?: Readonly<Record<string, string | undefined>>;
  /** Trace sink; default a file sink when `PWAL_TRACE` is set, else none (off). */
  trace?: TraceSink | null;
  /**
   * Write a commit certificate into every segment (segment format version 3:
   * version-2 records + a certificate trailer, see docs/format.md). Such
   * segments read and recover like any other (`readSegment`, recovery and
   * the engine's open skip the certificate); the chain is checked by
   * {@link ControlPlane.verifyChainOnDisk} and `pwal verify`. Default false.
   */
  certificates?: boolean;
  /** The sealing controller: on (default), off, or on with policy overrides. */
  controller?: boolean | Partial<ControllerPolicy>;
  /** Last certificate link on disk (from {@link ControlPlane.verifyChainOnDisk}); `null` for a fresh chain. */
  anchor?: CertificateLink | null;
  /** Record form of the lanes (default 2). Certificates need 2. */
  formatVersion?: FormatVersion;
  /**
   * What opening a log (`ParallelWal.open`, `PageStore.open`) does when,
   * with `certificates` on, the chain on disk does not hold (a missing middle
   * segment, a broken link, altered bytes): `fail` (default) — the open fails
   * closed with the reason's typed error (`ERR_RECOVERY_GAP`,
   * `ERR_CERTIFICATE_GAP`, `ERR_CERTIFICATE_CHECKSUM_MISMATCH`), as
   * `pwal verify` exits 1 on it; `fallback` — the open succeeds, the
   * reason is latched and the log runs on the conservative path, except for
   * `recoveryGap` (a missing middle segment: acknowledged commits are gone),
   * which always fails the open.
   */
  onChainFailure?: 'fail' | 'fallback';
  /** Millisecond clock (default `performance.now`-based wall time `Date.now`). */
  now?: () => number;
}

/** The control plane of one log. See the module comment for the calls. */
export class ControlPlane {
  readonly surface: ControlSurface;
  readonly fallback: FallbackState;
  readonly stager: LaneStager<StagedBatch>;
  readonly tracer: Tracer;
  readonly controller: SealController | null;
  readonly certificates: boolean;
  readonly formatVersion: FormatVersion;
  readonly #now: () => number;
  readonly #onChainFailure: 'fail' | 'fallback';
  /** Database whose chain {@link ControlPlane.verifyAtOpen} checked (once per open). */
  #verifiedAtOpen: string | null = null;
  #predecessor: CertificateLink | null;
  readonly #staging: EpochStaging;
  readonly #trace: PlaneTrace;
  #contentionSeen = 0;
  readonly #counters = {
    batchesStaged: 0,
    compared: 0,
    clean: 0,
    diverged: 0,
    substituted: 0,
    certificates: 0,
    decisions: 0,
  };
  readonly #byAction: Record<string, number> = {};
  #lastCertificate: CommitCertificate | null = null;

  constructor(options: ControlPlaneOptions = {}) {
    const env = options.env ?? process.env;
    this.surface = resolveControlSurface(options.control ?? {}, env);
    this.formatVersion = options.formatVersion ?? 2;
    this.certificates = options.certificates ?? false;
    if (this.certificates && this.formatVersion !== 2) {
      throw new WalArgumentError('commit certificates need records in the version-2 form');
    }
    this.#now = options.now ?? Date.now;
    const onChainFailure = options.onChainFailure ?? 'fail';
    if (onChainFailure !== 'fail' && onChainFailure !== 'fallback') {
      throw new WalArgumentError(
        `onChainFailure must be fail or fallback, got ${String(onChainFailure)}`,
      );
    }
    this.#onChainFailure = onChainFailure;
    this.tracer = new Tracer(
      options.trace === undefined ? traceSinkFromEnv(env) : options.trace,
      this.surface.mode,
      this.#now,
    );
    this.#trace = new PlaneTrace(this.tracer, () => this.fallback);
    this.fallback = new FallbackState((t) => this.#trace.fallback(t));
    this.stager = new LaneStager<StagedBatch>(this.surface);
    this.#staging = new EpochStaging(this.stager, this.surface);
    this.#predecessor = options.anchor ?? null;
    const controllerOption = options.controller ?? true;
    this.controller =
      controllerOption === false
        ? null
        : new SealController({
            laneBudgetMax: laneBudgetMax(this.surface),
            laneByteBudget: true,
            policy: {
              ...(this.surface.maxFlushDelayMs === undefined
                ? {}
                : { maxFlushDelayMs: this.surface.maxFlushDelayMs }),
              ...(controllerOption === true ? {} : controllerOption),
            },
            onDecision: (d) => this.#countDecision(d),
          });
    if (this.controller !== null) this.stager.setLaneBudget(this.controller.laneBudget);
    if (this.surface.mode === 'conservative') this.fallback.enter('operatorForced');
  }

  /** In-process lanes to run: 1 in `conservative`, else the override or the machine's parallelism. */
  laneCount(): number {
    return laneCount(this.surface);
  }

  /**
   * The lane budget the engine spreads writers over (`EngineControl.laneBudget`):
   * the controller's, moved by its `increaseLaneBudget` / `decreaseLaneBudget`
   * decisions, else the surface's maximum (`helperLaneBudget`).
   */
  laneBudget(): number {
    return this.controller?.laneBudget ?? this.stager.laneBudget;
  }

  /**
   * Bytes an in-process lane may hold before appends overflow
   * (`EngineControl.laneByteBudget`): the controller's lane byte budget,
   * moved by its `increaseLaneBudget` / `decreaseLaneBudget` decisions once
   * every lane of the budget is in use; without a controller, unlimited
   * (the engine clamps it to its lane capacity).
   */
  laneByteBudget(): number {
    return this.controller?.laneByteBudget ?? Number.POSITIVE_INFINITY;
  }

  /** True while batches must take the serialized (conservative) path. */
  serializedPathRequired(): boolean {
    return this.fallback.active;
  }

  /** The store's checkpoint hook (and any other component's): latch a fallback with a reason. */
  reportFallback(reason: FallbackReason, detail: string): void {
    this.#trace.reported(reason, detail);
    this.fallback.enter(reason);
  }

  /**
   * Where a batch of `batchBytes` goes: `serialized` while the fallback is
   * active, or when the batch exceeds `maxParallelCommitBytes` (that latches
   * `laneOverflow`); `parallel` otherwise. Counts the commit as an arrival.
   */
  route(batchBytes: number, laneId?: number): 'parallel' | 'serialized' {
    this.controller?.observeCommits(1, laneId);
    const max = this.surface.maxParallelCommitBytes;
    if (max !== undefined && batchBytes > max) {
      this.controller?.observeOverflow(1);
      this.fallback.enter('laneOverflow');
      return 'serialized';
    }
    return this.fallback.active ? 'serialized' : 'parallel';
  }

  /** A lane refused a batch (capacity, overflow latch): `laneOverflow`. */
  noteLaneRefused(laneId: number): void {
    this.controller?.observeOverflow(1);
    this.#trace.laneRefused(laneId);
    this.fallback.enter('laneOverflow');
  }

  /**
   * True when placed batches should be handed to {@link ControlPlane.stageBatch}:
   * shadow compare may run for their epoch, or tracing is on (every staged
   * batch is traced with the stage scenario id).
   */
  get stagingBatches(): boolean {
    return this.#shadowStaging || this.tracer.enabled;
  }

  /** True when shadow compare may run: placed batches are kept for it. */
  get #shadowStaging(): boolean {
    const { mode, shadowCompareSamplingPerMille: perMille } = this.surface;
    return mode === 'shadowCompare' || (mode === 'auto' && (perMille ?? 0) > 0);
  }

  /**
   * A store checkpoint ran (the store's `CheckpointControl.checkpointed`):
   * traced with the epoch the database file now holds (`checkpointEpoch`).
   */
  checkpointed(outcome: {
    checkpointEpoch: bigint | null;
    conflict: boolean;
    bytesWritten: number;
    durationMs: number;
    error: Error | null;
  }): void {
    if (!this.tracer.enabled) return;
    this.tracer.trace({
      component: 'checkpoint',
      event: outcome.error === null ? 'checkpoint_done' : 'checkpoint_failed',
      checkpointEpoch: outcome.checkpointEpoch,
      fallbackActive: this.fallback.active,
      fallbackReason: this.fallback.reason,
      bytes: outcome.bytesWritten,
      latencyMicros: Math.round(outcome.durationMs * 1000),
      ...(outcome.error !== null
        ? { detail: outcome.error.message }
        : outcome.conflict
          ? { detail: 'ran while the serialized path was required (checkpoint_conflict)' }
          : {}),
    });
  }

  /**
   * Stages a placed batch for shadow compare: snapshots its records (images
   * copied) and queues them on the stager; a compared epoch encodes them afresh
   * (the conservative path's own encoding, independent of the lane's bytes).
   * With tracing on, emits a stage trace record (scenario
   * `parallel_wal_lane_stage`). Returns the batch id (`0n` when the batch
   * was only traced: no shadow compare can run in this mode).
   */
  stageBatch(input: StageBatchInput): bigint {
    this.#trace.staged(input);
    // Traced only (no shadow compare can run): nothing to keep.
    if (!this.#shadowStaging) return 0n;
    const batchId = this.#staging.stage(input);
    this.#counters.batchesStaged++;
    return batchId;
  }

  /**
   * A seal decision point (commit arrival, fsync completion, ticker). Returns
   * `null` when the controller is off (the engine keeps its own rule).
   * `sealEpochNow`: seal the open epoch. `forceConservative`: the fallback is
   * already latched here; seal the open epoch too. Lane-budget changes are
   * applied to the stager here.
   */
  onSealPoint(state: SealPointInfo): ControllerDecision | null {
    const controller = this.controller;
    if (controller === null) return null;
    if (state.contentionTotal !== undefined) {
      controller.observeContention(Math.max(0, state.contentionTotal - this.#contentionSeen));
      this.#contentionSeen = state.contentionTotal;
    }
    const decision = controller.decideAt({ ...state, fallbackActive: this.fallback.active });
    if (decision.action === 'forceConservative' && decision.fallbackReason !== null) {
      this.fallback.enter(decision.fallbackReason);
    }
    this.stager.setLaneBudget(controller.laneBudget);
    return decision;
  }

  /**
   * Builds what to write for `epoch`: the header (version 3 with
   * certificates, else the record version), the records, and the certificate
   * trailer; runs shadow compare when the epoch was sampled. On divergence the
   * conservative result replaces the parallel one (`substituted`) and
   * `publicationMismatch` is latched. Call for every flushed epoch, empty ones
   * included (they only release staged batches).
   */
  prepareEpoch(input: PrepareEpochInput): PreparedEpoch {
    const staged = this.#staging.take(input.epoch, () => this.#trace.stagingMismatch(input.epoch));
    if (input.recordCount === 0) {
      return {
        epoch: input.epoch,
        chunks: [],
        certificate: null,
        shadow: null,
        substituted: false,
        acknowledge: true,
      };
    }
    const version = this.certificates ? CERTIFIED_SEGMENT_VERSION : this.formatVersion;
    const header = encodeSegmentHeader({
      version,
      epoch: input.epoch,
      recordCount: input.recordCount,
    });
    const chunks = [header, ...input.chunks];
    const dbSizePages =
      input.dbSizePages > 0 ? input.dbSizePages : (this.#predecessor?.dbSizePages ?? 0);
    let prepared: PreparedEpoch = {
      epoch: input.epoch,
      chunks,
      certificate: this.certificates
        ? this.#certify(chunks, input.recordsPerCore, dbSizePages)
        : null,
      shadow: null,
      substituted: false,
      acknowledge: true,
    };
    if (staged !== null) {
      prepared = this.#compareShadow(prepared, staged, input, dbSizePages);
      // Unrepairable: nothing of it is written or acknowledged, no trailer.
      if (!prepared.acknowledge) return prepared;
    }
    if (prepared.certificate !== null) {
      prepared.chunks.push(encodeCertificateTrailer(prepared.certificate));
    }
    return prepared;
  }

  /**
   * Shadow compare of a sampled epoch: the parallel result in `prepared`
   * against the conservative one built from the staged batches (and the
   * worker lanes' chunks). Clean: `prepared` with the outcome. Diverged:
   * the conservative result in its place (`substituted`, certified anew), or
   * — when the worker lanes' chunks were not given, so the conservative
   * result may lack records — `acknowledge: false`.
   */
  #compareShadow(
    prepared: PreparedEpoch,
    staged: readonly StagedBatch[],
    input: PrepareEpochInput,
    dbSizePages: number,
  ): PreparedEpoch {
    const batches: ShadowBatch[] = staged.map((b) => ({
      laneId: 0,
      commitSeq: b.commitSeq,
      records: encodeRecordFrames(b.records, this.formatVersion),
      dbSizePages: b.dbSizePages,
    }));
    for (const chunk of input.externalChunks ?? []) {
      batches.push({ laneId: 0, commitSeq: 0n, records: chunk, dbSizePages: 0 });
    }
    const { chunks, certificate } = prepared;
    const shadow = shadowCompare({
      epoch: input.epoch,
      batches,
      partial: input.externalChunks === undefined,
      parallel: {
        segment: chunks,
        certificate:
          certificate ?? this.#certifyUnchecked(chunks, input.recordsPerCore, dbSizePages),
      },
      predecessor: this.#predecessor,
      fallback: this.fallback,
    });
    this.#counters.compared++;
    if (shadow.verdict === 'clean') {
      this.#counters.clean++;
      this.#trace.shadow(input.epoch, shadow, 'clean');
      return { ...prepared, shadow };
    }
    this.#counters.diverged++;
    if (input.externalChunks === undefined) {
      // The conservative result may lack records of lanes the stager never
      // saw: it cannot stand in. Never acknowledge the diverged epoch.
      this.#trace.shadow(input.epoch, shadow, 'diverged_unrepairable');
      return { ...prepared, shadow, acknowledge: false };
    }
    this.#counters.substituted++;
    const substitute = [shadow.conservative.segment];
    const certified = this.certificates
      ? this.#certify(substitute, [shadow.conservative.certificate.recordCount()], dbSizePages)
      : null;
    this.#trace.shadow(input.epoch, shadow, 'diverged_substituted');
    return { ...prepared, chunks: substitute, certificate: certified, shadow, substituted: true };
  }

  /**
   * The epoch's write and fsync succeeded (`latencyMicros` for both): the
   * certificate becomes the predecessor of the next, the controller gets an
   * fsync sample, and a trace record is emitted. Call before acknowledging.
   */
  epochDurable(prepared: PreparedEpoch, latencyMicros: number): void {
    const now = this.#now();
    if (prepared.chunks.length > 0) this.controller?.observeFsync(latencyMicros, now);
    const cert = prepared.certificate;
    if (cert !== null) {
      this.#predecessor = cert.link();
      this.#lastCertificate = cert;
      this.#counters.certificates++;
    }
    this.#trace.durable(prepared.epoch, cert, prepared.shadow, latencyMicros);
  }

  /** The epoch's write failed: nothing of it becomes a predecessor. */
  epochFailed(epoch: bigint, cause: unknown): void {
    this.#trace.failed(epoch, cause);
  }

  /**
   * Verifies the certificate chain on disk (at open). A failure latches the
   * fallback reason of the same name; it is thrown unless `skipCorrupt`. The
   * last good link becomes the predecessor of the next certificate.
   */
  async verifyChainOnDisk(
    dbPath: string,
    options: { fs?: WalFileSystem; skipCorrupt?: boolean } = {},
  ): Promise<ChainOnDiskReport> {
    const report = await verifyCertificateChainOnDisk(dbPath, {
      ...options,
      anchor: this.#predecessor,
      skipCorrupt: true,
    });
    this.#trace.chain(report);
    if (report.failure !== null) {
      this.fallback.enter(report.failure.reason);
      // Failing closed: nothing changes, a later check reports the same.
      if (options.skipCorrupt !== true) throw report.failure;
    }
    if (report.lastGood !== null) this.#predecessor = report.lastGood;
    // Checked: the open-time check must not verify again against this anchor.
    this.#verifiedAtOpen = dbPath;
    return report;
  }

  /**
   * The open-time check (`EngineControl.verifyAtOpen`): with certificates
   * on, verifies the chain on disk once per database (the page store checks
   * before folding, the log's open then skips it). A failure latches its
   * reason and is thrown — unless `onChainFailure` is `fallback` and the
   * reason is `certificateGap` or `certificateChecksumMismatch` (the records
   * themselves passed their checksums; only the chain's evidence is broken).
   * `recoveryGap` always fails the open: a segment in the middle is gone,
   * with acknowledged commits in it, and no path can bring them back.
   * Without certificates it does nothing.
   * @throws {CertificateChainError} `ERR_RECOVERY_GAP`, `ERR_CERTIFICATE_GAP`,
   * `ERR_CERTIFICATE_CHECKSUM_MISMATCH`.
   */
  async verifyAtOpen(dbPath: string, options: { fs?: WalFileSystem } = {}): Promise<void> {
    if (!this.certificates || this.#verifiedAtOpen === dbPath) return;
    const report = await verifyCertificateChainOnDisk(dbPath, {
      ...(options.fs === undefined ? {} : { fs: options.fs }),
      anchor: this.#predecessor,
      skipCorrupt: true,
    });
    this.#trace.chain(report);
    const failure = report.failure;
    if (failure !== null) {
      this.fallback.enter(failure.reason);
      if (this.#onChainFailure === 'fail' || failure.reason === 'recoveryGap') throw failure;
    }
    if (report.lastGood !== null) this.#predecessor = report.lastGood;
    this.#verifiedAtOpen = dbPath;
  }

  /**
   * The explicit way back to the parallel path: succeeds when nothing is in
   * flight (`pendingEpochs` = sealed epochs not yet durable), the chain
   * verified, and the operator does not force `conservative`.
   */
  clearFallback(pendingEpochs: number, chainVerified = true): ClearOutcome {
    return this.fallback.clearAfterCleanState({
      pendingEpochs,
      chainVerified,
      operatorForced: this.surface.mode === 'conservative',
    });
  }

  /** The link the next certificate will chain to. */
  get predecessor(): CertificateLink | null {
    return this.#predecessor;
  }

  /** The last certificate issued in this session. */
  get lastCertificate(): CommitCertificate | null {
    return this.#lastCertificate;
  }

  /** Counters for the engine's `stats()`. */
  stats(): ControlPlaneStats {
    const counts: Record<string, number> = {};
    const raw = this.fallback.counts();
    for (const reason of FALLBACK_REASONS) counts[fallbackReasonName(reason)] = raw[reason];
    const c = this.#counters;
    return {
      mode: modeName(this.surface.mode),
      laneCount: this.laneCount(),
      laneBudget: this.controller?.laneBudget ?? this.stager.laneBudget,
      laneByteBudget: this.controller?.laneByteBudget ?? null,
      fallbackActive: this.fallback.active,
      fallbackReason: fallbackReasonName(this.fallback.reason),
      fallbackCounts: counts,
      fallbackClears: this.fallback.clears,
      batchesStaged: c.batchesStaged,
      shadow: {
        compared: c.compared,
        clean: c.clean,
        diverged: c.diverged,
        substituted: c.substituted,
      },
      certificates: {
        issued: c.certificates,
        lastEpoch: this.#lastCertificate?.certificateEpoch ?? null,
        lastCrc32c: this.#lastCertificate?.certificateCrc32c ?? null,
      },
      decisions: { total: c.decisions, byAction: { ...this.#byAction } },
    };
  }

  /** Flushes and closes the trace sink. */
  close(): void {
    this.tracer.close();
  }

  #certify(
    chunks: readonly Uint8Array[],
    laneRecordCounts: readonly number[],
    dbSizePages: number,
  ): CommitCertificate {
    return buildCommitCertificate({
      segment: chunks,
      laneCount: Math.min(0xffff, this.laneCount()),
      laneRecordCounts,
      dbSizePages,
      fallbackActive: this.fallback.active,
      predecessor: this.#predecessor,
    });
  }

  /** A certificate for comparison only (certificates off): a chain error is a divergence, not a throw. */
  #certifyUnchecked(
    chunks: readonly Uint8Array[],
    laneRecordCounts: readonly number[],
    dbSizePages: number,
  ): CommitCertificate | null {
    try {
      return this.#certify(chunks, laneRecordCounts, dbSizePages);
    } catch (error) {
      if (error instanceof CertificateChainError || error instanceof WalArgumentError) return null;
      throw error;
    }
  }

  /** Counts a controller decision (for `stats()`) and traces it. */
  #countDecision(d: ControllerDecision): void {
    this.#counters.decisions++;
    this.#byAction[d.action] = (this.#byAction[d.action] ?? 0) + 1;
    this.#trace.decision(d);
  }
}
