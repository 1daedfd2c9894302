/**
 * The durable-write executors: the I/O thread writes at a position of an
 * open file of the real file system and fdatasyncs it; a handle of any other
 * file system goes through the handle itself; a failed write or fdatasync on
 * the thread is reported with the OS error and the failed step (never as
 * done); a stopped thread refuses further work.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as nodeFs from 'node:fs';
import * as nodeFsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  createDurableWriteExecutor,
  DurableWriteFailure,
  EARLIER_WRITE_FAILED_CODE,
  InlineWriteExecutor,
  IO_THREAD_EXIT_CODE,
  IoThreadExecutor,
} from '../../src/engine/io-executor.js';
import { ParallelWal, type ParallelWalBatch } from '../../src/engine/wal.js';
import { nodeFileSystem, type WalFileHandle, type WalFileSystem } from '../../src/storage/fs.js';
import { recoverSegments } from '../../src/storage/recovery.js';
import { useIoThreads } from '../support/io-thread.js';

const { tempDir, threadExecutor, track } = useIoThreads('pwal-io-');

async function failureOf(promise: Promise<unknown>): Promise<DurableWriteFailure> {
  const outcome = await promise.then(
    () => null,
    (error: unknown) => error,
  );
  expect(outcome).toBeInstanceOf(DurableWriteFailure);
  return outcome as DurableWriteFailure;
}

describe('the I/O thread executor', () => {
  it('writes every chunk at the position and reports the write as done', async () => {
    const file = path.join(tempDir(), 'pool-file');
    nodeFs.writeFileSync(file, new Uint8Array(64 * 1024));
    const handle = await nodeFileSystem.open(file, 'readWrite');
    const executor = await threadExecutor();
    const shared = new Uint8Array(new SharedArrayBuffer(5000));
    shared.set(randomBytes(5000));
    const privateChunk = randomBytes(3000);
    const empty = new Uint8Array(0);
    const timing = await executor.writeAt(
      handle,
      [shared.subarray(10, 4010), empty, privateChunk],
      8192,
      true,
    );
    expect(timing.writeMicros).toBeGreaterThanOrEqual(0);
    await handle.close();
    const bytes = nodeFs.readFileSync(file);
    expect(bytes.length).toBe(64 * 1024); // overwritten in place, not grown
    expect(bytes.subarray(8192, 8192 + 4000).equals(Buffer.from(shared.subarray(10, 4010)))).toBe(
      true,
    );
    expect(bytes.subarray(8192 + 4000, 8192 + 7000).equals(privateChunk)).toBe(true);
    expect(bytes.subarray(0, 8192).every((b) => b === 0)).toBe(true);
    expect(executor.stats()).toMatchObject({ kind: 'ioThread', writes: 1, threadWrites: 1 });
  });

  it("times the hand-off of each write to the thread and its return, a queued write's wait included", async () => {
    const file = path.join(tempDir(), 'timed');
    const handle = await nodeFileSystem.open(file, 'createExclusive');
    const executor = await threadExecutor();
    // Posted in one turn: the second waits on the thread for the first.
    const posting = performance.now();
    const first = executor.writeAt(handle, [randomBytes(8 * 1024 * 1024)], 0, true);
    const second = executor.writeAt(handle, [randomBytes(4096)], 0, true);
    const posted = performance.now();
    const [a] = await Promise.all([first, second]);
    const wallMicros = (performance.now() - posting) * 1000;
    await handle.close();
    const stats = executor.stats();
    expect(stats.threadWrites).toBe(2);
    // The second hand-off spans the first write, less any head start the
    // thread took before the second was posted (2 µs: rounding).
    const postingMicros = (posted - posting) * 1000;
    expect(stats.handoffMicros).toBeGreaterThanOrEqual(
      a.writeMicros + a.syncMicros - postingMicros - 2,
    );
    expect(stats.returnMicros).toBeGreaterThan(0);
    // Microseconds, not nanoseconds: both legs of both writes fit in the wall time.
    expect(stats.handoffMicros + stats.returnMicros).toBeLessThanOrEqual(2 * wallMicros + 2);
    const inline = new InlineWriteExecutor();
    expect(inline.stats()).toMatchObject({ handoffMicros: 0, returnMicros: 0 });
  });

  it('runs many writes in submission order', async () => {
    const file = path.join(tempDir(), 'ordered');
    const handle = await nodeFileSystem.open(file, 'createExclusive');
    const executor = await threadExecutor();
    const writes = [];
    for (let i = 0; i < 50; i++) {
      writes.push(executor.writeAt(handle, [new Uint8Array(100).fill(i)], 0, i % 2 === 0));
    }
    await Promise.all(writes);
    await handle.close();
    // The last write wins only if the thread ran them in order.
    expect(nodeFs.readFileSync(file).every((b) => b === 49)).toBe(true);
  });

  it('reports a failed write with the OS error and the write step', async () => {
    const file = path.join(tempDir(), 'read-only');
    nodeFs.writeFileSync(file, 'x');
    const handle = await nodeFileSystem.open(file, 'read');
    const failure = await failureOf(
      (await threadExecutor()).writeAt(handle, [randomBytes(10)], 0, true),
    );
    await handle.close();
    expect(failure.step).toBe('write');
    expect((failure.cause as { code?: string }).code).toBe('EBADF');
  });

  it('never starts a write queued behind one that failed, nor any later one', async () => {
    const dir = tempDir();
    nodeFs.writeFileSync(path.join(dir, 'read-only'), 'x');
    const readOnly = await nodeFileSystem.open(path.join(dir, 'read-only'), 'read');
    const good = await nodeFileSystem.open(path.join(dir, 'good'), 'createExclusive');
    const executor = await threadExecutor();
    // Both posted before either is answered: the second waits behind the first.
    const failing = failureOf(executor.writeAt(readOnly, [randomBytes(10)], 0, true));
    const queued = failureOf(executor.writeAt(good, [randomBytes(10)], 0, true));
    expect((await failing).step).toBe('write');
    const refused = await queued;
    expect((refused.cause as { code?: string }).code).toBe(EARLIER_WRITE_FAILED_CODE);
    // And nothing after them starts, on any path.
    const later = await failureOf(executor.writeAt(good, [randomBytes(10)], 0, true));
    expect((later.cause as { code?: string }).code).toBe(EARLIER_WRITE_FAILED_CODE);
    await readOnly.close();
    await good.close();
    expect(nodeFs.statSync(path.join(dir, 'good')).size).toBe(0);
  });

  it('reports a failed fdatasync with the OS error and the datasync step, never as done', async () => {
    // /dev/null takes the write but cannot be synced (EINVAL): the fdatasync fails on the thread.
    // The seam refuses to open a device, so a real-file handle is pointed at /dev/null instead.
    const handle = await nodeHandleOnDevNull();
    const executor = await threadExecutor();
    const failure = await failureOf(executor.writeAt(handle, [randomBytes(10)], 0, true));
    await handle.close();
    expect(failure.step).toBe('datasync');
    expect((failure.cause as { code?: string }).code).toBe('EINVAL');
    expect(executor.stats().writes).toBe(0);
  });

  it('writes inline until the thread runs, so the first write never waits for it', async () => {
    const file = path.join(tempDir(), 'early');
    const handle = await nodeFileSystem.open(file, 'createExclusive');
    const executor = new IoThreadExecutor();
    track(executor);
    await executor.writeAt(handle, [new Uint8Array(8).fill(1)], 0, true);
    await executor.running();
    await executor.writeAt(handle, [new Uint8Array(8).fill(2)], 8, true);
    await handle.close();
    expect(executor.stats()).toMatchObject({ writes: 2, threadWrites: 1 });
    expect([...nodeFs.readFileSync(file)]).toEqual([
      1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2,
    ]);
  });

  it('refuses work once stopped, with a typed cause', async () => {
    const file = path.join(tempDir(), 'stopped');
    const handle = await nodeFileSystem.open(file, 'createExclusive');
    const executor = await threadExecutor();
    await executor.writeAt(handle, [randomBytes(10)], 0, false);
    await executor.close();
    const failure = await failureOf(executor.writeAt(handle, [randomBytes(10)], 0, true));
    await handle.close();
    expect((failure.cause as { code?: string }).code).toBe(IO_THREAD_EXIT_CODE);
  });

  it('keeps the process alive from close() until the thread is gone, even when a write answered meanwhile', async () => {
    const handle = await nodeFileSystem.open(path.join(tempDir(), 'closing'), 'createExclusive');
    const executor = await threadExecutor();
    const written = executor.writeAt(handle, [randomBytes(8 << 20)], 0, true);
    // Unref'd between the write's answer and the thread's exit, the process
    // could end first, and close() would never settle.
    const worker = (executor as unknown as { worker: { unref(): void } }).worker;
    let unrefs = 0;
    const unref = worker.unref.bind(worker);
    worker.unref = () => {
      unrefs++;
      unref();
    };
    const closed = executor.close();
    await written;
    await closed;
    await handle.close();
    expect(unrefs).toBe(0);
  });

  it('sends a handle of another file system through the handle itself', async () => {
    const calls: string[] = [];
    const handle = {
      path: 'simulated',
      writev: async (chunks: readonly Uint8Array[], position: number) => {
        calls.push(`writev ${chunks.length} @${position}`);
      },
      datasync: async () => {
        calls.push('datasync');
      },
    } as unknown as WalFileHandle;
    await (await threadExecutor()).writeAt(
      handle,
      [new Uint8Array(4), new Uint8Array(4)],
      512,
      true,
    );
    expect(calls).toEqual(['writev 2 @512', 'datasync']);
  });
});

describe('small writes on the calling thread', () => {
  /** An executor whose writes of at most `limit` bytes run on the caller while it is idle. */
  async function callerExecutor(limit: number): Promise<IoThreadExecutor> {
    const executor = new IoThreadExecutor(limit);
    track(executor);
    await executor.running();
    return executor;
  }

  it('writes a small segment on the calling thread, durable once resolved; a larger one on the thread', async () => {
    const file = path.join(tempDir(), 'small');
    const handle = await nodeFileSystem.open(file, 'createExclusive');
    const executor = await callerExecutor(4096);
    const small = randomBytes(4096);
    const large = randomBytes(4097);
    await executor.writeAt(handle, [small.subarray(0, 100), small.subarray(100)], 0, true);
    expect(executor.stats()).toMatchObject({ writes: 1, callerWrites: 1, threadWrites: 0 });
    await executor.writeAt(handle, [large], 4096, true);
    expect(executor.stats()).toMatchObject({ writes: 2, callerWrites: 1, threadWrites: 1 });
    await handle.close();
    expect(nodeFs.readFileSync(file).equals(Buffer.concat([small, large]))).toBe(true);
  });

  it('sends a small write to the thread while a write is outstanding there, so writes never overlap', async () => {
    const file = path.join(tempDir(), 'ordered-small');
    const handle = await nodeFileSystem.open(file, 'createExclusive');
    const executor = await callerExecutor(1024);
    const big = executor.writeAt(handle, [new Uint8Array(64 * 1024).fill(1)], 0, true);
    const small = executor.writeAt(handle, [new Uint8Array(100).fill(2)], 0, true);
    await Promise.all([big, small]);
    await handle.close();
    expect(executor.stats()).toMatchObject({ writes: 2, callerWrites: 0, threadWrites: 2 });
    const bytes = nodeFs.readFileSync(file);
    // The small write was queued behind the big one: it lands last.
    expect(bytes.subarray(0, 100).every((b) => b === 2)).toBe(true);
    expect(bytes.subarray(100).every((b) => b === 1)).toBe(true);
  });

  it('never starts a write called in the same turn right after one that failed on the calling thread', async () => {
    const dir = tempDir();
    nodeFs.writeFileSync(path.join(dir, 'read-only'), 'x');
    const readOnly = await nodeFileSystem.open(path.join(dir, 'read-only'), 'read');
    const good = await nodeFileSystem.open(path.join(dir, 'good'), 'createExclusive');
    const executor = new IoThreadExecutor(256 * 1024);
    track(executor);
    await executor.running();
    // Both calls in one synchronous run: the second before the first's promise settled.
    const failing = failureOf(executor.writeAt(readOnly, [randomBytes(10)], 0, true));
    const next = failureOf(executor.writeAt(good, [randomBytes(10)], 0, true));
    expect((await failing).step).toBe('write');
    expect(((await next).cause as { code?: string }).code).toBe(EARLIER_WRITE_FAILED_CODE);
    await readOnly.close();
    await good.close();
    expect(nodeFs.statSync(path.join(dir, 'good')).size).toBe(0);
  });

  it('reports a failed write on the calling thread with the OS error and the write step', async () => {
    const file = path.join(tempDir(), 'read-only-small');
    nodeFs.writeFileSync(file, 'x');
    const handle = await nodeFileSystem.open(file, 'read');
    const executor = await callerExecutor(4096);
    const failure = await failureOf(executor.writeAt(handle, [randomBytes(10)], 0, true));
    await handle.close();
    expect(failure.step).toBe('write');
    expect((failure.cause as { code?: string }).code).toBe('EBADF');
    expect(executor.stats()).toMatchObject({ writes: 0, callerWrites: 0 });
  });

  it('reports a failed fdatasync on the calling thread with the datasync step, never as done', async () => {
    const handle = await nodeHandleOnDevNull();
    const executor = await callerExecutor(4096);
    const failure = await failureOf(executor.writeAt(handle, [randomBytes(10)], 0, true));
    await handle.close();
    expect(failure.step).toBe('datasync');
    expect((failure.cause as { code?: string }).code).toBe('EINVAL');
    expect(executor.stats()).toMatchObject({ writes: 0, callerWrites: 0 });
  });
});

