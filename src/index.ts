export {
  type AdvanceOptions,
  type AdvanceResult,
  EpochCoordinator,
  type EpochSegment,
  type FenceableLane,
} from './engine/epochs.js';
export * from './engine/errors.js';
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
export { parallelWalForPath, removeParallelWal } from './engine/registry.js';
export {
  type CommitResult,
  DEFAULT_EPOCH_INTERVAL_MS,
  DEFAULT_MAX_EPOCH_BYTES,
  type DurableEpochInfo,
  ParallelWal,
  type ParallelWalBatch,
  type ParallelWalConfig,
  type ParallelWalFrame,
  type ParallelWalStats,
  resolveParallelWalConfig,
  type WalWriter,
} from './engine/wal.js';
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
export {
  IO_ERROR_CODE,
  SEGMENT_CORRUPT_CODE,
  SegmentCorruptError,
  SegmentFileErrorReason,
  WalIoError,
} from './storage/errors.js';
export {
  nodeFileSystem,
  type OpenMode,
  type WalFileHandle,
  type WalFileSystem,
  type WalStat,
} from './storage/fs.js';
export {
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
