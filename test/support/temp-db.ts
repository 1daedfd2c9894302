import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach } from 'vitest';

/** A temporary directory and a database path inside it. */
export interface TempDbPaths {
  dir: string;
  db: string;
}

/**
 * Before each test of the enclosing suite, creates a fresh `pwal-` temporary
 * directory and hands it (with the database path `name` inside it) to `use`;
 * after each test, removes the directory.
 */
export function useTempDb(name: string, use: (paths: TempDbPaths) => void): void {
  let dir: string | undefined;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
    use({ dir, db: path.join(dir, name) });
  });
  afterEach(() => {
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });
}
