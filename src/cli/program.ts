/**
 * The `pwal` command line as a function: {@link runCli} parses `argv`, runs
 * one subcommand and returns the exit status, printing through a
 * {@link CliIo}. Errors are printed as one line (`pwal: <message>`), never a
 * stack trace. Exit statuses: 0 ok, 1 failure found, 2 usage error.
 */
import { Command, CommanderError } from 'commander';
import { WalError } from '../errors.js';
import { nodeFileSystem, type WalFileSystem } from '../storage/fs.js';
import { registerCheckpoint } from './checkpoint.js';
import { type CliContext, type CliIo, EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from './context.js';
import { registerDemo } from './demo.js';
import { registerDump } from './dump.js';
import { registerFollow } from './follow.js';
import { registerInspect } from './inspect.js';
import { registerRecover } from './recover.js';
import { registerRestore } from './restore.js';
import { registerSnapshot } from './snapshot.js';
import { registerTraceCommand } from './trace.js';
import { registerVerify } from './verify.js';

/** Options of {@link runCli}. */
export interface RunCliOptions {
  /** File system to inspect through; default {@link nodeFileSystem}. */
  fs?: WalFileSystem;
}

/** Prints to the real stdout/stderr. */
export const processIo: CliIo = {
  stdout: (text) => {
    process.stdout.write(text);
  },
  stderr: (text) => {
    process.stderr.write(text);
  },
};

function buildProgram(ctx: CliContext): Command {
  const program = new Command('pwal')
    .description('inspect and verify parallel-wal segment files')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => ctx.io.stdout(text),
      writeErr: (text) => ctx.io.stderr(text),
      outputError: (text, write) => write(text.endsWith('\n') ? text : `${text}\n`),
    })
    .showSuggestionAfterError(true);
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
  for (const command of program.commands) command.exitOverride();
  return program;
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

/**
 * Runs `pwal` with `argv` (the arguments after the program name) and
 * resolves to the exit status. Never throws and never calls `process.exit`.
 */
export async function runCli(
  argv: readonly string[],
  io: CliIo = processIo,
  options: RunCliOptions = {},
): Promise<number> {
  let exitCode = EXIT_OK;
  const ctx: CliContext = {
    io,
    fs: options.fs ?? nodeFileSystem,
    setExitCode: (code) => {
      exitCode = code;
    },
  };
  const program = buildProgram(ctx);
  if (argv.length === 0) {
    io.stderr(program.helpInformation());
    return EXIT_USAGE;
  }
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version are not errors; commander already printed them.
      if (error.exitCode === 0) return EXIT_OK;
      return EXIT_USAGE;
    }
    if (error instanceof WalError) {
      io.stderr(`pwal: ${oneLine(error.message)} (${error.code})\n`);
      return EXIT_FAILURE;
    }
    const message = error instanceof Error ? error.message : String(error);
    io.stderr(`pwal: unexpected error: ${oneLine(message)}\n`);
    return EXIT_FAILURE;
  }
}
