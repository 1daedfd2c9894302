/**
 * Trace and decision records (docs/design.md#traces) written as JSON lines through a
 * pluggable sink. Off by default: with no sink, {@link Tracer.enabled} is
 * false and call sites guard with it, so no record object is ever built.
 *
 * JSON form: u64 fields as decimal strings, `mode` and `fallbackReason` by
 * their seed names (`shadow_compare`, `lane_overflow`, `none`), decision
 * actions as in docs/design.md#sealing-controller (`sealEpochNow`, …), plus `kind` and `atMs`.
 */
import fs from 'node:fs';
import type { DecisionAction } from './controller.js';
import {
  type FallbackReason,
  fallbackReasonName,
  modeName,
  type OperatingMode,
  type ShadowVerdict,
  shadowVerdictName,
} from './surface.js';

/** One trace record: what happened, where, under which mode and fallback state. */
export interface TraceRecord {
  /** Which part of the log: `stager`, `flush`, `certificate`, `shadow`, `fallback`, `controller`, `recovery`, … */
  component: string;
  /** What happened, e.g. `epoch_durable`, `fallback_enter`, `shadow_compare`. */
  event?: string;
  traceId: bigint;
  scenarioId: string;
  decisionId: bigint | null;
  mode: OperatingMode;
  laneId: number | null;
  epoch: bigint | null;
  commitSeqLo: bigint | null;
  commitSeqHi: bigint | null;
  /** `certificateCrc32c` of the epoch's certificate. */
  commitCertificate: number | null;
  checkpointEpoch: bigint | null;
  recoveryEpoch: bigint | null;
  fallbackActive: boolean;
  fallbackReason: FallbackReason | null;
  policyId: string | null;
  policyVersion: string | null;
  /** A latency the event measured (commit-to-durable, fsync), in µs. */
  latencyMicros?: number;
  shadowVerdict?: ShadowVerdict;
  /** Bytes the event concerned (epoch bytes, batch bytes). */
  bytes?: number;
  /** Free text for people: an error message, who reported a fallback. */
  detail?: string;
}

/** One controller decision (docs/design.md#traces). */
export interface DecisionRecord {
  policyId: string;
  policyVersion: string;
  decisionId: bigint;
  action: DecisionAction;
  confidenceBps: number;
  expectedLossMicros: number;
  topEvidenceTerms: string[];
  counterfactualAction: DecisionAction;
  counterfactualRegretMicros: number;
  fallbackActive: boolean;
}

/** What a sink receives. */
export type TraceEvent =
  | ({ kind: 'trace'; atMs: number } & TraceRecord)
  | ({ kind: 'decision'; atMs: number } & DecisionRecord);

/** Where trace events go. `write` must not throw for ordinary I/O trouble it can defer. */
export interface TraceSink {
  /** Takes one event (buffered or written at once, as the sink chooses). */
  write(event: TraceEvent): void;
  /** Pushes buffered events out (synchronously). */
  flush(): void;
  /** Flushes and releases the sink; later writes are dropped. */
  close(): void;
}

function jsonReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}

/** The JSON line (without newline) of an event. */
export function traceEventToJson(event: TraceEvent): string {
  if (event.kind === 'trace') {
    return JSON.stringify(
      {
        ...event,
        mode: modeName(event.mode),
        fallbackReason: fallbackReasonName(event.fallbackReason),
        ...(event.shadowVerdict === undefined
          ? {}
          : { shadowVerdict: shadowVerdictName(event.shadowVerdict) }),
      },
      jsonReplacer,
    );
  }
  return JSON.stringify(event, jsonReplacer);
}

/** A sink that keeps events in memory (tests, embedding). */
export interface MemoryTraceSink extends TraceSink {
  readonly events: TraceEvent[];
  /** The events as JSON lines. */
  lines(): string[];
}

/** Keeps every event in `events`. */
export function memoryTraceSink(): MemoryTraceSink {
  const events: TraceEvent[] = [];
  let closed = false;
  return {
    events,
    write(event) {
      if (!closed) events.push(event);
    },
    flush() {},
    close() {
      closed = true;
    },
    lines: () => events.map(traceEventToJson),
  };
}

/** Options of {@link fileTraceSink}. */
export interface FileTraceSinkOptions {
  /** Buffered bytes (approximate, UTF-16 units) before a write to the file. Default 64 KiB. */
  bufferLimitBytes?: number;
}

/**
 * Appends JSON lines to `path` (created if missing). Lines are buffered and
 * written synchronously when the buffer passes its limit, on `flush()`,
 * `close()`, and at process exit. Trace files are diagnostics, not log data:
 * they are not fsynced.
 */
export function fileTraceSink(path: string, options: FileTraceSinkOptions = {}): TraceSink {
  const limit = options.bufferLimitBytes ?? 64 * 1024;
  let fd: number | null = fs.openSync(path, 'a');
  let buffer: string[] = [];
  let buffered = 0;
  const flush = (): void => {
    if (fd === null || buffer.length === 0) return;
    const text = buffer.join('');
    buffer = [];
    buffered = 0;
    fs.writeSync(fd, text);
  };
  const onExit = (): void => flush();
  process.once('exit', onExit);
  return {
    write(event) {
      if (fd === null) return;
      const line = `${traceEventToJson(event)}\n`;
      buffer.push(line);
      buffered += line.length;
      if (buffered >= limit) flush();
    },
    flush,
    close() {
      if (fd === null) return;
      flush();
      fs.closeSync(fd);
      fd = null;
      process.removeListener('exit', onExit);
    },
  };
}

/** Environment variable naming a trace file. */
export const ENV_TRACE = 'PWAL_TRACE';

