import { nodeFileSystem, type WalFileSystem } from '../../src/storage/fs.js';

/**
 * The real file system, except that file writes (`writev`) are counted,
 * the first fdatasync waits for `release()` (`waiting()` tells it has
 * begun) and with `failGatedSync` then fails with EIO, and with
 * `failSecondSync` the second fdatasync fails with EIO.
 */
export function gatedFileSystem(
  failSecondSync = false,
  failGatedSync = false,
): {
  fs: WalFileSystem;
  writes: () => number;
  waiting: () => boolean;
  release: () => boolean;
} {
  let writes = 0;
  let syncs = 0;
  let gateArmed = true;
  let release: (() => void) | null = null;
  const fs: WalFileSystem = {
    ...nodeFileSystem,
    async open(p, mode) {
      const handle = await nodeFileSystem.open(p, mode);
      const writev = handle.writev.bind(handle);
      const datasync = handle.datasync.bind(handle);
      handle.writev = (chunks, position) => {
        writes++;
        return writev(chunks, position);
      };
      handle.datasync = async () => {
        syncs++;
        if (failSecondSync && syncs === 2) {
          throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO', errno: -5 });
        }
        if (gateArmed) {
          gateArmed = false;
          await new Promise<void>((resolve) => {
            release = resolve;
          });
          if (failGatedSync) {
            throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO', errno: -5 });
          }
        }
        await datasync();
      };
      return handle;
    },
  };
  return {
    fs,
    writes: () => writes,
    waiting: () => release !== null,
    release: () => {
      if (release === null) return false;
      release();
      return true;
    },
  };
}
