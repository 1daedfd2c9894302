export {
  CERTIFICATE_FORMAT_VERSION,
  type CertificateFields,
  type CertificateLink,
  CommitCertificate,
  decodeCertificate,
  encodeCertificate,
} from './control/certificate.js';
export {
  type ChainReport,
  type VerifyChainOptions,
  verifyCertificateChain,
} from './control/certificate-chain.js';
export {
  buildCommitCertificate,
  type CertifyEpochInput,
  certificatePayloadDigest,
  type SegmentBytes,
} from './control/certify.js';
export {
  type ChainOnDiskOptions,
  type ChainOnDiskReport,
  verifyCertificateChainOnDisk,
} from './control/chain-files.js';
export {
  BUDGET_CHANGES_KEPT_MAX,
  type ControllerDecision,
  type ControllerEvidence,
  type ControllerPolicy,
  DEFAULT_CONTROLLER_POLICY,
  type DecisionAction,
  decide,
  type LaneBudgetChange,
  type LaneBudgetDimension,
  SealController,
  type SealControllerOptions,
  type SealPointState,
} from './control/controller.js';
export * from './control/errors.js';
export {
  type CleanStateEvidence,
  type ClearOutcome,
  FallbackState,
  type FallbackTransition,
} from './control/fallback.js';
export {
  type BatchContext,
  type LaneBatch,
  LaneStager,
  type WriterContext,
} from './control/lane-stager.js';
export { ControlPlane, type ControlPlaneOptions } from './control/plane.js';
export type { ControlPlaneStats, PreparedEpoch } from './control/plane-types.js';
// Types that appear in the signatures above, so that callers can name them.
export type { SegmentFileBytes } from './control/segment-v3.js';
export {
  appendCertificateTrailer,
  CERTIFIED_SEGMENT_VERSION,
  encodeCertificateTrailer,
  encodeV3SegmentHeader,
  type SegmentChainReport,
  SegmentChainVerifier,
  type SplitSegment,
  splitCertificateTrailer,
  verifySegmentFilesChain,
} from './control/segment-v3.js';
export {
  assertMayAcknowledge,
  type ShadowBatch,
  type ShadowCompareInput,
  type ShadowOutcome,
  shadowCompare,
} from './control/shadow.js';
export {
  type ControlSurface,
  controlSurfaceFromEnv,
  defaultControlSurface,
  defaultParallelWalLaneCount,
  FALLBACK_REASONS,
  type FallbackReason,
  fallbackReasonName,
  LANE_COUNT_MAX,
  laneBudgetMax,
  laneCount,
  modeName,
  type OperatingMode,
  parallelWalCompatibilitySelector,
  parallelWalFlushScenarioId,
  parallelWalLanePolicyVersion,
  parallelWalStageScenarioId,
  resolveControlSurface,
  type ShadowVerdict,
  shadowVerdictName,
  shouldShadowCompare,
  validateControlSurface,
} from './control/surface.js';
export type {
  FileTraceSinkOptions,
  MemoryTraceSink,
  TraceFields,
  TraceSummary,
} from './control/trace.js';
export {
  type DecisionRecord,
  fileTraceSink,
  memoryTraceSink,
  summarizeTrace,
  type TraceEvent,
  type TraceRecord,
  Tracer,
  type TraceSink,
  traceSinkFromEnv,
} from './control/trace.js';
export type {
  EngineControl,
  PreparedEpochWrite,
  PrepareEpochInput,
  SealPointInfo,
  StageBatchInput,
  StageRecordInput,
} from './engine/control-hooks.js';
export type { EpochCoordinatorOptions } from './engine/epochs.js';
export {
  type AdvanceOptions,
  type AdvanceResult,
  EpochCoordinator,
  type EpochSegment,
  type FenceableLane,
} from './engine/epochs.js';
export * from './engine/errors.js';
export type {
  DurableWriteExecutorKind,
  DurableWriteExecutorStats,
} from './engine/io-executor.js';
export type { DrainedLaneData, LaneCounters } from './engine/lane.js';
export {
  type AppendOutcome,
  type BlockedReason,
  DEFAULT_BUFFER_CAPACITY_BYTES,
  DEFAULT_OVERFLOW_FALLBACK_BYTES,
  InProcessLane,
  type InProcessLaneOptions,
  type LaneRecordInput,
  type OverflowPolicy,
} from './engine/lane.js';
export type {
  EngineLane,
  LaneBufferState,
  SealedLaneData,
} from './engine/lane-types.js';
export type { SegmentPoolStats } from './engine/pool-sink.js';
export { parallelWalForPath, removeParallelWal } from './engine/registry.js';
export type { SegmentSinkKind } from './engine/segment-writer.js';
export {
  type CommitResult,
  DEFAULT_EPOCH_INTERVAL_MS,
  DEFAULT_MAX_EPOCH_BYTES,
  type DurableEpochInfo,
  type FlushPhases,
  ParallelWal,
  type ParallelWalBatch,
  type ParallelWalConfig,
  type ParallelWalFrame,
  type ParallelWalStats,
  resolveParallelWalConfig,
  type WalWriter,
} from './engine/wal.js';
export type { ResolvedParallelWalConfig } from './engine/wal-config.js';
export type { LatencySummary } from './engine/wal-stats.js';
export {
  attachWriter,
  DURABLE_WAIT_SLICE_MS,
  type WorkerBatch,
  type WorkerCommitAck,
  type WorkerFrame,
  type WorkerWriter,
} from './engine/worker.js';
export type { WorkerLaneStats } from './engine/worker-lane-pool.js';
export {
  LANE_LOCK_TIMEOUT_CODE,
  LaneLockTimeoutError,
  type WorkerLaneHandle,
  workerHandleTransferList,
} from './engine/worker-layout.js';
export * from './errors.js';
export { crc32c, crc32cJs, crc32cNative } from './format/crc32c.js';
export * from './format/errors.js';
export { compareRecords, recoveryOrder } from './format/order.js';
export {
  decodeRecord,
  encodedRecordBytes,
  encodeRecord,
  encodeRecordInto,
  validateRecord,
} from './format/record.js';
export {
  type DecodedSegment,
  type DecodeSegmentOptions,
  decodeSegment,
  decodeSegmentHeader,
  encodeSegment,
  encodeSegmentHeader,
} from './format/segment.js';
export * from './format/types.js';
export { type JsonSafe, jsonSafe, type LoggableStats } from './stats-json.js';
export {
  IO_ERROR_CODE,
  NOT_REGULAR_FILE_CODE,
  NotRegularFileError,
  RECOVERY_GAP_CODE,
  RecoveryGapError,
  SEGMENT_CORRUPT_CODE,
  SegmentCorruptError,
  SegmentFileErrorReason,
  SKIPPED_EPOCHS_CORRUPT_CODE,
  SkippedEpochsCorruptError,
  WalIoError,
} from './storage/errors.js';
export {
  type LockKind,
  nodeFileSystem,
  type OpenMode,
  type WalFileHandle,
  type WalFileLock,
  type WalFileSystem,
  type WalStat,
} from './storage/fs.js';
export {
  acquireLock,
  LOCK_IO_CODE,
  LOCK_TIMEOUT_MS_MAX,
  LOCKED_CODE,
  LockError,
  type LockHandle,
  type LockInfo,
  type LockOptions,
  lockPath,
  readLock,
} from './storage/lockfile.js';
export {
  type AdoptionOptions,
  cleanupSegments,
  cleanupTemporaryFiles,
  deleteRecoveredSegments,
  maxDurableEpoch,
  type RecoveryStop,
  recoverAndApplySegments,
  recoverSegments,
  type SegmentRecoveryOptions,
  type SegmentRecoveryResult,
} from './storage/recovery.js';
export {
  DEFAULT_FSYNC_POLICY,
  deleteSegment,
  type EpochFlushBatch,
  type FsOptions,
  type FsyncPolicy,
  listSegments,
  readSegment,
  type SegmentFileEntry,
  segmentPath,
  type WriteSegmentFileOptions,
  type WriteSegmentOptions,
  writeSegment,
  writeSegmentFile,
} from './storage/segment-files.js';
export {
  readSkippedEpochs,
  type SkippedEpochRange,
  skippedEpochsPath,
} from './storage/skipped-epochs.js';
export type { PageWrites } from './store/commit-batch.js';
export { describeStore, formatStoreDescription, type StoreDescription } from './store/describe.js';
export { StoreError, StoreErrorCode, type StoreErrorCodeValue } from './store/errors.js';
export {
  DEFAULT_PAGE_SIZE_BYTES,
  PAGE_SIZE_MAX_BYTES,
  PAGE_SIZE_MIN_BYTES,
  type StoreHeader,
  storeHeaderPath,
} from './store/header.js';
export {
  type CheckpointControl,
  type CheckpointImage,
  type CheckpointOutcome,
  type CheckpointResult,
  type CommitOptions,
  checkpointControlFromFallback,
  DEFAULT_CHECKPOINT_THRESHOLD_BYTES,
  PageStore,
  type PageStoreOptions,
  type PageStoreStats,
  type StoreCloseOptions,
  type StoreCommitResult,
  type StoreLogView,
  type StoreRecoveryReport,
  type StoreWorkerHandle,
} from './store/page-store.js';
export {
  type ReplicaSnapshotImage,
  ReplicaStore,
  type ReplicaStoreOptions,
  type ReplicaStoreStats,
} from './store/replica-store.js';
export { attachStoreWriter, type StoreWorkerWriter } from './store/worker.js';
