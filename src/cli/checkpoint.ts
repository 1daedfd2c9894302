/**
 * `pwal checkpoint <db-path> [--create [--page-size N]] [--json]`: folds every
 * durable epoch of the log into the database file (fsync, store header, then
 * the applied segments are deleted) and closes. A path with no database is an
 * error unless `--create` asks for a new, empty one. Takes the writer lock:
 * fails with `ERR_LOCKED` (naming the holder) while another process has the
 * database open. A replicated database keeps its segments above the saved
 * replicated epoch (`retention.ts`). A failed run removes the database file
 * and header it created.
 * Exit 0: done; 1: failed (no database, locked, corrupt segment, I/O); 2: usage.
 */
import type { Command } from 'commander';
import { type CliContext, jsonLine } from './context.js';
import { requireStoreOrLog } from './database.js';
import { CliUsageError } from './errors.js';
import { parsePageSizeOption } from './options.js';
import { retentionOptions } from './retention.js';
import { withPageStore } from './store-session.js';

/** Adds the `checkpoint` subcommand to `program`. */
export function registerCheckpoint(program: Command, ctx: CliContext): void {
  program
    .command('checkpoint')
    .description('fold the log into the database file and delete the applied segments')
    .argument('<db-path>', 'path of the database file')
    .option('--create', 'create an empty database when there is none at the path')
    .option('--page-size <bytes>', 'with --create: page size of the new database')
    .option('--json', 'print one JSON document')
    .action(
      async (dbPath: string, options: { create?: boolean; pageSize?: string; json?: boolean }) => {
        const pageSize = parsePageSizeOption(options.pageSize);
        if (pageSize !== undefined && options.create !== true) {
          throw new CliUsageError('--page-size is only for --create');
        }
        if (options.create !== true) {
          await requireStoreOrLog(dbPath, ctx.fs, ' (pass --create to create one)');
        }
        const { store, result } = await withPageStore(
          ctx,
          `checkpoint ${dbPath}`,
          dbPath,
          {
            autoCheckpoint: false,
            ...(pageSize === undefined ? {} : { pageSize }),
            ...(await retentionOptions(dbPath, ctx.fs)),
          },
          // Opening already folded what was on disk; this folds anything newer.
          async (s) => ({ recovered: s.recovery, checkpoint: await s.checkpoint() }),
        );
        const { recovered, checkpoint } = result;
        const summary = {
          db: dbPath,
          pageSize: store.pageSize,
          dbSizePages: checkpoint.dbSizePages,
          checkpointEpoch: checkpoint.checkpointEpoch,
          segmentsApplied: recovered.segmentsApplied + checkpoint.segmentsApplied,
          segmentsDeleted: recovered.segmentsDeleted + checkpoint.segmentsDeleted,
          pagesWritten: recovered.pagesWritten + checkpoint.pagesWritten,
        };
        if (options.json) {
          ctx.io.stdout(jsonLine(summary));
          return;
        }
        ctx.io.stdout(
          `checkpointed ${dbPath}: ${summary.segmentsApplied} segment(s) applied, ${summary.pagesWritten} page(s) written, ${summary.segmentsDeleted} segment(s) deleted; ${summary.dbSizePages} pages of ${summary.pageSize} bytes, last checkpointed epoch ${summary.checkpointEpoch ?? 'none'}\n`,
        );
      },
    );
}
