import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fileTraceSink, Tracer } from '../../src/control/trace.js';
import { runCliCaptured } from '../support/cli.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

async function run(argv: string[]): Promise<{ out: string; err: string; code: number }> {
  return runCliCaptured(...argv);
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
    const missing = path.join(os.tmpdir(), 'pwal-no-such-trace.jsonl');
    const { err, code } = await run(['trace', missing]);
    expect(code).toBe(1);
    expect(err).toBe(
      `pwal: cannot read trace file ${missing}: does not exist (ENOENT, read) (ERR_IO)\n`,
    );
    const json = await run(['trace', missing, '--json']);
    expect(json.code).toBe(1);
    expect(json.out).toBe('');
    expect(JSON.parse(json.err)).toEqual({
      error: {
        code: 'ERR_IO',
        message: `cannot read trace file ${missing}: does not exist (ENOENT, read)`,
      },
    });
  });
});
