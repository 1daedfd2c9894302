/**
 * Group-commit floors: the least a log can do per epoch, with many async committers.
 *
 * Each gathers every commit made while the previous epoch was on the disk into one epoch, write
 * it with one synchronous `writev`, call `fdatasync` synchronously on the event loop (no thread
 * hop, no encoding, no checksums), then acknowledge all of it. Each commit is stored as its id
 * (8 bytes) followed by its pages, so that the read-back can find it.
 *
 * - `gcring` writes every epoch into one file of already-written space (the minimal group-commit
 *   log of issue 12's measurements): no allocation, no size change.
 * - `gcseg` writes every epoch into a new file of its own, as the segment format asks. Every 32
 *   epochs, synchronously between two epochs, it closes the 32 used files and renames them to
 *   their segment names, creates the next 32 empty files, and fsyncs the directory once for all
 *   of it (as the engine's publication does); a file is used only after that fsync. The gap
 *   between the two is the price of a new file per epoch; the gap between `gcseg` and
 *   parallel-wal is the engine's own cost.
 * - `gcfresh` bounds a loop that writes one epoch at a time into a new file: its files
 *   ({@link FRESH_FILES}) are created under one directory fsync when the store opens, before the
 *   warm-up, and none is renamed or published; an epoch opens its (empty) file, writes,
 *   fdatasyncs and closes it. (A log that overlaps epochs can do better than it: parallel-wal
 *   does at 256 committers.)
 *
 * `gcring` is checked only for its newest half-ring of commits: older ones were written over by
 * design, and for them only the file's size is checked.
 *
 * A floor, not a library: there is no recovery, and a failed call ends the cell.
 */
import fs from 'node:fs';
import path from 'node:path';
import { PAGE_BYTES, pageImage } from '../lib/common.js';
import { type OpenStore, type SystemDef, VerifyTally } from '../lib/system.js';

/** Size of `gcring`'s file, written once before the window: 64 MiB. */
const RING_BYTES = 64 * 1024 * 1024;
/** Files `gcseg` creates, and publishes, at a time. */
const FILE_BATCH = 32;
/** Bytes in front of each commit's pages: its id. */
const ID_BYTES = 8;

/** Files `gcfresh` creates before the warm-up: more than a 2.3 s cell uses at 1 committer. */
const FRESH_FILES = 20_000;
/** Files `gcfresh` creates at a time if a cell uses them all (a stall, counted in the cell). */
const FRESH_MORE = 1_000;

const ringFile = (dir: string): string => path.join(dir, 'gc-ring.log');
const segName = (n: number): string => `gc-seg-${n.toString(16).padStart(16, '0')}`;

/** One commit waiting for its epoch. */
interface Waiting {
  bytes: Buffer[];
  done: () => void;
  failed: (error: unknown) => void;
}

/**
 * The group-commit loop: `writeEpoch` gets every waiting commit's bytes (in commit order) and
 * returns once they are durable; then every one of them is acknowledged. `afterEpoch` (the
 * background work of a log) runs once those acknowledgements are delivered, before the next
 * epoch starts.
 */
function groupCommitter(
  writeEpoch: (chunks: Buffer[], bytes: number) => void,
  afterEpoch?: () => void,
): {
  commit: (id: number, pages: Buffer[]) => Promise<void>;
  epochs: () => number;
} {
  let waiting: Waiting[] = [];
  let scheduled = false;
  let epochs = 0;
  const flush = (): void => {
    scheduled = false;
    const epoch = waiting;
    waiting = [];
    const chunks: Buffer[] = [];
    let bytes = 0;
    for (const item of epoch) {
      for (const chunk of item.bytes) {
        chunks.push(chunk);
        bytes += chunk.length;
      }
    }
    try {
      writeEpoch(chunks, bytes);
      epochs += 1;
    } catch (error) {
      for (const item of epoch) item.failed(error);
      return;
    }
    for (const item of epoch) item.done();
    // Queued before the committers' next commits schedule the next epoch (they run as
    // microtasks of the acknowledgements, after this returns), so it runs between the two.
    if (afterEpoch !== undefined) setImmediate(afterEpoch);
  };
  return {
    commit(id, pages) {
      const head = Buffer.allocUnsafe(ID_BYTES);
      head.writeBigUInt64LE(BigInt(id));
      return new Promise<void>((done, failed) => {
        waiting.push({ bytes: [head, ...pages], done, failed });
        if (!scheduled) {
          scheduled = true;
          // After this turn's other commits: they join the same epoch.
          setImmediate(flush);
        }
      });
    },
    epochs: () => epochs,
  };
}

