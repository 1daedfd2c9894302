/**
 * The database file lent out while no checkpoint may write it (a base
 * snapshot of a replicated database reads it). `Checkpointer.hold` keeps
 * checkpoints away; this module opens the file and reads it.
 */
import { WalArgumentError } from '../errors.js';
import type { WalFileHandle } from '../storage/fs.js';
import { describeError, StoreError, StoreErrorCode } from './errors.js';
import { checkpointEpochOf, type StoreCore } from './store-core.js';

/**
 * The database file held still by {@link PageStore.withCheckpointImage}: no
 * checkpoint writes it while the image is held.
 *
 * Every epoch `<= epoch` is in the file. A checkpoint folding from memory
 * writes each page's NEWEST acknowledged image, which may belong to an epoch
 * after the one it folds through (the log keeps those epochs, so local
 * recovery rewrites them); a failed checkpoint may have written the file
 * without moving the header. So the file is exactly the database as of
 * `epoch` only where no commit of the epochs `epoch + 1 ..= consistentEpoch`
 * wrote or cut a page: replaying those epochs over it yields exactly the
 * database as of `consistentEpoch` (or of any later epoch replayed to).
 */
export interface CheckpointImage {
  /** Last epoch folded into the file (`null`: none ever; then `dbSizePages` is 0). */
  epoch: bigint | null;
  /**
   * The first epoch whose state the image plus the log after `epoch` can
   * reproduce exactly (`>= epoch`): `epoch` while no checkpoint has written
   * the file since the store was opened (recovery folds the log exactly) or
   * when no commit is known above it; else the newest epoch whose images the
   * file may already hold.
   */
  consistentEpoch: bigint | null;
  /** Page size in bytes. */
  pageSize: number;
  /** Database size in pages as of `epoch` (the header's): the file's pages `1 ..= dbSizePages`. */
  dbSizePages: number;
  /** Highest commit sequence folded into the file (`0n`: none). */
  commitSeq: bigint;
  /**
   * `length` bytes of the database file from `offset` (zeros past its end).
   * Only while the image is held.
   * @throws {StoreError} `ERR_STORE_CLOSED` once the image is released;
   * `ERR_STORE_IO` when the read fails; {@link WalArgumentError} for an
   * offset or length that is not a non-negative safe integer.
   */
  read(offset: number, length: number): Promise<Uint8Array>;
}

/**
 * Opens the database file of `core` for reading and hands `fn` its image;
 * the image's reads fail once `fn` settled. Call only while checkpoints are
 * held off.
 * @param newestInFile the newest epoch whose page images the file may hold
 * beyond its header's epoch (memory checkpoints), or `null`.
 * @param readBackFailed true when commits read back from the log failed to
 * reach the index: the image is then bounded by the published epoch.
 */
export async function lendCheckpointImage<T>(
  core: StoreCore,
  newestInFile: bigint | null,
  readBackFailed: boolean,
  fn: (image: CheckpointImage) => Promise<T>,
): Promise<T> {
  const header = core.header;
  let handle: WalFileHandle;
  try {
    handle = await core.fs.open(core.path, 'read');
  } catch (error) {
    throw new StoreError(
      StoreErrorCode.io,
      `cannot open ${core.path} for a checkpoint image: ${describeError(error)}`,
      { cause: error },
    );
  }
  const lease = { held: true };
  try {
    const epoch = checkpointEpochOf(header);
    // The file is exactly the header's epoch until a memory checkpoint
    // wrote images of later commits into it (recorded before the write, so
    // a run that failed after writing counts too).
    let consistent = newestOf(epoch, newestInFile);
    if (readBackFailed) consistent = newestOf(consistent, core.wal.durableEpoch());
    return await fn({
      epoch,
      consistentEpoch: consistent,
      pageSize: header.pageSize,
      dbSizePages: header.dbSizePages,
      commitSeq: header.checkpointCommitSeq,
      read: (offset, length) => readImage(core.path, handle, lease, offset, length),
    });
  } finally {
    lease.held = false;
    await handle.close().catch(() => undefined);
  }
}

function newestOf(a: bigint | null, b: bigint | null): bigint | null {
  if (b === null) return a;
  return a === null || a < b ? b : a;
}

async function readImage(
  path: string,
  file: WalFileHandle,
  lease: { held: boolean },
  offset: number,
  length: number,
): Promise<Uint8Array> {
  if (!Number.isSafeInteger(offset) || offset < 0)
    throw new WalArgumentError(`offset must be a non-negative safe integer, got ${offset}`);
  if (!Number.isSafeInteger(length) || length < 0)
    throw new WalArgumentError(`length must be a non-negative safe integer, got ${length}`);
  if (!lease.held) {
    throw new StoreError(
      StoreErrorCode.closed,
      `the checkpoint image of ${path} was released (read after its callback settled)`,
    );
  }
  const into = new Uint8Array(length);
  let done = 0;
  try {
    while (done < length) {
      const n = await file.read(into.subarray(done), offset + done, length - done);
      if (n <= 0) break; // end of file: the rest stays zero
      done += n;
    }
  } catch (error) {
    throw new StoreError(
      StoreErrorCode.io,
      `cannot read ${path} at offset ${offset + done}: ${describeError(error)}`,
      { cause: error },
    );
  }
  return into;
}
