/**
 * Segment retention for the CLI's checkpoint and recovery: a database that a
 * replicator ships (it has a replication state file) keeps every segment
 * above the replicated watermark saved there — the CLI does not talk to the
 * cluster, and that watermark is never ahead of what the cluster holds.
 */
import { readReplicationState } from '../replication/state-file.js';
import type { WalFileSystem } from '../storage/fs.js';
import type { PageStoreOptions } from '../store/page-store.js';

/** `{ retainSegmentsAbove }` for a replicated database, `{}` otherwise. */
export async function retentionOptions(
  dbPath: string,
  fs: WalFileSystem,
): Promise<Pick<PageStoreOptions, 'retainSegmentsAbove'>> {
  const state = await readReplicationState(dbPath, fs);
  if (state === null) return {};
  const replicated = state.replicatedEpoch;
  return { retainSegmentsAbove: () => replicated };
}
