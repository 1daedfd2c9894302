/**
 * The `earlyAck` segment sink through ParallelWal: a commit is acknowledged
 * after the fdatasync of a pre-created file whose name is already durable and
 * before the rename that publishes the segment; publication (durableEpoch,
 * onDurable, segment name) follows in epoch order; a failed publication fails
 * the log without taking back what was acknowledged, and reopening adopts it.
 */
import * as nodeFs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createDeferred } from '../../src/engine/deferred.js';
import { WalFailedError } from '../../src/engine/errors.js';
import { InlineWriteExecutor, IO_THREAD_EXIT_CODE } from '../../src/engine/io-executor.js';
import {
  type DurableWriteExecutor,
  DurableWriteFailure,
} from '../../src/engine/io-executor-types.js';
import {
  EARLY_ACK_FILES_AHEAD,
  EarlyAckSegmentSink,
  earlyAckPublishBatchMax,
} from '../../src/engine/segment-writer.js';
import {
  type DurableEpochInfo,
  ParallelWal,
  type ParallelWalBatch,
  resolveParallelWalConfig,
} from '../../src/engine/wal.js';
import { isWalError, WalArgumentError } from '../../src/errors.js';
import { nodeFileSystem, type WalFileHandle, type WalFileSystem } from '../../src/storage/fs.js';
import { recoverSegments } from '../../src/storage/recovery.js';
import { listSegments } from '../../src/storage/segment-files.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) nodeFs.rmSync(dir, { recursive: true, force: true });
});

function tempDb(): string {
  const dir = nodeFs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
  dirs.push(dir);
  return path.join(dir, 'early.db');
}

function pageBatch(txnId: number, fill: number, bytes = 64): ParallelWalBatch {
  return {
    txnToken: { id: BigInt(txnId), epoch: 0 },
    frames: [
      {
        pageNumber: 1 + (txnId % 5),
        pageData: new Uint8Array(bytes).fill(fill),
        dbSizeIfCommit: 5,
      },
    ],
  };
}

/**
 * Records every file operation (and marks the test inserts) in one list, and
 * can hold renames back until released or make them fail.
 */
class RecordingFs implements WalFileSystem {
  readonly log: string[] = [];
  private gate: ReturnType<typeof createDeferred<void>> | null = null;
  failRenames = false;

  holdRenames(): void {
    this.gate = createDeferred<void>();
  }

  releaseRenames(): void {
    this.gate?.resolve();
    this.gate = null;
  }

  mark(what: string): void {
    this.log.push(what);
  }

  private note(op: string, p: string): void {
    this.log.push(`${op} ${path.basename(p)}`);
  }

  async open(p: string, mode: Parameters<WalFileSystem['open']>[1]): Promise<WalFileHandle> {
    this.note(`open:${mode}`, p);
    const handle = await nodeFileSystem.open(p, mode);
    return {
      path: handle.path,
      write: (d, pos) => handle.write(d, pos),
      writev: async (c, pos) => {
        this.note('writev', p);
        await handle.writev(c, pos);
      },
      read: (i, pos, len) => handle.read(i, pos, len),
      datasync: async () => {
        await handle.datasync();
        this.note('datasync', p);
      },
      sync: () => handle.sync(),
      truncate: (l) => handle.truncate(l),
      size: () => handle.size(),
      close: async () => {
        this.note('close', p);
        await handle.close();
      },
    };
  }
  readFile(p: string) {
    return nodeFileSystem.readFile(p);
  }
  stat(p: string) {
    return nodeFileSystem.stat(p);
  }
  readdir(d: string) {
    return nodeFileSystem.readdir(d);
  }
  async rename(a: string, b: string): Promise<void> {
    if (this.gate !== null) await this.gate.promise;
    this.note('rename', `${path.basename(a)}->${path.basename(b)}`);
    if (this.failRenames) throw Object.assign(new Error('injected rename EIO'), { code: 'EIO' });
    await nodeFileSystem.rename(a, b);
  }
  unlink(p: string) {
    this.note('unlink', p);
    return nodeFileSystem.unlink(p);
  }
  mkdir(p: string, o?: { recursive?: boolean }) {
    return nodeFileSystem.mkdir(p, o);
  }
  async syncDirectory(d: string): Promise<void> {
    await nodeFileSystem.syncDirectory(d);
    this.log.push('syncDirectory');
  }
}

const tempNames = (db: string) =>
  nodeFs.readdirSync(path.dirname(db)).filter((n) => n.includes('-wal-tmp-'));