/** A file sink for `PWAL_TRACE=path`, or `null` when it is unset or empty. */
export function traceSinkFromEnv(
  env: Readonly<Record<string, string | undefined>> = process.env,
): TraceSink | null {
  const path = env[ENV_TRACE]?.trim();
  return path ? fileTraceSink(path) : null;
}

/** Fields a caller gives; the tracer fills `traceId`, `mode`, and absent nullable fields. */
export type TraceFields = Partial<TraceRecord> & Pick<TraceRecord, 'component'>;

/**
 * Stamps and forwards records to a sink. With no sink everything is a no-op;
 * guard call sites with `if (tracer.enabled)` so that no record is built.
 */
export class Tracer {
  readonly #sink: TraceSink | null;
  readonly #now: () => number;
  #nextTraceId = 1n;
  /** Mode stamped on records that do not name one. */
  mode: OperatingMode;

  constructor(sink: TraceSink | null, mode: OperatingMode, now: () => number = Date.now) {
    this.#sink = sink;
    this.mode = mode;
    this.#now = now;
  }

  /** False when there is no sink: skip building records. */
  get enabled(): boolean {
    return this.#sink !== null;
  }

  /** Emits a trace record; absent fields become `null`, `traceId` increases from 1. */
  trace(fields: TraceFields): void {
    const sink = this.#sink;
    if (sink === null) return;
    const traceId = this.#nextTraceId++;
    sink.write({
      kind: 'trace',
      atMs: this.#now(),
      scenarioId: '',
      decisionId: null,
      mode: this.mode,
      laneId: null,
      epoch: null,
      commitSeqLo: null,
      commitSeqHi: null,
      commitCertificate: null,
      checkpointEpoch: null,
      recoveryEpoch: null,
      fallbackActive: false,
      fallbackReason: null,
      policyId: null,
      policyVersion: null,
      ...fields,
      traceId,
    });
  }

  /** Emits a decision record. */
  decision(record: DecisionRecord): void {
    this.#sink?.write({ kind: 'decision', atMs: this.#now(), ...record });
  }

  /** Pushes the sink's buffered events out (synchronously). */
  flush(): void {
    this.#sink?.flush();
  }

  /** Flushes and closes the sink; later events are dropped. */
  close(): void {
    this.#sink?.close();
  }
}

// ---------------------------------------------------------------------------
// Summaries (for `pwal trace`)

/** Percentiles of a set of values (µs). */
export interface LatencySummary {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** What `pwal trace` prints. */
export interface TraceSummary {
  lines: number;
  traceRecords: number;
  decisionRecords: number;
  malformedLines: number;
  byComponent: Record<string, number>;
  byEvent: Record<string, number>;
  byFallbackReason: Record<string, number>;
  byDecisionAction: Record<string, number>;
  /** `latencyMicros` of trace records, per component and overall (`all`). */
  latencyMicros: Record<string, LatencySummary>;
  expectedLossMicros: LatencySummary | null;
  meanConfidenceBps: number | null;
}

/** Nearest-rank percentiles of `values` (sorted in place). */
export function percentiles(values: number[]): LatencySummary {
  values.sort((a, b) => a - b);
  const at = (p: number): number =>
    values[Math.min(values.length - 1, Math.max(0, Math.ceil((p / 100) * values.length) - 1))]!;
  return {
    count: values.length,
    p50: at(50),
    p90: at(90),
    p99: at(99),
    max: values[values.length - 1]!,
  };
}

function bump(counts: Record<string, number>, key: string): void {
  counts[key] = (counts[key] ?? 0) + 1;
}

/** Summarises JSON-lines trace text. Malformed lines are counted, not fatal. */
export function summarizeTrace(text: string): TraceSummary {
  const summary: TraceSummary = {
    lines: 0,
    traceRecords: 0,
    decisionRecords: 0,
    malformedLines: 0,
    byComponent: {},
    byEvent: {},
    byFallbackReason: {},
    byDecisionAction: {},
    latencyMicros: {},
    expectedLossMicros: null,
    meanConfidenceBps: null,
  };
  const latencies = new Map<string, number[]>();
  const losses: number[] = [];
  let confidenceTotal = 0;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    summary.lines++;
    let event: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(line);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error();
      event = parsed as Record<string, unknown>;
    } catch {
      summary.malformedLines++;
      continue;
    }
    if (event.kind === 'decision' && typeof event.action === 'string') {
      summary.decisionRecords++;
      bump(summary.byDecisionAction, event.action);
      if (typeof event.expectedLossMicros === 'number') losses.push(event.expectedLossMicros);
      if (typeof event.confidenceBps === 'number') confidenceTotal += event.confidenceBps;
    } else if (event.kind === 'trace' && typeof event.component === 'string') {
      summary.traceRecords++;
      bump(summary.byComponent, event.component);
      if (typeof event.event === 'string') bump(summary.byEvent, event.event);
      bump(
        summary.byFallbackReason,
        typeof event.fallbackReason === 'string' ? event.fallbackReason : 'none',
      );
      if (typeof event.latencyMicros === 'number' && Number.isFinite(event.latencyMicros)) {
        for (const key of ['all', event.component]) {
          const list = latencies.get(key) ?? [];
          if (list.length === 0) latencies.set(key, list);
          list.push(event.latencyMicros);
        }
      }
    } else {
      summary.malformedLines++;
    }
  }
  for (const [key, values] of latencies) summary.latencyMicros[key] = percentiles(values);
  if (losses.length > 0) summary.expectedLossMicros = percentiles(losses);
  if (summary.decisionRecords > 0) {
    summary.meanConfidenceBps = Math.round(confidenceTotal / summary.decisionRecords);
  }
  return summary;
}
