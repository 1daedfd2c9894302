/**
 * `pwal restore --from <nats url> --stream <name> <db-path> [--until-epoch N]`:
 * rebuilds a database's segment files from its JetStream stream into a fresh
 * location, verifying every chunk, epoch and certificate, and stopping at the
 * first gap or bad epoch (point-in-time restore). With `--apply` the restored
 * segments are then folded into the database file through the page store.
 *
 * Exit 0: restored to the end of the stream (or to `--until-epoch`);
 * 1: stopped early at a gap or bad epoch (the verified prefix is restored),
 * or the stream could not be read; 2: usage error.
 */
import type { Command } from 'commander';
import type { ReplicaVerificationError } from '../replication/errors.js';
import { type RestoreResult, restoreFromStream } from '../replication/restore.js';
import { PageStore } from '../store/page-store.js';
import { type CliContext, EXIT_OK, jsonLine } from './context.js';
import { CliUsageError } from './errors.js';
import { parsePageSizeOption } from './options.js';

/** Wait for one connection attempt of the CLI, ms. */
export const CLI_CONNECT_TIMEOUT_MS = 5_000;

/**
 * Parses `--until-epoch` (decimal u64).
 * @throws {CliUsageError} when it is not one.
 */
export function parseEpochOption(text: string | undefined): bigint | undefined {
  if (text === undefined) return undefined;
  const value = /^[0-9]{1,20}$/.test(text) ? BigInt(text) : null;
  if (value === null || value >= 1n << 64n) {
    throw new CliUsageError(`--until-epoch must be a decimal u64, got ${text}`);
  }
  return value;
}

function describe(result: RestoreResult, dbPath: string): string {
  let out = '';
  const snap = result.snapshot;
  if (snap !== null) {
    out += `installed the base snapshot of epoch ${snap.epoch} (${snap.dbSizePages} pages of ${snap.pageSize} bytes, sha-256 verified)\n`;
  }
  out += `restored ${result.epochsRestored} epoch(s), ${result.bytesRestored} bytes into ${dbPath}`;
  out += result.lastEpoch === null ? ' (stream empty)\n' : `, up to epoch ${result.lastEpoch}\n`;
  if (result.duplicateCount > 0) out += `skipped ${result.duplicateCount} duplicate message(s)\n`;
  if (result.incompleteTail) out += 'note: the stream ends inside an epoch (not restored)\n';
  const stop = result.stoppedBy;
  if (stop !== null) {
    out += `stopped at stream sequence ${stop.streamSeq}, epoch ${stop.epoch}: ${stop.message} (${stop.code})\n`;
  }
  return out;
}

/** Adds the `restore` subcommand. */
export function registerRestore(program: Command, ctx: CliContext): void {
  program
    .command('restore')
    .description('rebuild a database from its JetStream stream (verified, point-in-time)')
    .argument('<db-path>', 'database file path to restore into (must have no segments)')
    .requiredOption('--from <url>', 'NATS server URL(s), comma-separated')
    .requiredOption('--stream <name>', 'JetStream stream of the database')
    .option('--until-epoch <n>', 'restore epochs up to and including N')
    .option('--apply', 'fold the restored segments into the database file (page store)')
    .option('--no-snapshot', 'ignore base snapshots: rebuild from the stream alone')
    .option(
      '--page-size <bytes>',
      'page size for --apply (default: learned from the snapshot or the stream)',
    )
    .option('--json', 'print one JSON object')
    .action((dbPath: string, options: RestoreFlags) => runRestore(ctx, dbPath, options));
}

/** The flags of `pwal restore`. */
interface RestoreFlags {
  from: string;
  stream: string;
  untilEpoch?: string;
  apply?: boolean;
  snapshot?: boolean;
  pageSize?: string;
  json?: boolean;
}

/** `pwal restore`: restores from the stream, applies with `--apply`, prints and sets the exit code. */
async function runRestore(ctx: CliContext, dbPath: string, options: RestoreFlags): Promise<void> {
  const untilEpoch = parseEpochOption(options.untilEpoch);
  const pageSize = parsePageSizeOption(options.pageSize);
  const progress = ctx.progress(`restore ${dbPath}`);
  let result: RestoreResult;
  try {
    result = await restoreFromStream({
      servers: options.from.split(','),
      stream: options.stream,
      dbPath,
      untilEpoch,
      useSnapshot: options.snapshot !== false,
      connectTimeoutMs: CLI_CONNECT_TIMEOUT_MS,
      fs: ctx.fs,
      onProgress: ({ streamSeq, fromSeq, lastSeq }) =>
        progress.update(streamSeq - fromSeq + 1, lastSeq - fromSeq + 1, 'message(s)'),
    });
  } finally {
    progress.end();
  }
  let applied: { checkpointEpoch: bigint | null; pagesWritten: number } | null = null;
  if (options.apply === true && (result.epochsRestored > 0 || result.snapshot !== null)) {
    applied = await applyRestored(ctx, dbPath, pageSize ?? result.pageSize ?? undefined);
  }
  if (options.json === true) {
    ctx.io.stdout(
      jsonLine({
        ...result,
        duplicates: result.duplicates,
        stoppedBy: stopJson(result.stoppedBy),
        applied,
      }),
    );
  } else {
    ctx.io.stdout(describe(result, dbPath));
    if (applied !== null) {
      ctx.io.stdout(`applied into the database file: ${applied.pagesWritten} page(s) written\n`);
    }
  }
  if (result.stoppedBy !== null) {
    ctx.problem(result.stoppedBy, true);
    return;
  }
  ctx.setExitCode(EXIT_OK);
}

/** Opens the restored database as a page store once, which folds the restored segments into its file. */
async function applyRestored(
  ctx: CliContext,
  dbPath: string,
  pageSize: number | undefined,
): Promise<{ checkpointEpoch: bigint | null; pagesWritten: number }> {
  const store = await PageStore.open(dbPath, { pageSize, fs: ctx.fs, autoCheckpoint: false });
  const report = store.recovery;
  const applied = { checkpointEpoch: report.checkpointEpoch, pagesWritten: report.pagesWritten };
  await store.close();
  return applied;
}

function stopJson(error: ReplicaVerificationError | null): unknown {
  if (error === null) return null;
  return {
    code: error.code,
    message: error.message,
    epoch: error.epoch,
    streamSeq: error.streamSeq,
  };
}
