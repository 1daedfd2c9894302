/**
 * Writes the package's public surface (every export of `parallel-wal` and
 * `parallel-wal/replication`, with its kind, read from the build) to
 * test/package/api-surface.json: `npm run build && npm run api:report`.
 * Run it when a change to the exports is deliberate, and commit the file;
 * test/package/api-surface.test.ts fails while the build and the file differ.
 * Prints what changed against the previous file.
 */
import * as fs from 'node:fs';
import path from 'node:path';
import {
  type ApiSurface,
  builtSurface,
  diffSurface,
  formatReport,
  REPO,
  REPORT_PATH,
  readReport,
} from '../test/support/api-surface.js';

const surface = builtSurface();
const previous: ApiSurface = fs.existsSync(REPORT_PATH) ? readReport() : {};
fs.writeFileSync(REPORT_PATH, formatReport(surface));
const changes = diffSurface(previous, surface);
const counts = Object.entries(surface)
  .map(([entry, names]) => `${entry}: ${Object.keys(names).length}`)
  .join(', ');
console.log(`wrote ${path.relative(REPO, REPORT_PATH)} (${counts} exports)`);
console.log(changes.length === 0 ? 'no change' : changes.join('\n'));
