import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { afterEach, describe, expect, it } from 'vitest';
import type { CliContext } from '../../src/cli/context.js';
import { registerTraceCommand } from '../../src/cli/trace.js';
import { fileTraceSink, Tracer } from '../../src/control/trace.js';
import { nodeFileSystem } from '../../src/storage/fs.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

async function run(argv: string[]): Promise<{ out: string; err: string; code: number | null }> {
  let out = '';
  let err = '';
  let code: number | null = null;
  const ctx: CliContext = {
    io: {
      stdout: (t) => {
        out += t;
      },
      stderr: (t) => {
        err += t;
      },
    },
    fs: nodeFileSystem,
    setExitCode: (c) => {
      code = c;
    },
  };
  const program = new Command('pwal').exitOverride();
  registerTraceCommand(program, ctx);
  await program.parseAsync(argv, { from: 'user' });
  return { out, err, code };
}

function writeTrace(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
  dirs.push(dir);
  const file = path.join(dir, 'trace.jsonl');
  const tracer = new Tracer(fileTraceSink(file), 'auto');
  for (let i = 1; i <= 10; i++)
    tracer.trace({ component: 'flush', event: 'epoch_durable', latencyMicros: i * 100 });
  tracer.trace({
    component: 'shadow',
    fallbackActive: true,
    fallbackReason: 'publicationMismatch',
  });
  tracer.decision({
    policyId: 'p',
    policyVersion: '1',
    decisionId: 1n,
    action: 'keepCurrent',
    confidenceBps: 7000,
    expectedLossMicros: 300,
    topEvidenceTerms: [],
    counterfactualAction: 'sealEpochNow',
    counterfactualRegretMicros: 10,
    fallbackActive: true,
  });
  tracer.close();
  return file;
}

describe('pwal trace', () => {
  it('prints counts by component, reason and action with latency percentiles', async () => {
    const file = writeTrace();
    const { out, code } = await run(['trace', file]);
    expect(code).toBe(0);
    expect(out).toContain('12 line(s): 11 trace, 1 decision, 0 malformed');
    expect(out).toMatch(/by component:\n {2}flush {3}10\n {2}shadow {2}1\n/);
    expect(out).toMatch(/publication_mismatch {2}1/);
    expect(out).toMatch(/by decision action:\n {2}keepCurrent {2}1/);
    expect(out).toMatch(/flush {2}n=10 p50=500 p90=900 p99=1000 max=1000/);
    expect(out).toMatch(/mean confidence 7000 bps/);
  });

  it('prints one JSON object with --json', async () => {
    const { out } = await run(['trace', writeTrace(), '--json']);
    const summary = JSON.parse(out);
    expect(summary.byComponent).toEqual({ flush: 10, shadow: 1 });
    expect(summary.latencyMicros.all.p50).toBe(500);
  });

  it('fails with exit 1 and one line when the file cannot be read', async () => {
    const { err, code } = await run(['trace', path.join(os.tmpdir(), 'pwal-no-such-trace.jsonl')]);
    expect(code).toBe(1);
    expect(err).toBe(
      `pwal: cannot read trace file ${path.join(os.tmpdir(), 'pwal-no-such-trace.jsonl')}: ENOENT\n`,
    );
  });
});
