/**
 * One owner for each on-disk byte: the control plane reads and writes segment
 * headers, record frames and trailers only through the format layer, and the
 * small shared helpers exist once.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { relabelAsVersion3 } from '../../src/control/segment-v3.js';
import { encodeSegment } from '../../src/format/segment.js';
import { record } from './helpers.js';

const srcDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src');

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith('.ts') ? [full] : [];
  });
}

function filesMatching(pattern: RegExp): string[] {
  return sourceFiles(srcDir)
    .filter((file) => pattern.test(fs.readFileSync(file, 'utf8')))
    .map((file) => path.relative(srcDir, file).split(path.sep).join('/'))
    .sort();
}

describe('one owner for each on-disk byte', () => {
  it('lays out segment headers and certificate trailers only in src/format', () => {
    const owners = filesMatching(
      /\bSEGMENT_MAGIC\b|\bCERTIFICATE_TRAILER_MAGIC\b|\bCERTIFICATE_TRAILER_PREFIX_BYTES\b|0x5057414c/i,
    );
    expect(owners.every((file) => file.startsWith('format/'))).toBe(true);
    expect(owners).toContain('format/segment.ts');
  });

  it('has one Deferred and one isU64', () => {
    expect(filesMatching(/\binterface Deferred\b|\bfunction (create)?[dD]eferred\b/)).toEqual([
      'engine/deferred.ts',
    ]);
    expect(filesMatching(/\bfunction isU64\b/)).toEqual(['format/types.ts']);
  });

  it('relabels a version-2 segment as version 3 without changing its input, even a Buffer', () => {
    const input = Buffer.from(encodeSegment(4n, [record(4n, 1n, 1), record(4n, 2n, 2)], 2));
    const before = Buffer.from(input);
    const v3 = relabelAsVersion3(input);
    expect(input).toEqual(before);
    expect(new DataView(v3.buffer, v3.byteOffset).getUint16(4, true)).toBe(3);
  });
});
