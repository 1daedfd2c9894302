/**
 * `pwal follow --from <nats url> --stream <name> <db-path>`: keeps a
 * read-only replica current from a database's JetStream stream, applying
 * epochs strictly in order and resuming after a restart from its own durable
 * position (`<db-path>-pwal-follow.json`). By default the replica is a page
 * store database (an empty one starts from the newest base snapshot); stop
 * the follower and open it with the page store to promote it. `--mode log`
 * keeps the segment files instead. Runs until SIGINT/SIGTERM (or
 * `--until-epoch`, or `--once` to stop when caught up).
 *
 * It connects before it opens anything, with the same bounded attempt as
 * `pwal restore`: an unreachable server fails at once with
 * `ERR_REPLICATION_UNAVAILABLE`, and creates no replica. With `--once`, a
 * stream that does not exist fails too (`ERR_REPLICATION_STREAM`) instead of
 * waiting for it to be created.
 *
 * Text output is one status line per applied epoch change (at most one a
 * second); `--json` prints the same as JSON lines (`type: "status"`), then
 * one `type: "stopped"` line.
 *
 * Exit 0: stopped on request or target reached; 1: the server or stream is
 * unreachable, or the stream failed verification (the replica stays at the
 * last good epoch); 2: usage.
 */
import type { Command } from 'commander';
import { ReplicationError, ReplicationErrorCode } from '../replication/errors.js';
import { Follower } from '../replication/follower.js';
import type { FollowerStats } from '../replication/follower-options.js';
import { NatsReplicaClient } from '../replication/nats/client.js';
import { type CliContext, EXIT_OK, jsonLine } from './context.js';
import { CliUsageError } from './errors.js';
import { parsePageSizeOption, parsePositiveIntegerOption } from './options.js';
import { CLI_CONNECT_TIMEOUT_MS, parseEpochOption } from './restore.js';

/** How often `pwal follow` prints progress and checks for its stop conditions, ms. */
export const FOLLOW_REPORT_INTERVAL_MS = 1_000;

interface FollowFlags {
  from: string;
  stream: string;
  untilEpoch?: string;
  once?: boolean;
  mode: string;
  pageSize?: string;
  snapshot?: boolean;
  flushEvery?: string;
  json?: boolean;
}

function statusLine(stats: FollowerStats, follower: Follower, json: boolean): string {
  const pages = follower.replica === null ? null : follower.replica.dbSizePages;
  if (json) {
    return jsonLine({
      type: 'status',
      epoch: stats.epoch,
      streamSeq: stats.streamSeq,
      epochsApplied: stats.epochsApplied,
      duplicatesSkipped: stats.duplicatesSkipped,
      dbSizePages: pages,
      snapshotEpoch: stats.snapshot?.epoch ?? null,
    });
  }
  const base =
    stats.snapshot === null ? '' : `, from the snapshot of epoch ${stats.snapshot.epoch}`;
  const size = pages === null ? '' : `, ${pages} pages`;
  return `follow: applied up to epoch ${stats.epoch ?? 'none'} (stream sequence ${stats.streamSeq}, ${stats.epochsApplied} applied, ${stats.duplicatesSkipped} duplicates skipped${size}${base})\n`;
}

/** Adds the `follow` subcommand. */
export function registerFollow(program: Command, ctx: CliContext): void {
  program
    .command('follow')
    .description('keep a read-only replica current from a JetStream stream')
    .argument('<db-path>', 'database file path of the replica')
    .requiredOption('--from <url>', 'NATS server URL(s), comma-separated')
    .requiredOption('--stream <name>', 'JetStream stream of the database')
    .option('--until-epoch <n>', 'stop once epoch N is applied')
    .option('--once', 'stop as soon as the replica has caught up with the stream')
    .option(
      '--mode <mode>',
      'store (a readable page store replica) or log (segment files)',
      'store',
    )
    .option('--page-size <bytes>', 'store mode: the primary page size (default: learned)')
    .option('--no-snapshot', 'store mode: do not start an empty replica from a base snapshot')
    .option('--flush-every <epochs>', 'store mode: fold into the file at least every N epochs')
    .option('--json', 'print status and the final state as JSON lines')
    .action((dbPath: string, options: FollowFlags) => runFollow(ctx, dbPath, options));
}

