/**
 * The public surface is pinned: every export of `parallel-wal` and
 * `parallel-wal/replication`, with its kind, as the build has it
 * (declarations read by the TypeScript compiler, checked against what the
 * ES and CommonJS modules export at run time), equals the checked-in
 * test/package/api-surface.json. A deliberate change is made by rewriting
 * that file (`npm run build && npm run api:report`) and shows in review.
 * Needs `npm run build` first (`npm test` does it).
 */
import * as fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  type ApiSurface,
  builtSurface,
  diffSurface,
  REPO,
  readReport,
  runtimeMismatches,
  UPDATE_COMMAND,
} from '../support/api-surface.js';

/** The failure message for a build that differs from the report. */
function surfaceMessage(changes: string[]): string {
  return [
    'The package exports differ from test/package/api-surface.json (+ only in the build, - only in the report):',
    ...changes.map((line) => `  ${line}`),
    `If the change is deliberate, update the report: ${UPDATE_COMMAND}`,
  ].join('\n');
}

/**
 * The names each example file takes from a package entry: `import { a, type B } from 'x'`
 * and `const { a, b } = require('x')`, keyed by entry.
 */
function namesImportedByExamples(): Map<string, Set<string>> {
  const byEntry = new Map<string, Set<string>>();
  const dir = path.join(REPO, 'examples');
  const forms = [
    /import\s*(?:type\s*)?\{([^}]*)\}\s*from\s*'(parallel-wal[^']*)'/g,
    /const\s*\{([^}]*)\}\s*=\s*require\('(parallel-wal[^']*)'\)/g,
  ];
  for (const file of fs.readdirSync(dir).filter((f) => /\.(mjs|cjs|ts)$/.test(f))) {
    const text = fs.readFileSync(path.join(dir, file), 'utf8');
    for (const form of forms) {
      for (const [, list, entry] of text.matchAll(form)) {
        const names = byEntry.get(entry as string) ?? new Set<string>();
        for (const item of (list as string).split(',')) {
          const name = item
            .trim()
            .replace(/^type\s+/, '')
            .split(/\s+as\s+|:/)[0]
            ?.trim();
          if (name) names.add(name);
        }
        byEntry.set(entry as string, names);
      }
    }
  }
  return byEntry;
}

/** A copy of a surface with one entry's names changed. */
function edited(
  surface: ApiSurface,
  entry: string,
  change: (names: Record<string, string>) => void,
): ApiSurface {
  const copy = structuredClone(surface);
  const names = copy[entry];
  if (names === undefined) throw new Error(`no entry ${entry}`);
  change(names);
  return copy;
}

describe('the public API surface', () => {
  const report = readReport();

  it('of the build (ESM and CommonJS, declarations and modules) equals the checked-in report', () => {
    const changes = diffSurface(report, builtSurface());
    expect(changes, surfaceMessage(changes)).toEqual([]);
  });

  it('keeps internals out of the root and replication out of it', () => {
    const root = report['parallel-wal'] ?? {};
    for (const internal of [
      'EpochCoordinator',
      'InProcessLane',
      'LaneBufferState',
      'decide',
      'SealController',
      'LaneStager',
      'encodeV3SegmentHeader',
      'encodeRecordInto',
      'crc32cJs',
      'acquireLock',
      'cleanupTemporaryFiles',
      'ReplicatedWal',
      'Follower',
    ]) {
      expect(root[internal], internal).toBeUndefined();
    }
    expect(root.ParallelWal).toBe('class');
    expect(root.attachWriter).toBe('function');
    expect(root.PageStore).toBe('class');
    expect(root.ControlPlane).toBe('class');
    expect(root.WalFileSystem).toBe('interface');
    expect(report['parallel-wal/replication']?.ReplicatedWal).toBe('class');
  });

  it('is all the examples use: each name they import is a public export', () => {
    const imported = namesImportedByExamples();
    expect([...(imported.get('parallel-wal') ?? [])]).toEqual(
      expect.arrayContaining(['ParallelWal', 'PageStore', 'attachWriter', 'isWalError']),
    );
    for (const [entry, names] of imported) {
      const exported = report[entry];
      expect(exported, `examples import from ${entry}, which is no entry`).toBeDefined();
      for (const name of names) expect(exported?.[name], `${entry}: ${name}`).toBeDefined();
    }
  });

  it('reports an added export, a removed one and a changed kind, with the command that updates the report', () => {
    const added = edited(report, 'parallel-wal', (names) => {
      names.EpochCoordinator = 'class';
    });
    const removed = edited(report, 'parallel-wal/replication', (names) => {
      delete names.Follower;
    });
    const changedKind = edited(report, 'parallel-wal', (names) => {
      names.ParallelWal = 'interface';
    });
    expect(diffSurface(report, added)).toEqual(['+ parallel-wal: EpochCoordinator (class)']);
    expect(diffSurface(report, removed)).toEqual(['- parallel-wal/replication: Follower (class)']);
    expect(diffSurface(report, changedKind)).toEqual([
      '~ parallel-wal: ParallelWal: class → interface',
    ]);
    expect(diffSurface(report, { 'parallel-wal': report['parallel-wal'] ?? {} })).toEqual([
      '- entry parallel-wal/replication',
    ]);
    expect(diffSurface(report, structuredClone(report))).toEqual([]);
    const message = surfaceMessage(diffSurface(report, added));
    expect(message).toContain('+ parallel-wal: EpochCoordinator (class)');
    expect(message).toContain('npm run api:report');
  });

  it('catches a module that exports a value its declarations do not name, and the reverse', () => {
    const declared = { ParallelWal: 'class', WalWriter: 'interface', isWalError: 'function' };
    expect(
      runtimeMismatches(
        declared,
        { ParallelWal: 'function', isWalError: 'function', crc32cJs: 'function' },
        'm',
      ),
    ).toEqual(['m: crc32cJs (function) is not declared']);
    expect(runtimeMismatches(declared, { ParallelWal: 'function' }, 'm')).toEqual([
      'm: declared function isWalError is missing',
    ]);
    expect(
      runtimeMismatches(
        declared,
        { ParallelWal: 'object', isWalError: 'function', WalWriter: 'object' },
        'm',
      ),
    ).toEqual([
      'm: class ParallelWal is a object',
      'm: WalWriter is a value (object) but declared only as interface',
    ]);
  });
});
