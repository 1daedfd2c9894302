/**
 * `pwal trace <file> [--json]`: summarises a JSON-lines trace file written
 * with `PWAL_TRACE=path` (or a file trace sink): record counts by component,
 * event, fallback reason and decision action; latency percentiles (µs) per
 * component; the controller's expected loss and mean confidence.
 * Exit 0 when the file was read (malformed lines are counted, not fatal),
 * 1 when it cannot be read (`ERR_IO`).
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { type LatencySummary, summarizeTrace, type TraceSummary } from '../control/trace.js';
import { toIoError } from '../storage/errors.js';
import { type CliContext, EXIT_OK, jsonLine } from './context.js';

function counts(title: string, table: Record<string, number>): string {
  const entries = Object.entries(table).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  if (entries.length === 0) return `${title}: none\n`;
  const width = Math.max(...entries.map(([key]) => key.length));
  return `${title}:\n${entries.map(([key, n]) => `  ${key.padEnd(width)}  ${n}\n`).join('')}`;
}

function latencyLine(name: string, s: LatencySummary, width: number): string {
  return `  ${name.padEnd(width)}  n=${s.count} p50=${s.p50} p90=${s.p90} p99=${s.p99} max=${s.max}\n`;
}

/** The human-readable report of a {@link TraceSummary}. */
export function formatTraceSummary(file: string, s: TraceSummary): string {
  let out = `${file}: ${s.lines} line(s): ${s.traceRecords} trace, ${s.decisionRecords} decision, ${s.malformedLines} malformed\n`;
  out += counts('by component', s.byComponent);
  out += counts('by event', s.byEvent);
  out += counts('by fallback reason', s.byFallbackReason);
  out += counts('by decision action', s.byDecisionAction);
  const names = Object.keys(s.latencyMicros).sort((a, b) =>
    a === 'all' ? -1 : b === 'all' ? 1 : a < b ? -1 : 1,
  );
  if (names.length === 0) {
    out += 'latency (µs): none recorded\n';
  } else {
    const width = Math.max(...names.map((n) => n.length));
    out += `latency (µs):\n${names.map((n) => latencyLine(n, s.latencyMicros[n]!, width)).join('')}`;
  }
  if (s.expectedLossMicros !== null) {
    out += `decisions: expected loss (µs)${latencyLine('', s.expectedLossMicros, 0).trimEnd()}, mean confidence ${s.meanConfidenceBps} bps\n`;
  }
  return out;
}

/** Adds the `trace` subcommand to `program`. */
export function registerTraceCommand(program: Command, context: CliContext): void {
  program
    .command('trace')
    .description(
      'summarise a trace file (PWAL_TRACE): counts by component, fallback reason and decision; latency percentiles',
    )
    .argument('<file>', 'JSON-lines trace file')
    .option('--json', 'print the summary as one JSON object')
    .action(async (file: string, options: { json?: boolean }) => {
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (error) {
        throw toIoError(error, 'cannot read trace file', 'read', file);
      }
      const summary = summarizeTrace(text);
      context.io.stdout(options.json ? jsonLine(summary) : formatTraceSummary(file, summary));
      context.setExitCode(EXIT_OK);
    });
}
