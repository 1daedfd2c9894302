/**
 * Crash injection for writeSegment: a WalFileSystem shim over the real file
 * system counts every operation and, at the k-th one, fails it — before or
 * after performing it, tearing a write in half, and then either "dying"
 * (every later operation fails too) or carrying on. For every k, listing plus
 * recovery must see the whole new segment or none of it (or, when replacing,
 * the whole old one). Power loss (lost unsynced data) is a separate harness.
 */
import * as fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { recoveryOrder } from '../../src/format/order.js';
import type { WalRecord } from '../../src/format/types.js';
import { WalIoError } from '../../src/storage/errors.js';
import { nodeFileSystem, type WalFileHandle, type WalFileSystem } from '../../src/storage/fs.js';
import { cleanupTemporaryFiles, recoverSegments } from '../../src/storage/recovery.js';
import { listSegments, writeSegment } from '../../src/storage/segment-files.js';
import { makeTempDir, recordFor, rejection } from './helpers.js';

type Mode = 'before' | 'after' | 'torn';

class InjectedFault extends Error {
  readonly code = 'EIO';
}

/** Fails operation number `failAt` (0-based) as `mode`; with `die`, every later one too. */
function faultyFs(failAt: number, mode: Mode, die: boolean): { fs: WalFileSystem; ops: string[] } {
  const ops: string[] = [];
  let dead = false;
  async function step<T>(
    name: string,
    run: () => Promise<T>,
    torn?: () => Promise<void>,
  ): Promise<T> {
    const index = ops.length;
    ops.push(name);
    if (dead) throw new InjectedFault(`${name}: process is gone`);
    if (index !== failAt) return run();
    if (die) dead = true;
    if (mode === 'before') throw new InjectedFault(`${name}: injected before`);
    if (mode === 'torn' && torn !== undefined) await torn();
    else await run();
    throw new InjectedFault(`${name}: injected after`);
  }
  const wrapHandle = (h: WalFileHandle): WalFileHandle => ({
    path: h.path,
    write: (data, position) =>
      step(
        'write',
        () => h.write(data, position),
        () => h.write(data.subarray(0, data.length >> 1), position),
      ),
    writev: (chunks, position) =>
      step(
        'writev',
        () => h.writev(chunks, position),
        async () => {
          const whole = Buffer.concat(chunks);
          await h.write(whole.subarray(0, whole.length >> 1), position);
        },
      ),
    read: (into, position, length) => step('read', () => h.read(into, position, length)),
    datasync: () => step('datasync', () => h.datasync()),
    sync: () => step('sync', () => h.sync()),
    truncate: (length) => step('truncate', () => h.truncate(length)),
    size: () => step('size', () => h.size()),
    close: () => step('close', () => h.close()),
  });
  const base = nodeFileSystem;
  const shim: WalFileSystem = {
    open: async (p, mode) => wrapHandle(await step('open', () => base.open(p, mode))),
    readFile: (p) => step('readFile', () => base.readFile(p)),
    stat: (p) => step('stat', () => base.stat(p)),
    readdir: (d) => step('readdir', () => base.readdir(d)),
    rename: (a, b) => step('rename', () => base.rename(a, b)),
    unlink: (p) => step('unlink', () => base.unlink(p)),
    mkdir: (p, o) => step('mkdir', () => base.mkdir(p, o)),
    syncDirectory: (d) => step('syncDirectory', () => base.syncDirectory(d)),
  };
  return { fs: shim, ops };
}

let tmp: ReturnType<typeof makeTempDir>;
let dbPath: string;
beforeEach(() => {
  tmp = makeTempDir();
  dbPath = path.join(tmp.dir, 'crash.db');
});
afterEach(() => tmp.remove());

