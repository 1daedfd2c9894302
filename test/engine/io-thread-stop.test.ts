/**
 * Stopping the I/O thread cannot lose its wake-up.
 *
 * The thread checks for work, then sleeps in `Atomics.wait`. A wake-up sent
 * between the two reaches no waiter. Here the thread's program is started
 * with a 200 ms delay injected right before each idle wait, the way a
 * preemption at that moment would delay it: `close()` is called inside that
 * window. A stop that only set a flag and notified (as before this test)
 * left the thread asleep for good and `close()` never returned.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { IoThreadExecutor } from '../../src/engine/io-executor.js';
import { IO_THREAD_SOURCE, IoControlWord } from '../../src/engine/io-thread-source.js';
import { nodeFileSystem } from '../../src/storage/fs.js';
import { useIoThreads } from '../support/io-thread.js';

const { DELAY_BEFORE_WAIT_MS, THREAD_MARK } = vi.hoisted(() => ({
  DELAY_BEFORE_WAIT_MS: 200,
  // A line only the I/O thread's program has.
  THREAD_MARK: 'answer(job.kind',
}));

vi.mock('node:worker_threads', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:worker_threads')>();
  // Only the idle wait has no timeout: delay it, as a preemption would.
  const delay = `{
    const wait = Atomics.wait;
    const nap = new Int32Array(new SharedArrayBuffer(4));
    Atomics.wait = (array, index, value, timeout) => {
      if (timeout === undefined) wait(nap, 0, 0, ${DELAY_BEFORE_WAIT_MS});
      return wait(array, index, value, timeout);
    };
  }`;
  class DelayedWorker extends real.Worker {
    constructor(source: string | URL, options?: import('node:worker_threads').WorkerOptions) {
      super(
        options?.eval === true && typeof source === 'string' && source.includes(THREAD_MARK)
          ? `${delay}\n${source}`
          : source,
        options,
      );
    }
  }
  return { ...real, Worker: DelayedWorker, default: { ...real, Worker: DelayedWorker } };
});

const { tempDir, track } = useIoThreads('pwal-io-stop-');

describe('stopping the I/O thread', () => {
  it('stops a thread whose wake-up came just before its wait', async () => {
    expect(IO_THREAD_SOURCE).toContain(THREAD_MARK); // the delay is injected
    const handle = await nodeFileSystem.open(path.join(tempDir(), 'f'), 'createExclusive');
    // No file thread: close() goes straight to the I/O thread, inside its window.
    const executor = track(new IoThreadExecutor(0, false));
    await executor.running();
    await executor.writeAt(handle, [randomBytes(16)], 0, true);
    const control = (executor as unknown as { control: Int32Array }).control;
    // The thread has marked itself asleep and is in the delay before its wait.
    await vi.waitFor(() => expect(Atomics.load(control, IoControlWord.Asleep)).toBe(1));
    const started = performance.now();
    const outcome = await Promise.race([
      executor.close().then(() => 'closed'),
      new Promise<string>((resolve) => setTimeout(() => resolve('hung'), 3000).unref()),
    ]);
    if (outcome === 'hung') {
      // Wake the stuck thread now that it waits, so that it sees the stop and the run can end.
      Atomics.notify(control, IoControlWord.Requested);
    }
    await handle.close();
    expect(outcome).toBe('closed');
    expect(performance.now() - started).toBeLessThan(3000);
  });

  it('runs every job posted before the stop, then stops', async () => {
    const file = path.join(tempDir(), 'g');
    const handle = await nodeFileSystem.open(file, 'createExclusive');
    const executor = track(new IoThreadExecutor());
    await executor.running();
    const writes = [0, 1, 2].map((i) =>
      executor.writeAt(handle, [new Uint8Array(8).fill(i + 1)], i * 8, true),
    );
    await executor.close();
    const done = await Promise.allSettled(writes);
    expect(done.map((d) => d.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled']);
    await handle.close();
    expect([...readFileSync(file)]).toEqual([
      ...new Array(8).fill(1),
      ...new Array(8).fill(2),
      ...new Array(8).fill(3),
    ]);
  });
});