/** Writes all of `chunks` at `position` (a short write goes on with the rest). */
function writeAll(fd: number, chunks: Buffer[], position: number): void {
  let pending = chunks;
  let at = position;
  while (pending.length > 0) {
    const written = fs.writevSync(fd, pending, at);
    if (written <= 0) throw Object.assign(new Error('short write'), { code: 'EIO' });
    at += written;
    let skip = written;
    const rest: Buffer[] = [];
    for (const chunk of pending) {
      if (skip >= chunk.length) skip -= chunk.length;
      else {
        rest.push(skip > 0 ? chunk.subarray(skip) : chunk);
        skip = 0;
      }
    }
    pending = rest;
  }
}

/** Every commit found in `data` (records of {@link ID_BYTES} + `pages` pages, back to back). */
function recordsIn(data: Buffer, pages: number, found: Set<number>): void {
  const recordBytes = ID_BYTES + pages * PAGE_BYTES;
  for (let at = 0; at + recordBytes <= data.length; at += recordBytes) {
    const id = Number(data.readBigUInt64LE(at));
    let ok = true;
    for (let p = 0; p < pages && ok; p++) {
      const from = at + ID_BYTES + p * PAGE_BYTES;
      ok = Buffer.compare(data.subarray(from, from + PAGE_BYTES), pageImage(id, p)) === 0;
    }
    if (ok) found.add(id);
  }
}

const singleProcess = {
  supportsWorkers: false,
  async versions() {
    return { node: process.version };
  },
  effectiveConcurrency(committers: number) {
    return { n: committers };
  },
};

/** Group commit into one file of already-written space, wrapping around at its end. */
export const groupRing: SystemDef = {
  ...singleProcess,
  name: 'gcring',
  label: 'group commit, overwrite',
  settings: 'one writev + fdatasync per epoch into pre-written space, on the event loop',
  async open(dir): Promise<OpenStore> {
    const fd = fs.openSync(ringFile(dir), 'w+');
    // Incompressible filler, written and synced once: every later write overwrites it.
    const filler = Buffer.allocUnsafe(1024 * 1024);
    for (let at = 0; at < RING_BYTES; at += filler.length) {
      for (let i = 0; i < filler.length; i += PAGE_BYTES) pageImage(at + i, 9).copy(filler, i);
      fs.writeSync(fd, filler, 0, filler.length, at);
    }
    fs.fsyncSync(fd);
    let position = 0;
    const loop = groupCommitter((chunks, bytes) => {
      if (bytes > RING_BYTES) throw new Error(`an epoch of ${bytes} bytes exceeds the ring`);
      if (position + bytes > RING_BYTES) position = 0;
      writeAll(fd, chunks, position);
      fs.fdatasyncSync(fd);
      position += bytes;
    });
    return {
      commit: loop.commit,
      close: async () => fs.closeSync(fd),
      libraryFsyncs: () => 1 + loop.epochs(),
    };
  },
  async verify(dir, acked, pages) {
    const ring = fs.readFileSync(ringFile(dir));
    const found = new Set<number>();
    recordsIn(ring, pages, found);
    // Epochs go back to back in acknowledgement order, so only the oldest commits can have
    // been written over: half a ring's worth of the newest must all be there; of the older
    // ones, only the ring's size can be checked.
    const kept = Math.floor(RING_BYTES / (ID_BYTES + pages * PAGE_BYTES) / 2);
    const tally = new VerifyTally();
    acked.forEach((id, i) => {
      if (i < acked.length - kept) {
        tally.check(ring.length === RING_BYTES, () => `ring file is ${ring.length} bytes`);
      } else {
        tally.check(found.has(id), () => `commit ${id} missing from the ring`);
      }
    });
    return tally;
  },
};