const EPOCH = 4n;
const newRecords: WalRecord[] = [
  recordFor(EPOCH, { txnId: 1n, pageId: 1, fill: 0x11, size: 5000 }),
  recordFor(EPOCH, { txnId: 2n, pageId: 2, fill: 0x22, size: 3000 }),
];
const oldRecords: WalRecord[] = [recordFor(EPOCH, { txnId: 9n, pageId: 7, fill: 0x99, size: 700 })];

async function operationsOfOneWrite(): Promise<string[]> {
  const probe = faultyFs(Number.POSITIVE_INFINITY, 'before', false);
  await writeSegment(dbPath, { epoch: EPOCH, records: newRecords }, { fs: probe.fs });
  fs.rmSync(tmp.dir, { recursive: true, force: true });
  fs.mkdirSync(tmp.dir);
  return probe.ops;
}

/** What recovery sees afterwards, with the real file system. */
async function recoveredRecords(): Promise<WalRecord[] | null> {
  const listed = await listSegments(dbPath);
  if (listed.length === 0) return null;
  expect(listed.map((s) => s.epoch)).toEqual([EPOCH]);
  const result = await recoverSegments(dbPath);
  expect(result.epochs).toEqual([EPOCH]);
  return result.records;
}

describe('writeSegment under injected crashes', () => {
  it('performs open, writev, datasync, close, rename, directory fsync in that order', async () => {
    expect(await operationsOfOneWrite()).toEqual([
      'open',
      'writev',
      'datasync',
      'close',
      'rename',
      'syncDirectory',
    ]);
  });

  for (const mode of ['before', 'after', 'torn'] as const) {
    for (const die of [true, false]) {
      for (const replacing of [false, true]) {
        const label = `${mode === 'torn' ? 'a torn' : `a failure ${mode}`} operation k, ${die ? 'then the process dies' : 'then error handling runs'}, ${replacing ? 'replacing an old segment' : 'on an empty directory'}`;
        it(`leaves the whole segment or none of it: ${label}`, async () => {
          const total = (await operationsOfOneWrite()).length;
          for (let k = 0; k < total; k++) {
            fs.rmSync(tmp.dir, { recursive: true, force: true });
            fs.mkdirSync(tmp.dir);
            if (replacing) await writeSegment(dbPath, { epoch: EPOCH, records: oldRecords });
            const faulty = faultyFs(k, mode, die);
            const error = await rejection(
              writeSegment(dbPath, { epoch: EPOCH, records: newRecords }, { fs: faulty.fs }),
            );
            // Every failure surfaces as a typed error naming the operation.
            expect(error, `k=${k}`).toBeInstanceOf(WalIoError);
            expect((error as WalIoError).errno).toBe('EIO');

            const seen = await recoveredRecords();
            const whole = recoveryOrder(newRecords);
            if (seen === null) {
              expect(replacing, `k=${k}: the old segment vanished`).toBe(false);
            } else if (replacing && seen.length === oldRecords.length) {
              expect(seen).toEqual(oldRecords);
            } else {
              expect(seen, `k=${k}`).toEqual(whole);
            }
            // A failure before the rename must never expose the new data.
            const renamedAt = faulty.ops.indexOf('rename');
            if (k < renamedAt || (k === renamedAt && mode === 'before')) {
              expect(seen === null || seen.length === oldRecords.length, `k=${k}`).toBe(true);
            }
            const left = fs.readdirSync(tmp.dir);
            if (!die) {
              // The error path removed its temporary file by itself.
              expect(
                left.every((n) => n.startsWith('crash.db-wal-seg-')),
                `k=${k}: ${left.join()}`,
              ).toBe(true);
            }
            // Whatever else is left over is only a temporary file, and cleanup removes it.
            await cleanupTemporaryFiles(dbPath);
            const names = fs.readdirSync(tmp.dir);
            expect(names.length, names.join()).toBeLessThanOrEqual(1);
            expect(
              names.every((n) => n.startsWith('crash.db-wal-seg-')),
              names.join(),
            ).toBe(true);
          }
        });
      }
    }
  }
});
