/**
 * `pwal checkpoint <db-path> [--json]`: folds every durable epoch of the log
 * into the database file (fsync, store header, then the applied segments are
 * deleted) and closes. Takes the writer lock: fails with `ERR_LOCKED` (naming
 * the holder) while another process has the database open. A replicated
 * database keeps its segments above the saved replicated epoch (`retention.ts`).
 * Exit 0: done; 1: failed (locked, corrupt segment, I/O).
 */
import type { Command } from 'commander';
import { PageStore } from '../store/page-store.js';
import { type CliContext, jsonLine } from './context.js';
import { retentionOptions } from './retention.js';

/** Adds the `checkpoint` subcommand to `program`. */
export function registerCheckpoint(program: Command, ctx: CliContext): void {
  program
    .command('checkpoint')
    .description('fold the log into the database file and delete the applied segments')
    .argument('<db-path>', 'path of the database file')
    .option('--json', 'print one JSON document')
    .action(async (dbPath: string, options: { json?: boolean }) => {
      const store = await PageStore.open(dbPath, {
        fs: ctx.fs,
        autoCheckpoint: false,
        ...(await retentionOptions(dbPath, ctx.fs)),
      });
      // Opening already folded what was on disk; this folds anything newer.
      const recovered = store.recovery;
      let checkpoint: Awaited<ReturnType<PageStore['checkpoint']>>;
      try {
        checkpoint = await store.checkpoint();
      } finally {
        await store.close();
      }
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
    });
}
