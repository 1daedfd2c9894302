/**
 * `pwal recover <db-path> [--skip-corrupt] [--allow-epoch-gaps] [--page-size N] [--json]`:
 * replays the log's durable epochs into the database file (fsync, store
 * header, then the applied segments are deleted). Fails closed on a corrupt
 * segment and on a missing epoch (`ERR_RECOVERY_GAP`, unless
 * `--allow-epoch-gaps` for a log from a writer that leaves numbers unused);
 * with `--skip-corrupt` it applies the segments before the first unusable or
 * missing one, records the rest as given up (`<db>-wal-skipped`) and sets
 * them aside (`<db>-wal-corrupt-…`), so they are kept for inspection but
 * never replayed or numbered again.
 * `--page-size` is only for a log that has no store header yet. A replicated
 * database keeps its segments above the saved replicated epoch (`retention.ts`).
 * A path with no store header and no segments is refused (nothing is
 * created), and a failed run removes the database file and header it created.
 * Exit 0: recovered (also with segments set aside, which are listed);
 * 1: failed (no database, locked, corrupt or missing segment without
 * `--skip-corrupt`, I/O); 2: usage.
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
    .option(
      '--skip-corrupt',
      'apply the segments before the first corrupt or missing one, give up and set aside the rest',
    )
    .option(
      '--allow-epoch-gaps',
      'the log was written by a writer that leaves epoch numbers unused: a missing epoch is not a lost segment',
    )
    .option('--page-size <bytes>', 'page size of a database that has no store header yet')
    .option('--json', 'print one JSON document')
    .action(
      async (
        dbPath: string,
        options: {
          skipCorrupt?: boolean;
          allowEpochGaps?: boolean;
          pageSize?: string;
          json?: boolean;
        },
      ) => {
        const pageSize = parsePageSizeOption(options.pageSize);
        await requireStoreOrLog(dbPath, ctx.fs);
        const { store, result: report } = await withPageStore(
          ctx,
          `recover ${dbPath}`,
          dbPath,
          {
            skipCorrupt: options.skipCorrupt ?? false,
            allowEpochGaps: options.allowEpochGaps ?? false,
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
          ctx.io.stdout(
            `set aside (given up: corrupt, or after a corrupt or missing one): ${path}\n`,
          );
        }
      },
    );
}
