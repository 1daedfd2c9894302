/**
 * `pwal recover <db-path> [--skip-corrupt] [--page-size N] [--json]`: replays
 * the log's durable epochs into the database file (fsync, store header, then
 * the applied segments are deleted). Fails closed on a corrupt segment; with
 * `--skip-corrupt` it applies the segments before the first unusable one and
 * sets that one and every later one aside (`<db>-wal-corrupt-…`), so they are
 * kept for inspection but never replayed after newer epochs.
 * `--page-size` is only for a log that has no store header yet. A replicated
 * database keeps its segments above the saved replicated epoch (`retention.ts`).
 * A path with no store header and no segments is refused (nothing is
 * created), and a failed run removes the database file and header it created.
 * Exit 0: recovered (also with segments set aside, which are listed);
 * 1: failed (no database, locked, corrupt segment without `--skip-corrupt`,
 * I/O); 2: usage.
 */
import type { Command } from 'commander';
import { type CliContext, jsonLine } from './context.js';
import { requireStoreOrLog } from './database.js';
import { parsePageSizeOption } from './options.js';
import { retentionOptions } from './retention.js';
import { withPageStore } from './store-session.js';

/** Adds the `recover` subcommand to `program`. */
export function registerRecover(program: Command, ctx: CliContext): void {
  program
    .command('recover')
    .description('replay the log into the database file')
    .argument('<db-path>', 'path of the database file')
    .option('--skip-corrupt', 'apply the segments before the first corrupt one, set the rest aside')
    .option('--page-size <bytes>', 'page size of a database that has no store header yet')
    .option('--json', 'print one JSON document')
    .action(
      async (
        dbPath: string,
        options: { skipCorrupt?: boolean; pageSize?: string; json?: boolean },
      ) => {
        const pageSize = parsePageSizeOption(options.pageSize);
        await requireStoreOrLog(dbPath, ctx.fs);
        const { store, result: report } = await withPageStore(
          ctx,
          `recover ${dbPath}`,
          dbPath,
          {
            skipCorrupt: options.skipCorrupt ?? false,
            autoCheckpoint: false,
            ...(pageSize === undefined ? {} : { pageSize }),
            ...(await retentionOptions(dbPath, ctx.fs)),
          },
          async (s) => s.recovery,
        );
        if (options.json) {
          ctx.io.stdout(jsonLine({ db: dbPath, pageSize: store.pageSize, ...report }));
          return;
        }
        ctx.io.stdout(
          `recovered ${dbPath}: ${report.segmentsApplied} segment(s) applied, ${report.pagesWritten} page(s) written, ${report.segmentsDeleted} segment(s) deleted; ${report.dbSizePages} pages of ${store.pageSize} bytes, last checkpointed epoch ${report.checkpointEpoch ?? 'none'}\n`,
        );
        for (const path of report.quarantinedSegments) {
          ctx.io.stdout(`set aside (corrupt or after a corrupt segment): ${path}\n`);
        }
      },
    );
}
