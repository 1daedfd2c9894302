#!/usr/bin/env node
/**
 * The `pwal` binary: runs {@link runCli} on the process arguments and exits
 * with its status.
 */
import { processIo, runCli } from './program.js';

process.exitCode = await runCli(process.argv.slice(2), processIo);
