/**
 * `pwal dump <segment-file> [--json] [--images length|hex]`: the header, then
 * one line per record (JSON lines with `--json`; u64 fields as decimal
 * strings). Exits 1 if the file is not a valid segment, after printing as
 * much as could be decoded (the header, when it is sound). A reader that
 * stops early (`| head`) ends the dump quietly.
 */
import { type Command, Option } from 'commander';
import { decodeSegmentHeader } from '../format/segment.js';
import type { WalRecord } from '../format/types.js';
import { decodeFile, readWholeFile } from '../storage/segment-files.js';
import { type CliContext, EXIT_OK, jsonLine } from './context.js';

type ImageMode = 'length' | 'hex';

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

function recordJson(index: number, r: WalRecord, images: ImageMode): Record<string, unknown> {
  const out: Record<string, unknown> = {
    type: 'record',
    index,
    txnId: r.txnToken.id,
    txnEpoch: r.txnToken.epoch,
    epoch: r.epoch,
    pageId: r.pageId,
    beginSeq: r.beginSeq,
    endSeq: r.endSeq,
    beforeImageLength: r.beforeImage.length,
    afterImageLength: r.afterImage.length,
  };
  if (images === 'hex') {
    out.beforeImage = hex(r.beforeImage);
    out.afterImage = hex(r.afterImage);
  }
  return out;
}

function recordText(index: number, r: WalRecord, images: ImageMode): string {
  const image = (b: Uint8Array) => (images === 'hex' ? `0x${hex(b)}` : `${b.length}B`);
  return (
    `#${index} txn=${r.txnToken.id}/${r.txnToken.epoch} epoch=${r.epoch} page=${r.pageId} ` +
    `begin=${r.beginSeq} end=${r.endSeq === null ? 'none' : r.endSeq} ` +
    `before=${image(r.beforeImage)} after=${image(r.afterImage)}\n`
  );
}

/** Adds the `dump` subcommand to `program`. */
export function registerDump(program: Command, ctx: CliContext): void {
  program
    .command('dump')
    .description('print the header and every record of one segment file')
    .argument('<segment-file>', 'path of a segment file (<db>-wal-seg-<epoch>)')
    .option('--json', 'print JSON lines (u64 fields as decimal strings)')
    .addOption(
      new Option('--images <mode>', 'show images as their length or in hex')
        .choices(['length', 'hex'])
        .default('length'),
    )
    .action(async (file: string, options: { json?: boolean; images: ImageMode }) => {
      const bytes = await readWholeFile(file, ctx.fs);
      // Print the header first when it is sound, so a damaged file still shows what it claims.
      try {
        const h = decodeSegmentHeader(bytes);
        ctx.io.stdout(
          options.json
            ? jsonLine({
                type: 'header',
                path: file,
                bytes: bytes.length,
                version: h.version,
                epoch: h.epoch,
                recordCount: h.recordCount,
              })
            : `segment ${file}: version ${h.version}, epoch ${h.epoch}, ${h.recordCount} records, ${bytes.length} bytes\n`,
        );
      } catch {
        // decodeFile reports it.
      }
      const { records } = decodeFile(file, bytes);
      for (const [i, r] of records.entries()) {
        // Nobody reads any more (`| head`): stop quietly.
        if (ctx.io.stdoutClosed?.() === true) break;
        ctx.io.stdout(
          options.json
            ? jsonLine(recordJson(i, r, options.images))
            : recordText(i, r, options.images),
        );
      }
      ctx.setExitCode(EXIT_OK);
    });
}
