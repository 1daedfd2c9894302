/**
 * The page store on a log with the `earlyAck` sink: a commit is readable as
 * soon as it resolves (acknowledged, not yet published); a checkpoint waits
 * for the publication of every epoch acknowledged before it, and never folds
 * or deletes an unpublished one; a power cut between the ack and the
 * publication leaves the epoch under its temporary name, and reopening the
 * store adopts it and recovers the page.
 */
import { describe, expect, it } from 'vitest';
import { createDeferred } from '../../src/engine/deferred.js';
import type { WalFileHandle, WalFileSystem } from '../../src/storage/fs.js';
import { lockPath } from '../../src/storage/lockfile.js';
import { PageStore, storeLogForTests } from '../../src/store/page-store.js';
import { seededRng } from '../support/rng.js';
import { SimulatedFileSystem } from '../support/simulated-fs.js';

const DB = '/data/store.db';
const PAGE = 512;

/** The simulated disk with renames of early-ack temporary files held back on demand. */
function gatedFs(sim: SimulatedFileSystem): {
  fs: WalFileSystem;
  hold(): void;
  release(): void;
  failRenames(): void;
} {
  let gate: ReturnType<typeof createDeferred<void>> | null = null;
  let failing = false;
  const fs: WalFileSystem = {
    open: (p, m): Promise<WalFileHandle> => sim.open(p, m),
    readFile: (p) => sim.readFile(p),
    stat: (p) => sim.stat(p),
    readdir: (d) => sim.readdir(d),
    rename: async (a, b) => {
      if (gate !== null && a.includes('-wal-tmp-ack-')) await gate.promise;
      if (failing && a.includes('-wal-tmp-ack-')) {
        throw Object.assign(new Error(`EIO: i/o error, rename '${a}'`), { code: 'EIO' });
      }
      return sim.rename(a, b);
    },
    unlink: (p) => sim.unlink(p),
    mkdir: (p, o) => sim.mkdir(p, o),
    syncDirectory: (d) => sim.syncDirectory(d),
  };
  return {
    fs,
    hold: () => {
      gate = createDeferred<void>();
    },
    release: () => {
      gate?.resolve();
      gate = null;
    },
    failRenames: () => {
      failing = true;
    },
  };
}

const page = (fill: number) => new Uint8Array(PAGE).fill(fill);

describe('PageStore with the earlyAck sink', () => {
  it('reads its own write at ack, checkpoints an acked epoch only once published, and recovers an acked epoch after a power cut before publication', async () => {
    const sim = new SimulatedFileSystem();
    sim.mkdirSync('/data');
    const gated = gatedFs(sim);
    const store = await PageStore.open(DB, {
      fs: gated.fs,
      pageSize: PAGE,
      autoCheckpoint: false,
      segmentSink: 'earlyAck',
    });
    const first = await store.commit([{ pageNumber: 1, data: page(1) }]);
    await store.log.advanceAndFlush(5_000); // published
    await store.checkpoint();
    expect(store.checkpointEpoch! >= first.epoch).toBe(true);

    gated.hold();
    const acked = await store.commit([{ pageNumber: 2, data: page(2) }]);
    // Acknowledged, not published: visible to reads at once.
    expect(store.log.acknowledgedEpoch()).toBe(acked.epoch);
    expect(store.log.durableEpoch()).toBeLessThan(acked.epoch);
    expect(await store.read(2)).toEqual(page(2));
    // A checkpoint folds everything acknowledged before it was called, so it
    // waits for the publication; it must not fold (and delete) the epoch before.
    let checkpointSettled = false;
    const cpRun = store.checkpoint().finally(() => {
      checkpointSettled = true;
    });
    for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 5));
    expect(checkpointSettled).toBe(false);
    expect(store.checkpointEpoch! < acked.epoch).toBe(true);
    const temps = (await sim.readdir('/data')).filter((n) => n.includes('-wal-tmp-ack-'));
    expect(temps.length).toBeGreaterThan(0);

    // Power cut now: only what was synced survives; the rename never happened.
    const disk = sim.crashImage(seededRng(3), { data: 'dropAll', dirOps: 'dropAll' });
    disk.removeSync(lockPath(DB));
    // The old process is gone: let this instance finish on the old disk and let go of the path.
    gated.release();
    const cp = await cpRun;
    expect(cp.checkpointEpoch! >= acked.epoch).toBe(true);
    expect(await store.read(2)).toEqual(page(2));
    await store.close();
    const reopened = await PageStore.open(DB, { fs: disk, pageSize: PAGE, autoCheckpoint: false });
    expect(await reopened.read(1)).toEqual(page(1));
    expect(await reopened.read(2)).toEqual(page(2));
    expect(reopened.recovery.checkpointEpoch).toBe(acked.epoch);
    const next = await reopened.commit([{ pageNumber: 3, data: page(3) }]);
    expect(next.epoch).toBeGreaterThan(acked.epoch);
    await reopened.close();
    expect((await disk.readdir('/data')).filter((n) => n.includes('-wal-tmp-'))).toEqual([]);
  });

  it('a read waits for the publication of an acknowledged commit that bypassed commit() (serialized path), and fails typed if it never comes', async () => {
    const sim = new SimulatedFileSystem();
    sim.mkdirSync('/data');
    const gated = gatedFs(sim);
    const store = await PageStore.open(DB, {
      fs: gated.fs,
      pageSize: PAGE,
      autoCheckpoint: false,
      segmentSink: 'earlyAck',
    });
    expect(store.log.config.segmentSink).toBe('earlyAck');
    await store.commit([{ pageNumber: 1, data: page(1) }]);
    // Published (batched publication started by waiting for it) before the gate closes.
    await store.log.waitForEpochDurable(store.log.acknowledgedEpoch()!, 5_000);
    gated.hold();
    // What a worker's fallback does: straight into the log, read back on publication.
    const direct = await storeLogForTests(store).commitSerialized({
      txnToken: { id: 1n << 50n, epoch: 0 },
      frames: [{ pageNumber: 2, pageData: page(2), dbSizeIfCommit: 2 }],
    });
    expect(store.log.acknowledgedEpoch()).toBe(direct.epoch);
    expect(store.log.durableEpoch()).toBeLessThan(direct.epoch);
    let readSettled = false;
    const reading = store.read(2).finally(() => {
      readSettled = true;
    });
    for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 5));
    expect(readSettled).toBe(false);
    gated.release();
    expect(await reading).toEqual(page(2));

    // A publication that fails: the read cannot see the commit, and says so.
    gated.failRenames();
    const lost = await storeLogForTests(store).commitSerialized({
      txnToken: { id: (1n << 50n) + 1n, epoch: 0 },
      frames: [{ pageNumber: 2, pageData: page(3), dbSizeIfCommit: 2 }],
    });
    expect(store.log.acknowledgedEpoch()).toBe(lost.epoch);
    await expect(store.read(2)).rejects.toMatchObject({ code: 'ERR_STORE_NOT_PUBLISHED' });
    await expect(store.checkpoint()).rejects.toMatchObject({
      code: 'ERR_STORE_CHECKPOINT_FAILED',
    });
    await store.close().catch(() => undefined);
    // Nothing lost: reopening adopts the acknowledged epoch.
    sim.removeSync(lockPath(DB));
    const reopened = await PageStore.open(DB, { fs: sim, pageSize: PAGE, autoCheckpoint: false });
    expect(await reopened.read(2)).toEqual(page(3));
    await reopened.close();
  });
});
