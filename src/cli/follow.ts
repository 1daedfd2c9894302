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
 * Exit 0: stopped on request or target reached; 1: the stream failed
 * verification (the replica stays at the last good epoch) or is unreadable.
 */
import type { Command } from 'commander';
import { Follower } from '../replication/follower.js';
import { type CliContext, EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from './context.js';
import { CLI_CONNECT_TIMEOUT_MS, parseEpochOption } from './restore.js';

/** How often `pwal follow` prints progress and checks for its stop conditions, ms. */
export const FOLLOW_REPORT_INTERVAL_MS = 1_000;

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
    .action(
      async (
        dbPath: string,
        options: {
          from: string;
          stream: string;
          untilEpoch?: string;
          once?: boolean;
          mode: string;
          pageSize?: string;
          snapshot?: boolean;
          flushEvery?: string;
        },
      ) => {
        if (options.mode !== 'store' && options.mode !== 'log') {
          ctx.io.stderr(`pwal: --mode must be store or log, got ${options.mode}\n`);
          ctx.setExitCode(EXIT_USAGE);
          return;
        }
        const pageSize = options.pageSize === undefined ? undefined : Number(options.pageSize);
        const flushEvery =
          options.flushEvery === undefined ? undefined : Number(options.flushEvery);
        if (flushEvery !== undefined && (!Number.isSafeInteger(flushEvery) || flushEvery < 1)) {
          ctx.io.stderr(
            `pwal: --flush-every must be a positive integer, got ${options.flushEvery}\n`,
          );
          ctx.setExitCode(EXIT_USAGE);
          return;
        }
        const untilEpoch = parseEpochOption(options.untilEpoch);
        if (untilEpoch === null) {
          ctx.io.stderr(`pwal: --until-epoch must be a decimal u64, got ${options.untilEpoch}\n`);
          ctx.setExitCode(EXIT_USAGE);
          return;
        }
        const follower = await Follower.start({
          servers: options.from.split(','),
          stream: options.stream,
          dbPath,
          mode: options.mode,
          ...(pageSize === undefined ? {} : { pageSize }),
          useSnapshot: options.snapshot !== false,
          ...(flushEvery === undefined ? {} : { flushEveryEpochs: flushEvery }),
          connectTimeoutMs: CLI_CONNECT_TIMEOUT_MS,
          fs: ctx.fs,
        });
        const stop = new AbortController();
        const stopped = new Promise<void>((resolve) => {
          stop.signal.addEventListener('abort', () => resolve(), { once: true });
        });
        const onSignal = (): void => stop.abort();
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        let lastPrinted: bigint | null | undefined;
        try {
          while (!stop.signal.aborted) {
            const stats = follower.stats();
            if (stats.epoch !== lastPrinted) {
              lastPrinted = stats.epoch;
              const base =
                stats.snapshot === null
                  ? ''
                  : `, from the snapshot of epoch ${stats.snapshot.epoch}`;
              const size =
                follower.replica === null ? '' : `, ${follower.replica.dbSizePages} pages`;
              ctx.io.stdout(
                `follow: applied up to epoch ${stats.epoch ?? 'none'} (stream sequence ${stats.streamSeq}, ${stats.epochsApplied} applied, ${stats.duplicatesSkipped} duplicates skipped${size}${base})\n`,
              );
            }
            if (stats.state === 'failed') break;
            if (untilEpoch !== undefined && stats.epoch !== null && stats.epoch >= untilEpoch)
              break;
            if (options.once === true && stats.state === 'current') break;
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
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
          await follower.close();
        }
        const failure = follower.stoppedBy;
        if (failure !== null) {
          ctx.io.stderr(
            `pwal: follower stopped at epoch ${follower.appliedEpoch() ?? 'none'}: ${failure.message} (${failure.code})\n`,
          );
          ctx.setExitCode(EXIT_FAILURE);
          return;
        }
        ctx.setExitCode(EXIT_OK);
      },
    );
}
