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
