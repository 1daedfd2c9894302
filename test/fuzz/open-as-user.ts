/**
 * Run as another user by `paths.test.ts`: opens the log at argv[2] (or, with
 * `recover`, only recovers it) and prints one JSON line describing the outcome.
 */
import { ParallelWal } from '../../src/engine/wal.js';
import { WalError } from '../../src/errors.js';
import { recoverSegments } from '../../src/storage/recovery.js';

const [what, db] = process.argv.slice(2);
try {
  if (what === 'recover') await recoverSegments(db!);
  else await (await ParallelWal.open(db!)).close();
  console.log(JSON.stringify({ ok: true }));
} catch (error) {
  console.log(
    JSON.stringify({
      ok: false,
      typed: error instanceof WalError,
      code: (error as { code?: string }).code,
      message: (error as Error).message,
    }),
  );
}
