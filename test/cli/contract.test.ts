/**
 * What scripts rely on: `pwal --version`, `--json` on every command with
 * errors as one JSON line on stderr, the exit statuses 0 / 1 / 2 (and their
 * description in `--help`), a progress line only for a person at a terminal,
 * and `pwal demo` saying where it wrote and what it deleted.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { type CliIo, EXIT_FAILURE, EXIT_OK, EXIT_USAGE } from '../../src/cli/context.js';
import { runCli } from '../../src/cli/program.js';
import { ProgressLine, progressBar, progressWanted } from '../../src/cli/progress.js';
import { listSegments, segmentPath, writeSegment } from '../../src/storage/segment-files.js';
import { PageStore } from '../../src/store/page-store.js';
import { recordFor } from '../storage/helpers.js';
import { runBuiltCli } from '../support/built-cli.js';
import { runCliCaptured as run } from '../support/cli.js';
import { useTempDb } from '../support/temp-db.js';

const REPO = path.resolve(import.meta.dirname, '../..');

let dir: string;
let db: string;
useTempDb('app.db', (paths) => {
  dir = paths.dir;
  db = paths.db;
});

async function writeSegments(count: number): Promise<void> {
  for (let epoch = 1n; epoch <= BigInt(count); epoch++) {
    await writeSegment(db, { epoch, records: [recordFor(epoch)] }, { fsync: 'off' });
  }
}

/** The subcommands listed by `pwal --help`. */
async function commandNames(): Promise<string[]> {
  const { out } = await run('--help');
  const section = out.slice(out.indexOf('Commands:'), out.indexOf('Exit status:'));
  return [...section.matchAll(/^ {2}([a-z]+)/gm)]
    .map((m) => m[1]!)
    .filter((name) => name !== 'help');
}

/** The one JSON error line a failed `--json` run printed on stderr. */
function jsonError(err: string): { code: string; message: string } {
  expect(err.endsWith('\n')).toBe(true);
  expect(err.trim().split('\n')).toHaveLength(1);
  const doc = JSON.parse(err) as { error: { code: string; message: string } };
  expect(Object.keys(doc)).toEqual(['error']);
  expect(Object.keys(doc.error).sort()).toEqual(['code', 'message']);
  return doc.error;
}

describe('pwal --version', () => {
  it('prints the version of package.json from the built binary', () => {
    const manifest = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8'));
    for (const flag of ['--version', '-V']) {
      const result = runBuiltCli([flag]);
      expect(result.status).toBe(0);
      expect(result.stdout).toBe(`${manifest.version}\n`);
      expect(result.stderr).toBe('');
    }
  });
});

describe('pwal --help', () => {
  it('documents the exit statuses and the JSON error line, for the program and each command', async () => {
    const names = await commandNames();
    expect(names).toEqual(
      expect.arrayContaining(['inspect', 'dump', 'verify', 'checkpoint', 'recover', 'demo']),
    );
    for (const argv of [['--help'], ...names.map((n) => [n, '--help'])]) {
      const { code, out } = await run(...argv);
      expect(code, argv.join(' ')).toBe(EXIT_OK);
      expect(out, argv.join(' ')).toMatch(
        /Exit status:\n {2}0 {2}ok\n {2}1 {2}a problem was found/,
      );
      expect(out, argv.join(' ')).toMatch(/\n {2}2 {2}usage error/);
      expect(out, argv.join(' ')).toContain('{"error":{"code":"ERR_…","message":"…"}}');
    }
  });

  it('lists --json for every command', async () => {
    for (const name of await commandNames()) {
      const { out } = await run(name, '--help');
      expect(out, name).toMatch(/^ {2}--json\s/m);
    }
  });
});

