/**
 * The flusher's pipelining and wave splitting (`src/engine/flusher.ts`):
 * the next epoch's write starts the moment the disk is free, before the
 * commits of the epoch just written continue; and a closed-loop wave of
 * committers is split in two so that their CPU work and the disk overlap.
 * Neither may cost an acknowledged commit or reorder commits.
 */
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { afterEach, describe, expect, it } from 'vitest';
import { waveSplitCommitsMin } from '../../src/engine/flusher.js';
import { type CommitResult, ParallelWal, type ParallelWalBatch } from '../../src/engine/wal.js';
import { recoverSegments } from '../../src/storage/recovery.js';
import { gatedFileSystem } from '../support/gated-fs.js';
import { awaitPublished } from '../support/published.js';
import { useTempDb } from '../support/temp-db.js';

let db = '';
useTempDb('wave.db', (paths) => {
  db = paths.db;
});

const opened: ParallelWal[] = [];
// Registered after useTempDb: after-each hooks run in reverse, so logs close before their directory goes.
afterEach(async () => {
  for (const wal of opened.splice(0)) await wal.close().catch(() => {});
});

async function open(dbPath: string, config: Parameters<typeof ParallelWal.open>[1] = {}) {
  const wal = await ParallelWal.open(dbPath, config);
  opened.push(wal);
  return wal;
}

function batch(txnId: number, bytes = 64): ParallelWalBatch {
  return {
    txnToken: { id: BigInt(txnId), epoch: 0 },
    frames: [
      {
        pageNumber: 1 + (txnId % 1000),
        pageData: new Uint8Array(bytes).fill(txnId & 0xff),
        dbSizeIfCommit: 0,
      },
    ],
  };
}

