/**
 * Hostile directories for recovery and open, and hostile argument vectors for
 * the CLI, on the simulated disk. Shared by `recovery.fuzz.test.ts` (CI) and
 * `scripts/fuzz.ts` (long run).
 *
 * A directory holds the database's segments (valid, mutated, renamed to the
 * wrong epoch, upper-case duplicates), its temporary files, and files the log
 * does not own (other databases' segments, names that merely look like
 * segments, a 17-hex-digit epoch that overflows u64). Oracle:
 * - `recoverSegments` (default) returns every listed segment or throws a typed
 *   error: it never silently drops one;
 * - with `skipCorrupt` it never throws, replays a prefix and reports the rest;
 * - `ParallelWal.open` opens or throws a typed error; an opened log numbers
 *   after every file on disk; nothing the log does not own is changed or deleted;
 * - the CLI returns 0/1/2 and never reports an "unexpected error".
 */
import { runCli } from '../../src/cli/program.js';
import { ParallelWal } from '../../src/engine/wal.js';
import { WalError } from '../../src/errors.js';
import { recoverSegments } from '../../src/storage/recovery.js';
import { listSegments, segmentPath } from '../../src/storage/segment-files.js';
import { pick, type Rng, randBytes, randInt } from '../support/rng.js';
import { SimulatedFileSystem } from '../support/simulated-fs.js';
import { FuzzViolation, hostileSegment, validSegment } from './fuzz-core.js';

export const FUZZ_DIR = '/data';
export const FUZZ_DB = '/data/app.db';

function hex16(epoch: bigint): string {
  return epoch.toString(16).padStart(16, '0');
}

/** Names the log does not own: it must never delete or change them. */
export function foreignNames(rng: Rng): string[] {
  return [
    'other.db-wal-seg-0000000000000001',
    `app.db-wal-seg-1${'0'.repeat(16)}`, // 17 hex digits: epoch overflows u64
    'app.db-wal-seg-00000000000000zz',
    'app.db-wal-seg-',
    'app.db-wal-seg-0000000000000001.bak',
    'xapp.db-wal-seg-0000000000000002',
    'app.db',
    `notes-${randInt(rng, 0, 999)}.txt`,
  ].filter(() => rng() < 0.6);
}

/** Builds a hostile database directory; returns it with the names it put there. */
export function hostileDirectory(rng: Rng): {
  fs: SimulatedFileSystem;
  foreign: Map<string, Uint8Array>;
} {
  const fs = new SimulatedFileSystem();
  fs.mkdirSync(FUZZ_DIR);
  const count = randInt(rng, 0, 5);
  let epoch = BigInt(randInt(rng, 0, 3));
  for (let i = 0; i < count; i++) {
    const valid = validSegment(rng);
    // Re-encode for this epoch most of the time, so that names and headers agree.
    let bytes = valid.bytes;
    if (rng() < 0.7) {
      bytes = bytes.slice();
      new DataView(bytes.buffer).setBigUint64(8, epoch, true);
      // Records carry their epoch too; a mismatch is one of the hostile cases.
    }
    if (rng() < 0.4) bytes = hostileSegment(rng);
    const nameEpoch = rng() < 0.1 ? epoch + 1n : epoch;
    const name = `app.db-wal-seg-${rng() < 0.05 ? hex16(nameEpoch).toUpperCase() : hex16(nameEpoch)}`;
    fs.writeFileSync(`${FUZZ_DIR}/${name}`, bytes);
    epoch += BigInt(randInt(rng, 1, 3));
  }
  if (rng() < 0.3)
    fs.writeFileSync(`${FUZZ_DIR}/app.db-wal-tmp-${hex16(epoch)}-abcdef012345`, randBytes(rng, 50));
  if (rng() < 0.2) fs.mkdirSync(`${FUZZ_DIR}/app.db-wal-seg-${hex16(epoch + 10n)}`);
  const foreign = new Map<string, Uint8Array>();
  for (const name of foreignNames(rng)) {
    const bytes = rng() < 0.5 ? validSegment(rng).bytes : randBytes(rng, randInt(rng, 0, 64));
    fs.writeFileSync(`${FUZZ_DIR}/${name}`, bytes);
    foreign.set(name, bytes);
  }
  return { fs, foreign };
}

function typed(error: unknown, what: string): void {
  if (!(error instanceof WalError))
    throw new FuzzViolation(`${what} threw an untyped error: ${String(error)}`, new Uint8Array(0));
}

