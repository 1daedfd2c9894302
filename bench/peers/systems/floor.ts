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
