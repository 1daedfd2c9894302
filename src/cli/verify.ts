/**
 * `pwal verify <db-path> [--allow-epoch-gaps] [--json]`: exit 0 with a
 * one-line summary when every segment reads cleanly (a database with no
 * segments, e.g. fully checkpointed, is valid: "no segments"); exit 1 naming
 * the first bad segment and why (and how many later segments recovery would
 * therefore not replay). A path with no database at all, or a directory, is
 * exit 1 too. When segments carry commit certificates (format version 3), a
 * second line reports their chain, checked by the control plane's verifier
 * (`verifyCertificateChainOnDisk`); a broken chain is exit 1. A missing epoch
 * inside the log (a lost segment) is exit 1 with recovery's own
 * `recovery_gap` message, unless `--allow-epoch-gaps`; segments in ranges
 * recorded as given up (`<db>-wal-skipped`) are not checked. A page store
 * database whose file is shorter than its store header and log allow (pages
 * missing, `ERR_STORE_FILE_TRUNCATED`) is exit 1 too.
 *
 * Every failure ends the same way: the report on stdout (text, or one JSON
 * document with `--json`), the error's message and code on stderr (one JSON
 * line with `--json`), exit 1.
 */
import type { Command } from 'commander';
import { verifyCertificateChainOnDisk } from '../control/chain-files.js';
import { withLock } from '../storage/lockfile.js';
import { findEpochGap } from '../storage/segment-walk.js';
import {
  readSkippedEpochs,
  type SkippedEpochRange,
  skippedRangeOf,
} from '../storage/skipped-epochs.js';
import { findFileTruncation } from '../store/file-length.js';
import { readStoreHeader } from '../store/header.js';
import { type CliContext, EXIT_OK, jsonLine } from './context.js';
import { requireDatabase } from './database.js';
import { checkDatabase, isHealthy, type SegmentCheck } from './segment-check.js';

/** The certificate chain's verdict (`null`: no certified segment). */
interface ChainVerdict {
  ok: boolean;
  line: string;
  certifiedSegments: number;
  lastGoodEpoch: bigint | null;
  uncertifiedSegments: number;
  failure: { code: string; reason: string; epoch: bigint; message: string } | null;
}

async function certificateChain(
  dbPath: string,
  ctx: CliContext,
  ranges: readonly SkippedEpochRange[],
): Promise<ChainVerdict | null> {
  const report = await withLock(dbPath, { fs: ctx.fs, kind: 'shared' }, () =>
    verifyCertificateChainOnDisk(dbPath, {
      fs: ctx.fs,
      skipCorrupt: true,
      ignoreEpoch: (epoch) => skippedRangeOf(ranges, epoch) !== undefined,
    }),
  );
  const base = {
    certifiedSegments: report.certifiedSegments,
    lastGoodEpoch: report.lastGoodEpoch,
    uncertifiedSegments: report.uncertifiedEpochs.length,
  };
  if (report.failure !== null) {
    const f = report.failure;
    return {
      ...base,
      ok: false,
      failure: { code: f.code, reason: f.reason, epoch: f.epoch, message: f.message },
      line: `FAIL certificate chain: ${f.code} ${f.reason} at epoch ${f.epoch}: ${f.message} (verified through ${report.lastGoodEpoch ?? 'none'})\n`,
    };
  }
  if (report.certifiedSegments === 0) return null;
  const uncertified =
    report.uncertifiedEpochs.length > 0
      ? `, ${report.uncertifiedEpochs.length} uncertified segment(s) restart it`
      : '';
  return {
    ...base,
    ok: true,
    failure: null,
    line: `certificates: ${report.certifiedSegments} certified segment(s), chain ok through epoch ${report.lastGoodEpoch}${uncertified}\n`,
  };
}

function segmentJson(s: SegmentCheck): Record<string, unknown> {
  return {
    epoch: s.epoch,
    file: s.file,
    bytes: s.bytes,
    version: s.version,
    recordCount: s.recordCount,
    status: s.status,
    error: s.error,
  };
}

/** The first problem found, as the report and the error line show it. */
interface Failure {
  /** Text-mode report lines. */
  lines: string;
  /** The `failure` field of the JSON document. */
  json: Record<string, unknown>;
  /** The error line. */
  error: { code: string; message: string };
}

