/**
 * `parallel-wal`: a parallel write-ahead log with epoch group commit and
 * durable acknowledgements.
 *
 * The entry holds what an application needs and nothing else:
 * - {@link ParallelWal}, the log, with its options, results and stats;
 * - {@link attachWriter}, the writer inside a worker thread;
 * - {@link PageStore}, a database file of fixed-size pages protected by the log;
 * - the segment-file functions (write, list, read, recover segments);
 * - {@link ControlPlane}, its options and trace sinks, and the seed engine's
 *   public constants;
 * - {@link WalFileSystem}, the seam every file operation goes through;
 * - every error class and code ({@link WalError}, {@link isWalError}).
 *
 * Replication is under `parallel-wal/replication`. The list of exports is
 * pinned by test/package/api-surface.json: a change to it is deliberate.
 *
 * @packageDocumentation
 */

// The log.
export type { CertificateLink } from './control/certificate.js';
export type { ChainOnDiskReport } from './control/chain-files.js';
export type { ControllerPolicy, DecisionAction } from './control/controller.js';
// Errors: every class and code callers branch on.
export {
  CertificateChainError,
  CertificateErrorCode,
  type CertificateErrorCodeValue,
  CertificateFormatError,
  ChainErrorCode,
  type ChainFailureReason,
  ShadowDivergenceError,
} from './control/errors.js';
export type { ClearOutcome } from './control/fallback.js';
export { ControlPlane, type ControlPlaneOptions } from './control/plane.js';
export type { ControlPlaneStats } from './control/plane-types.js';
export {
  type ControlSurface,
  defaultParallelWalLaneCount,
  type FallbackReason,
  type OperatingMode,
  parallelWalCompatibilitySelector,
  parallelWalFlushScenarioId,
  parallelWalLanePolicyVersion,
  parallelWalStageScenarioId,
  type ShadowVerdict,
} from './control/surface.js';
export {
  type DecisionRecord,
  type FileTraceSinkOptions,
  fileTraceSink,
  type MemoryTraceSink,
  memoryTraceSink,
  type TraceEvent,
  type TraceRecord,
  type TraceSink,
} from './control/trace.js';
export type { EngineControl, SealPointInfo } from './engine/control-hooks.js';
export {
  AlreadyRunningError,
  BatchTooLargeError,
  DurableTimeoutError,
  EngineError,
  EngineErrorCode,
  type EngineErrorCodeValue,
  EngineInvariantError,
  FenceTimeoutError,
  LaneStateError,
  NoFreeLaneError,
  WalClosedError,
  WalFailedError,
} from './engine/errors.js';
export type {
  DurableWriteExecutorKind,
  DurableWriteExecutorStats,
} from './engine/io-executor.js';
export type { OverflowPolicy } from './engine/lane.js';
// The log's owner on a thread of its own.
export { ThreadedWal, type ThreadedWalConfig } from './engine/log-thread.js';
export type { SegmentPoolStats } from './engine/pool-sink.js';
export type { SegmentSinkKind } from './engine/segment-writer.js';
export {
  type CommitResult,
  type DurableEpochInfo,
  type FlushPhases,
  ParallelWal,
  type ParallelWalBatch,
  type ParallelWalConfig,
  type ParallelWalFrame,
  type ParallelWalStats,
  type WalWriter,
} from './engine/wal.js';
export type { ResolvedParallelWalConfig } from './engine/wal-config.js';
export type { LatencySummary } from './engine/wal-stats.js';
// Writers on worker threads.
export {
  attachWriter,
  type WorkerBatch,
  type WorkerCommitAck,
  type WorkerFrame,
  type WorkerLaneHandle,
  type WorkerWriter,
  workerHandleTransferList,
} from './engine/worker.js';
export type { WorkerLaneStats } from './engine/worker-lane-pool.js';
export { LANE_LOCK_TIMEOUT_CODE, LaneLockTimeoutError } from './engine/worker-layout.js';
export { isWalError, WalArgumentError, WalError } from './errors.js';
export {
  INVALID_RECORD_CODE,
  InvalidRecordError,
  SegmentErrorCode,
  type SegmentErrorCodeValue,
  SegmentFormatError,
} from './format/errors.js';
// Segment files: records, writing, listing, reading, recovery.
export type { DecodedSegment } from './format/segment.js';
export type {
  FormatVersion,
  SegmentHeader,
  SegmentVersion,
  TxnToken,
  WalRecord,
} from './format/types.js';
export type { JsonSafe, LoggableStats } from './stats-json.js';
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
export { LOCK_IO_CODE, LOCKED_CODE, LockError } from './storage/lockfile.js';
export {
  deleteRecoveredSegments,
  type RecoveryStop,
  recoverAndApplySegments,
  recoverSegments,
  type SegmentRecoveryOptions,
  type SegmentRecoveryResult,
} from './storage/recovery.js';
export {
  type EpochFlushBatch,
  type FsOptions,
  type FsyncPolicy,
  listSegments,
  readSegment,
  type SegmentFileEntry,
  segmentPath,
  type WriteSegmentOptions,
  writeSegment,
} from './storage/segment-files.js';
export type { SkippedEpochRange } from './storage/skipped-epochs.js';
// The page store.
export type { PageWrites } from './store/commit-batch.js';
export { StoreError, StoreErrorCode, type StoreErrorCodeValue } from './store/errors.js';
export {
  type CheckpointControl,
  type CheckpointImage,
  type CheckpointOutcome,
  type CheckpointResult,
  type CommitOptions,
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
