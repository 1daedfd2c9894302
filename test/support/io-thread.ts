import * as nodeFs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach } from 'vitest';
import { IoThreadExecutor } from '../../src/engine/io-executor.js';

/**
 * Temporary directories and I/O thread executors for one test file: call at
 * the top of the file; after each test the executors are stopped and the
 * directories removed.
 */
export function useIoThreads(prefix: string): {
  tempDir(): string;
  /** An I/O thread executor whose threads already run (before that, work goes inline). */
  threadExecutor(): Promise<IoThreadExecutor>;
  /** Stops `executor` after the test. */
  track<T extends { close(): Promise<void> }>(executor: T): T;
} {
  const dirs: string[] = [];
  const executors: { close(): Promise<void> }[] = [];
  afterEach(async () => {
    for (const executor of executors.splice(0)) await executor.close();
    for (const dir of dirs.splice(0)) nodeFs.rmSync(dir, { recursive: true, force: true });
  });
  return {
    tempDir() {
      const dir = nodeFs.mkdtempSync(path.join(os.tmpdir(), prefix));
      dirs.push(dir);
      return dir;
    },
    async threadExecutor() {
      const executor = new IoThreadExecutor();
      executors.push(executor);
      await executor.running();
      return executor;
    },
    track(executor) {
      executors.push(executor);
      return executor;
    },
  };
}
