#!/usr/bin/env node
// Checks the package as a user gets it: packs the tarball (after `npm run
// build`), checks its size and file list, installs it into a fresh project
// and there:
//   - `require` and `import` of `parallel-wal` and `parallel-wal/replication`
//     open a log, commit and read back (CommonJS and ESM builds);
//   - nothing from @nats-io is installed (`npm ls`), the root entry's module
//     graph names no @nats-io package, and replication fails with the typed
//     ERR_REPLICATION_PEER_MISSING naming the package to install;
//   - with the NATS packages present (linked from this repository), the same
//     call gets past loading them in both builds;
//   - the declarations type-check from TypeScript for both `import` and
//     `require` (module NodeNext);
//   - the examples run unchanged, and the `pwal` binary runs.
// Prints one `ok …` line per check; exits 1 at the first failed one.
// Usage: node scripts/check-package.mjs [--keep]
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const REPO = path.resolve(import.meta.dirname, '..');
/** Largest tarball accepted (gzip), and largest unpacked size. */
const TARBALL_BYTES_MAX = 700 * 1024;
const UNPACKED_BYTES_MAX = 2.5 * 1024 * 1024;
/**
 * Files in the tarball, at most. The build is unbundled: each source module
 * becomes four files (ESM and CommonJS, each with its declarations), so the
 * bound follows the module count (140 modules, 413 files when last raised);
 * it is here to catch files that should not ship at all.
 */
const ENTRY_COUNT_MAX = 480;
/** Each step's command may take this long. */
const STEP_TIMEOUT_MS = 120_000;
const REQUIRED_FILES = [
  'package.json',
  'README.md',
  'LICENSE',
  'dist/esm/index.js',
  'dist/esm/index.d.ts',
  'dist/cjs/index.cjs',
  'dist/cjs/index.d.cts',
  'dist/esm/replication/index.js',
  'dist/esm/replication/index.d.ts',
  'dist/cjs/replication/index.cjs',
  'dist/cjs/replication/index.d.cts',
  'dist/esm/cli/pwal.js',
  'dist/esm/cli/demo-worker.js',
];
/** Nothing from development may ship; source maps would point at files that do not. */
const FORBIDDEN = [
  /^src\//,
  /^test\//,
  /^bench\//,
  /^scripts\//,
  /^\.ci\//,
  /\.map$/,
  /^docs\/api\//,
];
const NATS = ['@nats-io/transport-node', '@nats-io/jetstream', '@nats-io/obj'];

const keep = process.argv.includes('--keep');

function fail(message) {
  console.error(`FAIL ${message}`);
  process.exit(1);
}

function ok(message) {
  console.log(`ok ${message}`);
}

/** Runs a command; returns stdout, or fails with its output. */
function sh(command, args, cwd, options = {}) {
  const result = spawnSync(command, args, {
    cwd,
    encoding: 'utf8',
    timeout: STEP_TIMEOUT_MS,
    env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false', ...options.env },
  });
  const expected = options.status ?? 0;
  if (result.status !== expected) {
    fail(
      `${command} ${args.join(' ')} exited ${result.status} (expected ${expected}):\n${result.stdout}${result.stderr}`,
    );
  }
  return { out: result.stdout, err: result.stderr };
}

