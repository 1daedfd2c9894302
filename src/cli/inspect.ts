/**
 * `pwal inspect <db-path> [--json]`: the store header (page store databases),
 * the replication state (when a replicator ran there), the follower position
 * (when the database is a replica), then one row per
 * segment file — epoch, file, bytes, format version (1, 2, or 3 with a
 * certificate trailer), record count, status (`ok`, `pending-adoption` for a
 * complete early-acknowledged temporary file, or the error code and message).
 * Exits 0 when it could look (even at bad segments: use `verify` to gate on
 * health), 1 when there is no database at the path, the path is a directory,
 * or its directory cannot be read.
 */
import type { Command } from 'commander';
import { WalError } from '../errors.js';
import {
  type FollowPosition,
  type ReplicationState,
  readFollowPosition,
  readReplicationState,
} from '../replication/state-file.js';
import { describeStore, formatStoreDescription } from '../store/describe.js';
import { type CliContext, EXIT_OK, jsonLine } from './context.js';
import { requireDatabase } from './database.js';
import { checkDatabase, isHealthy, type SegmentCheck } from './segment-check.js';

type Look<T> =
  | { state: T | null; error: null }
  | { state: null; error: { code: string; message: string } };
type ReplicationLook = Look<ReplicationState>;

/** A state file, or why it cannot be read (never throws). */
async function lookAt<T>(read: () => Promise<T | null>): Promise<Look<T>> {
  try {
    return { state: await read(), error: null };
  } catch (error) {
    const code = error instanceof WalError ? error.code : 'ERR_UNEXPECTED';
    const message = error instanceof Error ? error.message : String(error);
    return { state: null, error: { code, message } };
  }
}

function replicationLine(look: ReplicationLook): string {
  if (look.error !== null) return `replication: ${look.error.message} (${look.error.code})\n`;
  const s = look.state;
  if (s === null) return 'replication: none (no replicator ran here)\n';
  return `replication: database ${s.databaseId}, stream ${s.stream} (subject ${s.subject}), replicated through epoch ${
    s.replicatedEpoch ?? 'none'
  }, stream seq ${s.streamSeq}, as of ${s.updatedAt}\n`;
}

function followLine(look: Look<FollowPosition>): string {
  if (look.error !== null) return `follower: ${look.error.message} (${look.error.code})\n`;
  const p = look.state;
  if (p === null) return '';
  const from = p.base === true ? ' (a base snapshot)' : '';
  const wait =
    p.consistentEpoch === null || p.consistentEpoch === undefined
      ? ''
      : `, reads wait for epoch ${p.consistentEpoch}`;
  return `follower: replica of database ${p.databaseId || '?'} from stream ${p.stream}, durable through epoch ${
    p.epoch ?? 'none'
  }${from}, stream seq ${p.streamSeq}${wait}, as of ${p.updatedAt}\n`;
}

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
    isHealthy(r) ? r.status : `${r.status}: ${r.error ?? ''}`,
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
      await requireDatabase(dbPath, ctx.fs);
      const { segments, temporaryFiles, pool } = await checkDatabase(dbPath, ctx.fs);
      const store = await describeStore(dbPath, { fs: ctx.fs });
      const replication = await lookAt(() => readReplicationState(dbPath, ctx.fs));
      const follow = await lookAt(() => readFollowPosition(dbPath, ctx.fs));
      if (options.json) {
        ctx.io.stdout(
          jsonLine({
            db: dbPath,
            store,
            replication: replication.state,
            ...(replication.error === null ? {} : { replicationError: replication.error }),
            follower: follow.state,
            ...(follow.error === null ? {} : { followerError: follow.error }),
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
            segmentPool: pool,
          }),
        );
      } else {
        ctx.io.stdout(formatStoreDescription(store));
        ctx.io.stdout(replicationLine(replication));
        ctx.io.stdout(followLine(follow));
        ctx.io.stdout(segments.length === 0 ? `no segments for ${dbPath}\n` : table(segments));
        // Reusable segment files of the pool sink (bounded by segmentPoolSize while a log is open).
        ctx.io.stdout(`segment pool: ${pool.files} file(s), ${pool.bytes} bytes\n`);
      }
      if (!options.json && temporaryFiles.length > 0) {
        ctx.io.stdout(
          `${temporaryFiles.length} leftover temporary file(s) of interrupted writes: ${temporaryFiles.join(', ')}\n`,
        );
      }
      ctx.setExitCode(EXIT_OK);
    });
}
