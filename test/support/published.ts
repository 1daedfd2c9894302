import type { ParallelWal } from '../../src/engine/wal.js';

/**
 * Waits until every epoch acknowledged so far is published (segment under its
 * segment name, name durable). With the default `earlyAck` sink a commit
 * resolves at its acknowledgement and the rename follows in the background:
 * await this before listing or reading segment files.
 */
export async function awaitPublished(
  wal: Pick<ParallelWal, 'acknowledgedEpoch' | 'waitForEpochDurable'>,
  timeoutMs = 10_000,
): Promise<void> {
  const acknowledged = wal.acknowledgedEpoch();
  if (acknowledged !== null) await wal.waitForEpochDurable(acknowledged, timeoutMs);
}
