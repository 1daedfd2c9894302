import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ParallelWal } from '../../src/engine/wal.js';
import { WalError } from '../../src/errors.js';
import { FaultyFileSystem } from '../support/faulty-fs.js';
import { SimulatedFileSystem } from '../support/simulated-fs.js';

describe('regressions found by the crash harness', () => {
  it('open reports a failing close of the new lock file as a typed error and leaves no lock behind', async () => {
    const sim = new SimulatedFileSystem();
    sim.mkdirSync('/data');
    const faulty = new FaultyFileSystem(sim, [{ kind: 'close', code: 'EIO', path: '.lock' }]);
    const error = await ParallelWal.open('/data/x.db', { fs: faulty }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(WalError);
    expect((error as WalError).code).toBe('ERR_LOCK_IO');
    expect(sim.listSync('/data')).not.toContain('x.db.lock');
  });

  it('open never deletes a file that only starts with the temporary-file prefix', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
    try {
      fs.writeFileSync(path.join(dir, 'app.db-wal-tmp-notes.txt'), 'user data');
      const wal = await ParallelWal.open(path.join(dir, 'app.db'));
      await wal.close();
      expect(fs.readdirSync(dir)).toContain('app.db-wal-tmp-notes.txt');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
