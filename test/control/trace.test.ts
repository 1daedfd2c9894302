import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  fileTraceSink,
  memoryTraceSink,
  percentiles,
  summarizeTrace,
  type TraceFields,
  Tracer,
  traceSinkFromEnv,
} from '../../src/control/trace.js';

const dirs: string[] = [];
function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

const decision = {
  policyId: 'expected_loss_seal',
  policyVersion: '1',
  decisionId: 3n,
  action: 'sealEpochNow' as const,
  confidenceBps: 8000,
  expectedLossMicros: 500,
  topEvidenceTerms: ['fsyncEwmaMicros=500'],
  counterfactualAction: 'keepCurrent' as const,
  counterfactualRegretMicros: 200,
  fallbackActive: false,
};

describe('Tracer', () => {
  it('is off without a sink and never reads the fields it is given', () => {
    const tracer = new Tracer(null, 'auto');
    expect(tracer.enabled).toBe(false);
    let touched = 0;
    const fields = new Proxy({} as TraceFields, {
      get: () => {
        touched++;
        return undefined;
      },
      ownKeys: () => {
        touched++;
        return [];
      },
    });
    tracer.trace(fields);
    tracer.decision(decision);
    expect(touched).toBe(0);
  });

  it('stamps trace records with ids, mode and nulls for absent fields', () => {
    const sink = memoryTraceSink();
    const tracer = new Tracer(sink, 'shadowCompare', () => 42);
    tracer.trace({
      component: 'flush',
      epoch: 7n,
      fallbackActive: true,
      fallbackReason: 'laneOverflow',
    });
    tracer.trace({ component: 'flush', traceId: 99n });
    expect(sink.events[0]).toMatchObject({
      kind: 'trace',
      atMs: 42,
      component: 'flush',
      traceId: 1n,
      mode: 'shadowCompare',
      epoch: 7n,
      laneId: null,
      commitCertificate: null,
      fallbackReason: 'laneOverflow',
    });
    expect(sink.events[1]).toMatchObject({ traceId: 2n });
  });

  it('writes JSON lines with u64 as decimal strings and seed names', () => {
    const sink = memoryTraceSink();
    const tracer = new Tracer(sink, 'shadowCompare');
    tracer.trace({ component: 'shadow', epoch: (1n << 64n) - 1n, shadowVerdict: 'notRun' });
    tracer.decision(decision);
    const [trace, dec] = sink.lines().map((line) => JSON.parse(line));
    expect(trace.epoch).toBe('18446744073709551615');
    expect(trace.mode).toBe('shadow_compare');
    expect(trace.fallbackReason).toBe('none');
    expect(trace.shadowVerdict).toBe('not_run');
    expect(dec).toMatchObject({ kind: 'decision', decisionId: '3', action: 'sealEpochNow' });
  });
});

describe('file sink', () => {
  it('appends buffered JSON lines to a file on flush and close', () => {
    const file = path.join(tempDir(), 'trace.jsonl');
    fs.writeFileSync(file, '{"kind":"trace","component":"earlier"}\n');
    const sink = fileTraceSink(file, { bufferLimitBytes: 1 << 20 });
    const tracer = new Tracer(sink, 'auto');
    tracer.trace({ component: 'flush', latencyMicros: 10 });
    expect(fs.readFileSync(file, 'utf8').split('\n').filter(Boolean)).toHaveLength(1);
    tracer.flush();
    tracer.decision(decision);
    tracer.close();
    tracer.trace({ component: 'after-close' });
    const lines = fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
    expect(lines).toHaveLength(3);
    expect(JSON.parse(lines[1]!).component).toBe('flush');
    expect(JSON.parse(lines[2]!).kind).toBe('decision');
  });

  it('writes through once the buffer passes its limit', () => {
    const file = path.join(tempDir(), 'trace.jsonl');
    const sink = fileTraceSink(file, { bufferLimitBytes: 1 });
    new Tracer(sink, 'auto').trace({ component: 'flush' });
    expect(fs.readFileSync(file, 'utf8')).toMatch(/"component":"flush"/);
    sink.close();
  });

  it('opens a file sink for PWAL_TRACE and none without it', () => {
    expect(traceSinkFromEnv({})).toBeNull();
    expect(traceSinkFromEnv({ PWAL_TRACE: '  ' })).toBeNull();
    const file = path.join(tempDir(), 'env.jsonl');
    const sink = traceSinkFromEnv({ PWAL_TRACE: file });
    expect(sink).not.toBeNull();
    new Tracer(sink, 'conservative').trace({ component: 'recovery' });
    sink!.close();
    expect(JSON.parse(fs.readFileSync(file, 'utf8')).mode).toBe('conservative');
  });
});

describe('summarizeTrace', () => {
  it('counts by component, event, fallback reason and action, with latency percentiles', () => {
    const sink = memoryTraceSink();
    const tracer = new Tracer(sink, 'auto');
    for (let i = 1; i <= 100; i++) {
      tracer.trace({ component: 'flush', event: 'epoch_durable', latencyMicros: i * 10 });
    }
    tracer.trace({
      component: 'fallback',
      fallbackActive: true,
      fallbackReason: 'publicationMismatch',
    });
    tracer.decision(decision);
    tracer.decision({
      ...decision,
      action: 'keepCurrent',
      confidenceBps: 6000,
      expectedLossMicros: 100,
    });
    const text = `${sink.lines().join('\n')}\nnot json\n[1]\n{"kind":"other"}\n`;
    const summary = summarizeTrace(text);
    expect(summary.lines).toBe(106);
    expect(summary.traceRecords).toBe(101);
    expect(summary.decisionRecords).toBe(2);
    expect(summary.malformedLines).toBe(3);
    expect(summary.byComponent).toEqual({ flush: 100, fallback: 1 });
    expect(summary.byEvent).toEqual({ epoch_durable: 100 });
    expect(summary.byFallbackReason).toEqual({ none: 100, publication_mismatch: 1 });
    expect(summary.byDecisionAction).toEqual({ sealEpochNow: 1, keepCurrent: 1 });
    expect(summary.latencyMicros.flush).toEqual({
      count: 100,
      p50: 500,
      p90: 900,
      p99: 990,
      max: 1000,
    });
    expect(summary.latencyMicros.all?.count).toBe(100);
    expect(summary.expectedLossMicros?.max).toBe(500);
    expect(summary.meanConfidenceBps).toBe(7000);
  });

  it('takes nearest-rank percentiles', () => {
    expect(percentiles([5])).toEqual({ count: 1, p50: 5, p90: 5, p99: 5, max: 5 });
    expect(percentiles([4, 1, 3, 2])).toMatchObject({ p50: 2, p90: 4, max: 4 });
  });
});
