/**
 * A second process for the lock tests:
 * `node --import tsx lock-child.ts <db> <hold|once|shared|stall>`.
 * Prints one JSON line: `{"acquired":true,"pid":N}` or `{"code":…,"holderPid":…}`.
 * `hold` keeps the writer lock and `shared` a reader's lock until stdin closes
 * (or the process is killed). `stall` is a writer stalled between creating
 * the lock file and writing its description: it creates `<db>.lock` empty,
 * takes the kernel lock on it directly and never describes itself.
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import { acquireLock, lockPath } from '../../../src/storage/lockfile.js';

const [dbPath, mode] = process.argv.slice(2);
if (dbPath === undefined) throw new Error('usage: lock-child.ts <db> <hold|once|shared|stall>');

function holdUntilStdinEnds(release: () => Promise<void>): void {
  process.stdin.resume();
  process.stdin.on('end', () => {
    release().then(
      () => process.exit(0),
      () => process.exit(3),
    );
  });
}

if (mode === 'stall') {
  const fileLocks = createRequire(import.meta.url)('fs-native-extensions') as {
    tryLock(fd: number): boolean;
  };
  const fd = fs.openSync(lockPath(dbPath), fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
  const acquired = fileLocks.tryLock(fd);
  process.stdout.write(`${JSON.stringify({ acquired, pid: process.pid })}\n`);
  holdUntilStdinEnds(async () => fs.closeSync(fd));
} else {
  try {
    const lock = await acquireLock(dbPath, { kind: mode === 'shared' ? 'shared' : 'exclusive' });
    process.stdout.write(`${JSON.stringify({ acquired: true, pid: process.pid })}\n`);
    if (mode === 'hold' || mode === 'shared') holdUntilStdinEnds(() => lock.release());
    else await lock.release();
  } catch (error) {
    const e = error as { code?: string; holderPid?: number; message?: string };
    process.stdout.write(
      `${JSON.stringify({ acquired: false, code: e.code, holderPid: e.holderPid, message: e.message })}\n`,
    );
  }
}
