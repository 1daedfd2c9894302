/**
 * The raw floor: what the disk gives one synchronous writer. A commit appends its pages to one
 * file with a single `write` and calls `fdatasync`, synchronously (no thread-pool hop), one
 * commit at a time. Run with pages=1 it is the "4 KiB append + fdatasync" latency floor; with
 * pages=256 (1 MiB per sync) it is the bandwidth floor.
 */
import fs from 'node:fs';
import path from 'node:path';
import { PAGE_BYTES, pageImage } from '../lib/common.js';
import { type SystemDef, VerifyTally } from '../lib/system.js';

const logFile = (dir: string): string => path.join(dir, 'floor.log');

export const floor: SystemDef = {
  name: 'floor',
  label: 'raw append+fdatasync',
  settings: 'write + fdatasync, one at a time',
  supportsWorkers: false,
  async versions() {
    return { node: process.version };
  },
  effectiveConcurrency(committers) {
    if (committers <= 1) return { n: 1 };
    return { n: 1, note: 'one synchronous loop' };
  },
  async open(dir) {
    const fd = fs.openSync(logFile(dir), 'a');
    let syncs = 0;
    return {
      commit: (_id, pages) => {
        const buf = pages.length === 1 ? pages[0]! : Buffer.concat(pages);
        fs.writeSync(fd, buf);
        fs.fdatasyncSync(fd);
        syncs += 1;
      },
      close: async () => fs.closeSync(fd),
      libraryFsyncs: () => syncs,
    };
  },
  async verify(dir, acked, pages) {
    // Commits are appended in acknowledgement order (one synchronous writer).
    const fd = fs.openSync(logFile(dir), 'r');
    const size = fs.fstatSync(fd).size;
    const tally = new VerifyTally();
    const got = Buffer.allocUnsafe(PAGE_BYTES);
    let offset = 0;
    for (const id of acked) {
      let ok = true;
      for (let i = 0; i < pages && ok; i++) {
        const n = fs.readSync(fd, got, 0, PAGE_BYTES, offset);
        ok = n === PAGE_BYTES && Buffer.compare(got, pageImage(id, i)) === 0;
        offset += PAGE_BYTES;
      }
      tally.check(ok, () => `commit ${id} missing or different at offset ${offset}`);
    }
    fs.closeSync(fd);
    if (offset !== size) {
      tally.check(false, () => `log has ${size - offset} bytes beyond the acknowledged`);
    }
    return tally;
  },
};

/** Name of commit `n`'s file in the segment-protocol floor. */
const segFile = (dir: string, n: number): string =>
  path.join(dir, `floor-seg-${n.toString(16).padStart(16, '0')}`);

/**
 * The floor of a file-per-epoch log: what one commit costs when it is published the way
 * parallel-wal publishes a segment — create a temporary file, write, fdatasync, close, rename
 * to the segment name, fsync the directory — synchronously, one commit at a time. The gap
 * between {@link floor} and this is the price of a new file per epoch.
 */
export const floorSegment: SystemDef = {
  name: 'floorseg',
  label: 'raw new file+rename+dir fsync',
  settings: 'create tmp, write, fdatasync, rename, fsync dir; one at a time',
  supportsWorkers: false,
  async versions() {
    return { node: process.version };
  },
  effectiveConcurrency(committers) {
    if (committers <= 1) return { n: 1 };
    return { n: 1, note: 'one synchronous loop' };
  },
  async open(dir) {
    const dirFd = fs.openSync(dir, 'r');
    let n = 0;
    let syncs = 0;
    return {
      commit: (_id, pages) => {
        n += 1;
        const final = segFile(dir, n);
        const temp = `${final}.tmp`;
        const fd = fs.openSync(temp, 'wx');
        fs.writeSync(fd, pages.length === 1 ? pages[0]! : Buffer.concat(pages));
        fs.fdatasyncSync(fd);
        fs.closeSync(fd);
        fs.renameSync(temp, final);
        fs.fsyncSync(dirFd);
        syncs += 2;
      },
      close: async () => fs.closeSync(dirFd),
      libraryFsyncs: () => syncs,
    };
  },
  async verify(dir, acked, pages) {
    const tally = new VerifyTally();
    acked.forEach((id, i) => {
      let data: Buffer | undefined;
      try {
        data = fs.readFileSync(segFile(dir, i + 1));
      } catch {
        data = undefined;
      }
      let ok = data !== undefined && data.length === pages * PAGE_BYTES;
      for (let p = 0; p < pages && ok; p++) {
        ok =
          Buffer.compare(data!.subarray(p * PAGE_BYTES, (p + 1) * PAGE_BYTES), pageImage(id, p)) ===
          0;
      }
      tally.check(ok, () => `commit ${id} (file ${i + 1}) missing or different`);
    });
    return tally;
  },
};

