/**
 * `pwal verify <db-path> [--json]`: exit 0 with a one-line summary when every
 * segment reads cleanly (a database with no segments, e.g. fully
 * checkpointed, is valid: "no segments"); exit 1 naming the first bad segment
 * and why (and how many later segments recovery would therefore not replay).
 * A path with no database at all, or a directory, is exit 1 too. When
 * segments carry commit certificates (format version 3), a second line
 * reports their chain, checked by the control plane's verifier
 * (`verifyCertificateChainOnDisk`); a broken chain is exit 1.
 *
 * Any other check that fails with a typed error ends the run the same way as
 * every command: its message and code on stderr, exit 1.
 */
import type { Command } from 'commander';
import { verifyCertificateChainOnDisk } from '../control/chain-files.js';
import { type CliContext, EXIT_OK, jsonLine } from './context.js';
import { requireDatabase } from './database.js';
import { CliErrorCode } from './errors.js';
import { checkDatabase, isHealthy, type SegmentCheck } from './segment-check.js';

/** The certificate chain's verdict (`null`: no certified segment). */
interface ChainVerdict {
  ok: boolean;
  line: string;
  certifiedSegments: number;
  lastGoodEpoch: bigint | null;
  uncertifiedSegments: number;
  failure: { reason: string; epoch: bigint; message: string } | null;
}

async function certificateChain(dbPath: string, ctx: CliContext): Promise<ChainVerdict | null> {
  const report = await verifyCertificateChainOnDisk(dbPath, { fs: ctx.fs, skipCorrupt: true });
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
      failure: { reason: f.reason, epoch: f.epoch, message: f.message },
      line: `FAIL certificate chain: ${f.reason} at epoch ${f.epoch}: ${f.message} (verified through ${report.lastGoodEpoch ?? 'none'})\n`,
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

/** Adds the `verify` subcommand to `program`. */
export function registerVerify(program: Command, ctx: CliContext): void {
  program
    .command('verify')
    .description(
      'check that every segment of a database reads cleanly (exit 0) or name the first bad one (exit 1)',
    )
    .argument('<db-path>', 'path of the database file (segments live beside it)')
    .option('--json', 'print one JSON document')
    .action(async (dbPath: string, options: { json?: boolean }) => {
      const json = options.json === true;
      await requireDatabase(dbPath, ctx.fs);
      const progress = ctx.progress(`verify ${dbPath}`);
      let check: Awaited<ReturnType<typeof checkDatabase>>;
      try {
        check = await checkDatabase(dbPath, ctx.fs, (done, total) =>
          progress.update(done, total, 'segment(s)'),
        );
      } finally {
        progress.end();
      }
      const { segments, temporaryFiles } = check;
      const records = segments.reduce((n, s) => n + s.records, 0);
      const bytes = segments.reduce((n, s) => n + (s.bytes ?? 0), 0);
      const badIndex = segments.findIndex((s) => !isHealthy(s));
      const bad = badIndex >= 0 ? segments[badIndex]! : null;
      const chain =
        bad === null && segments.length > 0 ? await certificateChain(dbPath, ctx) : null;
      if (json) {
        ctx.io.stdout(
          jsonLine({
            db: dbPath,
            ok: bad === null && (chain === null || chain.ok),
            segmentCount: segments.length,
            records,
            bytes,
            firstEpoch: segments[0]?.epoch ?? null,
            lastEpoch: segments.at(-1)?.epoch ?? null,
            failure:
              bad === null
                ? null
                : {
                    path: bad.path,
                    code: bad.status,
                    message: bad.error ?? '',
                    validBefore: badIndex,
                    laterSegments: segments.length - badIndex - 1,
                  },
            certificates: chain === null ? null : { ...chain, line: undefined },
            segments: segments.map(segmentJson),
            temporaryFiles,
          }),
        );
      }
      if (bad !== null) {
        const later = segments.length - badIndex - 1;
        if (!json) {
          ctx.io.stdout(`FAIL ${bad.path}: ${bad.status}: ${bad.error ?? ''}\n`);
          ctx.io.stdout(
            `${badIndex} segment(s) before it are valid; recovery fails closed here` +
              (later > 0
                ? ` (${later} later segment(s) would not be replayed with skipCorrupt)`
                : '') +
              '\n',
          );
        }
        ctx.problem({ code: bad.status, message: `${bad.path}: ${bad.error ?? bad.status}` }, true);
        return;
      }
      if (!json) {
        const tmp =
          temporaryFiles.length > 0 ? `, ${temporaryFiles.length} leftover temporary file(s)` : '';
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
      if (chain !== null && !chain.ok) {
        ctx.problem(
          {
            code: CliErrorCode.certificateChain,
            message: `certificate chain: ${chain.failure?.reason} at epoch ${chain.failure?.epoch}: ${chain.failure?.message}`,
          },
          true,
        );
        return;
      }
      ctx.setExitCode(EXIT_OK);
    });
}