/** Polls `condition` (no timing assertion: only a generous bound against hangs). */
async function waitFor(condition: () => boolean, limitMs = 20_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

/** Epoch → number of commits in it, in epoch order. */
function perEpoch(results: readonly CommitResult[]): number[] {
  const counts = new Map<bigint, number>();
  for (const r of results) counts.set(r.epoch, (counts.get(r.epoch) ?? 0) + 1);
  return [...counts.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([, n]) => n);
}

describe('pipelined writes', () => {
  it("starts the write of commits that arrived during a write before that write's commits continue", async () => {
    const gated = gatedFileSystem();
    const wal = await open(db, { fs: gated.fs, slotCount: 2 });
    const before = wal.stats().pipelinedSeals;
    let writesWhenFirstContinued = -1;
    const first = wal.commit(batch(1)).then((result) => {
      writesWhenFirstContinued = gated.writes();
      return result;
    });
    await waitFor(gated.waiting);
    // The disk is busy with the first epoch: these fill the next one.
    const during = [wal.commit(batch(2)), wal.commit(batch(3))];
    expect(gated.writes()).toBe(1);
    expect(gated.release()).toBe(true);
    const results = await Promise.all([first, ...during]);
    // When the first commit continued, the second epoch's write was already started.
    expect(writesWhenFirstContinued).toBe(2);
    expect(wal.stats().pipelinedSeals - before).toBe(1);
    expect(results[1]!.epoch).toBe(results[0]!.epoch + 1n);
    expect(results[2]!.epoch).toBe(results[1]!.epoch);
    await awaitPublished(wal);
    const recovered = await recoverSegments(db);
    expect(recovered.records.map((r) => r.beginSeq)).toEqual(results.map((r) => r.commitSeq));
  });

  it('acknowledges the written epoch when the write started after it fails, and nothing after it', async () => {
    const gated = gatedFileSystem(true);
    const wal = await open(db, { fs: gated.fs, slotCount: 2 });
    const first = wal.commit(batch(1));
    await waitFor(gated.waiting);
    const during = wal.commit(batch(2));
    const settledDuring = during.then(
      () => null,
      (error: unknown) => error,
    );
    expect(gated.release()).toBe(true);
    const written = await first;
    // The second epoch's fdatasync failed: its commit is refused, typed.
    expect(await settledDuring).toMatchObject({ code: 'ERR_WAL_FAILED' });
    expect(wal.acknowledgedEpoch()).toBe(written.epoch);
    await expect(wal.commit(batch(3))).rejects.toMatchObject({ code: 'ERR_WAL_FAILED' });
    await wal.close().catch(() => {});
    const recovered = await recoverSegments(db);
    expect(recovered.records.map((r) => r.beginSeq)).toEqual([written.commitSeq]);
  });

  it('acknowledges the written epoch when the next one cannot even start, and nothing after it', async () => {
    const gated = gatedFileSystem();
    const wal = await open(db, { fs: gated.fs, slotCount: 2 });
    const first = wal.commit(batch(1));
    await waitFor(gated.waiting);
    const during = wal.commit(batch(2)).then(
      () => null,
      (error: unknown) => error,
    );
    // An engine invariant breach when the next epoch is taken for writing
    // (thrown synchronously, before the written epoch is acknowledged).
    const coordinator = (wal as unknown as { coordinator: { flushEpoch(e: bigint): unknown } })
      .coordinator;
    coordinator.flushEpoch = () => {
      throw new Error('invariant breach injected by the test');
    };
    expect(gated.release()).toBe(true);
    // The first epoch is durable: its commit resolves, and it stays acknowledged.
    const written = await first;
    expect(wal.acknowledgedEpoch()).toBe(written.epoch);
    expect(await during).toMatchObject({ code: 'ERR_WAL_FAILED' });
  });

  it('leaves the open epoch to the caller without auto-flush', async () => {
    const gated = gatedFileSystem();
    const wal = await open(db, { fs: gated.fs, autoFlush: false });
    const first = wal.commit(batch(1));
    const flushed = wal.advanceAndFlush(10_000);
    await waitFor(gated.waiting);
    const later = wal.commit(batch(2));
    expect(gated.release()).toBe(true);
    await flushed;
    await first;
    // The commit that arrived during the write is not sealed by the flusher on its own.
    expect(wal.stats().pipelinedSeals).toBe(0);
    expect(gated.writes()).toBe(1);
    await wal.advanceAndFlush(10_000);
    expect((await later).epoch).toBe((await first).epoch + 1n);
  });
});

describe('pipelineFlush: false', () => {
  it('seals the next epoch only after the written one was acknowledged, and never splits a wave', async () => {
    const gated = gatedFileSystem();
    const wal = await open(db, { fs: gated.fs, slotCount: 2, pipelineFlush: false });
    let writesWhenFirstContinued = -1;
    const first = wal.commit(batch(1)).then((result) => {
      writesWhenFirstContinued = gated.writes();
      return result;
    });
    await waitFor(gated.waiting);
    const during = wal.commit(batch(2));
    expect(gated.release()).toBe(true);
    await Promise.all([first, during]);
    expect(writesWhenFirstContinued).toBe(1);

    const wave = waveSplitCommitsMin * 2;
    const round1 = Array.from({ length: wave }, (_, i) => wal.commit(batch(10 + i)));
    const round2 = round1.map((p, i) => p.then(() => wal.commit(batch(10 + wave + i))));
    await Promise.all(round1);
    expect(perEpoch(await Promise.all(round2))).toEqual([wave]);
    expect(wal.stats()).toMatchObject({ pipelinedSeals: 0, waveSplits: 0 });
  });

  it('is checked like every option', async () => {
    await expect(
      ParallelWal.open(db, { pipelineFlush: 'yes' as unknown as boolean }),
    ).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });
});

describe('closed-loop waves', () => {
  it(`splits a wave of ${waveSplitCommitsMin * 2} commits in two epochs of ${waveSplitCommitsMin}`, async () => {
    const wave = waveSplitCommitsMin * 2;
    const wal = await open(db, { slotCount: 4 });
    // Round one: every commit issued in one turn shares one epoch.
    const round1 = Array.from({ length: wave }, (_, i) => wal.commit(batch(i + 1)));
    // Round two: each committer commits again the moment its commit resolves
    // (a closed loop); all of them continue in one run of microtasks.
    const round2 = round1.map((p, i) => p.then(() => wal.commit(batch(wave + i + 1))));
    const first = await Promise.all(round1);
    const second = await Promise.all(round2);
    expect(perEpoch(first)).toEqual([wave]);
    // Half the wave is sealed and written while the other half still commits.
    expect(perEpoch(second)).toEqual([wave / 2, wave / 2]);
    expect(wal.stats().waveSplits).toBe(1);
  });

  it('does not split a wave below the threshold', async () => {
    const wave = Math.max(2, waveSplitCommitsMin / 4);
    const wal = await open(db, { slotCount: 4 });
    const round1 = Array.from({ length: wave }, (_, i) => wal.commit(batch(i + 1)));
    const round2 = round1.map((p, i) => p.then(() => wal.commit(batch(wave + i + 1))));
    await Promise.all(round1);
    expect(perEpoch(await Promise.all(round2))).toEqual([wave]);
    expect(wal.stats().waveSplits).toBe(0);
  });

  it('lets advanceAndFlush finish while the pipeline never empties', async () => {
    const wal = await open(db, { slotCount: 8, fsync: 'off' });
    let stop = false;
    let next = 1;
    const loops = Array.from({ length: waveSplitCommitsMin * 2 + 44 }, async () => {
      while (!stop) await wal.commit(batch(next++));
    });
    // Every epoch's write is started, or queued, while the one before it is
    // in flight (which of the two depends on timing: a write that returns
    // after the next epoch was sealed finds it queued).
    await waitFor(() => {
      const { waveSplits, pipelinedSeals, queuedWrites } = wal.stats();
      return waveSplits > 0 && pipelinedSeals + queuedWrites > 20;
    });
    try {
      // Each cycle writes the epochs sealed when it began; later ones go to
      // the next cycle, so this one is not held behind the load.
      const epoch = await wal.advanceAndFlush(10_000);
      expect(wal.durableEpoch()! >= epoch - 1n).toBe(true);
    } finally {
      stop = true;
      await Promise.all(loops);
    }
  });

  it('recovers every acknowledged commit of split, pipelined waves once, in commit order', async () => {
    const committers = waveSplitCommitsMin * 2 + 44;
    const rounds = 6;
    const wal = await open(db, { slotCount: 8 });
    const acked: CommitResult[] = [];
    let next = 1;
    await Promise.all(
      Array.from({ length: committers }, async () => {
        for (let round = 0; round < rounds; round++) {
          acked.push(await wal.commit(batch(next++, 512)));
        }
      }),
    );
    const stats = wal.stats();
    expect(stats.waveSplits).toBeGreaterThanOrEqual(1);
    // After the split, each half's epoch is queued behind the other's write.
    expect(stats.queuedWrites).toBeGreaterThanOrEqual(1);
    await awaitPublished(wal);
    await wal.close();
    const recovered = await recoverSegments(db);
    const bySeq = [...acked].sort((a, b) => (a.commitSeq < b.commitSeq ? -1 : 1));
    expect(recovered.records.map((r) => r.beginSeq)).toEqual(bySeq.map((r) => r.commitSeq));
    // Commit order agrees with epoch order.
    for (let i = 1; i < bySeq.length; i++) {
      expect(bySeq[i]!.epoch >= bySeq[i - 1]!.epoch).toBe(true);
    }
  });
});

describe('queued writes', () => {
  /**
   * Epoch 0 holds a wave of `wave` commits, its fdatasync held by the gate;
   * then a second wave as big arrives: its epoch is sealed and its write
   * queued behind epoch 0's.
   */
  async function queueBehindHeldWrite(failGatedSync: boolean, wave = 200) {
    const gated = gatedFileSystem(false, failGatedSync);
    const wal = await open(db, { fs: gated.fs, slotCount: 2 });
    const settle = (p: Promise<CommitResult>) =>
      p.then(
        (result) => result,
        (error: unknown) => error as Error,
      );
    const first = Array.from({ length: wave }, (_, i) => settle(wal.commit(batch(1 + i))));
    await waitFor(gated.waiting);
    const second = Array.from({ length: wave }, (_, i) => settle(wal.commit(batch(1 + wave + i))));
    return { gated, wal, first, second };
  }

  it('seals a returning wave while a write is in flight and queues its write, started only once that write is durable', async () => {
    const { gated, wal, first, second } = await queueBehindHeldWrite(false);
    expect(wal.stats().queuedWrites).toBe(1);
    // Queued, not started: epoch 0's fdatasync has not returned.
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(gated.writes()).toBe(1);
    expect(gated.release()).toBe(true);
    const results = (await Promise.all([...first, ...second])) as CommitResult[];
    expect(gated.writes()).toBe(2);
    expect(perEpoch(results)).toEqual([200, 200]);
    await awaitPublished(wal);
    const recovered = await recoverSegments(db);
    expect(recovered.records.map((r) => r.beginSeq)).toEqual(
      [...results].sort((a, b) => (a.commitSeq < b.commitSeq ? -1 : 1)).map((r) => r.commitSeq),
    );
  });

  it('never starts a queued write whose predecessor failed, and acknowledges neither', async () => {
    const { gated, wal, first, second } = await queueBehindHeldWrite(true);
    expect(wal.stats().queuedWrites).toBe(1);
    expect(gated.release()).toBe(true);
    const outcomes = await Promise.all([...first, ...second]);
    for (const outcome of outcomes) expect(outcome).toMatchObject({ code: 'ERR_WAL_FAILED' });
    // The queued epoch's bytes never reached a file.
    expect(gated.writes()).toBe(1);
    expect(wal.acknowledgedEpoch()).toBeNull();
    await wal.close().catch(() => {});
    expect((await recoverSegments(db)).records).toEqual([]);
  });

  it('queues no write over a lane that refuses appends meanwhile: submitBatch keeps taking batches', async () => {
    // blockWriter lanes (and the serialized lane) refuse appends instead of
    // overflowing; a queued epoch's buffer, written in place, would refuse
    // them until the write before it returned.
    const gated = gatedFileSystem();
    const wal = await open(db, {
      fs: gated.fs,
      slotCount: 1,
      overflowPolicy: 'blockWriter',
      bufferCapacityBytes: 4096,
    });
    const first = Array.from({ length: 200 }, (_, i) => wal.commit(batch(1 + i)));
    await waitFor(gated.waiting);
    const second = Array.from({ length: 200 }, (_, i) => wal.commit(batch(1000 + i)));
    expect(wal.stats().queuedWrites).toBe(0);
    const epoch = wal.submitBatch(batch(5000));
    expect(gated.release()).toBe(true);
    await Promise.all([...first, ...second, wal.waitForEpochDurable(epoch, 20_000)]);
  });

  it('starts no write after one that failed on the owner thread, even when an acknowledgement listener commits a wave synchronously', async () => {
    // The first fdatasync (on whichever path) fails; nothing may be written
    // after it, or the next epoch would be published with a hole below it.
    const fsCjs = createRequire(import.meta.url)('node:fs') as typeof import('node:fs');
    const realSync = fsCjs.fdatasyncSync;
    const syncs: string[] = [];
    fsCjs.fdatasyncSync = (fd: number) => {
      if (syncs.length === 0) {
        syncs.push('fail');
        throw Object.assign(new Error('EIO: injected'), { code: 'EIO', errno: -5 });
      }
      syncs.push('ok');
      return realSync(fd);
    };
    syncBuiltinESMExports();
    try {
      const wal = await open(db, { slotCount: 2, callerWriteBytesMax: 16 * 1024 });
      const settled: Promise<unknown>[] = [];
      const settle = (p: Promise<CommitResult>) => settled.push(p.catch((e: unknown) => e));
      let id = 1;
      let fired = false;
      wal.onAcknowledged(() => {
        if (fired) return;
        fired = true;
        // As many as the epoch just sealed, in the acknowledgement's own turn.
        for (let i = 0; i < 100; i++) settle(wal.commit(batch(id++)));
      });
      // 200 commits (over callerWriteBytesMax: the I/O thread), then, while
      // they are written, 100 (under it: the owner thread, whose fdatasync fails).
      for (let i = 0; i < 200; i++) settle(wal.commit(batch(id++)));
      await new Promise((resolve) => setImmediate(resolve));
      for (let i = 0; i < 100; i++) settle(wal.commit(batch(id++)));
      await Promise.all(settled);
      await wal.close().catch(() => {});
      expect(syncs).toEqual(['fail']);
      // What is on disk recovers (no hole below a later segment).
      const recovered = await recoverSegments(db);
      expect(recovered.records.length).toBeLessThanOrEqual(200);
    } finally {
      fsCjs.fdatasyncSync = realSync;
      syncBuiltinESMExports();
    }
  });
});