describe('choosing an executor', () => {
  it('uses the I/O thread only for the real file system', () => {
    const other = { ...nodeFileSystem } as WalFileSystem;
    expect(createDurableWriteExecutor(nodeFileSystem, true)).toBeInstanceOf(IoThreadExecutor);
    expect(createDurableWriteExecutor(nodeFileSystem, false)).toBeInstanceOf(InlineWriteExecutor);
    expect(createDurableWriteExecutor(other, true)).toBeInstanceOf(InlineWriteExecutor);
  });

  it('inline: runs a write called before the previous one resolved after it, and none after a failure', async () => {
    const events: string[] = [];
    let failNext = false;
    const handle = (name: string) =>
      ({
        path: name,
        writev: async () => {
          events.push(`${name} writev`);
          await new Promise((resolve) => setTimeout(resolve, 5));
        },
        datasync: async () => {
          events.push(`${name} datasync`);
          if (failNext)
            throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
        },
      }) as unknown as WalFileHandle;
    const executor = new InlineWriteExecutor();
    await Promise.all([
      executor.writeAt(handle('a'), [new Uint8Array(1)], 0, true),
      executor.writeAt(handle('b'), [new Uint8Array(1)], 0, true),
    ]);
    expect(events).toEqual(['a writev', 'a datasync', 'b writev', 'b datasync']);
    failNext = true;
    const failed = failureOf(executor.writeAt(handle('c'), [new Uint8Array(1)], 0, true));
    const queued = failureOf(executor.writeAt(handle('d'), [new Uint8Array(1)], 0, true));
    expect((await failed).step).toBe('datasync');
    expect(((await queued).cause as { code?: string }).code).toBe(EARLIER_WRITE_FAILED_CODE);
    expect(events.slice(4)).toEqual(['c writev', 'c datasync']);
  });

  it('inline: reports the failed step with the cause', async () => {
    const handle = {
      path: 'faulty',
      writev: async () => {},
      datasync: async () => {
        throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
      },
    } as unknown as WalFileHandle;
    const failure = await failureOf(
      new InlineWriteExecutor().writeAt(handle, [new Uint8Array(1)], 0, true),
    );
    expect(failure.step).toBe('datasync');
    expect((failure.cause as { code?: string }).code).toBe('EIO');
  });
});

