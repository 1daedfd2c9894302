/**
 * The segment files' bookkeeping as one unit of work (close, rename in
 * order, create, one directory fsync): run on the log's file thread, beside
 * the I/O thread that does the durable writes, or through Node's thread pool
 * when that thread cannot take it; each failed step reported with its path
 * and OS error; the files the thread creates belong to the log, not to the
 * thread.
 */
import * as nodeFs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { IoThreadExecutor } from '../../src/engine/io-executor.js';
import { FILE_STEP_PAUSE_MS, IoControlWord } from '../../src/engine/io-thread-source.js';
import {
  type FileWork,
  type FileWorkReply,
  type FileWorkRunner,
  runFileWork,
} from '../../src/engine/segment-file-work.js';
import { ParallelWal, type ParallelWalBatch } from '../../src/engine/wal.js';
import {
  createDescriptorFile,
  DescriptorFileHandle,
  nodeFileDescriptor,
  nodeFileSystem,
} from '../../src/storage/fs.js';
import { recoverSegments } from '../../src/storage/recovery.js';
import { listSegments } from '../../src/storage/segment-files.js';
import { useIoThreads } from '../support/io-thread.js';

const { tempDir, threadExecutor, track } = useIoThreads('pwal-files-');

/** Both ways a unit runs: on the I/O thread, and through the thread pool (no thread). */
const runners: [string, () => Promise<FileWorkRunner | null>][] = [
  [
    'on the file thread',
    async () => {
      const executor = await threadExecutor();
      return (job) => executor.fileWork(job);
    },
  ],
  ['without the thread', async () => null],
];

/** `count` files in `dir` holding their own names, open as bare descriptors. */
async function written(dir: string, count: number): Promise<DescriptorFileHandle[]> {
  const files: DescriptorFileHandle[] = [];
  for (let i = 0; i < count; i++) {
    const handle = await createDescriptorFile(path.join(dir, `tmp-${i}`));
    await handle.write(new TextEncoder().encode(`file ${i}`), 0);
    files.push(handle);
  }
  return files;
}

function moves(dir: string, files: DescriptorFileHandle[]): FileWork['moves'] {
  return files.map((handle, i) => ({ handle, from: handle.path, to: path.join(dir, `seg-${i}`) }));
}