/** `pwal follow`: connects, starts the follower, follows until a stop condition, reports and sets the exit code. */
async function runFollow(ctx: CliContext, dbPath: string, options: FollowFlags): Promise<void> {
  if (options.mode !== 'store' && options.mode !== 'log') {
    throw new CliUsageError(`--mode must be store or log, got ${options.mode}`);
  }
  const pageSize = parsePageSizeOption(options.pageSize);
  const flushEvery = parsePositiveIntegerOption('flush-every', options.flushEvery);
  const untilEpoch = parseEpochOption(options.untilEpoch);
  // Connect first: nothing is opened or created unless the cluster answers.
  const client = await NatsReplicaClient.connect({
    servers: options.from.split(','),
    connectTimeoutMs: CLI_CONNECT_TIMEOUT_MS,
    name: 'pwal-follow',
  });
  try {
    const lastSeq = (await client.streamState(options.stream))?.lastSeq ?? null;
    if (lastSeq === null && options.once === true) {
      throw new ReplicationError(
        ReplicationErrorCode.stream,
        `stream ${options.stream} does not exist`,
      );
    }
    const follower = await Follower.start({
      connection: client.connection,
      stream: options.stream,
      dbPath,
      mode: options.mode,
      ...(pageSize === undefined ? {} : { pageSize }),
      useSnapshot: options.snapshot !== false,
      ...(flushEvery === undefined ? {} : { flushEveryEpochs: flushEvery }),
      fs: ctx.fs,
    });
    const reason = await followUntilDone(ctx, follower, options, untilEpoch, lastSeq);
    const failure = follower.stoppedBy;
    if (options.json === true) {
      ctx.io.stdout(
        jsonLine({
          type: 'stopped',
          reason: failure === null ? reason : 'failed',
          epoch: follower.appliedEpoch(),
        }),
      );
    }
    if (failure !== null) {
      ctx.problem({
        code: failure.code,
        message: `follower stopped at epoch ${follower.appliedEpoch() ?? 'none'}: ${failure.message}`,
      });
      return;
    }
    ctx.setExitCode(EXIT_OK);
  } finally {
    await client.close();
  }
}

/** Why following ended. */
type StopReason = 'signal' | 'until-epoch' | 'caught-up' | 'failed' | 'output-closed';

/** Runs until a stop condition; closes the follower. */
async function followUntilDone(
  ctx: CliContext,
  follower: Follower,
  options: FollowFlags,
  untilEpoch: bigint | undefined,
  lastSeqAtStart: number | null,
): Promise<StopReason> {
  const stop = new AbortController();
  const stopped = new Promise<void>((resolve) => {
    stop.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  const onSignal = (): void => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  // The catch-up towards the stream's end as it was when we started.
  const progress = ctx.progress(`follow ${options.stream}`);
  let lastPrinted: bigint | null | undefined;
  let reason: StopReason = 'signal';
  try {
    while (!stop.signal.aborted) {
      const stats = follower.stats();
      if (stats.epoch !== lastPrinted) {
        lastPrinted = stats.epoch;
        ctx.io.stdout(statusLine(stats, follower, options.json === true));
      }
      if (lastSeqAtStart !== null && lastSeqAtStart > 0 && stats.state !== 'current') {
        progress.update(Math.min(stats.streamSeq, lastSeqAtStart), lastSeqAtStart, 'message(s)');
      } else {
        progress.end();
      }
      if (stats.state === 'failed') {
        reason = 'failed';
        break;
      }
      if (untilEpoch !== undefined && stats.epoch !== null && stats.epoch >= untilEpoch) {
        reason = 'until-epoch';
        break;
      }
      if (options.once === true && stats.state === 'current') {
        reason = 'caught-up';
        break;
      }
      // Nobody reads the output any more (`| head`): stop like a signal would.
      if (ctx.io.stdoutClosed?.() === true) {
        reason = 'output-closed';
        break;
      }
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        stopped,
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, FOLLOW_REPORT_INTERVAL_MS);
        }),
      ]);
      clearTimeout(timer);
    }
  } finally {
    progress.end();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await follower.close();
  }
  return reason;
}