describe('the log and its I/O thread', () => {
  const page = (txn: number): ParallelWalBatch => ({
    txnToken: { id: BigInt(txn), epoch: 0 },
    frames: [{ pageNumber: 1 + (txn % 50), pageData: randomBytes(4096), dbSizeIfCommit: 50 }],
  });

  it('writes segments on the I/O thread for the real file system, and recovers them', async () => {
    const db = path.join(tempDir(), 'thread.db');
    const wal = await ParallelWal.open(db);
    let txn = 0;
    // The first writes go inline while the thread starts; it takes over after that.
    while (wal.stats().durableWrites.threadWrites === 0 && txn < 5000)
      await wal.commit(page(++txn));
    for (let i = 0; i < 20; i++) await wal.commit(page(++txn));
    const stats = wal.stats();
    await wal.close();
    expect(stats.durableWrites.kind).toBe('ioThread');
    expect(stats.durableWrites.threadWrites).toBeGreaterThanOrEqual(20);
    expect(stats.flushPhases.epochs).toBe(stats.segmentsWritten);
    const reopened = await ParallelWal.open(db);
    await reopened.close();
    const { records } = await recoverSegments(db);
    expect(records.length).toBe(txn);
  });

  it('with callerWriteBytesMax, writes small epochs on the owner thread and large ones on the I/O thread, and recovers both', async () => {
    const db = path.join(tempDir(), 'mixed.db');
    const wal = await ParallelWal.open(db, { callerWriteBytesMax: 256 * 1024 });
    await (wal as unknown as { executor: IoThreadExecutor }).executor.running();
    let txn = 0;
    for (let i = 0; i < 10; i++) await wal.commit(page(++txn));
    const afterSmall = wal.stats().durableWrites;
    // One commit of 80 pages (about 330 KiB): over the 256 KiB.
    txn++;
    await wal.commit({
      txnToken: { id: BigInt(txn), epoch: 0 },
      frames: Array.from({ length: 80 }, (_, i) => ({
        pageNumber: 100 + i,
        pageData: randomBytes(4096),
        dbSizeIfCommit: i === 79 ? 180 : 0,
      })),
    });
    const afterLarge = wal.stats().durableWrites;
    await wal.close();
    expect(afterSmall.callerWrites).toBeGreaterThanOrEqual(10);
    expect(afterSmall.threadWrites).toBe(0);
    expect(afterLarge.threadWrites).toBe(1);
    const { records } = await recoverSegments(db);
    expect(records.length).toBe(10 + 80);
  });

  it('writes every epoch on the I/O thread by default', async () => {
    const wal = await ParallelWal.open(path.join(tempDir(), 'default.db'));
    await (wal as unknown as { executor: IoThreadExecutor }).executor.running();
    for (let i = 1; i <= 5; i++) await wal.commit(page(i));
    const stats = wal.stats().durableWrites;
    await wal.close();
    expect(stats).toMatchObject({ callerWrites: 0, threadWrites: 5 });
  });

  it('refuses a callerWriteBytesMax outside 0 ..= 16 MiB', async () => {
    for (const bad of [-1, 16 * 1024 * 1024 + 1, 1.5, Number.NaN]) {
      await expect(
        ParallelWal.open(path.join(tempDir(), 'bad.db'), { callerWriteBytesMax: bad }),
      ).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
    }
  });

  it('keeps a custom file system, and ioThread: false, on the handles themselves', async () => {
    const custom = { ...nodeFileSystem } as WalFileSystem;
    const a = await ParallelWal.open(path.join(tempDir(), 'custom.db'), { fs: custom });
    const b = await ParallelWal.open(path.join(tempDir(), 'off.db'), { ioThread: false });
    for (let i = 1; i <= 5; i++) {
      await a.commit(page(i));
      await b.commit(page(i));
    }
    for (const wal of [a, b]) {
      expect(wal.stats().durableWrites).toMatchObject({ kind: 'inline', threadWrites: 0 });
      expect(wal.stats().durableWrites.writes).toBeGreaterThan(0);
      await wal.close();
    }
  });
});