describe.each(runners)('a unit of segment-file work %s', (_name, makeRunner) => {
  it('closes and renames every file in order, creates the new ones, and fsyncs the directory', async () => {
    const dir = tempDir();
    const runner = await makeRunner();
    const files = await written(dir, 3);
    const create = [path.join(dir, 'new-a'), path.join(dir, 'new-b')];
    const outcome = await runFileWork(
      { moves: moves(dir, files), create, syncDir: dir },
      nodeFileSystem,
      runner,
    );
    expect(outcome).toMatchObject({ renamed: 3, failure: null, syncFailure: null, synced: true });
    for (let i = 0; i < 3; i++) {
      expect(nodeFs.readFileSync(path.join(dir, `seg-${i}`), 'utf8')).toBe(`file ${i}`);
      expect(nodeFs.existsSync(path.join(dir, `tmp-${i}`))).toBe(false);
      // Handed over: the owner's handle no longer holds a descriptor.
      expect(files[i]!.fd).toBe(-1);
    }
    expect(outcome.created.map((h) => h.path)).toEqual(create);
    for (const handle of outcome.created) {
      expect(handle).toBeInstanceOf(DescriptorFileHandle);
      await handle.write(new TextEncoder().encode('mine'), 0);
      await handle.datasync();
      await handle.close();
      expect(nodeFs.readFileSync(handle.path, 'utf8')).toBe('mine');
    }
  });

  it('stops at a failed rename: the files before it renamed, none after it, nothing created', async () => {
    const dir = tempDir();
    const runner = await makeRunner();
    const files = await written(dir, 3);
    nodeFs.unlinkSync(files[1]!.path);
    const outcome = await runFileWork(
      { moves: moves(dir, files), create: [path.join(dir, 'new-a')], syncDir: dir },
      nodeFileSystem,
      runner,
    );
    expect(outcome.renamed).toBe(1);
    expect(outcome.failure).toMatchObject({ step: 'rename', path: files[1]!.path });
    expect(outcome.failure!.error).toMatchObject({ code: 'ENOENT' });
    expect(outcome.created).toEqual([]);
    expect(nodeFs.existsSync(path.join(dir, 'new-a'))).toBe(false);
    expect(nodeFs.existsSync(path.join(dir, 'seg-0'))).toBe(true);
    expect(nodeFs.existsSync(path.join(dir, 'tmp-2'))).toBe(true);
    // The one renamed is still made durable.
    expect(outcome).toMatchObject({ syncFailure: null, synced: true });
  });

  it.runIf(process.platform === 'linux')(
    'renames one file after another in order, and creates only after the last rename (as the directory sees it)',
    async () => {
      const dir = tempDir();
      const runner = await makeRunner();
      const files = await written(dir, 4);
      // inotify reports a directory's entries changing in the order they changed.
      const seen: string[] = [];
      const watcher = nodeFs.watch(dir, (_event, name) => {
        if (name !== null) seen.push(String(name));
      });
      const outcome = await runFileWork(
        { moves: moves(dir, files), create: [path.join(dir, 'new-a')], syncDir: dir },
        nodeFileSystem,
        runner,
      );
      for (const handle of outcome.created) await handle.close();
      await expect.poll(() => seen.includes('new-a')).toBe(true);
      watcher.close();
      const order = seen.filter((name, i) => seen.indexOf(name) === i);
      expect(order).toEqual([
        'tmp-0',
        'seg-0',
        'tmp-1',
        'seg-1',
        'tmp-2',
        'seg-2',
        'tmp-3',
        'seg-3',
        'new-a',
      ]);
    },
  );

  it('reports a creation that fails with its path and the OS error', async () => {
    const dir = tempDir();
    const runner = await makeRunner();
    nodeFs.writeFileSync(path.join(dir, 'taken'), 'x');
    const outcome = await runFileWork(
      { moves: [], create: [path.join(dir, 'free'), path.join(dir, 'taken')], syncDir: dir },
      nodeFileSystem,
      runner,
    );
    expect(outcome.failure).toMatchObject({ step: 'open', path: path.join(dir, 'taken') });
    expect(outcome.failure!.error).toMatchObject({ code: 'EEXIST' });
    // Whatever was made before the failure comes back open, for the caller to close.
    for (const handle of outcome.created) await handle.close();
    expect(nodeFs.readFileSync(path.join(dir, 'taken'), 'utf8')).toBe('x');
  });

  it('reports a directory fsync that fails', async () => {
    const dir = tempDir();
    const runner = await makeRunner();
    const outcome = await runFileWork(
      { moves: [], create: [path.join(dir, 'a')], syncDir: path.join(dir, 'missing') },
      nodeFileSystem,
      runner,
    );
    expect(outcome.syncFailure).toMatchObject({ step: 'fsync', path: path.join(dir, 'missing') });
    expect(outcome.syncFailure!.error).toMatchObject({ code: 'ENOENT' });
    expect(outcome.synced).toBe(false);
    for (const handle of outcome.created) await handle.close();
  });

  it('fsyncs nothing when nothing was renamed or created', async () => {
    const dir = tempDir();
    const outcome = await runFileWork(
      { moves: [], create: [], syncDir: path.join(dir, 'missing') },
      nodeFileSystem,
      await makeRunner(),
    );
    expect(outcome).toMatchObject({ renamed: 0, syncFailure: null, synced: false });
  });
});

