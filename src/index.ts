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