function badSegmentFailure(segments: readonly SegmentCheck[], badIndex: number): Failure {
  const bad = segments[badIndex]!;
  const later = segments.length - badIndex - 1;
  return {
    lines:
      `FAIL ${bad.path}: ${bad.status}: ${bad.error ?? ''}\n` +
      `${badIndex} segment(s) before it are valid; recovery fails closed here` +
      (later > 0 ? ` (${later} later segment(s) would not be replayed with skipCorrupt)` : '') +
      '\n',
    json: {
      path: bad.path,
      code: bad.status,
      message: bad.error ?? '',
      validBefore: badIndex,
      laterSegments: later,
    },
    error: { code: bad.status, message: `${bad.path}: ${bad.error ?? bad.status}` },
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
    .option('--json', 'print one JSON document')
    .action((dbPath: string, options: VerifyFlags) => runVerify(ctx, dbPath, options));
}

/** The flags of `pwal verify`. */
interface VerifyFlags {
  allowEpochGaps?: boolean;
  json?: boolean;
}

/** What `pwal verify` found, ready to print. */
interface VerifyOutcome {
  checked: Awaited<ReturnType<typeof checkDatabase>>;
  /** The segments outside recorded skipped ranges. */
  segments: SegmentCheck[];
  skipped: number;
  records: number;
  bytes: number;
  failure: Failure | null;
  chain: ChainVerdict | null;
}

/** `pwal verify`: scans the segments under a shared lock, finds the first failure, prints and sets the exit code. */
async function runVerify(ctx: CliContext, dbPath: string, options: VerifyFlags): Promise<void> {
  const json = options.json === true;
  await requireDatabase(dbPath, ctx.fs);
  const progress = ctx.progress(`verify ${dbPath}`);
  let checked: Awaited<ReturnType<typeof checkDatabase>>;
  try {
    // Under a shared lock: a live writer renames, adopts and deletes files
    // under a scan, so verify refuses (ERR_LOCKED naming it) rather than
    // judge a moving directory, and no writer starts while it reads.
    checked = await withLock(dbPath, { fs: ctx.fs, kind: 'shared' }, () =>
      checkDatabase(dbPath, ctx.fs, (done, total) => progress.update(done, total, 'segment(s)')),
    );
  } finally {
    progress.end();
  }
  // Epochs given up with skipCorrupt are neither replayed nor a gap.
  const ranges = await readSkippedEpochs(dbPath, { fs: ctx.fs });
  const segments = checked.segments.filter((s) => skippedRangeOf(ranges, s.epoch) === undefined);
  const skipped = checked.segments.length - segments.length;
  const records = segments.reduce((n, s) => n + s.records, 0);
  const bytes = segments.reduce((n, s) => n + (s.bytes ?? 0), 0);

  let failure = await firstFailure(dbPath, ctx, segments, ranges, options.allowEpochGaps === true);
  const chain =
    failure === null && segments.length > 0 ? await certificateChain(dbPath, ctx, ranges) : null;
  if (chain?.failure != null) {
    const f = chain.failure;
    // The reason's own code: the same one a certified open fails closed with.
    const error = {
      code: f.code,
      message: `certificate chain: ${f.reason} at epoch ${f.epoch}: ${f.message}`,
    };
    failure = { lines: '', json: error, error };
  }
  printVerify(ctx, dbPath, json, { checked, segments, skipped, records, bytes, failure, chain });
  if (failure !== null) {
    ctx.problem(failure.error, true);
    return;
  }
  ctx.setExitCode(EXIT_OK);
}

/** The first bad segment, else the first epoch gap (unless allowed), else a truncated database file; `null` when none. */
async function firstFailure(
  dbPath: string,
  ctx: CliContext,
  segments: readonly SegmentCheck[],
  ranges: readonly SkippedEpochRange[],
  allowEpochGaps: boolean,
): Promise<Failure | null> {
  const badIndex = segments.findIndex((s) => !isHealthy(s));
  if (badIndex >= 0) return badSegmentFailure(segments, badIndex);
  if (!allowEpochGaps) {
    // A page store's header says which epochs are folded (their segments may be gone).
    const header = await readStoreHeader(dbPath, ctx.fs);
    const gap = findEpochGap(
      dbPath,
      segments.map((s) => s.epoch),
      ranges,
      header === null ? undefined : header.nextEpoch,
    );
    if (gap !== null) {
      return {
        lines: `FAIL ${gap.message}\n`,
        json: { code: gap.code, message: gap.message },
        error: { code: gap.code, message: gap.message },
      };
    }
  }
  // A page store's file shorter than its header and log allow: pages lost.
  const truncated = await findFileTruncation(dbPath, ctx.fs);
  if (truncated !== null) {
    const error = { code: truncated.code, message: truncated.message };
    return { lines: `FAIL ${truncated.code}: ${truncated.message}\n`, json: error, error };
  }
  return null;
}

/** Prints the outcome: one JSON document, the failure's lines, or the `ok` summary (and the chain's line). */
function printVerify(ctx: CliContext, dbPath: string, json: boolean, outcome: VerifyOutcome): void {
  const { checked, segments, skipped, records, bytes, failure, chain } = outcome;
  const { temporaryFiles } = checked;
  if (json) {
    ctx.io.stdout(
      jsonLine({
        db: dbPath,
        ok: failure === null,
        segmentCount: segments.length,
        records,
        bytes,
        firstEpoch: segments[0]?.epoch ?? null,
        lastEpoch: segments.at(-1)?.epoch ?? null,
        skippedSegments: skipped,
        failure: failure?.json ?? null,
        certificates: chain === null ? null : { ...chain, line: undefined },
        segments: checked.segments.map(segmentJson),
        temporaryFiles,
      }),
    );
  } else if (failure !== null && failure.lines !== '') {
    ctx.io.stdout(failure.lines);
  } else {
    const tmp =
      (skipped > 0 ? `, ${skipped} segment(s) in recorded skipped ranges` : '') +
      (temporaryFiles.length > 0 ? `, ${temporaryFiles.length} leftover temporary file(s)` : '');
    if (segments.length === 0) {
      ctx.io.stdout(`ok: no segments${tmp}\n`);
    } else {
      const first = segments[0]!.epoch;
      const last = segments[segments.length - 1]!.epoch;
      ctx.io.stdout(
        `ok: ${segments.length} segment(s), ${records} record(s), ${bytes} bytes, epochs ${first}..${last}${tmp}\n`,
      );
      if (chain !== null) ctx.io.stdout(chain.line);
    }
  }
}