describe('the I/O thread under the built package', () => {
  const repo = path.resolve(import.meta.dirname, '../..');
  // Commits until a segment was written on the thread, then prints the executor's figures.
  const program = (load: string): string => `
    ${load}
    const fs = require('node:fs');
    (async () => {
      const dir = fs.mkdtempSync(${JSON.stringify(path.join(os.tmpdir(), 'pwal-io-built-'))});
      const wal = await ParallelWal.open(dir + '/db');
      let i = 0;
      while (wal.stats().durableWrites.threadWrites === 0 && i < 5000) {
        await wal.commit({ txnToken: { id: BigInt(++i), epoch: 0 },
          frames: [{ pageNumber: 1, pageData: new Uint8Array(4096).fill(i & 255), dbSizeIfCommit: 1 }] });
      }
      console.log(JSON.stringify({ threadWrites: wal.stats().durableWrites.threadWrites }));
      await wal.close();
      fs.rmSync(dir, { recursive: true });
    })();`;

  it('runs from the CommonJS build and from ESM code run with --input-type=module', () => {
    const cjs = path.join(repo, 'dist/cjs/index.cjs');
    const esm = path.join(repo, 'dist/esm/index.js');
    expect(nodeFs.existsSync(cjs) && nodeFs.existsSync(esm), 'run npm run build first').toBe(true);
    const runs = [
      spawnSync(
        process.execPath,
        ['-e', program(`const { ParallelWal } = require(${JSON.stringify(cjs)});`)],
        {
          encoding: 'utf8',
        },
      ),
      spawnSync(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          program(
            `import { createRequire } from 'node:module'; const require = createRequire(${JSON.stringify(esm)}); const { ParallelWal } = await import(${JSON.stringify(esm)});`,
          ),
        ],
        { encoding: 'utf8' },
      ),
    ];
    for (const run of runs) {
      expect(run.status, run.stderr).toBe(0);
      expect(JSON.parse(run.stdout.trim()).threadWrites, run.stderr).toBeGreaterThan(0);
    }
  });
});

/**
 * A handle of the real file system whose descriptor is /dev/null (writes succeed, fdatasync
 * fails with EINVAL): built from a regular file's handle, since opening a device through the
 * seam is refused.
 */
async function nodeHandleOnDevNull(): Promise<WalFileHandle> {
  const regular = await nodeFileSystem.open(path.join(tempDir(), 'regular'), 'createExclusive');
  await regular.close();
  const device = await nodeFsp.open('/dev/null', 'r+');
  return Object.assign(Object.create(Object.getPrototypeOf(regular)), {
    path: '/dev/null',
    handle: device,
  }) as WalFileHandle;
}
