/**
 * `pwal verify <db-path>`: exit 0 with a one-line summary when every segment
 * reads cleanly (an empty directory is valid: "no segments"); exit 1 naming
 * the first bad segment and why (and how many later segments recovery would
 * therefore not replay). When segments carry commit certificates (format
 * version 3), a second line reports their chain, checked by the control
 * plane's verifier (`verifyCertificateChainOnDisk`); a broken chain is exit 1.
 * A missing epoch inside the log (a lost segment) is exit 1 with recovery's
 * own `recovery_gap` message, unless `--allow-epoch-gaps`; segments in ranges
 * recorded as given up (`<db>-wal-skipped`) are not checked.
 * A page store database whose file is shorter than its store header and log
 * allow (pages missing, `ERR_STORE_FILE_TRUNCATED`) is exit 1 too.
 */
import type { Command } from 'commander';
import { verifyCertificateChainOnDisk } from '../control/chain-files.js';
import { findEpochGap } from '../storage/recovery.js';
import {
  readSkippedEpochs,
  type SkippedEpochRange,
  skippedRangeOf,
} from '../storage/skipped-epochs.js';
import { findFileTruncation } from '../store/file-length.js';
import { readStoreHeader } from '../store/header.js';
import { type CliContext, EXIT_FAILURE, EXIT_OK } from './context.js';
import { checkDatabase, isHealthy } from './segment-check.js';

/** The chain line (`null`: no certified segment), and whether the chain holds. */
async function certificateChain(
  dbPath: string,
  ctx: CliContext,
  ranges: readonly SkippedEpochRange[],
): Promise<{ line: string; ok: boolean } | null> {
  const report = await verifyCertificateChainOnDisk(dbPath, {
    fs: ctx.fs,
    skipCorrupt: true,
    ignoreEpoch: (epoch) => skippedRangeOf(ranges, epoch) !== undefined,
  });
  if (report.failure !== null) {
    return {
      ok: false,
      line: `FAIL certificate chain: ${report.failure.code} ${report.failure.reason} at epoch ${report.failure.epoch}: ${report.failure.message} (verified through ${report.lastGoodEpoch ?? 'none'})\n`,
    };
  }
  if (report.certifiedSegments === 0) return null;
  const uncertified =
    report.uncertifiedEpochs.length > 0
      ? `, ${report.uncertifiedEpochs.length} uncertified segment(s) restart it`
      : '';
  return {
    ok: true,
    line: `certificates: ${report.certifiedSegments} certified segment(s), chain ok through epoch ${report.lastGoodEpoch}${uncertified}\n`,
  };
}

/** Adds the `verify` subcommand to `program`. */
export function registerVerify(program: Command, ctx: CliContext): void {
  program
    .command('verify')
    .description(
      'check that every segment of a database reads cleanly (exit 0) or name the first bad one (exit 1)',
    )
    .argument('<db-path>', 'path of the database file (segments live beside it)')
    .option(
      '--allow-epoch-gaps',
      'the log was written by a writer that leaves epoch numbers unused: a missing epoch is not a lost segment',
    )
    .action(async (dbPath: string, options: { allowEpochGaps?: boolean }) => {
      const checked = await checkDatabase(dbPath, ctx.fs);
      const { temporaryFiles } = checked;
      // Epochs given up with skipCorrupt are neither replayed nor a gap.
      const ranges = await readSkippedEpochs(dbPath, { fs: ctx.fs });
      const segments = checked.segments.filter(
        (s) => skippedRangeOf(ranges, s.epoch) === undefined,
      );
      const badIndex = segments.findIndex((s) => !isHealthy(s));
      if (badIndex >= 0) {
        const bad = segments[badIndex]!;
        const later = segments.length - badIndex - 1;
        ctx.io.stdout(`FAIL ${bad.path}: ${bad.status}: ${bad.error ?? ''}\n`);
        ctx.io.stdout(
          `${badIndex} segment(s) before it are valid; recovery fails closed here` +
            (later > 0
              ? ` (${later} later segment(s) would not be replayed with skipCorrupt)`
              : '') +
            '\n',
        );
        ctx.setExitCode(EXIT_FAILURE);
        return;
      }
      if (options.allowEpochGaps !== true) {
        // A page store's header says which epochs are folded (their segments may be gone).
        const header = await readStoreHeader(dbPath, ctx.fs);
        const gap = findEpochGap(
          dbPath,
          segments.map((s) => s.epoch),
          ranges,
          header === null ? undefined : header.nextEpoch,
        );
        if (gap !== null) {
          ctx.io.stdout(`FAIL ${gap.message}\n`);
          ctx.setExitCode(EXIT_FAILURE);
          return;
        }
      }
      // A page store's file shorter than its header and log allow: pages lost.
      const truncated = await findFileTruncation(dbPath, ctx.fs);
      if (truncated !== null) {
        ctx.io.stdout(`FAIL ${truncated.code}: ${truncated.message}\n`);
        ctx.setExitCode(EXIT_FAILURE);
        return;
      }
      const skipped = checked.segments.length - segments.length;
      const tmp =
        (skipped > 0 ? `, ${skipped} segment(s) in recorded skipped ranges` : '') +
        (temporaryFiles.length > 0 ? `, ${temporaryFiles.length} leftover temporary file(s)` : '');
      if (segments.length === 0) {
        ctx.io.stdout(`ok: no segments${tmp}\n`);
      } else {
        const records = segments.reduce((n, s) => n + s.records, 0);
        const bytes = segments.reduce((n, s) => n + (s.bytes ?? 0), 0);
        const first = segments[0]!.epoch;
        const last = segments[segments.length - 1]!.epoch;
        ctx.io.stdout(
          `ok: ${segments.length} segment(s), ${records} record(s), ${bytes} bytes, epochs ${first}..${last}${tmp}\n`,
        );
        const chain = await certificateChain(dbPath, ctx, ranges);
        if (chain !== null) {
          ctx.io.stdout(chain.line);
          if (!chain.ok) {
            ctx.setExitCode(EXIT_FAILURE);
            return;
          }
        }
      }
      ctx.setExitCode(EXIT_OK);
    });
}
