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
import { WalArgumentError } from '../errors.js';
import { encodeRecordFrames } from '../format/frames.js';
import { encodeSegmentHeader } from '../format/segment.js';
import type { FormatVersion, TxnToken, WalRecord } from '../format/types.js';
import type { WalFileSystem } from '../storage/fs.js';
import type { CertificateLink, CommitCertificate } from './certificate.js';
import { buildCommitCertificate } from './certify.js';
import { type ChainOnDiskReport, verifyCertificateChainOnDisk } from './chain-files.js';
import {
  type ControllerDecision,
  type ControllerPolicy,
  SealController,
  type SealPointState,
} from './controller.js';
import { CertificateChainError } from './errors.js';
import { type ClearOutcome, FallbackState, type FallbackTransition } from './fallback.js';
import { type BatchContext, LaneStager } from './lane-stager.js';
import { CERTIFIED_SEGMENT_VERSION, encodeCertificateTrailer } from './segment-v3.js';
import { type ShadowBatch, type ShadowOutcome, shadowCompare } from './shadow.js';
import {
  type ControlSurface,
  FALLBACK_REASONS,
  type FallbackReason,
  fallbackReasonName,
  laneBudgetMax,
  laneCount,
  modeName,
  parallelWalFlushScenarioId,
  parallelWalStageScenarioId,
  resolveControlSurface,
  shouldShadowCompare,
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

/** A record as the engine encodes it into a lane (the engine's `LaneRecordInput`). */
export interface StageRecordInput {
  txnToken: TxnToken;
  pageId: number;
  beginSeq: bigint;
  endSeq: bigint | null;
  beforeImage: Uint8Array;
  afterImage: Uint8Array;
}

/** One placed batch, staged for shadow compare. */
export interface StageBatchInput {
  /** Engine lane id the batch went to (any id; the serialized lane included). */
  laneId: number;
  /** Epoch the lane tagged the batch with. */
  epoch: bigint;
  commitSeq: bigint;
  /** The commit's database size (0 = unchanged). */
  dbSizePages: number;
  records: readonly StageRecordInput[];
}

/** What the engine knows about an epoch it is about to write. */
export interface PrepareEpochInput {
  epoch: bigint;
  /** Committed records in canonical order, wire form (the engine's `EpochSegment.chunks`). */
  chunks: readonly Uint8Array[];
  recordCount: number;
  /** Lanes that took part and what each contributed (parallel arrays). */
  laneIds: readonly number[];
  recordsPerCore: readonly number[];
  /** Database size after the epoch's last in-process commit; 0 when unknown. */
  dbSizePages: number;
  /**
   * Raw records of every lane the stager never saw (worker lanes), for shadow
   * compare; pass `[]` when there are none. Giving it declares the staged
   * batches plus these chunks complete: the whole epoch is compared and a
   * diverged epoch can be replaced by the conservative result. Without it only
   * the staged commits are compared (partial), and a divergence cannot be
   * repaired: the epoch must not be acknowledged.
   */
  externalChunks?: readonly Uint8Array[];
}

/** What to write for an epoch, and whether it may be acknowledged. */
export interface PreparedEpoch {
  epoch: bigint;
  /** Header + records (+ certificate trailer): exactly what to write. Empty for an empty epoch. */
  chunks: Uint8Array[];
  certificate: CommitCertificate | null;
  shadow: ShadowOutcome | null;
  /**
   * True when the parallel result diverged and `chunks` are the conservative
   * result instead (the diverged bytes are never written or acknowledged).
   */
  substituted: boolean;
  /** False only if the epoch must not be acknowledged at all (the engine fails it). */
  acknowledge: boolean;
}

/** Counters and state for `stats()`. */
export interface ControlPlaneStats {
  mode: string;
  laneCount: number;
  laneBudget: number;
  fallbackActive: boolean;
  /** Seed name of the active reason (`none` when inactive). */
  fallbackReason: string;
  fallbackCounts: Record<string, number>;
  fallbackClears: number;
  batchesStaged: number;
  shadow: { compared: number; clean: number; diverged: number; substituted: number };
  certificates: { issued: number; lastEpoch: bigint | null; lastCrc32c: number | null };
  decisions: { total: number; byAction: Record<string, number> };
}

interface StagedBatch {
  epoch: bigint;
  commitSeq: bigint;
  dbSizePages: number;
  /** The records as placed, images copied (the caller may reuse its buffers). */
  records: WalRecord[];
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
  readonly #epochContexts = new Map<bigint, BatchContext[]>();
  readonly #sampledEpochs = new Set<bigint>();
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
    this.fallback = new FallbackState((t) => this.#traceFallback(t));
    this.stager = new LaneStager<StagedBatch>(this.surface);
    this.#predecessor = options.anchor ?? null;
    const controllerOption = options.controller ?? true;
    this.controller =
      controllerOption === false
        ? null
        : new SealController({
            laneBudgetMax: laneBudgetMax(this.surface),
            policy: {
              ...(this.surface.maxFlushDelayMs === undefined
                ? {}
                : { maxFlushDelayMs: this.surface.maxFlushDelayMs }),
              ...(controllerOption === true ? {} : controllerOption),
            },
            onDecision: (d) => this.#traceDecision(d),
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

  /** True while batches must take the serialized (conservative) path. */
  serializedPathRequired(): boolean {
    return this.fallback.active;
  }

  /** The store's checkpoint hook (and any other component's): latch a fallback with a reason. */
  reportFallback(reason: FallbackReason, detail: string): void {
    if (this.tracer.enabled) {
      this.tracer.trace({
        component: 'fallback',
        event: 'reported',
        fallbackActive: true,
        fallbackReason: reason,
        detail,
      });
    }
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
    if (this.tracer.enabled) {
      this.tracer.trace({
        component: 'lane',
        event: 'refused',
        laneId,
        fallbackReason: 'laneOverflow',
      });
    }
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
    if (this.tracer.enabled) {
      let bytes = 0;
      for (const r of input.records) bytes += r.afterImage.length + r.beforeImage.length;
      this.tracer.trace({
        component: 'stager',
        event: 'staged',
        scenarioId: parallelWalStageScenarioId,
        laneId: input.laneId,
        epoch: input.epoch,
        commitSeqLo: input.commitSeq,
        commitSeqHi: input.commitSeq,
        bytes,
        fallbackActive: this.fallback.active,
        fallbackReason: this.fallback.reason,
      });
    }
    // Traced only (no shadow compare can run): nothing to keep.
    if (!this.#shadowStaging) return 0n;
    // Snapshot now (images copied: memcpy speed), encode later and only for
    // epochs that are compared. Measured: encoding at staging cost ≈ 6.7 µs per
    // 4 KiB record, most of the cost of 1 % sampling.
    const records: WalRecord[] = [];
    for (const r of input.records) {
      records.push({
        txnToken: { id: r.txnToken.id, epoch: r.txnToken.epoch },
        epoch: input.epoch,
        pageId: r.pageId,
        beginSeq: r.beginSeq,
        endSeq: r.endSeq,
        beforeImage: r.beforeImage.length === 0 ? r.beforeImage : r.beforeImage.slice(),
        afterImage: r.afterImage.slice(),
      });
    }
    const batchId = this.stager.nextBatchId();
    const laneId = input.laneId % this.stager.laneCount();
    this.stager.recordBatch({
      batchId,
      laneId,
      stagedFrameCount: input.records.length,
      stagingElapsedNs: 0n,
      shadowVerdict: 'notRun',
      payload: {
        epoch: input.epoch,
        commitSeq: input.commitSeq,
        dbSizePages: input.dbSizePages,
        records,
      },
    });
    let contexts = this.#epochContexts.get(input.epoch);
    if (contexts === undefined) {
      contexts = [];
      this.#epochContexts.set(input.epoch, contexts);
    }
    contexts.push({ batchId, laneId });
    if (shouldShadowCompare(this.surface, batchId)) this.#sampledEpochs.add(input.epoch);
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
  onSealPoint(
    state: Omit<SealPointState, 'fallbackActive'> & { contentionTotal?: number },
  ): ControllerDecision | null {
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
    const staged = this.#takeStaged(input.epoch);
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
    let chunks = [header, ...input.chunks];
    const laneRecordCounts = input.recordsPerCore;
    const dbSizePages =
      input.dbSizePages > 0 ? input.dbSizePages : (this.#predecessor?.dbSizePages ?? 0);
    let certificate = this.certificates
      ? this.#certify(chunks, laneRecordCounts, dbSizePages)
      : null;
    let shadow: ShadowOutcome | null = null;
    let substituted = false;
    if (staged !== null) {
      const batches: ShadowBatch[] = staged.map((b) => ({
        laneId: 0,
        commitSeq: b.commitSeq,
        records: encodeRecordFrames(b.records, this.formatVersion),
        dbSizePages: b.dbSizePages,
      }));
      for (const chunk of input.externalChunks ?? []) {
        batches.push({ laneId: 0, commitSeq: 0n, records: chunk, dbSizePages: 0 });
      }
      shadow = shadowCompare({
        epoch: input.epoch,
        batches,
        partial: input.externalChunks === undefined,
        parallel: {
          segment: chunks,
          certificate: certificate ?? this.#certifyUnchecked(chunks, laneRecordCounts, dbSizePages),
        },
        predecessor: this.#predecessor,
        fallback: this.fallback,
      });
      this.#counters.compared++;
      if (shadow.verdict === 'clean') {
        this.#counters.clean++;
      } else {
        this.#counters.diverged++;
        if (input.externalChunks === undefined) {
          // The conservative result may lack records of lanes the stager never
          // saw: it cannot stand in. Never acknowledge the diverged epoch.
          this.#traceShadow(input.epoch, shadow, 'diverged_unrepairable');
          return {
            epoch: input.epoch,
            chunks,
            certificate,
            shadow,
            substituted,
            acknowledge: false,
          };
        }
        this.#counters.substituted++;
        substituted = true;
        chunks = [shadow.conservative.segment];
        certificate = this.certificates
          ? this.#certify(chunks, [shadow.conservative.certificate.recordCount()], dbSizePages)
          : null;
      }
      this.#traceShadow(input.epoch, shadow, substituted ? 'diverged_substituted' : 'clean');
    }
    if (certificate !== null) chunks.push(encodeCertificateTrailer(certificate));
    return { epoch: input.epoch, chunks, certificate, shadow, substituted, acknowledge: true };
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
    if (this.tracer.enabled) {
      this.tracer.trace({
        component: 'flush',
        event: 'epoch_durable',
        scenarioId: parallelWalFlushScenarioId,
        epoch: prepared.epoch,
        commitSeqLo: cert?.commitSeqLo ?? null,
        commitSeqHi: cert?.commitSeqHi ?? null,
        commitCertificate: cert?.certificateCrc32c ?? null,
        fallbackActive: this.fallback.active,
        fallbackReason: this.fallback.reason,
        latencyMicros,
        ...(prepared.shadow === null ? {} : { shadowVerdict: prepared.shadow.verdict }),
      });
    }
  }

  /** The epoch's write failed: nothing of it becomes a predecessor. */
  epochFailed(epoch: bigint, cause: unknown): void {
    if (this.tracer.enabled) {
      this.tracer.trace({
        component: 'flush',
        event: 'epoch_failed',
        epoch,
        detail: cause instanceof Error ? cause.message : String(cause),
        fallbackActive: this.fallback.active,
        fallbackReason: this.fallback.reason,
      });
    }
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
    this.#traceChain(report);
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
    this.#traceChain(report);
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

  /** Staged batches of `epoch` when it is to be compared (else discarded); `null` when not compared. */
  #takeStaged(epoch: bigint): StagedBatch[] | null {
    const contexts = this.#epochContexts.get(epoch) ?? [];
    this.#epochContexts.delete(epoch);
    const sampled = this.#sampledEpochs.delete(epoch);
    if (!sampled || contexts.length === 0) {
      this.stager.discardBatchesForFlush(contexts);
      return null;
    }
    const taken = this.stager.takeBatchesForFlush(contexts);
    if (taken === null) {
      // Staging order broke (an engine bug or an epoch flushed out of order):
      // nothing to compare against. Drop them and say so.
      this.stager.discardBatchesForFlush(contexts);
      if (this.tracer.enabled) {
        this.tracer.trace({ component: 'shadow', event: 'staging_mismatch', epoch });
      }
      return null;
    }
    return contexts.map((c) => taken.get(c.batchId)!.payload);
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

  #traceChain(report: ChainOnDiskReport): void {
    if (!this.tracer.enabled) return;
    this.tracer.trace({
      component: 'recovery',
      event: report.failure === null ? 'chain_ok' : 'chain_broken',
      recoveryEpoch: report.lastGoodEpoch,
      fallbackReason: report.failure?.reason ?? null,
      fallbackActive: report.failure !== null || this.fallback.active,
    });
  }

  #traceShadow(epoch: bigint, shadow: ShadowOutcome, event: string): void {
    if (!this.tracer.enabled) return;
    this.tracer.trace({
      component: 'shadow',
      event,
      epoch,
      shadowVerdict: shadow.verdict,
      fallbackActive: this.fallback.active,
      fallbackReason: this.fallback.reason,
    });
  }

  #traceFallback(t: FallbackTransition): void {
    if (!this.tracer.enabled) return;
    this.tracer.trace({
      component: 'fallback',
      event: t.kind === 'enter' ? (t.wasActive ? 'reason_added' : 'enter') : 'clear',
      fallbackActive: t.kind === 'enter',
      fallbackReason: t.reason,
    });
  }

  #traceDecision(d: ControllerDecision): void {
    this.#counters.decisions++;
    this.#byAction[d.action] = (this.#byAction[d.action] ?? 0) + 1;
    if (!this.tracer.enabled) return;
    this.tracer.decision(d.record);
    this.tracer.trace({
      component: 'controller',
      event: d.action,
      decisionId: d.record.decisionId,
      policyId: d.record.policyId,
      policyVersion: d.record.policyVersion,
      fallbackActive: this.fallback.active,
      fallbackReason: this.fallback.reason,
    });
  }
}