/** Group commit into a new file per epoch, created ahead and published in batches. */
export const groupSegment: SystemDef = {
  ...singleProcess,
  name: 'gcseg',
  label: 'group commit, new file per epoch',
  settings:
    'one writev + fdatasync per epoch into a new file; every 32 epochs, 32 renamed and 32 created under one dir fsync; on the event loop',
  async open(dir): Promise<OpenStore> {
    const dirFd = fs.openSync(dir, 'r');
    let nonce = 0;
    let published = 0;
    let syncs = 0;
    const ready: { fd: number; temp: string }[] = [];
    let used: { fd: number; temp: string }[] = [];
    /** Publishes the used files and creates `count` new ones, under one directory fsync. */
    const turnOver = (count: number): void => {
      for (const file of used) {
        fs.closeSync(file.fd);
        fs.renameSync(file.temp, path.join(dir, segName(++published)));
      }
      used = [];
      const made: { fd: number; temp: string }[] = [];
      for (let i = 0; i < count; i++) {
        const temp = path.join(dir, `gc-tmp-${(nonce++).toString(16)}`);
        made.push({ fd: fs.openSync(temp, 'wx'), temp });
      }
      fs.fsyncSync(dirFd);
      syncs += 1;
      // Usable only now that their names are durable.
      ready.push(...made);
    };
    turnOver(FILE_BATCH);
    const loop = groupCommitter(
      (chunks) => {
        const file = ready.shift()!;
        writeAll(file.fd, chunks, 0);
        fs.fdatasyncSync(file.fd);
        syncs += 1;
        used.push(file);
      },
      // Between epochs, once this one is acknowledged: the next epoch waits for it, as it
      // would for a background job competing for the disk.
      () => {
        if (used.length >= FILE_BATCH || ready.length === 0) turnOver(FILE_BATCH);
      },
    );
    return {
      commit: loop.commit,
      close: async () => {
        turnOver(0);
        for (const file of ready) {
          fs.closeSync(file.fd);
          fs.unlinkSync(file.temp);
        }
        fs.closeSync(dirFd);
      },
      libraryFsyncs: () => syncs,
    };
  },
  async verify(dir, acked, pages) {
    const found = new Set<number>();
    for (const name of fs.readdirSync(dir)) {
      if (name.startsWith('gc-seg-'))
        recordsIn(fs.readFileSync(path.join(dir, name)), pages, found);
    }
    const tally = new VerifyTally();
    for (const id of acked) tally.check(found.has(id), () => `commit ${id} missing`);
    return tally;
  },
};

const freshFile = (dir: string, n: number): string => path.join(dir, `gc-fresh-${n}`);

/** Makes empty files `from`..`to - 1` and fsyncs the directory once. */
function createFresh(dir: string, dirFd: number, from: number, to: number): void {
  for (let n = from; n < to; n++) fs.closeSync(fs.openSync(freshFile(dir, n), 'wx'));
  fs.fsyncSync(dirFd);
}

/** Group commit into a new, empty file per epoch; every file made before the window. */
export const groupFresh: SystemDef = {
  ...singleProcess,
  name: 'gcfresh',
  label: 'group-commit bound, new file per epoch',
  settings: `open, one writev + fdatasync, close per epoch, into an empty file made before the window (${FRESH_FILES}); on the event loop`,
  async open(dir): Promise<OpenStore> {
    const dirFd = fs.openSync(dir, 'r');
    let made = FRESH_FILES;
    createFresh(dir, dirFd, 0, made);
    let next = 0;
    const loop = groupCommitter((chunks) => {
      if (next === made) {
        createFresh(dir, dirFd, made, made + FRESH_MORE);
        made += FRESH_MORE;
      }
      const fd = fs.openSync(freshFile(dir, next++), 'r+');
      try {
        writeAll(fd, chunks, 0);
        fs.fdatasyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    });
    return {
      commit: loop.commit,
      close: async () => fs.closeSync(dirFd),
      libraryFsyncs: () => 1 + loop.epochs(),
    };
  },
  async verify(dir, acked, pages) {
    const found = new Set<number>();
    for (const name of fs.readdirSync(dir)) {
      if (name.startsWith('gc-fresh-')) {
        recordsIn(fs.readFileSync(path.join(dir, name)), pages, found);
      }
    }
    const tally = new VerifyTally();
    for (const id of acked) tally.check(found.has(id), () => `commit ${id} missing`);
    return tally;
  },
};
