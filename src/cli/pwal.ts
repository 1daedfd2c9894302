#!/usr/bin/env node
/**
 * The `pwal` binary: runs {@link runCli} on the process arguments and exits
 * with its status.
 */
import { EXIT_FAILURE } from './context.js';
import { createProcessIo } from './process-io.js';
import { runCli } from './program.js';

const io = createProcessIo();
const code = await runCli(process.argv.slice(2), io);
const failure = io.stdoutError();
if (failure !== null) {
  io.stderr(`pwal: cannot write to stdout: ${failure.code ?? failure.message}\n`);
  process.exitCode = EXIT_FAILURE;
} else {
  process.exitCode = code;
}
