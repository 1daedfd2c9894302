/**
 * The durable-write executor that runs each write through the file handle's
 * own (promise) operations, on the calling thread's event loop: the path for
 * any file system other than the real one, and the I/O thread's fallback
 * while it starts or after it is gone (`io-executor.ts`).
 */

import type { WalFileHandle } from '../storage/fs.js';
import {
  type DurableWriteExecutor,
  type DurableWriteExecutorStats,
  DurableWriteFailure,
  type DurableWriteTiming,
  earlierWriteFailed,
} from './io-executor-types.js';
import { elapsedMicros as micros } from './wal-stats.js';

/** Durable writes through the file handle's own (promise) operations, one at a time. */
export class InlineWriteExecutor implements DurableWriteExecutor {
  readonly kind = 'inline' as const;
  private readonly totals = { writes: 0, writeMicros: 0, syncMicros: 0 };
  /** The last write started: the next one starts after it. Never rejects. */
  private tail: Promise<unknown> = Promise.resolve();
  private failed = false;

  writeAt(
    handle: WalFileHandle,
    chunks: readonly Uint8Array[],
    position: number,
    datasync: boolean,
  ): Promise<DurableWriteTiming> {
    const run = this.tail.then(() => {
      if (this.failed) throw earlierWriteFailed();
      return this.writeNow(handle, chunks, position, datasync);
    });
    this.tail = run.catch(() => {
      this.failed = true;
    });
    return run;
  }

  private async writeNow(
    handle: WalFileHandle,
    chunks: readonly Uint8Array[],
    position: number,
    datasync: boolean,
  ): Promise<DurableWriteTiming> {
    const started = performance.now();
    try {
      await handle.writev(chunks, position);
    } catch (cause) {
      throw new DurableWriteFailure('write', cause);
    }
    const written = performance.now();
    if (datasync) {
      try {
        await handle.datasync();
      } catch (cause) {
        throw new DurableWriteFailure('datasync', cause);
      }
    }
    return countWrite(this.totals, started, written);
  }

  stats(): DurableWriteExecutorStats {
    return {
      kind: this.kind,
      threadWrites: 0,
      callerWrites: 0,
      fileJobs: 0,
      fileJobMicros: 0,
      handoffMicros: 0,
      returnMicros: 0,
      ...this.totals,
    };
  }

  async close(): Promise<void> {}
}

/** Writes done on one path, and the time in their system calls (microseconds). */
export interface WriteTotals {
  writes: number;
  writeMicros: number;
  syncMicros: number;
}

/** One finished write (started, written: `performance.now()`; synced: now), added to `totals`. */
export function countWrite(
  totals: WriteTotals,
  started: number,
  written: number,
): DurableWriteTiming {
  const timing = {
    writeMicros: micros(started, written),
    syncMicros: micros(written, performance.now()),
  };
  totals.writes++;
  totals.writeMicros += timing.writeMicros;
  totals.syncMicros += timing.syncMicros;
  return timing;
}