describe('earlyAck configuration', () => {
  it('is the default for format version 2, and refused for format version 1 (no record CRCs to tell torn from complete)', () => {
    expect(resolveParallelWalConfig({}).segmentSink).toBe('earlyAck');
    expect(resolveParallelWalConfig({ formatVersion: 2 }).segmentSink).toBe('earlyAck');
    expect(resolveParallelWalConfig({ segmentSink: 'pool' }).segmentSink).toBe('pool');
    expect(resolveParallelWalConfig({ segmentSink: 'pool' }).segmentPoolSize).toBe(64);
    expect(() => resolveParallelWalConfig({ segmentSink: 'pool', formatVersion: 1 })).toThrow(
      WalArgumentError,
    );
    for (const segmentPoolSize of [0, 257, 1.5, '8' as unknown as number]) {
      expect(() => resolveParallelWalConfig({ segmentPoolSize })).toThrow(WalArgumentError);
    }
    expect(resolveParallelWalConfig({ segmentPoolSize: 3 }).segmentPoolSize).toBe(3);
    // Version 1 keeps the rename-before-ack protocol by default.
    expect(resolveParallelWalConfig({ formatVersion: 1 }).segmentSink).toBe('storage');
    expect(resolveParallelWalConfig({ segmentSink: 'storage' }).segmentSink).toBe('storage');
    expect(resolveParallelWalConfig({ precreateSegmentFiles: true }).segmentSink).toBe('precreate');
    expect(resolveParallelWalConfig({ segmentSink: 'earlyAck' }).segmentSink).toBe('earlyAck');
    expect(() => resolveParallelWalConfig({ segmentSink: 'earlyAck', formatVersion: 1 })).toThrow(
      WalArgumentError,
    );
    expect(() => resolveParallelWalConfig({ segmentSink: 'fast' as unknown as 'storage' })).toThrow(
      WalArgumentError,
    );
  });
});