function sameBytes(a: Uint8Array | null, b: Uint8Array): boolean {
  return a !== null && a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * Checks recovery, open and cleanup-free reopening on one hostile directory.
 * @returns whether the default (fail-closed) open accepted the directory.
 */
export async function checkHostileDirectory(rng: Rng): Promise<'opened' | 'refused'> {
  const { fs, foreign } = hostileDirectory(rng);
  const before = new Map<string, Uint8Array>();
  for (const name of fs.listSync(FUZZ_DIR) ?? []) {
    const bytes = fs.readFileSync(`${FUZZ_DIR}/${name}`);
    if (bytes !== null) before.set(name, bytes);
  }
  let listed: { epoch: bigint; path: string }[] | null = null;
  try {
    listed = await listSegments(FUZZ_DB, { fs });
  } catch (error) {
    typed(error, 'listSegments');
  }
  try {
    const result = await recoverSegments(FUZZ_DB, { fs });
    if (listed !== null && result.epochs.length !== listed.length) {
      throw new FuzzViolation(
        `default recovery returned ${result.epochs.length} of ${listed.length} segments without an error`,
        new Uint8Array(0),
      );
    }
  } catch (error) {
    if (error instanceof FuzzViolation) throw error;
    typed(error, 'recoverSegments');
  }
  try {
    const lenient = await recoverSegments(FUZZ_DB, { fs, skipCorrupt: true });
    if (listed !== null && lenient.epochs.length + lenient.partialSegments.length < listed.length) {
      throw new FuzzViolation('skipCorrupt recovery lost track of segments', new Uint8Array(0));
    }
  } catch (error) {
    if (error instanceof FuzzViolation) throw error;
    typed(error, 'recoverSegments(skipCorrupt)');
  }
  let outcome: 'opened' | 'refused' = 'refused';
  for (const skipCorrupt of [false, true]) {
    let wal: ParallelWal | null = null;
    try {
      wal = await ParallelWal.open(FUZZ_DB, { fs, skipCorrupt });
    } catch (error) {
      typed(error, `ParallelWal.open(skipCorrupt=${skipCorrupt})`);
      continue;
    }
    if (!skipCorrupt) outcome = 'opened';
    try {
      const r = await wal.commit({
        txnToken: { id: 1n, epoch: 0 },
        frames: [{ pageNumber: 1, pageData: new Uint8Array([1, 2, 3]), dbSizeIfCommit: 1 }],
      });
      // The new segment must not have replaced anything that was there.
      const name = segmentPath(FUZZ_DB, r.epoch).slice(FUZZ_DIR.length + 1);
      if (before.has(name) || before.has(name.toUpperCase())) {
        throw new FuzzViolation(
          `commit reused the name of existing file ${name}`,
          new Uint8Array(0),
        );
      }
    } catch (error) {
      if (error instanceof FuzzViolation) throw error;
      typed(error, 'commit on a reopened hostile log');
    } finally {
      await wal.close();
    }
  }
  // Nothing the log does not own was touched, and no segment was deleted.
  for (const [name, bytes] of before) {
    const owned =
      /^app\.db-wal-tmp-[0-9a-f]{16}-[0-9a-f]{12}$/.test(name) || name === 'app.db.lock';
    if (owned) continue;
    if (
      !sameBytes(fs.readFileSync(`${FUZZ_DIR}/${name}`), bytes) &&
      fs.listSync(`${FUZZ_DIR}/${name}`) === null
    ) {
      throw new FuzzViolation(
        `open changed or deleted ${name}${foreign.has(name) ? ' (not owned by the log)' : ''}`,
        bytes,
      );
    }
  }
  return outcome;
}

const CLI_WORDS = [
  'inspect',
  'dump',
  'verify',
  'trace',
  'checkpoint',
  'recover',
  'bogus',
  '',
  '-',
  '--',
];
const CLI_OPTIONS = [
  '--json',
  '--images',
  '--help',
  '-h',
  '--version',
  '--skip-corrupt',
  '--page-size',
  '--until-epoch',
  '--nope',
  '--json=1',
  '-x',
];
const CLI_VALUES = [
  '0',
  '-1',
  '4096',
  '99999999999999999999999',
  'NaN',
  '1e3',
  '0x10',
  ' ',
  '\u0000',
  'é',
  '../../etc/passwd',
];

/** A hostile argument vector for the read-only subcommands (no network, no writes). */
export function hostileArgv(rng: Rng, paths: readonly string[]): string[] {
  const argv: string[] = [];
  if (rng() < 0.9) argv.push(pick(rng, ['inspect', 'dump', 'verify', 'trace']));
  const n = randInt(rng, 0, 5);
  for (let i = 0; i < n; i++) {
    const r = rng();
    if (r < 0.35) argv.push(pick(rng, paths));
    else if (r < 0.6) argv.push(pick(rng, CLI_OPTIONS));
    else if (r < 0.75) argv.push(pick(rng, CLI_VALUES));
    else if (r < 0.85) argv.push(pick(rng, CLI_WORDS));
    else argv.push(String.fromCharCode(...Array.from(randBytes(rng, randInt(rng, 0, 12)))));
  }
  return argv;
}

/** Runs the CLI on a hostile directory with a hostile argv; checks the contract. */
export async function checkHostileCli(rng: Rng): Promise<number> {
  const { fs } = hostileDirectory(rng);
  fs.writeFileSync(`${FUZZ_DIR}/trace.jsonl`, randBytes(rng, randInt(rng, 0, 200)));
  fs.writeFileSync(
    `${FUZZ_DIR}/trace2.jsonl`,
    new TextEncoder().encode('{"component":"x"}\n{bad json\n'),
  );
  const names = fs.listSync(FUZZ_DIR) ?? [];
  const paths = [
    FUZZ_DB,
    FUZZ_DIR,
    '/nope/x.db',
    `${FUZZ_DB}/inside`,
    ...names.map((n) => `${FUZZ_DIR}/${n}`),
  ];
  const argv = hostileArgv(rng, paths);
  let out = '';
  let err = '';
  const code = await runCli(argv, { stdout: (t) => (out += t), stderr: (t) => (err += t) }, { fs });
  if (![0, 1, 2].includes(code)) {
    throw new FuzzViolation(`pwal ${JSON.stringify(argv)} exited ${code}`, new Uint8Array(0));
  }
  if (err.includes('unexpected error')) {
    throw new FuzzViolation(
      `pwal ${JSON.stringify(argv)} hit an untyped error: ${err.trim()}`,
      new Uint8Array(0),
    );
  }
  if (code !== 0 && err.length + out.length === 0) {
    throw new FuzzViolation(
      `pwal ${JSON.stringify(argv)} failed (${code}) without saying why`,
      new Uint8Array(0),
    );
  }
  return code;
}
