/**
 * The `pwal` command line as a function: {@link runCli} parses `argv`, runs
 * one subcommand and returns the exit status, printing through a
 * {@link CliIo}. Errors are printed as one line (`pwal: <message> (<code>)`,
 * or `{"error":{"code":…,"message":…}}` with `--json`), never a stack trace.
 * Exit statuses: 0 ok, 1 problem found, 2 usage error.
 */
import { Command, CommanderError } from 'commander';
import { WalError } from '../errors.js';
import { nodeFileSystem, type WalFileSystem } from '../storage/fs.js';
import { registerCheckpoint } from './checkpoint.js';
import { type CliContext, type CliIo, EXIT_OK, EXIT_USAGE, errorLine } from './context.js';
import { registerDemo } from './demo.js';
import { registerDump } from './dump.js';
import { CliErrorCode, exitCodeFor } from './errors.js';
import { registerFollow } from './follow.js';
import { registerInspect } from './inspect.js';
import { createProcessIo } from './process-io.js';
import { NO_PROGRESS, ProgressLine, progressWanted } from './progress.js';
import { registerRecover } from './recover.js';
import { registerRestore } from './restore.js';
import { registerSnapshot } from './snapshot.js';
import { registerTraceCommand } from './trace.js';
import { registerVerify } from './verify.js';
import { packageVersion } from './version.js';

/** Options of {@link runCli}. */
export interface RunCliOptions {
  /** File system to inspect through; default {@link nodeFileSystem}. */
  fs?: WalFileSystem;
}

/** The part of `pwal --help` that scripts rely on. */
export const EXIT_STATUS_HELP = `
Exit status:
  0  ok
  1  a problem was found (bad or missing segment, missing database, failed
     check, connection or I/O failure)
  2  usage error (unknown command or option, bad option value)

With --json (every command has it), results are JSON on stdout and an error
is one line on stderr: {"error":{"code":"ERR_…","message":"…"}}.
A progress line is drawn on stderr only when stdout and stderr are terminals
and --json is off.
`;

function buildProgram(ctx: CliContext): Command {
  const program = new Command('pwal')
    .description('inspect, verify, recover and replicate parallel-wal databases')
    .version(packageVersion(), '-V, --version', 'print the version of pwal')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => ctx.io.stdout(text),
      writeErr: (text) => ctx.io.stderr(text),
      // With --json the error is printed once, as JSON, by runCli.
      outputError: (text, write) => {
        if (!ctx.json) write(text.endsWith('\n') ? text : `${text}\n`);
      },
    })
    .showSuggestionAfterError(true)
    .addHelpText('after', EXIT_STATUS_HELP);
  // One line per subcommand file.
  registerInspect(program, ctx);
  registerDump(program, ctx);
  registerVerify(program, ctx);
  registerTraceCommand(program, ctx);
  registerRestore(program, ctx);
  registerFollow(program, ctx);
  registerSnapshot(program, ctx);
  registerCheckpoint(program, ctx);
  registerRecover(program, ctx);
  registerDemo(program, ctx);
  for (const command of program.commands) {
    command.exitOverride();
    command.addHelpText('after', EXIT_STATUS_HELP);
  }
  return program;
}

/** True when `argv` asks for JSON (before a `--` that ends the options). */
function wantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).includes('--json');
}

/** Commander's message without its `error: ` prefix. */
function usageMessage(error: CommanderError): string {
  return error.message.replace(/^error: /, '');
}

/**
 * Runs `pwal` with `argv` (the arguments after the program name) and
 * resolves to the exit status. Never throws and never calls `process.exit`.
 */
export async function runCli(
  argv: readonly string[],
  io: CliIo = createProcessIo(),
  options: RunCliOptions = {},
): Promise<number> {
  let exitCode = EXIT_OK;
  const json = wantsJson(argv);
  const line = progressWanted(io, json) ? new ProgressLine((t) => io.stderr(t)) : null;
  // Any other output first clears the progress line, so the two never mix.
  const screen: CliIo = {
    ...io,
    stdout: (text) => {
      line?.clear();
      io.stdout(text);
    },
    stderr: (text) => {
      line?.clear();
      io.stderr(text);
    },
  };
  const ctx: CliContext = {
    io: screen,
    fs: options.fs ?? nodeFileSystem,
    json,
    setExitCode: (code) => {
      exitCode = code;
    },
    progress: (label) => (line === null ? NO_PROGRESS : line.start(label)),
    problem: (error, shown = false) => {
      if (json || !shown) screen.stderr(errorLine(json, error.code, error.message));
      exitCode = exitCodeFor(error);
    },
  };
  const program = buildProgram(ctx);
  if (argv.length === 0) {
    if (json) screen.stderr(errorLine(true, CliErrorCode.usage, 'no command given'));
    else screen.stderr(program.helpInformation());
    return EXIT_USAGE;
  }
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version are not errors; commander already printed them.
      if (error.exitCode === 0) return EXIT_OK;
      if (json) screen.stderr(errorLine(true, CliErrorCode.usage, usageMessage(error)));
      return EXIT_USAGE;
    }
    if (error instanceof WalError) {
      screen.stderr(errorLine(json, error.code, error.message));
      return exitCodeFor(error);
    }
    const message = error instanceof Error ? error.message : String(error);
    screen.stderr(errorLine(json, 'ERR_UNEXPECTED', `unexpected error: ${message}`));
    return exitCodeFor(error);
  } finally {
    line?.clear();
  }
}