describe('file work on its own thread', () => {
  it('does not hold a durable write behind a long unit of file work (they run on two threads)', async () => {
    const dir = tempDir();
    const executor = await threadExecutor();
    const target = await createDescriptorFile(path.join(dir, 'epoch'));
    const order: string[] = [];
    const create = Array.from({ length: 400 }, (_, i) => path.join(dir, `spare-${i}`));
    const work = runFileWork({ moves: [], create, syncDir: dir }, nodeFileSystem, (job) =>
      executor.fileWork(job),
    ).then((outcome) => {
      order.push('files');
      return outcome;
    });
    const write = executor.writeAt(target, [new Uint8Array(4096).fill(7)], 0, true).then(() => {
      order.push('write');
    });
    const [outcome] = await Promise.all([work, write]);
    // 400 creations take tens of ms here; the write, a fraction of one.
    expect(order).toEqual(['write', 'files']);
    expect(outcome.created.length).toBe(400);
    for (const handle of outcome.created) await handle.close();
    await target.close();
    expect(executor.stats()).toMatchObject({ fileJobs: 1, threadWrites: 1 });
    expect(executor.stats().fileJobMicros).toBeGreaterThan(0);
  });

  it('gives its core away between steps only while the I/O thread has a write it has not taken', async () => {
    const dir = tempDir();
    // A file thread giving way to an I/O thread whose control words the test sets.
    const writes = new Int32Array(new SharedArrayBuffer(IoControlWord.Count * 4));
    const fileThread = track(new IoThreadExecutor(0, false, writes));
    await fileThread.running();
    const replies: FileWorkReply[] = [];
    let runs = 0;
    const run = async (count: number) => {
      const files = await written(dir, count);
      const create = files.map((f) => `${f.path}-new`);
      const outcome = await runFileWork(
        { moves: moves(dir, files), create, syncDir: dir },
        nodeFileSystem,
        (job) => {
          // The log asks for the pause.
          expect(job.pauseMs).toBe(FILE_STEP_PAUSE_MS);
          return (
            fileThread.fileWork(job)?.then((reply) => {
              replies.push(reply);
              return reply;
            }) ?? null
          );
        },
      );
      for (const handle of outcome.created) await handle.close();
      for (const f of files)
        nodeFs.rmSync(path.join(dir, path.basename(f.path).replace('tmp', 'seg')));
      for (const f of create) nodeFs.rmSync(f);
      // Run by the thread, not through the thread pool.
      expect(replies.length).toBe(++runs);
      return replies.at(-1)!;
    };
    expect(FILE_STEP_PAUSE_MS).toBeGreaterThan(0);
    // Nothing waiting for the I/O thread: the job runs straight through.
    expect(await run(3)).toMatchObject({ renamed: 3, pauses: 0 });
    // Write 7 posted, the thread woken from its idle wait but still on 6: a
    // pause after each rename and each creation.
    Atomics.store(writes, IoControlWord.Requested, 7);
    Atomics.store(writes, IoControlWord.Taken, 6);
    Atomics.store(writes, IoControlWord.Asleep, 1);
    expect(await run(3)).toMatchObject({ renamed: 3, pauses: 6 });
    // The thread busy with 6 and 7 queued behind it: it needs no core, no pause.
    Atomics.store(writes, IoControlWord.Asleep, 0);
    expect(await run(2)).toMatchObject({ renamed: 2, pauses: 0 });
    // Taken: no pause either.
    Atomics.store(writes, IoControlWord.Asleep, 1);
    Atomics.store(writes, IoControlWord.Taken, 7);
    expect(await run(2)).toMatchObject({ renamed: 2, pauses: 0 });
  });

  it("gives way to its own log's I/O thread", async () => {
    const dir = tempDir();
    const executor = await threadExecutor();
    const control = (executor as unknown as { control: Int32Array }).control;
    // The idle I/O thread waits on Requested only: make it look woken for a job it has not taken.
    await expect.poll(() => Atomics.load(control, IoControlWord.Asleep)).toBe(1);
    Atomics.store(control, IoControlWord.Taken, -1);
    let pauses = -1;
    const outcome = await runFileWork(
      { moves: [], create: [path.join(dir, 'a'), path.join(dir, 'b')], syncDir: dir },
      nodeFileSystem,
      (job) =>
        executor.fileWork(job)?.then((reply) => {
          pauses = reply.pauses;
          return reply;
        }) ?? null,
    );
    Atomics.store(control, IoControlWord.Taken, Atomics.load(control, IoControlWord.Requested));
    for (const handle of outcome.created) await handle.close();
    expect(pauses).toBe(2);
  });

  it('marks every job the I/O thread takes, and its idle wait, for the file thread to see', async () => {
    const dir = tempDir();
    const executor = await threadExecutor();
    const target = await createDescriptorFile(path.join(dir, 'epoch'));
    for (let i = 0; i < 3; i++) {
      await executor.writeAt(target, [new Uint8Array(4096).fill(i)], 0, true);
    }
    await target.close();
    const control = (executor as unknown as { control: Int32Array }).control;
    expect(Atomics.load(control, IoControlWord.Taken)).toBe(3);
    expect(Atomics.load(control, IoControlWord.Requested)).toBe(3);
    // Idle again: in its wait.
    await expect.poll(() => Atomics.load(control, IoControlWord.Asleep)).toBe(1);
  });

  it('leaves the files it created open after the thread is gone: they belong to the log', async () => {
    const dir = tempDir();
    const executor = await threadExecutor();
    const outcome = await runFileWork(
      { moves: [], create: [path.join(dir, 'kept')], syncDir: dir },
      nodeFileSystem,
      (job) => executor.fileWork(job),
    );
    await executor.close();
    const [handle] = outcome.created;
    await handle!.write(new TextEncoder().encode('still open'), 0);
    await handle!.close();
    expect(nodeFs.readFileSync(path.join(dir, 'kept'), 'utf8')).toBe('still open');
  });

  it('is refused once the thread is stopped (the caller then runs the unit itself)', async () => {
    const executor = await threadExecutor();
    await executor.close();
    const job = {
      close: [],
      renames: [],
      create: [],
      createFlags: 0,
      createMode: 0,
      syncDir: null,
      pauseMs: 0,
    };
    expect(executor.fileWork(job)).toBeNull();
  });
});

