/**
 * `pwal inspect <db-path> [--json]`: one row per segment file — epoch, file,
 * bytes, format version, record count, status (`ok`, or the error code and
 * message). Exits 0 when it could look (even at bad segments: use `verify`
 * to gate on health), 1 when the directory cannot be read.
 */
import type { Command } from 'commander';
import { type CliContext, EXIT_OK, jsonLine } from './context.js';
import { checkDatabase, type SegmentCheck } from './segment-check.js';

function cell(value: number | bigint | null): string {
  return value === null ? '-' : String(value);
}

function table(rows: readonly SegmentCheck[]): string {
  const header = ['EPOCH', 'FILE', 'BYTES', 'VERSION', 'RECORDS', 'STATUS'];
  const body = rows.map((r) => [
    r.epoch.toString(),
    r.file,
    cell(r.bytes),
    cell(r.version),
    cell(r.recordCount),
    r.status === 'ok' ? 'ok' : `${r.status}: ${r.error ?? ''}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cols: string[]) =>
    cols
      .map((c, i) => (i === cols.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return `${[line(header), ...body.map(line)].join('\n')}\n`;
}

/** Adds the `inspect` subcommand to `program`. */
export function registerInspect(program: Command, ctx: CliContext): void {
  program
    .command('inspect')
    .description('list the segment files of a database with their format and status')
    .argument('<db-path>', 'path of the database file (segments live beside it)')
    .option('--json', 'print one JSON document instead of a table')
    .action(async (dbPath: string, options: { json?: boolean }) => {
      const { segments, temporaryFiles } = await checkDatabase(dbPath, ctx.fs);
      if (options.json) {
        ctx.io.stdout(
          jsonLine({
            db: dbPath,
            segments: segments.map((s) => ({
              epoch: s.epoch,
              file: s.file,
              bytes: s.bytes,
              version: s.version,
              recordCount: s.recordCount,
              status: s.status,
              error: s.error,
            })),
            temporaryFiles,
          }),
        );
      } else if (segments.length === 0) {
        ctx.io.stdout(`no segments for ${dbPath}\n`);
      } else {
        ctx.io.stdout(table(segments));
      }
      if (!options.json && temporaryFiles.length > 0) {
        ctx.io.stdout(
          `${temporaryFiles.length} leftover temporary file(s) of interrupted writes: ${temporaryFiles.join(', ')}\n`,
        );
      }
      ctx.setExitCode(EXIT_OK);
    });
}
