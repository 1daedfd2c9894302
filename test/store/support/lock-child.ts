/**
 * A second process for the lock tests: `node --import tsx lock-child.ts <db> <hold|once>`.
 * Prints one JSON line: `{"acquired":true,"pid":N}` or `{"code":…,"holderPid":…}`.
 * With `hold` it keeps the lock until its stdin closes (or it is killed).
 */
import { acquireLock } from '../../../src/storage/lockfile.js';

const [dbPath, mode] = process.argv.slice(2);
if (dbPath === undefined) throw new Error('usage: lock-child.ts <db> <hold|once>');
try {
  const lock = await acquireLock(dbPath);
  process.stdout.write(`${JSON.stringify({ acquired: true, pid: process.pid })}\n`);
  if (mode === 'hold') {
    process.stdin.resume();
    process.stdin.on('end', () => {
      lock.release().then(
        () => process.exit(0),
        () => process.exit(3),
      );
    });
  } else {
    await lock.release();
  }
} catch (error) {
  const e = error as { code?: string; holderPid?: number; message?: string };
  process.stdout.write(
    `${JSON.stringify({ acquired: false, code: e.code, holderPid: e.holderPid, message: e.message })}\n`,
  );
}