describe('ParallelWal with the earlyAck sink', () => {
  it('acknowledges after the fdatasync into a pre-created file whose name is durable, before the rename', async () => {
    const db = tempDb();
    const fs = new RecordingFs();
    const wal = await ParallelWal.open(db, { fs, segmentSink: 'earlyAck', lock: false });
    fs.holdRenames();
    const result = await wal.commit(pageBatch(1, 0x11));
    fs.mark('ACK');
    // Acknowledged while the rename is still held back: not yet published.
    expect(wal.acknowledgedEpoch()).toBe(result.epoch);
    expect(wal.durableEpoch()).toBeNull();
    expect(await listSegments(db)).toEqual([]);
    fs.releaseRenames();
    // Nothing new to seal: it only waits for the acknowledged epoch's publication.
    await wal.advanceAndFlush(5_000);
    expect(wal.durableEpoch()).toBe(result.epoch);
    await wal.close();

    const log = fs.log;
    const ack = log.indexOf('ACK');
    const writev = log.findIndex((l) => l.startsWith('writev '));
    const file = log[writev]!.slice('writev '.length);
    expect(file).toMatch(/^early\.db-wal-tmp-ack-[0-9a-f]{12}$/);
    const created = log.indexOf(`open:createExclusive ${file}`);
    const dirSyncAfterCreate = log.indexOf('syncDirectory', created);
    const datasync = log.indexOf(`datasync ${file}`);
    const rename = log.findIndex((l) => l.startsWith(`rename ${file}->`));
    // create → directory fsync → writev → fdatasync → ACK → rename → directory fsync
    expect(created).toBeGreaterThanOrEqual(0);
    expect(dirSyncAfterCreate).toBeGreaterThan(created);
    expect(writev).toBeGreaterThan(dirSyncAfterCreate);
    expect(datasync).toBeGreaterThan(writev);
    expect(ack).toBeGreaterThan(datasync);
    expect(rename).toBeGreaterThan(ack);
    expect(log.indexOf('syncDirectory', rename)).toBeGreaterThan(rename);
    expect(log[rename]).toBe(
      `rename ${file}->early.db-wal-seg-${result.epoch.toString(16).padStart(16, '0')}`,
    );
  });

  it('publishes in epoch order (onDurable, durableEpoch) and leaves no temporary file after close', async () => {
    const db = tempDb();
    const wal = await ParallelWal.open(db, { segmentSink: 'earlyAck' });
    const published: DurableEpochInfo[] = [];
    const acked: bigint[] = [];
    wal.onDurable((info) => {
      // Published means: readable under its segment name, and acknowledged before.
      expect(nodeFs.existsSync(`${db}-wal-seg-${info.epoch.toString(16).padStart(16, '0')}`)).toBe(
        info.segmentWritten,
      );
      expect(acked.includes(info.epoch) || !info.segmentWritten).toBe(true);
      published.push(info);
    });
    wal.onAcknowledged((epoch) => acked.push(epoch));
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => wal.commit(pageBatch(i + 1, i & 0xff))),
    );
    await wal.close();
    const epochs = published.map((p) => p.epoch);
    expect(epochs).toEqual([...epochs].sort((a, b) => (a < b ? -1 : 1)));
    expect(new Set(results.map((r) => r.epoch)).size).toBe(
      published.filter((p) => p.segmentWritten).length,
    );
    expect(wal.durableEpoch()).toBe(wal.acknowledgedEpoch());
    expect(tempNames(db)).toEqual([]);
    const { records } = await recoverSegments(db);
    expect(records.map((r) => r.beginSeq)).toEqual(
      results.map((r) => r.commitSeq).sort((a, b) => (a < b ? -1 : 1)),
    );
    const stats = wal.stats();
    expect(stats.acknowledgedEpoch).toBe(stats.durableEpoch);
    expect(stats.publishingEpochs).toBe(0);
  });

  it('a failed publication after the ack fails the log, keeps the ack, acknowledges nothing later, and the epoch is adopted on reopen', async () => {
    const db = tempDb();
    const fs = new RecordingFs();
    const wal = await ParallelWal.open(db, { fs, segmentSink: 'earlyAck' });
    const first = await wal.commit(pageBatch(1, 0x01));
    await wal.advanceAndFlush(5_000); // published
    const publishedBefore = wal.durableEpoch();
    fs.failRenames = true;
    const failures: WalFailedError[] = [];
    wal.onFailed((e) => failures.push(e));
    const acked = await wal.commit(pageBatch(2, 0x02));
    expect(acked.epoch).toBeGreaterThan(first.epoch);
    // Its publication (batched: started here by waiting for it) fails; once
    // that is known, nothing is acknowledged.
    const waited = await wal.waitForEpochDurable(acked.epoch, 5_000).catch((e: unknown) => e);
    expect(isWalError(waited, 'ERR_WAL_FAILED')).toBe(true);
    const later = await wal.commit(pageBatch(3, 0x03)).catch((e: unknown) => e);
    expect(isWalError(later, 'ERR_WAL_FAILED')).toBe(true);
    expect(failures).toHaveLength(1);
    expect(failures[0]!.epoch).toBe(acked.epoch + 1n);
    expect((failures[0]!.cause as { errno?: string }).errno).toBe('EIO');
    expect(wal.acknowledgedEpoch()).toBe(acked.epoch);
    expect(wal.durableEpoch()).toBe(publishedBefore);
    await wal.close();
    // The acknowledged epoch sits under its temporary name: read-only
    // recovery sees it, reopening adopts it.
    expect(tempNames(db)).toHaveLength(1);
    const readOnly = await recoverSegments(db);
    expect(readOnly.pendingAdoption).toHaveLength(1);
    expect(readOnly.records.map((r) => r.beginSeq)).toEqual([first.commitSeq, acked.commitSeq]);
    expect(tempNames(db)).toHaveLength(1);
    const reopened = await ParallelWal.open(db, { segmentSink: 'earlyAck' });
    expect(reopened.stats().adoptedTemporaryFiles).toBe(1);
    expect(reopened.durableEpoch()).toBe(acked.epoch);
    const next = await reopened.commit(pageBatch(4, 0x04));
    expect(next.epoch).toBeGreaterThan(acked.epoch);
    expect(next.commitSeq).toBe(acked.commitSeq + 1n);
    await reopened.close();
    expect(tempNames(db)).toEqual([]);
    const { records } = await recoverSegments(db);
    expect(records.map((r) => r.beginSeq)).toEqual([
      first.commitSeq,
      acked.commitSeq,
      next.commitSeq,
    ]);
  });

  it('never acknowledges an epoch whose fdatasync failed and removes its file', async () => {
    const db = tempDb();
    let failNext = false;
    const base = new RecordingFs();
    const fs: WalFileSystem = Object.assign(Object.create(base) as RecordingFs, {
      open: async (p: string, mode: Parameters<WalFileSystem['open']>[1]) => {
        const h = await base.open(p, mode);
        return {
          ...h,
          path: h.path,
          datasync: async () => {
            if (failNext) throw Object.assign(new Error('injected EIO'), { code: 'EIO' });
            await h.datasync();
          },
        };
      },
    });
    const wal = await ParallelWal.open(db, { fs, segmentSink: 'earlyAck' });
    const good = await wal.commit(pageBatch(1, 0x01));
    failNext = true;
    const doomed = await wal.commit(pageBatch(2, 0x02)).catch((e: unknown) => e);
    expect(doomed).toBeInstanceOf(WalFailedError);
    expect((doomed as WalFailedError).epoch).toBe(good.epoch + 1n);
    expect(wal.acknowledgedEpoch()).toBe(good.epoch);
    await wal.close();
    // The earlier acknowledged epoch was still published.
    expect(wal.durableEpoch()).toBe(good.epoch);
    const { records, pendingAdoption } = await recoverSegments(db);
    expect(pendingAdoption).toEqual([]);
    expect(records.map((r) => r.beginSeq)).toEqual([good.commitSeq]);
  });

  it('resolves worker-lane style waits through onAcknowledged before publication', async () => {
    const db = tempDb();
    const fs = new RecordingFs();
    const wal = await ParallelWal.open(db, { fs, segmentSink: 'earlyAck', lock: false });
    const seen: string[] = [];
    wal.onAcknowledged((e) => seen.push(`ack ${e}`));
    wal.onDurable((i) => seen.push(`durable ${i.epoch}`));
    fs.holdRenames();
    const r = await wal.commit(pageBatch(1, 0x01));
    expect(seen).toEqual([`ack ${r.epoch}`]);
    fs.releaseRenames();
    await wal.close();
    expect(seen.filter((s) => s.endsWith(` ${r.epoch}`))).toEqual([
      `ack ${r.epoch}`,
      `durable ${r.epoch}`,
    ]);
  });
});

