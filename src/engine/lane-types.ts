/**
 * The contract between the epoch engine and a lane (docs/design.md#lanes).
 *
 * A lane belongs to one writer context (an async writer on the owner thread, or
 * a worker thread writing into a SharedArrayBuffer). It holds records already
 * encoded in segment wire form (`u32 len` + record body, see
 * `format/record.ts#encodeRecordInto`), so that building a segment is sorting
 * and concatenating, never re-encoding.
 *
 * The engine (owner thread) is the only caller of this interface.
 */

/** One lane's share of an epoch, handed to the flusher by {@link EngineLane.beginFlush}. */
export interface SealedLaneData {
  laneId: number;
  epoch: bigint;
  /**
   * Encoded records in wire form, back to back. Each chunk holds whole records;
   * a record never spans two chunks. Chunks stay valid until
   * {@link EngineLane.completeFlush} for the same epoch.
   */
  chunks: Uint8Array[];
  /** Records in `chunks` (committed and aborted). */
  recordCount: number;
  /** Total bytes of `chunks`. */
  byteCount: number;
}

/** The state of one of a lane's two buffers. */
export type LaneBufferState =
  | { kind: 'writable' }
  | { kind: 'sealed'; epoch: bigint }
  | { kind: 'flushing'; epoch: bigint };

/** What the engine needs from every lane, in-process or shared-memory. */
export interface EngineLane {
  readonly laneId: number;
  /**
   * Advances the lane to `nextEpoch` under the lane's lock: if the active buffer
   * is Writable and holds records tagged `nextEpoch - 1`, it becomes
   * Sealed{nextEpoch - 1}; from then on appends are tagged `nextEpoch`. Returns
   * true when something was sealed. Tagging under the same lock is what keeps a
   * record from straddling an epoch boundary (defect 1 of the original).
   */
  advance(nextEpoch: bigint): boolean;
  /**
   * Begins the flush of `epoch`: swaps the active and flush buffers so writers
   * keep appending while the disk works, marks the sealed one Flushing{epoch},
   * and returns its records; `null` when the lane has nothing sealed at `epoch`.
   */
  beginFlush(epoch: bigint): SealedLaneData | null;
  /** The segment of `epoch` is durable (or abandoned): clear and reuse the flush buffer. */
  completeFlush(epoch: bigint): void;
  /** Bytes currently buffered and not yet sealed. */
  pendingBytes(): number;
  /** Appends that found the lane's lock taken. */
  contentionEvents(): number;
}
