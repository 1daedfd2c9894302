import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { nodeFileSystem } from '../../src/storage/fs.js';
import { FaultyFileSystem } from '../support/faulty-fs.js';
import { hasFsCode } from '../support/fs-errors.js';
import { seededRng } from '../support/rng.js';
import { SimulatedFileSystem } from '../support/simulated-fs.js';

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array | null) => (b === null ? null : new TextDecoder().decode(b));

async function codeOf(promise: Promise<unknown>): Promise<string | null> {
  return promise.then(
    () => null,
    (e: unknown) => ((e as { code?: string }).code ?? 'no code') as string,
  );
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

describe('faulty file system', () => {
  it('fails exactly the n-th call of the chosen kind with a Node-shaped error', async () => {
    const sim = new SimulatedFileSystem();
    const faulty = new FaultyFileSystem(sim, [{ kind: 'write', nth: 2, code: 'EIO' }]);
    const h = await faulty.open('/f', 'createExclusive');
    await h.write(enc('a'), 0);
    const error = await h.write(enc('b'), 1).then(
      () => null,
      (e: unknown) => e,
    );
    expect(hasFsCode(error, 'EIO')).toBe(true);
    expect((error as { syscall: string }).syscall).toBe('write');
    expect((error as { path: string }).path).toBe('/f');
    await h.write(enc('c'), 1);
    expect(dec(await faulty.readFile('/f'))).toBe('ac');
    expect(faulty.fired).toEqual([{ kind: 'write', path: '/f', code: 'EIO', call: 2 }]);
  });

  it('fails every call from the n-th on when asked to, until healed', async () => {
    const faulty = new FaultyFileSystem(new SimulatedFileSystem(), [
      { kind: 'open', nth: 2, times: Number.POSITIVE_INFINITY, code: 'ENOSPC' },
    ]);
    await (await faulty.open('/a', 'createExclusive')).close();
    expect(await codeOf(faulty.open('/b', 'createExclusive'))).toBe('ENOSPC');
    expect(await codeOf(faulty.open('/c', 'createExclusive'))).toBe('ENOSPC');
    faulty.heal();
    expect(await codeOf(faulty.open('/c', 'createExclusive').then((h) => h.close()))).toBe(null);
  });

  it('counts only calls on matching paths, and fsync matches datasync and sync', async () => {
    const faulty = new FaultyFileSystem(new SimulatedFileSystem(), [
      { kind: 'fsync', nth: 2, path: /seg/ },
    ]);
    const other = await faulty.open('/other', 'createExclusive');
    const seg = await faulty.open('/x-seg-1', 'createExclusive');
    await other.datasync();
    await other.sync();
    await seg.datasync();
    expect(await codeOf(seg.sync())).toBe('EIO');
    expect(await codeOf(seg.datasync())).toBe(null);
  });

  it('fails each kind of call: rename, unlink, readdir, mkdir, syncDirectory, writev, truncate, close, stat, readFile, read', async () => {
    const sim = new SimulatedFileSystem();
    sim.writeFileSync('/f', enc('content'));
    const faulty = new FaultyFileSystem(sim);
    const cases: [Parameters<FaultyFileSystem['inject']>[0]['kind'], () => Promise<unknown>][] = [
      ['rename', () => faulty.rename('/f', '/g')],
      ['unlink', () => faulty.unlink('/f')],
      ['readdir', () => faulty.readdir('/')],
      ['mkdir', () => faulty.mkdir('/d')],
      ['syncDirectory', () => faulty.syncDirectory('/')],
      ['stat', () => faulty.stat('/f')],
      ['readFile', () => faulty.readFile('/f')],
      ['writev', async () => (await faulty.open('/f', 'readWrite')).writev([enc('z')], 0)],
      ['truncate', async () => (await faulty.open('/f', 'readWrite')).truncate(0)],
      ['read', async () => (await faulty.open('/f', 'read')).read(new Uint8Array(4), 0)],
      ['close', async () => (await faulty.open('/f', 'read')).close()],
    ];
    for (const [kind, call] of cases) {
      faulty.inject({ kind, code: 'EIO' });
      expect(await codeOf(call()), String(kind)).toBe('EIO');
    }
    // None of the failed calls changed anything.
    expect(await sim.readdir('/')).toEqual(['f']);
    expect(dec(sim.readFileSync('/f'))).toBe('content');
  });

  it('writes a prefix before failing a short write', async () => {
    const sim = new SimulatedFileSystem();
    const faulty = new FaultyFileSystem(sim, [{ kind: 'writev', code: 'ENOSPC', partialBytes: 5 }]);
    const h = await faulty.open('/f', 'createExclusive');
    expect(await codeOf(h.writev([enc('abc'), enc('defgh')], 0))).toBe('ENOSPC');
    expect(dec(sim.readFileSync('/f'))).toBe('abcde');
  });

  it('reproduces fsyncgate: the failed sync drops the data and the retry "succeeds"', async () => {
    const sim = new SimulatedFileSystem();
    sim.mkdirSync('/db');
    sim.writeFileSync('/db/f', enc('old!'));
    const faulty = new FaultyFileSystem(sim, [{ kind: 'fsync', dropDirtyData: true }]);
    const h = await faulty.open('/db/f', 'readWrite');
    await h.write(enc('new!'), 0);
    expect(await codeOf(h.datasync())).toBe('EIO');
    expect(await codeOf(h.datasync())).toBe(null);
    expect(dec(await faulty.readFile('/db/f'))).toBe('new!');
    for (let seed = 0; seed < 20; seed++) {
      expect(dec(sim.crashImage(seededRng(seed)).readFileSync('/db/f'))).toBe('old!');
    }
  });

  it('wraps the real file system too: a failed rename leaves the source in place', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
    dirs.push(dir);
    const faulty = new FaultyFileSystem(nodeFileSystem, [{ kind: 'rename', code: 'EIO' }]);
    const h = await faulty.open(path.join(dir, 'a'), 'createExclusive');
    await h.write(enc('x'), 0);
    await h.close();
    expect(await codeOf(faulty.rename(path.join(dir, 'a'), path.join(dir, 'b')))).toBe('EIO');
    expect(fs.readdirSync(dir)).toEqual(['a']);
    await faulty.rename(path.join(dir, 'a'), path.join(dir, 'b'));
    expect(fs.readdirSync(dir)).toEqual(['b']);
  });
});