/** Size of the overwrite floor's file, written once before the window: 64 MiB. */
const OVERWRITE_RING_BYTES = 64 * 1024 * 1024;

const ringFile = (dir: string): string => path.join(dir, 'floor-ring.log');

/**
 * The overwrite floor: what the disk gives one synchronous writer that writes into space already
 * written and synced (no allocation, no size change, so fdatasync writes the data alone: no inode or journal write) — what
 * a log of recycled, pre-written files sees. The file (64 MiB of random bytes) is written and
 * fsynced when the store opens, before the warm-up; each commit then writes its pages at the next
 * position (wrapping around) with one `write` and calls `fdatasync`, one commit at a time. With
 * pages=1 it is the "4 KiB overwrite + fdatasync" floor, with pages=256 the 1 MiB overwrite
 * bandwidth floor.
 */
export const floorOverwrite: SystemDef = {
  name: 'flooro',
  label: 'raw overwrite+fdatasync',
  settings: 'write into pre-written space + fdatasync, one at a time',
  supportsWorkers: false,
  async versions() {
    return { node: process.version };
  },
  effectiveConcurrency(committers) {
    if (committers <= 1) return { n: 1 };
    return { n: 1, note: 'one synchronous loop' };
  },
  async open(dir) {
    const fd = fs.openSync(ringFile(dir), 'w+');
    // Incompressible filler, written and synced once: every later write overwrites it.
    const filler = Buffer.allocUnsafe(1024 * 1024);
    for (let at = 0; at < OVERWRITE_RING_BYTES; at += filler.length) {
      for (let i = 0; i < filler.length; i += PAGE_BYTES) {
        pageImage(at + i, 7).copy(filler, i);
      }
      fs.writeSync(fd, filler, 0, filler.length, at);
    }
    fs.fsyncSync(fd);
    let position = 0;
    let syncs = 1;
    return {
      commit: (_id, pages) => {
        const buf = pages.length === 1 ? pages[0]! : Buffer.concat(pages);
        if (position + buf.length > OVERWRITE_RING_BYTES) position = 0;
        fs.writeSync(fd, buf, 0, buf.length, position);
        fs.fdatasyncSync(fd);
        position += buf.length;
        syncs += 1;
      },
      close: async () => fs.closeSync(fd),
      libraryFsyncs: () => syncs,
    };
  },
  async verify(dir, acked, pages) {
    // Commits were written back to back, wrapping at the ring's end: replay the positions and
    // check the commits that no later one overwrote (the last ring's worth).
    const bytes = pages * PAGE_BYTES;
    const positions: number[] = [];
    let position = 0;
    for (let i = 0; i < acked.length; i++) {
      if (position + bytes > OVERWRITE_RING_BYTES) position = 0;
      positions.push(position);
      position += bytes;
    }
    const fd = fs.openSync(ringFile(dir), 'r');
    const size = fs.fstatSync(fd).size;
    const tally = new VerifyTally();
    const survivors = Math.floor(OVERWRITE_RING_BYTES / bytes);
    const sizeOk = size === OVERWRITE_RING_BYTES;
    const got = Buffer.allocUnsafe(PAGE_BYTES);
    for (let i = 0; i < acked.length; i++) {
      if (i < acked.length - survivors) {
        // Overwritten by a later commit by design; only the file's size can be checked.
        tally.check(sizeOk, () => `ring file grew to ${size} bytes`);
        continue;
      }
      const id = acked[i]!;
      let ok = sizeOk;
      for (let p = 0; p < pages && ok; p++) {
        const n = fs.readSync(fd, got, 0, PAGE_BYTES, positions[i]! + p * PAGE_BYTES);
        ok = n === PAGE_BYTES && Buffer.compare(got, pageImage(id, p)) === 0;
      }
      tally.check(ok, () => `commit ${id} missing or different at offset ${positions[i]}`);
    }
    fs.closeSync(fd);
    return tally;
  },
};