describe('a file held by its bare descriptor', () => {
  it('refuses every call once its descriptor is handed over, and closes at most once', async () => {
    const dir = tempDir();
    const handle = await createDescriptorFile(path.join(dir, 'f'));
    const fd = handle.detach();
    expect(nodeFileDescriptor(handle)).toBeNull();
    await expect(handle.write(new Uint8Array(1), 0)).rejects.toMatchObject({ code: 'EBADF' });
    await expect(handle.datasync()).rejects.toMatchObject({ code: 'EBADF' });
    expect(() => handle.detach()).toThrow(/EBADF/);
    await handle.close(); // nothing left to close
    nodeFs.closeSync(fd);
    const other = await createDescriptorFile(path.join(dir, 'g'));
    expect(nodeFileDescriptor(other)).toBe(other.fd);
    await other.close();
    await other.close();
    expect(other.fd).toBe(-1);
  });
});

describe('the log publishing through its file thread', () => {
  const page = (id: number): ParallelWalBatch => ({
    txnToken: { id: BigInt(id), epoch: 0 },
    frames: [{ pageNumber: id, pageData: new Uint8Array(4096).fill(id & 0xff), dbSizeIfCommit: 0 }],
  });

  it('closes, renames and creates its segment files on the thread, and recovers every commit', async () => {
    const db = path.join(tempDir(), 'pub.db');
    const wal = await ParallelWal.open(db);
    await (wal as unknown as { executor: IoThreadExecutor }).executor.running();
    for (let i = 1; i <= 40; i++) await wal.commit(page(i));
    const stats = wal.stats().durableWrites;
    await wal.close();
    expect(stats.fileJobs).toBeGreaterThan(0);
    expect((await listSegments(db)).length).toBeGreaterThanOrEqual(40);
    const { records } = await recoverSegments(db);
    expect(records.map((r) => Number(r.txnToken.id))).toEqual(
      Array.from({ length: 40 }, (_, i) => i + 1),
    );
  });
});
