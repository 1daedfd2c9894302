/**
 * The package build (`npm run build`): ES modules in dist/esm (the library,
 * `parallel-wal/replication`, the `pwal` CLI with its demo worker, and the
 * program of a log's own thread) and
 * CommonJS in dist/cjs (the library entries and that program), each with its own
 * declarations (.d.ts / .d.cts). Unbundled: every source file keeps its own
 * output file and relative path, so the two entries share one copy of each
 * module (one `WalError` class per format) and a worker entry sits beside the
 * module that starts it. No source maps: the output is readable JavaScript.
 */
import { defineConfig, type UserConfig } from 'tsdown';

const shared: UserConfig = {
  platform: 'node',
  target: 'node20',
  tsconfig: 'tsconfig.build.json',
  unbundle: true,
  dts: true,
  sourcemap: false,
  fixedExtension: false,
  logLevel: 'warn',
  // The declaration plugin is most of the build time; that is expected, not a warning.
  checks: { pluginTimings: false },
};

export default defineConfig([
  {
    ...shared,
    format: 'esm',
    outDir: 'dist/esm',
    entry: [
      'src/index.ts',
      'src/replication/index.ts',
      'src/cli/pwal.ts',
      'src/cli/demo-worker.ts',
      'src/engine/log-thread-host.ts',
    ],
  },
  {
    ...shared,
    format: 'cjs',
    outDir: 'dist/cjs',
    entry: ['src/index.ts', 'src/replication/index.ts', 'src/engine/log-thread-host.ts'],
  },
]);
