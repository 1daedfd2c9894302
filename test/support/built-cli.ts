import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

const REPO = path.resolve(import.meta.dirname, '../..');

/**
 * The built `pwal` binary, where package.json's `bin` says it is (`npm run
 * build` writes it; `npm test` builds first).
 */
export const BUILT_PWAL = path.join(
  REPO,
  (
    JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as {
      bin: { pwal: string };
    }
  ).bin.pwal,
);

/**
 * Kills a child that never exits, so that a hang shows as a failed test
 * (status `null`) before the test runner's own timeout. Not a speed limit: every command
 * here finishes in well under a second when it works.
 */
export const HANG_GUARD_MS = 30_000;

/** What one run of the built binary printed and returned (`status` null: killed). */
export interface BuiltRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

function requireBuild(): void {
  if (!fs.existsSync(BUILT_PWAL)) {
    throw new Error(`${BUILT_PWAL} is missing: run \`npm run build\` first`);
  }
}

/** Runs `node <built pwal> ...args` in `cwd` and waits for it. */
export function runBuiltCli(args: readonly string[], cwd?: string): BuiltRun {
  requireBuild();
  const run = spawnSync(process.execPath, [BUILT_PWAL, ...args], {
    encoding: 'utf8',
    timeout: HANG_GUARD_MS,
    ...(cwd === undefined ? {} : { cwd }),
  });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

/**
 * Runs the built binary and closes its stdout after the first chunk, as
 * `pwal … | head -c N` does; resolves once it exits.
 */
export function runBuiltCliIntoClosedPipe(args: readonly string[]): Promise<BuiltRun> {
  requireBuild();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BUILT_PWAL, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const guard = setTimeout(() => child.kill('SIGKILL'), HANG_GUARD_MS);
    let stdout = '';
    let stderr = '';
    child.stdout.once('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
      child.stdout.destroy();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(guard);
      resolve({ status, stdout, stderr });
    });
  });
}
