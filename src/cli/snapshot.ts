/**
 * `pwal snapshot --to <nats url> [--stream <name>] <db-path> [--keep N] [--trim] [--json]`:
 * opens a page store database with its replication, checkpoints, and
 * publishes its database file as a base snapshot to the stream's object
 * store (`<stream>_snapshots`); optionally keeps only the newest N snapshots
 * and purges the stream below the oldest kept one. Shipping of any epoch not
 * yet in the stream runs while it is open. Takes the writer lock: fails with
 * `ERR_LOCKED` while another process has the database open.
 *
 * A path with no database is refused (nothing is created).
 *
 * Exit 0: published; 1: failed (no database, locked, cluster unreachable,
 * nothing checkpointed, I/O); 2: usage.
 */
import type { Command } from 'commander';
import { openReplicatedStore } from '../replication/replicated-store.js';
import { readReplicationState } from '../replication/state-file.js';
import { type CliContext, EXIT_OK, jsonLine } from './context.js';
import { requireStoreOrLog } from './database.js';
import { CliError, CliErrorCode, CliUsageError } from './errors.js';
import { parsePositiveIntegerOption } from './options.js';
import { CLI_CONNECT_TIMEOUT_MS } from './restore.js';

/** How long `pwal snapshot` waits for shipping to catch up before closing, ms. */
export const SNAPSHOT_CLOSE_FLUSH_TIMEOUT_MS = 30_000;

/** Adds the `snapshot` subcommand. */
export function registerSnapshot(program: Command, ctx: CliContext): void {
  program
    .command('snapshot')
    .description('publish the database file as a base snapshot of its JetStream stream')
    .argument('<db-path>', 'path of the database file')
    .requiredOption('--to <url>', 'NATS server URL(s), comma-separated')
    .option('--stream <name>', 'the database stream (default: the one it replicates to)')
    .option('--keep <n>', 'then delete all but the newest N snapshots')
    .option('--trim', 'then purge the stream below the oldest kept snapshot')
    .option('--json', 'print one JSON object')
    .action(
      async (
        dbPath: string,
        options: { to: string; stream?: string; keep?: string; trim?: boolean; json?: boolean },
      ) => {
        const keep = parsePositiveIntegerOption('keep', options.keep);
        const stream = options.stream ?? (await readReplicationState(dbPath, ctx.fs))?.stream;
        if (stream === undefined) {
          throw new CliUsageError(
            `${dbPath} has never been replicated: name its stream with --stream`,
          );
        }
        // Opening the store would create a missing database: refuse a typo.
        await requireStoreOrLog(dbPath, ctx.fs);
        const db = await openReplicatedStore(dbPath, {
          fs: ctx.fs,
          autoCheckpoint: false,
          closeFlushTimeoutMs: SNAPSHOT_CLOSE_FLUSH_TIMEOUT_MS,
          replication: {
            servers: options.to.split(','),
            stream,
            connectTimeoutMs: CLI_CONNECT_TIMEOUT_MS,
          },
        });
        let meta: Awaited<ReturnType<typeof db.snapshot>>;
        try {
          meta = await db.snapshot({
            ...(keep === undefined ? {} : { keep }),
            trimStream: options.trim === true,
          });
        } finally {
          await db.close();
        }
        if (meta === null) {
          throw new CliError(
            CliErrorCode.nothingToSnapshot,
            `${dbPath} holds no checkpointed data: nothing to snapshot`,
          );
        }
        if (options.json === true) {
          ctx.io.stdout(jsonLine({ ...meta, certificate: null, trimmed: options.trim === true }));
        } else {
          ctx.io.stdout(
            `published snapshot ${meta.name} of ${dbPath} to stream ${stream}: epoch ${meta.epoch} (exact as of ${meta.consistentEpoch}), ${meta.dbSizePages} pages of ${meta.pageSize} bytes, sha-256 ${meta.sha256.slice(0, 16)}…${
              options.trim === true ? '; stream trimmed below the oldest kept snapshot' : ''
            }\n`,
          );
        }
        ctx.setExitCode(EXIT_OK);
      },
    );
}