// 1. Pack (scripts off: the build is already there, and a rebuild would race the tests using it).
for (const file of ['dist/esm/index.js', 'dist/cjs/index.cjs']) {
  if (!fs.existsSync(path.join(REPO, file))) fail(`${file} missing: run npm run build first`);
}
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-package-'));
const packed = JSON.parse(
  sh('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], REPO).out,
)[0];
const files = packed.files.map((f) => f.path);
for (const file of REQUIRED_FILES) {
  if (!files.includes(file)) fail(`tarball lacks ${file}`);
}
const forbidden = files.filter((f) => FORBIDDEN.some((re) => re.test(f)));
if (forbidden.length > 0)
  fail(`tarball holds files it must not: ${forbidden.slice(0, 10).join(', ')}`);
if (packed.size > TARBALL_BYTES_MAX) fail(`tarball is ${packed.size} bytes > ${TARBALL_BYTES_MAX}`);
if (packed.unpackedSize > UNPACKED_BYTES_MAX) {
  fail(`unpacked size ${packed.unpackedSize} bytes > ${UNPACKED_BYTES_MAX}`);
}
if (packed.entryCount > ENTRY_COUNT_MAX) fail(`${packed.entryCount} files > ${ENTRY_COUNT_MAX}`);
ok(
  `tarball ${packed.filename}: ${packed.size} bytes, ${packed.unpackedSize} unpacked, ${packed.entryCount} files, required files present, no sources/tests/maps`,
);

// 2. A fresh project that does not replicate.
const app = path.join(work, 'app');
fs.mkdirSync(app);
fs.writeFileSync(
  path.join(app, 'package.json'),
  JSON.stringify({ name: 'pwal-consumer', version: '1.0.0', private: true }, null, 2),
);
sh('npm', ['install', '--no-package-lock', path.join(work, packed.filename)], app);
// `npm ls` names no @nats-io package; `npm ls --all` lists the optional peers
// only as UNMET OPTIONAL DEPENDENCY (like @node-rs/crc32's other platforms):
// none has a version, and node_modules has no @nats-io folder.
const top = sh('npm', ['ls'], app).out;
if (top.includes('@nats-io')) fail(`npm ls shows:\n${top}`);
const tree = JSON.parse(sh('npm', ['ls', '--all', '--json'], app).out);
const installedNats = [];
(function walk(deps) {
  for (const [name, info] of Object.entries(deps ?? {})) {
    if (name.startsWith('@nats-io/') && info.version !== undefined) installedNats.push(name);
    walk(info.dependencies);
  }
})(tree.dependencies);
if (installedNats.length > 0) fail(`npm ls --all shows ${installedNats.join(', ')} installed`);
if (fs.existsSync(path.join(app, 'node_modules', '@nats-io'))) fail('node_modules/@nats-io exists');
ok('installed into a fresh project; npm ls shows no @nats-io package, none is installed');

// 3. The root entry's module graph, in both builds, imports nothing from @nats-io.
const installed = path.join(app, 'node_modules', 'parallel-wal');
for (const entry of ['dist/esm/index.js', 'dist/cjs/index.cjs']) {
  const bare = bareImportsOf(path.join(installed, entry));
  const nats = [...bare].filter((s) => s.startsWith('@nats-io/'));
  if (nats.length > 0) fail(`${entry} reaches ${nats.join(', ')}`);
  ok(`${entry} reaches only ${[...bare].sort().join(', ')}`);
}

// 4. require and import, without the NATS packages.
const probe = `
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-probe-'));
  const db = path.join(dir, 'app.db');
  const wal = await pwal.ParallelWal.open(db, { fsync: 'full' });
  const ack = await wal.commit({
    txnToken: { id: 1n, epoch: 0 },
    frames: [{ pageNumber: 1, pageData: new Uint8Array(512).fill(3), dbSizeIfCommit: 1 }],
  });
  await wal.close();
  // The log on a thread of its own: its program is a file of the package.
  const threaded = await pwal.ThreadedWal.open(db, { fsync: 'full' });
  const threadedAck = await threaded.commit({
    txnToken: { id: 2n, epoch: 0 },
    frames: [{ pageNumber: 2, pageData: new Uint8Array(512).fill(4), dbSizeIfCommit: 2 }],
  });
  await threaded.close();
  if (threadedAck.epoch <= ack.epoch) throw new Error('ThreadedWal did not continue the log');
  const pages = new Map();
  await pwal.recoverAndApplySegments(db, pages);
  if (pages.get(1)?.[0] !== 3) throw new Error('page 1 not read back');
  if (pages.get(2)?.[0] !== 4) throw new Error('page 2 (ThreadedWal) not read back');
  // Without NATS, opening a replicated log fails at once (typed); with it, it
  // would start shipping in the background, so only the restore is tried.
  const opened = process.env.PROBE_OPEN_REPLICATED === '1'
    ? await replication.ReplicatedWal.open(path.join(dir, 'r.db'), {
        replication: { servers: ['nats://127.0.0.1:1'], stream: 'S', connectTimeoutMs: 200 },
      }).then(() => null, (e) => e)
    : null;
  const error = await replication.restoreFromStream({
    servers: ['nats://127.0.0.1:1'], stream: 'S', dbPath: path.join(dir, 'restored.db'), connectTimeoutMs: 200,
  }).then(() => null, (e) => e);
  fs.rmSync(dir, { recursive: true, force: true });
  console.log(JSON.stringify({
    epoch: String(ack.epoch),
    sameWalError: error instanceof pwal.WalError,
    openCode: opened?.code,
    code: error?.code,
    message: error?.message,
  }));
`;
const cjs = `const fs = require('node:fs'); const os = require('node:os'); const path = require('node:path');
const pwal = require('parallel-wal'); const replication = require('parallel-wal/replication');
(async () => {${probe}})().catch((e) => { console.error(e); process.exit(1); });`;
const esm = `import * as fs from 'node:fs'; import * as os from 'node:os'; import * as path from 'node:path';
import * as pwal from 'parallel-wal'; import * as replication from 'parallel-wal/replication';
${probe}`;
fs.writeFileSync(path.join(app, 'probe.cjs'), cjs);
fs.writeFileSync(path.join(app, 'probe.mjs'), esm);
for (const file of ['probe.cjs', 'probe.mjs']) {
  const report = JSON.parse(
    sh(process.execPath, [file], app, { env: { PROBE_OPEN_REPLICATED: '1' } }).out.trim(),
  );
  const missing = 'ERR_REPLICATION_PEER_MISSING';
  if (report.code !== missing || report.openCode !== missing || !report.sameWalError) {
    fail(`${file}: replication without NATS gave ${JSON.stringify(report)}`);
  }
  for (const name of NATS) {
    if (!report.message.includes(name)) fail(`${file}: the error does not name ${name}`);
  }
  ok(
    `${file}: committed and read back (ParallelWal, then ThreadedWal); ReplicatedWal.open and restore say ${report.message}`,
  );
}

// 5. The declarations from TypeScript (module NodeNext, skipLibCheck off):
//    the root for import (.d.ts) and require (.d.cts) without NATS installed
//    (its declarations reach no @nats-io types), then the replication entry
//    with the NATS packages present.
fs.symlinkSync(
  path.join(REPO, 'node_modules', '@types'),
  path.join(app, 'node_modules', '@types'),
  'dir',
);
const typeFiles = {
  'root.mts': `import { ParallelWal, type CommitResult, isWalError } from 'parallel-wal';
const wal: ParallelWal = await ParallelWal.open('x.db');
const r: CommitResult = await wal.commit({ txnToken: { id: 1n, epoch: 0 }, frames: [] });
export { r, isWalError };
`,
  'root.cts': `import pwal = require('parallel-wal');
const open: (path: string) => Promise<pwal.ParallelWal> = (p) => pwal.ParallelWal.open(p);
export = { open };
`,
  'replication.mts': `import { ReplicatedWal, ReplicationErrorCode } from 'parallel-wal/replication';
const code: 'ERR_REPLICATION_PEER_MISSING' = ReplicationErrorCode.peerMissing;
export { code, ReplicatedWal };
`,
  'replication.cts': `import replication = require('parallel-wal/replication');
const code: 'ERR_REPLICATION_PEER_MISSING' = replication.ReplicationErrorCode.peerMissing;
export = { code };
`,
};
for (const [name, text] of Object.entries(typeFiles)) fs.writeFileSync(path.join(app, name), text);
function typeCheck(files) {
  const compilerOptions = {
    target: 'ES2023',
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    strict: true,
    noEmit: true,
    skipLibCheck: false,
    types: ['node'],
  };
  fs.writeFileSync(path.join(app, 'tsconfig.json'), JSON.stringify({ compilerOptions, files }));
  const tsc = path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
  sh(process.execPath, [tsc, '-p', 'tsconfig.json'], app);
}
typeCheck(['root.mts', 'root.cts']);
ok('without NATS: root.mts (import → .d.ts) and root.cts (require → .d.cts) type-check');

// 6. With the NATS packages present (linked from this repository's install),
//    replication loads them in both builds and fails only on the unreachable server.
fs.mkdirSync(path.join(app, 'node_modules', '@nats-io'), { recursive: true });
for (const name of NATS) {
  fs.symlinkSync(
    path.join(REPO, 'node_modules', name),
    path.join(app, 'node_modules', name),
    'dir',
  );
}
for (const file of ['probe.cjs', 'probe.mjs']) {
  const report = JSON.parse(sh(process.execPath, [file], app).out.trim());
  if (report.code !== 'ERR_REPLICATION_UNAVAILABLE') {
    fail(`${file}: replication with NATS installed gave ${JSON.stringify(report)}`);
  }
  ok(`${file}: with @nats-io installed, replication loads it and reports ${report.code}`);
}
typeCheck(['replication.mts', 'replication.cts']);
ok('with NATS: replication.mts and replication.cts type-check');
for (const name of NATS) fs.unlinkSync(path.join(app, 'node_modules', name));

// 7. The examples, copied into the project, run unchanged; the binary runs.
fs.cpSync(path.join(REPO, 'examples'), path.join(app, 'examples'), { recursive: true });
for (const example of [
  'quick-start.mjs',
  'quick-start.cjs',
  'page-store.mjs',
  'worker-threads.mjs',
  'threaded-wal.mjs',
]) {
  const { out } = sh(process.execPath, [path.join('examples', example)], app);
  if (!/read back|after reopen/.test(out))
    fail(`examples/${example} printed no read-back:\n${out}`);
  ok(`examples/${example} runs against the installed package`);
}
const pwalBin = path.join(app, 'node_modules', '.bin', 'pwal');
const help = sh(pwalBin, ['--help'], app).out;
if (!help.includes('Usage: pwal')) fail(`pwal --help printed:\n${help}`);
const follow = spawnSync(
  pwalBin,
  ['follow', '--from', 'nats://127.0.0.1:1', '--stream', 'S', path.join(work, 'f.db')],
  { cwd: app, encoding: 'utf8', timeout: STEP_TIMEOUT_MS },
);
if (
  follow.status === 0 ||
  !`${follow.stdout}${follow.stderr}`.includes('ERR_REPLICATION_PEER_MISSING')
) {
  fail(`pwal follow without NATS: exit ${follow.status}\n${follow.stdout}${follow.stderr}`);
}
ok(
  'the pwal binary runs; pwal follow without NATS exits non-zero with ERR_REPLICATION_PEER_MISSING',
);

if (keep) console.log(`kept ${work}`);
else fs.rmSync(work, { recursive: true, force: true });
console.log('package check passed');

/** The bare specifiers (packages, node: builtins) a built module reaches through static imports. */
function bareImportsOf(entry) {
  const seen = new Set();
  const bare = new Set();
  const pending = [entry];
  const specifier =
    /(?:^|[;\n}])\s*(?:import|export)\s[^'"]*?from\s*["']([^"']+)["']|require\(\s*["']([^"']+)["']\s*\)|import\(\s*["']([^"']+)["']\s*\)/g;
  while (pending.length > 0) {
    const file = pending.pop();
    if (seen.has(file)) continue;
    seen.add(file);
    const text = fs.readFileSync(file, 'utf8');
    for (const match of text.matchAll(specifier)) {
      const spec = match[1] ?? match[2] ?? match[3];
      if (spec.startsWith('.')) pending.push(path.resolve(path.dirname(file), spec));
      else bare.add(spec.startsWith('node:') ? 'node:*' : spec);
    }
  }
  return bare;
}
