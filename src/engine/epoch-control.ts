/**
 * The control plane's version of a sealed epoch's bytes (shadow compare,
 * certificate trailer), asked for by the flusher before each write. See
 * `control-hooks.ts` for the interface the control plane implements.
 */
import type { EngineControl, PreparedEpochWrite } from './control-hooks.js';
import type { EpochSegment } from './epochs.js';
import { SERIALIZED_LANE_ID } from './wal-config.js';

/**
 * What `control` wants written for `segment`. Lanes with ids from
 * `slotCount` on (worker and registered lanes, not the serialized lane)
 * encode on their own threads and are never staged: their sealed bytes are
 * passed as `externalChunks` to complete the conservative result, so the
 * whole epoch is compared and a divergence is repaired (fallback), never a
 * failure.
 */
export function prepareEpochWithControl(
  control: EngineControl,
  segment: EpochSegment,
  slotCount: number,
  dbSizePages: number,
): PreparedEpochWrite {
  const externalChunks: Uint8Array[] = [];
  for (const share of segment.laneShares) {
    if (share.laneId >= slotCount && share.laneId !== SERIALIZED_LANE_ID) {
      externalChunks.push(...share.chunks);
    }
  }
  return control.prepareEpoch({
    epoch: segment.epoch,
    chunks: segment.chunks,
    recordCount: segment.recordCount,
    laneIds: segment.laneIds,
    recordsPerCore: segment.recordsPerCore,
    dbSizePages,
    externalChunks,
  });
}
