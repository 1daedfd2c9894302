/**
 * What the parts of an open page store share: its files, its log, its page
 * index and its header. `page-store.ts` builds it once; the checkpointer
 * (`checkpoint.ts`) and the read-back (`read-back.ts`) work on it.
 */
import type { ParallelWal } from '../engine/wal.js';
import type { WalFileSystem } from '../storage/fs.js';
import type { DatabaseFile } from './db-file.js';
import { StoreError, StoreErrorCode } from './errors.js';
import type { StoreHeader } from './header.js';
import type { PageIndex } from './page-index.js';
import type { PageStoreOptions } from './page-store-types.js';

/** The state of one open page store that its parts read and (header only) move. */
export interface StoreCore {
  /** Path of the database file. */
  readonly path: string;
  /** Page size in bytes. */
  readonly pageSize: number;
  readonly fs: WalFileSystem;
  readonly file: DatabaseFile;
  /** The writable log (the store is its only writer). */
  readonly wal: ParallelWal;
  /** Durable commits since the last checkpoint. */
  readonly index: PageIndex;
  readonly options: PageStoreOptions;
  /** The header as last made durable; only a checkpoint replaces it. */
  header: StoreHeader;
}

/** Last epoch folded into the database file under `header` (`null`: none). */
export function checkpointEpochOf(header: StoreHeader): bigint | null {
  return header.nextEpoch === 0n ? null : header.nextEpoch - 1n;
}

/** The error of every call on a closed (or closing) store. */
export function closedError(path: string): StoreError {
  return new StoreError(StoreErrorCode.closed, `page store ${path} is closed`);
}