describe('--json errors and exit statuses', () => {
  it('gives every command a usage error as JSON on stderr with exit 2', async () => {
    for (const name of await commandNames()) {
      const { code, out, err } = await run(name, '--no-such-flag', '--json');
      expect(code, name).toBe(EXIT_USAGE);
      expect(out, name).toBe('');
      // Commands with required options report the first one missing instead.
      expect(jsonError(err).code, name).toBe('ERR_USAGE');
      expect(jsonError(err).message, name).toMatch(
        /^(unknown option '--no-such-flag'|required option '.*' not specified)$/,
      );
    }
    const none = await run('--json');
    expect(none.code).toBe(EXIT_USAGE);
    expect(jsonError(none.err).code).toBe('ERR_USAGE');
  });

  it('reports bad option values as usage errors (exit 2), in JSON with --json', async () => {
    for (const argv of [
      ['checkpoint', db, '--create', '--page-size', '1000'],
      ['recover', db, '--page-size', 'x'],
      ['demo', '--seconds', '0'],
      ['demo', '--seconds', 'soon'],
      ['demo', '--fsync', 'maybe'],
      ['follow', db, '--from', 'nats://127.0.0.1:1', '--stream', 'S', '--mode', 'other'],
      ['follow', db, '--from', 'nats://127.0.0.1:1', '--stream', 'S', '--until-epoch', '-1'],
      ['restore', db, '--from', 'nats://127.0.0.1:1', '--stream', 'S', '--page-size', '3'],
      ['snapshot', db, '--to', 'nats://127.0.0.1:1', '--keep', '0'],
    ]) {
      const text = await run(...argv);
      expect(text.code, argv.join(' ')).toBe(EXIT_USAGE);
      expect(text.err, argv.join(' ')).toMatch(/\S/);
      const json = await run(...argv, '--json');
      expect(json.code, argv.join(' ')).toBe(EXIT_USAGE);
      expect(jsonError(json.err).code, argv.join(' ')).toMatch(/^ERR_USAGE$/);
    }
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('gives a missing database as a JSON error with exit 1 for every command that reads one', async () => {
    for (const name of ['verify', 'inspect', 'checkpoint', 'recover']) {
      const { code, out, err } = await run(name, db, '--json');
      expect(code, name).toBe(EXIT_FAILURE);
      expect(out, name).toBe('');
      expect(jsonError(err), name).toEqual({
        code: 'ERR_DATABASE_NOT_FOUND',
        message: expect.stringContaining(`no database at ${db}`),
      });
    }
    const snapshot = await run(
      'snapshot',
      db,
      '--to',
      'nats://127.0.0.1:1',
      '--stream',
      'S',
      '--json',
    );
    expect(snapshot.code).toBe(EXIT_FAILURE);
    expect(jsonError(snapshot.err).code).toBe('ERR_DATABASE_NOT_FOUND');
    const dump = await run('dump', segmentPath(db, 1n), '--json');
    expect(dump.code).toBe(EXIT_FAILURE);
    expect(jsonError(dump.err).code).toBe('ERR_IO');
    const trace = await run('trace', path.join(dir, 'none.jsonl'), '--json');
    expect(trace.code).toBe(EXIT_FAILURE);
    expect(jsonError(trace.err).code).toBe('ERR_IO');
    const restore = await run(
      'restore',
      db,
      '--from',
      'nats://127.0.0.1:1',
      '--stream',
      'S',
      '--json',
    );
    expect(restore.code).toBe(EXIT_FAILURE);
    expect(jsonError(restore.err).code).toBe('ERR_REPLICATION_UNAVAILABLE');
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('text mode says the same in one line, never a stack trace', async () => {
    const { code, err } = await run('recover', db);
    expect(code).toBe(EXIT_FAILURE);
    expect(err).toBe(
      `pwal: no database at ${db}: no database file, store header or segment files (ERR_DATABASE_NOT_FOUND)\n`,
    );
  });
});

describe('pwal verify --json', () => {
  it('prints one document: ok with the segment rows, exit 0', async () => {
    await writeSegments(3);
    const { code, out, err } = await run('verify', db, '--json');
    expect(code).toBe(EXIT_OK);
    expect(err).toBe('');
    const doc = JSON.parse(out);
    expect(doc).toMatchObject({
      db,
      ok: true,
      segmentCount: 3,
      records: 3,
      firstEpoch: '1',
      lastEpoch: '3',
      failure: null,
      certificates: null,
      temporaryFiles: [],
    });
    expect(doc.segments.map((s: { status: string }) => s.status)).toEqual(['ok', 'ok', 'ok']);
  });

  it('names the first bad segment in the document and on stderr, exit 1', async () => {
    await writeSegments(3);
    fs.writeFileSync(segmentPath(db, 2n), Buffer.alloc(3));
    const { code, out, err } = await run('verify', db, '--json');
    expect(code).toBe(EXIT_FAILURE);
    const doc = JSON.parse(out);
    expect(doc.ok).toBe(false);
    expect(doc.failure).toMatchObject({
      path: segmentPath(db, 2n),
      code: expect.stringMatching(/^ERR_SEGMENT_/),
      validBefore: 1,
      laterSegments: 1,
    });
    const error = jsonError(err);
    expect(error.code).toBe(doc.failure.code);
    expect(error.message).toContain(segmentPath(db, 2n));
  });
});

describe('the progress line', () => {
  it('is wanted only when stdout and stderr are terminals, TERM is not dumb, and --json is off', () => {
    const tty = { stdoutIsTTY: true, stderrIsTTY: true, term: 'xterm-256color' };
    expect(progressWanted(tty, false)).toBe(true);
    expect(progressWanted({ ...tty, term: undefined }, false)).toBe(true);
    expect(progressWanted(tty, true)).toBe(false);
    expect(progressWanted({ ...tty, stdoutIsTTY: false }, false)).toBe(false);
    expect(progressWanted({ ...tty, stderrIsTTY: false }, false)).toBe(false);
    expect(progressWanted({ ...tty, term: 'dumb' }, false)).toBe(false);
    expect(progressWanted({}, false)).toBe(false);
  });

  it('draws the first state, throttles the rest, always draws the last, and erases itself', () => {
    const writes: string[] = [];
    let now = 0;
    const line = new ProgressLine(
      (t) => writes.push(t),
      () => now,
    );
    const p = line.start('verify x');
    p.update(0, 4);
    p.update(1, 4); // same instant: throttled
    now = 1_000;
    p.update(2, 4);
    p.update(4, 4); // the last state: drawn at once
    p.end();
    p.update(4, 4); // after end: nothing
    expect(writes).toEqual([
      `\r\x1b[Kverify x ${progressBar(0, 4)} 0/4`,
      `\r\x1b[Kverify x ${progressBar(2, 4)} 2/4`,
      `\r\x1b[Kverify x ${progressBar(4, 4)} 4/4`,
      '\r\x1b[K',
    ]);
    expect(progressBar(1, 4, 8)).toBe('[##------]  25%');
  });

  /** Runs the CLI in-process as if at a terminal (or not), capturing both streams. */
  async function atTerminal(terminal: Partial<CliIo>, ...argv: string[]) {
    let out = '';
    let err = '';
    const io: CliIo = {
      stdout: (t) => {
        out += t;
      },
      stderr: (t) => {
        err += t;
      },
      ...terminal,
    };
    const code = await runCli(argv, io);
    return { code, out, err };
  }

  it('shows on a terminal, erased before the result, and never reaches stdout', async () => {
    await writeSegments(3);
    const shown = await atTerminal({ stdoutIsTTY: true, stderrIsTTY: true }, 'verify', db);
    expect(shown.code).toBe(EXIT_OK);
    expect(shown.err).toContain(`\r\x1b[Kverify ${db} [`);
    expect(shown.err).toContain('3/3 segment(s)');
    expect(shown.err.endsWith('\r\x1b[K')).toBe(true);
    expect(shown.out).toMatch(/^ok: 3 segment\(s\)/);
  });

  it('stays silent when piped, with --json, or on a dumb terminal', async () => {
    await writeSegments(3);
    for (const [terminal, argv] of [
      [{}, ['verify', db]],
      [{ stdoutIsTTY: false, stderrIsTTY: true }, ['verify', db]],
      [{ stdoutIsTTY: true, stderrIsTTY: true }, ['verify', db, '--json']],
      [{ stdoutIsTTY: true, stderrIsTTY: true, term: 'dumb' }, ['verify', db]],
    ] as const) {
      const { code, err } = await atTerminal(terminal, ...argv);
      expect(code, JSON.stringify(terminal)).toBe(EXIT_OK);
      expect(err, JSON.stringify(terminal)).toBe('');
    }
    // A failing --json run at a terminal: the JSON error line and nothing else.
    const failed = await atTerminal(
      { stdoutIsTTY: true, stderrIsTTY: true },
      'recover',
      db,
      '--json',
    );
    expect(failed.code).toBe(EXIT_FAILURE);
    expect(jsonError(failed.err).code).toMatch(/^ERR_/);
  });

  it('counts the segments a recovery reads on a terminal', async () => {
    const store = await PageStore.open(db, { pageSize: 512, autoCheckpoint: false });
    for (let i = 1; i <= 3; i++) await store.commit([{ pageNumber: i, data: new Uint8Array(512) }]);
    await store.close();
    const segments = (await listSegments(db)).length;
    expect(segments).toBeGreaterThan(0);
    const { code, out, err } = await atTerminal(
      { stdoutIsTTY: true, stderrIsTTY: true },
      'recover',
      db,
    );
    expect(code).toBe(EXIT_OK);
    expect(err).toContain(
      `\r\x1b[Krecover ${db} ${progressBar(0, segments)} 0/${segments} segment(s)`,
    );
    expect(err).toContain(`${progressBar(segments, segments)} ${segments}/${segments} segment(s)`);
    expect(err.endsWith('\r\x1b[K')).toBe(true);
    expect(out).toMatch(/^recovered /);
  });

  it('is erased when verify finds a bad segment', async () => {
    await writeSegments(2);
    fs.writeFileSync(segmentPath(db, 2n), Buffer.alloc(3));
    const { code, err } = await atTerminal({ stdoutIsTTY: true, stderrIsTTY: true }, 'verify', db);
    expect(code).toBe(EXIT_FAILURE);
    const erase = '\r\x1b[K';
    expect(err).toContain(`${erase}verify ${db} [`);
    expect(err.endsWith(erase)).toBe(true);
  });
});

describe('pwal demo', () => {
  const quick = ['--seconds', '1', '--committers', '4', '--workers', '0'];

  it('says where it writes and what it deletes: its own temporary directory', () => {
    const result = runBuiltCli(['demo', ...quick]);
    expect(result.status).toBe(0);
    const into = /into (\S+)\/demo\.db\n/.exec(result.stdout);
    expect(into).not.toBeNull();
    const tempDir = into![1]!;
    expect(result.stdout).toMatch(
      new RegExp(
        `\\ndeleted ${tempDir} \\(\\d+ file\\(s\\), \\d+ bytes\\); pass --keep to keep it\\n$`,
      ),
    );
    expect(fs.existsSync(tempDir)).toBe(false);
  });

  it('keeps it with --keep, and reports as one JSON document with --json', () => {
    const result = runBuiltCli(['demo', ...quick, '--keep', '--json']);
    expect(result.status).toBe(0);
    expect(result.stderr).toBe('');
    const report = JSON.parse(result.stdout);
    try {
      expect(report).toMatchObject({
        verified: true,
        problems: [],
        cleanup: { temporary: true, removed: false },
      });
      expect(report.dbPath).toBe(path.join(report.cleanup.dir, 'demo.db'));
      expect(fs.readdirSync(report.cleanup.dir).length).toBe(report.cleanup.files);
      expect(report.cleanup.files).toBeGreaterThan(0);
    } finally {
      fs.rmSync(report.cleanup.dir, { recursive: true, force: true });
    }
  });

  it('never deletes a directory it was given', () => {
    const result = runBuiltCli(['demo', dir, ...quick]);
    expect(result.status).toBe(0);
    expect(result.stdout).toContain(`into ${path.join(dir, 'demo.db')}\n`);
    expect(result.stdout).toMatch(/\ndeleted nothing: the demo database stays in .*\n$/);
    expect(fs.readdirSync(dir).some((n) => n.startsWith('demo.db-wal-seg-'))).toBe(true);
  });
});