describe('EarlyAckSegmentSink publication batching', () => {
  const segmentBytes = (version: number): Uint8Array => {
    // The sink reads only the version (bytes 4..5) of the header it writes.
    const bytes = new Uint8Array(64).fill(0x5a);
    bytes[4] = version;
    bytes[5] = 0;
    return bytes;
  };
  const segName = (epoch: bigint) => `early.db-wal-seg-${epoch.toString(16).padStart(16, '0')}`;

  it('publishes a full queue of back-to-back acknowledged epochs with one directory fsync, in epoch order', async () => {
    const db = tempDb();
    const fs = new RecordingFs();
    const sink = new EarlyAckSegmentSink(db, fs, 'full');
    const writes = [];
    // Back to back: no idle gap, so only the queue bound starts the publication.
    for (let e = 1n; e <= BigInt(earlyAckPublishBatchMax); e++) {
      writes.push(await sink.write(e, [segmentBytes(2)]));
    }
    fs.mark('ACKED');
    const order: number[] = [];
    await Promise.all(writes.map((w, i) => w.published?.then(() => order.push(i))));
    expect(order).toEqual(writes.map((_, i) => i));
    const log = fs.log.slice(fs.log.indexOf('ACKED'));
    const renames = log.filter((l) => l.startsWith('rename '));
    expect(renames.map((l) => l.split('->')[1])).toEqual(
      writes.map((_, i) => segName(BigInt(i + 1))),
    );
    // The renames and the replacement files share ONE directory fsync.
    const lastRename = log.lastIndexOf(renames.at(-1)!);
    expect(log.filter((l) => l === 'syncDirectory')).toHaveLength(1);
    expect(log.indexOf('syncDirectory')).toBeGreaterThan(lastRename);
    expect(log.filter((l) => l.startsWith('open:createExclusive'))).toHaveLength(writes.length);
    await sink.dispose();
    expect(tempNames(db)).toEqual([]);
    expect((await listSegments(db)).map((s) => s.epoch)).toEqual(
      writes.map((_, i) => BigInt(i + 1)),
    );
  });

  it('takes every epoch acknowledged during a slow publication into ONE next batch', async () => {
    const db = tempDb();
    const fs = new RecordingFs();
    const sink = new EarlyAckSegmentSink(db, fs, 'full');
    fs.holdRenames();
    const writes = [];
    // The first full queue starts a batch, which stops at its first rename;
    // two queues' worth more are acknowledged meanwhile.
    const total = 3 * earlyAckPublishBatchMax;
    for (let e = 1n; e <= BigInt(total); e++) writes.push(await sink.write(e, [segmentBytes(2)]));
    fs.mark('RELEASED');
    fs.releaseRenames();
    await Promise.all(writes.map((w) => w.published));
    const after = fs.log.slice(fs.log.indexOf('RELEASED'));
    // The held batch, then one batch with the 16 epochs that waited (a chain
    // of fixed-size batches paid one directory fsync per 8).
    expect(after.filter((l) => l === 'syncDirectory')).toHaveLength(2);
    const renames = after.filter((l) => l.startsWith('rename ')).map((l) => l.split('->')[1]);
    expect(renames).toEqual(writes.map((_, i) => segName(BigInt(i + 1))));
    await sink.dispose();
    expect((await listSegments(db)).map((s) => s.epoch)).toEqual(
      writes.map((_, i) => BigInt(i + 1)),
    );
  });

  it('makes writes wait for a lagging publication instead of creating files without bound', async () => {
    const db = tempDb();
    const fs = new RecordingFs();
    const sink = new EarlyAckSegmentSink(db, fs, 'full');
    fs.holdRenames();
    const stalled = Symbol('stalled');
    let acknowledged = 0;
    let waiting: Promise<unknown> | null = null;
    for (let e = 1n; e <= 200n; e++) {
      const write = sink.write(e, [segmentBytes(2)]);
      // A write that finds no file waits for the held publication (it never
      // finishes on its own); every other write takes a few milliseconds.
      const outcome = await Promise.race([
        write,
        new Promise((resolve) => setTimeout(() => resolve(stalled), 500)),
      ]);
      if (outcome === stalled) {
        waiting = write;
        break;
      }
      acknowledged++;
    }
    expect(waiting).not.toBeNull();
    // Acknowledged epochs waiting for their names are bounded by the files
    // made ready ahead: before, each write that found none created more.
    expect(acknowledged).toBeLessThanOrEqual(EARLY_ACK_FILES_AHEAD);
    expect(tempNames(db).length).toBeLessThanOrEqual(EARLY_ACK_FILES_AHEAD);
    fs.releaseRenames();
    await waiting;
    await sink.dispose();
    expect((await listSegments(db)).map((s) => s.epoch)).toEqual(
      Array.from({ length: acknowledged + 1 }, (_, i) => BigInt(i + 1)),
    );
    expect(tempNames(db)).toEqual([]);
  });

  it('publishes a short queue on its own once writes pause, and on dispose', async () => {
    const db = tempDb();
    const sink = new EarlyAckSegmentSink(db, nodeFileSystem, 'full');
    const first = await sink.write(1n, [segmentBytes(2)]);
    expect(first.published).not.toBeNull();
    await first.published; // no further write, no explicit trigger: the idle delay starts it
    expect(nodeFs.existsSync(path.join(path.dirname(db), segName(1n)))).toBe(true);
    const second = await sink.write(2n, [segmentBytes(2)]);
    await sink.dispose();
    await second.published;
    expect((await listSegments(db)).map((s) => s.epoch)).toEqual([1n, 2n]);
    expect(tempNames(db)).toEqual([]);
  });

  it('acknowledges a version-3 segment only once it, and the queue before it, is published', async () => {
    const db = tempDb();
    const fs = new RecordingFs();
    const sink = new EarlyAckSegmentSink(db, fs, 'full');
    const queued = await sink.write(1n, [segmentBytes(2)]);
    const certified = await sink.write(2n, [segmentBytes(3)]);
    expect(certified.published).toBeNull();
    // Under its name when acknowledged, and the queued version-2 epoch before it.
    expect((await listSegments(db)).map((s) => s.epoch)).toEqual([1n, 2n]);
    await queued.published;
    await sink.dispose();
  });
});

describe('EarlyAckSegmentSink with its file thread gone', () => {
  it('names the file thread, not a system call, when the thread fails under a job', async () => {
    const db = tempDb();
    const inline = new InlineWriteExecutor();
    const gone = new DurableWriteFailure(
      'write',
      Object.assign(new Error('the file thread exited (code 1)'), { code: IO_THREAD_EXIT_CODE }),
    );
    const executor: DurableWriteExecutor = {
      kind: 'ioThread',
      writeAt: (...args) => inline.writeAt(...args),
      // The thread takes the job, then dies before answering.
      fileWork: () => Promise.reject(gone),
      stats: () => inline.stats(),
      close: () => inline.close(),
    };
    const sink = new EarlyAckSegmentSink(db, nodeFileSystem, 'full', executor);
    const failure = await sink.write(1n, [new Uint8Array(64)]).then(
      () => null,
      (error: unknown) => error,
    );
    expect(isWalError(failure)).toBe(true);
    expect(failure).toMatchObject({ syscall: 'thread', path: path.dirname(db) });
    expect(String((failure as Error).message)).toMatch(
      /the file thread failed.*the file thread exited \(code 1\)/,
    );
    await sink.dispose().catch(() => {});
  });
});
