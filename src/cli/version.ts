/**
 * The version `pwal --version` prints: the `version` of the package's own
 * `package.json`, found by walking up from this file. That works from the
 * sources, from the build, and from an installed package alike.
 */
import { readFileSync } from 'node:fs';
import * as nodePath from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package whose version is printed. */
export const PACKAGE_NAME = 'parallel-wal';
/** Directories walked up at most (src/cli → root is 2, dist/src/cli is 3). */
const walkUpMax = 8;

/** The package version, or `unknown` when no `package.json` of the package is found. */
export function packageVersion(from: string = import.meta.url): string {
  let dir = nodePath.dirname(fileURLToPath(from));
  for (let i = 0; i < walkUpMax; i++) {
    try {
      const manifest = JSON.parse(readFileSync(nodePath.join(dir, 'package.json'), 'utf8')) as {
        name?: unknown;
        version?: unknown;
      };
      if (manifest.name === PACKAGE_NAME && typeof manifest.version === 'string') {
        return manifest.version;
      }
    } catch {
      // No (readable) package.json here: keep walking up.
    }
    const parent = nodePath.dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return 'unknown';
}
