/**
 * The read-only view of the log under a page store: a store's log holds
 * records only the store may write, so callers get everything that reads the
 * log's state or waits for it, and nothing that writes or closes it.
 */
import type { DurableEpochInfo, ParallelWal } from '../engine/wal.js';

/**
 * What {@link PageStore.log} exposes of the log under a store: everything
 * that reads its state or waits for it, nothing that writes records or
 * closes it (the store owns both).
 */
export type StoreLogView = Pick<
  ParallelWal,
  | 'dbPath'
  | 'config'
  | 'currentEpoch'
  | 'appendEpoch'
  | 'durableEpoch'
  | 'acknowledgedEpoch'
  | 'isFailed'
  | 'isRunning'
  | 'waitForEpochDurable'
  | 'advanceAndFlush'
  | 'onDurable'
  | 'onAcknowledged'
  | 'onFailed'
  | 'stats'
  | 'resetLatencyHistogram'
>;

/** A frozen object forwarding the {@link StoreLogView} members to `wal`, and nothing else. */
export function readOnlyLog(wal: ParallelWal): StoreLogView {
  return Object.freeze({
    get dbPath() {
      return wal.dbPath;
    },
    get config() {
      return wal.config;
    },
    get currentEpoch() {
      return wal.currentEpoch;
    },
    get appendEpoch() {
      return wal.appendEpoch;
    },
    get isFailed() {
      return wal.isFailed;
    },
    durableEpoch: () => wal.durableEpoch(),
    acknowledgedEpoch: () => wal.acknowledgedEpoch(),
    isRunning: () => wal.isRunning(),
    waitForEpochDurable: (epoch: bigint, timeoutMs: number) =>
      wal.waitForEpochDurable(epoch, timeoutMs),
    advanceAndFlush: (timeoutMs: number) => wal.advanceAndFlush(timeoutMs),
    onDurable: (listener: (info: DurableEpochInfo) => void) => wal.onDurable(listener),
    onAcknowledged: (listener: (epoch: bigint, info: DurableEpochInfo) => void) =>
      wal.onAcknowledged(listener),
    onFailed: (listener: Parameters<ParallelWal['onFailed']>[0]) => wal.onFailed(listener),
    stats: () => wal.stats(),
    resetLatencyHistogram: () => wal.resetLatencyHistogram(),
  });
}
