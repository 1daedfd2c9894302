/**
 * Turns a run's cell results into the published report: `latest.jsonl` (raw), `latest.md`
 * (tables, targets, machine, versions) and `latest.svg` (commits/s vs concurrency, log scale).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CellResult, median, PAGE_BYTES } from './common.js';
import type { MachineInfo } from './machine.js';

export interface RunData {
  machine: MachineInfo;
  options: {
    reps: number;
    durationMs: number;
    warmupMs: number;
    quick: boolean;
    strace: boolean;
    /** Each cell's directory deleted right after it (`--delete-cells`), instead of emptied. */
    deleteCells: boolean;
    /** GiB a child process touched before each cell (`--warm-memory`); absent in older runs. */
    warmMemoryGiB?: number;
    /** The run's emptied directory was deleted at the end (`--remove-run-dir`); absent in older runs. */
    removeRunDir?: boolean;
    command: string;
  };
  started: string;
  finished: string;
  results: CellResult[];
}

/** Display order, labels and durability settings of the systems. */
export const SYSTEMS: { name: string; label: string; settings: string; color: string }[] = [
  { name: 'pwal', label: 'parallel-wal', settings: "fsync: 'full'", color: '#d62728' },
  {
    name: 'pwalpre',
    label: 'parallel-wal + precreate',
    settings: "fsync: 'full', precreateSegmentFiles: true",
    color: '#8c564b',
  },
  {
    name: 'pwalearly',
    label: 'parallel-wal + earlyAck',
    settings: "fsync: 'full', segmentSink: 'earlyAck'",
    color: '#e377c2',
  },
  {
    name: 'pwalinline',
    label: 'parallel-wal, write on the event loop',
    settings: "fsync: 'full', ioThread: false",
    color: '#ff9896',
  },
  {
    name: 'pwalpool',
    label: 'parallel-wal + pool',
    settings: "fsync: 'full', segmentSink: 'pool'",
    color: '#bcbd22',
  },
  {
    name: 'pwalcaller',
    label: 'parallel-wal, small writes on the owner thread',
    settings: "fsync: 'full', callerWriteBytesMax: 262144",
    color: '#9edae5',
  },
  {
    name: 'pwaltrunc',
    label: 'parallel-wal + pool, log truncated as it goes',
    settings:
      "fsync: 'full', segmentSink: 'pool'; consumer reads and recycles segments every 20 ms",
    color: '#f7b6d2',
  },
  {
    name: 'sqlite',
    label: 'better-sqlite3',
    settings: 'WAL, synchronous=FULL, 1 txn/commit',
    color: '#1f77b4',
  },
  { name: 'lmdb', label: 'lmdb', settings: 'await put + flushed', color: '#2ca02c' },
  { name: 'level', label: 'classic-level', settings: 'batch, sync: true', color: '#9467bd' },
  { name: 'rocksdb', label: 'rocksdb@5', settings: 'batch, sync: true', color: '#ff7f0e' },
  { name: 'floor', label: 'raw append+fdatasync', settings: 'serial loop', color: '#555555' },
  {
    name: 'floorseg',
    label: 'raw new file+rename+dir fsync',
    settings: 'serial loop',
    color: '#999999',
  },
  {
    name: 'flooro',
    label: 'raw overwrite+fdatasync',
    settings: 'serial loop, pre-written file',
    color: '#17becf',
  },
  {
    name: 'gcring',
    label: 'group-commit floor, overwrite',
    settings: 'writev + fdatasync per epoch, pre-written file',
    color: '#8c564b',
  },
  {
    name: 'gcseg',
    label: 'group-commit floor, new file per epoch',
    settings:
      'writev + fdatasync per epoch, one new file each; 32 renamed and 32 created per dir fsync',
    color: '#c49c94',
  },
  {
    name: 'gcfresh',
    label: 'group-commit bound, new file per epoch',
    settings:
      'open, writev + fdatasync, close per epoch, into an empty file made before the window',
    color: '#dbdb8d',
  },
];

/** Systems whose database one process opens once: no second thread can write it. */
const SINGLE_PROCESS_LOCK = new Set(['level', 'rocksdb']);

/** The raw floors: reference loops, not systems competing in the tables' columns. */
const isFloor = (name: string): boolean =>
  name === 'floor' || name === 'floorseg' || name === 'flooro';

const labelOf = (name: string): string => SYSTEMS.find((s) => s.name === name)?.label ?? name;

/** Medians over the repetitions of one workload of one system. */
export interface Aggregate {
  system: string;
  pages: number;
  committers: number;
  workers: number;
  reps: number;
  repsOk: number;
  commitsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** fsync-family calls per commit: strace when it ran, else the library's counter. */
  syncsPerCommit: number;
  syncSource: 'strace' | 'library' | 'none';
  effectiveConcurrency: number;
  concurrencyNote?: string;
  verified: number;
  acked: number;
  verifyFailures: number;
  errors: string[];
  versions: Record<string, string>;
}

const keyOf = (system: string, pages: number, committers: number, workers: number): string =>
  `${system}|${pages}|${committers}|${workers}`;

export function aggregate(results: readonly CellResult[]): Map<string, Aggregate> {
  const groups = new Map<string, CellResult[]>();
  for (const r of results) {
    const k = keyOf(r.spec.system, r.spec.pages, r.spec.committers, r.spec.workers);
    const list = groups.get(k) ?? [];
    list.push(r);
    groups.set(k, list);
  }
  const out = new Map<string, Aggregate>();
  for (const [k, all] of groups) {
    // Timings come from the untraced repetitions only; the traced one counts syncs.
    const rs = all.filter((r) => r.spec.syncCount !== true);
    const traced = all.filter((r) => r.spec.syncCount === true && r.ok);
    const ok = rs.filter((r) => r.ok);
    const first = rs[0] ?? all[0]!;
    const strace =
      traced.length > 0
        ? traced.every((r) => r.straceSyncCalls !== undefined)
        : ok.every((r) => r.straceSyncCalls !== undefined) && ok.length > 0;
    const lib = ok.every((r) => r.libraryFsyncs !== undefined) && ok.length > 0;
    const syncs = (strace && traced.length > 0 ? traced : ok).map((r) =>
      strace
        ? r.straceSyncCalls! / r.totalCommits
        : lib
          ? r.libraryFsyncs! / r.totalCommits
          : Number.NaN,
    );
    const agg: Aggregate = {
      system: first.spec.system,
      pages: first.spec.pages,
      committers: first.spec.committers,
      workers: first.spec.workers,
      reps: rs.length,
      repsOk: ok.length,
      commitsPerSec: median(ok.map((r) => r.commitsPerSec)),
      p50Ms: median(ok.map((r) => r.p50Ms)),
      p99Ms: median(ok.map((r) => r.p99Ms)),
      syncsPerCommit: median(syncs),
      syncSource: strace ? 'strace' : lib ? 'library' : 'none',
      effectiveConcurrency: first.effectiveConcurrency,
      // Every repetition's acknowledged commits are read back, the traced one's too.
      verified: all.reduce((n, r) => n + r.verifiedCommits, 0),
      acked: all.reduce((n, r) => n + r.totalCommits, 0),
      verifyFailures: all.reduce((n, r) => n + r.verifyFailures, 0),
      errors: [...new Set(all.filter((r) => !r.ok).map((r) => (r.error ?? '?').split('\n')[0]!))],
      versions: Object.assign({}, ...all.map((r) => r.versions)) as Record<string, string>,
    };
    const note = rs.find((r) => r.concurrencyNote)?.concurrencyNote;
    if (note) agg.concurrencyNote = note;
    out.set(k, agg);
  }
  return out;
}

const fmtInt = (n: number): string =>
  Number.isNaN(n) ? 'n/a' : Math.round(n).toLocaleString('en-US');
const fmtMs = (n: number): string =>
  Number.isNaN(n) ? 'n/a' : n < 1 ? n.toFixed(2) : n < 10 ? n.toFixed(1) : n.toFixed(0);
const fmtRatio = (n: number): string => (Number.isFinite(n) ? `${n.toFixed(2)}×` : 'n/a');

/** One target of issue 12, measured in this run. */
export interface TargetRow {
  text: string;
  /** The measured ratio (NaN when a cell is missing). */
  value: number;
  /** How the ratio is shown, with the figures it comes from. */
  measured: string;
  met: boolean;
}

/** The ratios issue 12's targets are stated in, for one parallel-wal variant, measured in this run. */
export function targets(aggs: Map<string, Aggregate>, system = 'pwal'): TargetRow[] {
  const get = (s: string, p: number, c: number, w = 0): Aggregate | undefined =>
    aggs.get(keyOf(s, p, c, w));
  const rate = (a: Aggregate | undefined): number => a?.commitsPerSec ?? Number.NaN;
  const p50 = (a: Aggregate | undefined): number => a?.p50Ms ?? Number.NaN;
  const who = labelOf(system);
  const rows: TargetRow[] = [];
  const ratioRow = (
    text: string,
    a: Aggregate | undefined,
    b: Aggregate | undefined,
    min: number,
  ): void => {
    const value = rate(a) / rate(b);
    rows.push({
      text,
      value,
      measured: `${fmtRatio(value)} (${fmtInt(rate(a))} vs ${fmtInt(rate(b))} commits/s)`,
      met: value >= min,
    });
  };
  const pwal1 = get(system, 1, 1);
  const sqlite1 = get('sqlite', 1, 1);
  const over1 = get('flooro', 1, 1);
  const vsSqlite = p50(pwal1) / p50(sqlite1);
  rows.push({
    text: `1 committer: ${who} p50 ≤ 1.25× better-sqlite3 (FULL) p50`,
    value: vsSqlite,
    measured: `${fmtRatio(vsSqlite)} (${fmtMs(p50(pwal1))} vs ${fmtMs(p50(sqlite1))} ms)`,
    met: vsSqlite <= 1.25,
  });
  const vsOver = p50(pwal1) / p50(over1);
  rows.push({
    text: `1 committer: ${who} p50 ≤ 1.5× 4 KiB overwrite+fdatasync p50`,
    value: vsOver,
    measured: `${fmtRatio(vsOver)} (${fmtMs(p50(pwal1))} vs ${fmtMs(p50(over1))} ms)`,
    met: vsOver <= 1.5,
  });
  for (const [c, min] of [
    [16, 1.3],
    [64, 1.5],
    [256, 2],
  ] as const) {
    ratioRow(`${c} committers: ${who} ≥ ${min}× lmdb`, get(system, 1, c), get('lmdb', 1, c), min);
  }
  const per = Math.max(
    1,
    ...[...aggs.values()].filter((a) => a.workers === 2).map((a) => a.committers),
  );
  ratioRow(
    `2 workers × ${per}: ${who} ≥ 1.5× lmdb`,
    get(system, 1, per, 2),
    get('lmdb', 1, per, 2),
    1.5,
  );
  ratioRow(
    `2 workers × ${per}: ${who} ≥ 1.8× its 1 worker × ${per}`,
    get(system, 1, per, 2),
    get(system, 1, per, 1),
    1.8,
  );
  const bwOver = [...aggs.values()].find((a) => a.system === 'flooro' && a.pages > 16);
  const bwPagesPerSec = bwOver ? bwOver.commitsPerSec * bwOver.pages : Number.NaN;
  const pages256 = rate(get(system, 1, 256)) / bwPagesPerSec;
  rows.push({
    text: `256 committers: ${who} pages/s ≥ 50% of the 1 MiB overwrite floor`,
    value: pages256,
    measured: `${(pages256 * 100).toFixed(0)}% (${fmtInt(rate(get(system, 1, 256)))} vs ${fmtInt(bwPagesPerSec)} pages/s)`,
    met: pages256 >= 0.5,
  });
  const sixteen = get(system, 16, 64);
  const pages16 = (rate(sixteen) * 16) / bwPagesPerSec;
  rows.push({
    text: `16 pages × 64 committers: ${who} ≥ 70% of the 1 MiB overwrite floor's bandwidth`,
    value: pages16,
    measured: `${(pages16 * 100).toFixed(0)}% (${fmtInt(rate(sixteen) * 16)} vs ${fmtInt(bwPagesPerSec)} pages/s)`,
    met: pages16 >= 0.7,
  });
  return rows;
}

/** Markdown rows of the targets table for one parallel-wal variant. */
function targetRows(rows: readonly TargetRow[]): string[] {
  return rows.map(
    (r) =>
      `| ${r.text} | ${r.measured} | ${Number.isFinite(r.value) ? (r.met ? 'yes' : 'no') : '—'} |`,
  );
}

function cellText(a: Aggregate | undefined, requested: number): string {
  if (!a) return '—';
  if (a.repsOk === 0) return `failed: ${(a.errors[0] ?? '?').slice(0, 80)}`;
  const eff = a.effectiveConcurrency < requested ? ` †${a.effectiveConcurrency}` : '';
  return `${fmtInt(a.commitsPerSec)} (${fmtMs(a.p50Ms)} / ${fmtMs(a.p99Ms)})${eff}`;
}

function markdown(data: RunData, aggs: Map<string, Aggregate>, svgName: string): string {
  const all = [...aggs.values()];
  const present = SYSTEMS.filter((s) => !isFloor(s.name) && all.some((a) => a.system === s.name));
  const pagesList = [...new Set(all.filter((a) => !isFloor(a.system)).map((a) => a.pages))].sort(
    (a, b) => a - b,
  );
  const lines: string[] = [];
  const o = data.options;
  lines.push('# Durable commits: parallel-wal and the embedded stores people use today');
  lines.push('');
  lines.push(
    `Run ${data.started} → ${data.finished}${o.quick ? ' (**--quick smoke run: 1 short repetition; not for publishing**)' : ''}. ` +
      `Each cell: a fresh process, ${o.warmupMs} ms warm-up then a ${o.durationMs} ms window; ` +
      `median of ${o.reps} repetition(s), systems interleaved round-robin. ` +
      'Every acknowledged commit was read back after close + reopen. Reproduce: ' +
      `\`${o.command}\`.`,
  );
  lines.push('');
  lines.push(`![commits per second vs concurrent committers](${svgName})`);
  lines.push('');
  for (const pages of pagesList) {
    lines.push(
      `## ${pages} × 4 KiB page${pages > 1 ? 's' : ''} per commit — commits/s (p50 / p99 latency, ms)`,
    );
    lines.push('');
    lines.push(`| committers | ${present.map((s) => s.label).join(' | ')} |`);
    lines.push(`|---|${present.map(() => '---:').join('|')}|`);
    const rows = [
      ...new Set(
        all
          .filter((a) => a.pages === pages && !isFloor(a.system))
          .map((a) => `${a.workers}|${a.committers}`),
      ),
    ]
      .map((k) => k.split('|').map(Number) as [number, number])
      .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    for (const [workers, committers] of rows) {
      const requested = committers * Math.max(1, workers);
      const head = workers > 0 ? `${workers} threads × ${committers}` : String(committers);
      const cells = present.map((s) => {
        const a = aggs.get(keyOf(s.name, pages, committers, workers));
        if (!a && workers > 0 && SINGLE_PROCESS_LOCK.has(s.name)) {
          return 'n/a (one process holds the LOCK)';
        }
        return cellText(a, requested);
      });
      lines.push(`| ${head} | ${cells.join(' | ')} |`);
    }
    const floor = aggs.get(keyOf('floor', pages, 1, 0));
    if (floor) {
      lines.push('');
      lines.push(
        `Raw floor for this commit size (one writer, ${fmtInt(pages * 4)} KiB append + fdatasync in a loop): ` +
          `${fmtInt(floor.commitsPerSec)} commits/s, p50 ${fmtMs(floor.p50Ms)} ms, p99 ${fmtMs(floor.p99Ms)} ms.`,
      );
    }
    const over = aggs.get(keyOf('flooro', pages, 1, 0));
    if (over) {
      lines.push('');
      lines.push(
        `Raw overwrite floor (one writer, ${fmtInt(pages * 4)} KiB overwrite of already-written space + fdatasync in a loop): ` +
          `${fmtInt(over.commitsPerSec)} commits/s, p50 ${fmtMs(over.p50Ms)} ms, p99 ${fmtMs(over.p99Ms)} ms.`,
      );
    }
    const seg = aggs.get(keyOf('floorseg', pages, 1, 0));
    if (seg) {
      lines.push('');
      lines.push(
        `Raw file-per-commit floor (one writer: create temp file, write ${fmtInt(pages * 4)} KiB, fdatasync, rename, fsync directory): ` +
          `${fmtInt(seg.commitsPerSec)} commits/s, p50 ${fmtMs(seg.p50Ms)} ms, p99 ${fmtMs(seg.p99Ms)} ms.`,
      );
    }
    lines.push('');
  }
  const notes = new Map<string, string>();
  for (const a of all) {
    if (a.concurrencyNote && a.effectiveConcurrency < a.committers * Math.max(1, a.workers)) {
      notes.set(`${labelOf(a.system)}${a.workers > 0 ? ' (threads)' : ''}`, a.concurrencyNote);
    }
  }
  if (notes.size > 0) {
    lines.push(
      '† = the API gives the workload less concurrency than requested (the number is what it gets):',
    );
    lines.push('');
    for (const [who, note] of notes) lines.push(`- ${who}: ${note}.`);
    lines.push('');
  }

  for (const [system, what] of [
    ['floor', 'append'],
    ['flooro', 'overwrite (pre-written file)'],
  ] as const) {
    const bw = all.find((a) => a.system === system && a.pages > 16);
    if (!bw) continue;
    const mbps = (bw.commitsPerSec * bw.pages * PAGE_BYTES) / 1e6;
    lines.push(
      `Bandwidth floor: ${fmtInt(bw.pages * 4)} KiB ${what} + fdatasync in a loop = ${mbps.toFixed(0)} MB/s ` +
        `(${fmtInt(bw.commitsPerSec * bw.pages)} pages/s), p50 ${fmtMs(bw.p50Ms)} ms per sync.`,
    );
    lines.push('');
  }

  lines.push('## Targets (ratios measured in this run)');
  lines.push('');
  lines.push('| target | measured | met |');
  lines.push('|---|---:|:---:|');
  for (const variant of ['pwal', 'pwalinline', 'pwalpool', 'pwalcaller', 'pwaltrunc']) {
    if (all.some((a) => a.system === variant)) lines.push(...targetRows(targets(aggs, variant)));
  }
  lines.push('');

  lines.push('## Every cell (medians)');
  lines.push('');
  lines.push(
    '| system | pages | committers | eff. | commits/s | MB/s | p50 ms | p99 ms | syncs/commit | verified (acked) | reps ok |',
  );
  lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|');
  const order = (s: string): number => SYSTEMS.findIndex((x) => x.name === s);
  const sorted = [...all].sort(
    (a, b) =>
      order(a.system) - order(b.system) ||
      a.pages - b.pages ||
      a.workers - b.workers ||
      a.committers - b.committers,
  );
  for (const a of sorted) {
    const shape = a.workers > 0 ? `${a.workers} thr × ${a.committers}` : String(a.committers);
    const mbps = (a.commitsPerSec * a.pages * PAGE_BYTES) / 1e6;
    const mbpsText = Number.isNaN(mbps) ? 'n/a' : mbps.toFixed(1);
    const syncs = Number.isNaN(a.syncsPerCommit)
      ? 'n/a'
      : `${a.syncsPerCommit.toFixed(3)}${a.syncSource === 'library' ? ' (lib)' : ''}`;
    const verified =
      a.verifyFailures > 0 || a.verified !== a.acked
        ? `**${fmtInt(a.verified)} (${fmtInt(a.acked)})**`
        : `all ${fmtInt(a.acked)}`;
    const repsOk =
      a.repsOk === a.reps ? String(a.reps) : `${a.repsOk}/${a.reps}: ${a.errors[0] ?? ''}`;
    lines.push(
      `| ${labelOf(a.system)} | ${a.pages} | ${shape} | ${a.effectiveConcurrency} | ${fmtInt(a.commitsPerSec)} | ${mbpsText} | ${fmtMs(a.p50Ms)} | ${fmtMs(a.p99Ms)} | ${syncs} | ${verified} | ${repsOk} |`,
    );
  }
  lines.push('');
  lines.push(
    `syncs/commit = fsync-family system calls (${data.options.strace ? '`strace -f -c` of fsync, fdatasync, msync, sync_file_range, syncfs, sync, in one extra repetition of each cell run under strace only for this count' : "the library's own counter"}) ` +
      'over the whole child process (open, run, close, reopen for verification) divided by all acknowledged commits. ' +
      'Commits/s and latencies come from the untraced repetitions only; every repetition, the traced one included, is read back.',
  );
  lines.push('');

  lines.push('## Machine and versions');
  lines.push('');
  const m = data.machine;
  lines.push(`- CPU: ${m.cpuModel}, ${m.cores} cores; ${m.memoryGiB} GiB memory; ${m.kernel}`);
  lines.push(`- Bench directory: ${m.benchDir}`);
  lines.push(`- Filesystem: ${m.filesystem}`);
  lines.push(`- Device: ${m.device}`);
  if (m.fileCreation !== undefined) lines.push(`- File creation there: ${m.fileCreation}`);
  if (m.memory !== undefined) lines.push(`- Memory: ${m.memory}`);
  const creation = (rs: readonly CellResult[]): string => {
    const us = rs.map((r) => r.fileCreationUs ?? Number.NaN).filter((x) => !Number.isNaN(x));
    if (us.length === 0) return 'not measured';
    const f = (x: number): string => x.toFixed(0);
    return `median ${f(median(us))} µs (${f(Math.min(...us))}–${f(Math.max(...us))}) over ${us.length} cells`;
  };
  if (data.results.some((r) => r.fileCreationUs !== undefined)) {
    const pwalCells = data.results.filter((r) => r.spec.system === 'pwal');
    lines.push(
      `- File creation in each cell's own directory (CPU per empty file, 100 made right after the cell, among the files it left; ` +
        'what a new inode costs varies widely here): ' +
        `parallel-wal's (default) cells ${creation(pwalCells)}; all cells ${creation(data.results)}`,
    );
  }
  lines.push(
    data.options.deleteCells
      ? "- Cells' directories: deleted right after each cell (`--delete-cells`)"
      : `- Cells' directories: emptied after each cell (files truncated to 0 bytes, kept), and ${data.options.removeRunDir === false ? 'left in place at the end of the run' : 'deleted at the end of the run'}: ` +
          'on an ext4 without a journal, files deleted in the last minutes make every new file dearer (bench/peers/lib/cell-dirs.ts)',
  );
  if (data.options.warmMemoryGiB !== undefined) {
    lines.push(
      data.options.warmMemoryGiB > 0
        ? `- Memory warmed before each cell (\`--warm-memory ${data.options.warmMemoryGiB}\`): a child process touched ${data.options.warmMemoryGiB} GiB and exited, meant to make the cell's new page-cache pages ones the host still backs; the guest reports the freed memory to the host while the cell runs (bench/peers/lib/warm-memory.ts)`
        : '- Memory not warmed before the cells (the default)',
    );
  }
  const loads = data.results.map((r) => r.loadAvg1 ?? Number.NaN).filter((x) => !Number.isNaN(x));
  if (loads.length > 0) {
    lines.push(
      `- 1-minute load average at the start of each cell (${m.cores} cores; other work on the machine shares the CPU and the disk): ` +
        `min ${Math.min(...loads).toFixed(1)}, median ${median(loads).toFixed(1)}, max ${Math.max(...loads).toFixed(1)}`,
    );
  }
  lines.push(`- Node ${m.node}; UV_THREADPOOL_SIZE ${m.uvThreadpoolSize}; strace: ${m.strace}`);
  const versions: Record<string, string> = {};
  for (const a of all) Object.assign(versions, a.versions);
  lines.push(
    `- Versions: ${Object.entries(versions)
      .map(([k, v]) => `${k} ${v}`)
      .join('; ')}`,
  );
  lines.push('');
  lines.push('Settings that decide durability:');
  lines.push('');
  for (const s of SYSTEMS) {
    if (all.some((a) => a.system === s.name)) lines.push(`- ${s.label}: ${s.settings}`);
  }
  lines.push('');
  lines.push('Methodology and caveats: docs/benchmarks.md.');
  lines.push('');
  return lines.join('\n');
}

const esc = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A hand-written SVG: one panel per page size, log-scale y, one line per system. */
export function svgChart(aggs: Map<string, Aggregate>): string {
  const all = [...aggs.values()].filter((a) => a.repsOk > 0);
  const panels = [...new Set(all.filter((a) => !isFloor(a.system)).map((a) => a.pages))].sort(
    (a, b) => a - b,
  );
  const xs = [...new Set(all.filter((a) => a.workers === 0).map((a) => a.committers))].sort(
    (a, b) => a - b,
  );
  const bw = all.find((a) => a.system === 'floor' && a.pages > 16);
  const bwOver = all.find((a) => a.system === 'flooro' && a.pages > 16);
  const values = all.filter((a) => a.pages <= 16).map((a) => a.commitsPerSec);
  if (bw) values.push(bw.commitsPerSec * bw.pages);
  if (bwOver) values.push(bwOver.commitsPerSec * bwOver.pages);
  const lo = 10 ** Math.floor(Math.log10(Math.max(1, Math.min(...values, 1e9))));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...values, 10)));
  const panelW = 420;
  const panelH = 300;
  const margin = { left: 70, right: 20, top: 40, bottom: 50 };
  const legendH = 22 * 4;
  const width = margin.left + panels.length * (panelW + margin.right + 30);
  const height = margin.top + panelH + margin.bottom + legendH + 10;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12" role="img" aria-labelledby="chart-title">`,
  );
  out.push(
    '<title id="chart-title">Durable commits per second against concurrent committers, one line per system, log scale</title>',
  );
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  const yOf = (v: number): number =>
    margin.top + panelH - ((Math.log10(v) - Math.log10(lo)) / Math.log10(hi / lo)) * panelH;
  panels.forEach((pages, pi) => {
    const x0 = margin.left + pi * (panelW + margin.right + 30);
    const xOf = (i: number): number => x0 + 20 + (i * (panelW - 40)) / Math.max(1, xs.length - 1);
    out.push(
      `<text x="${x0 + panelW / 2}" y="${margin.top - 14}" text-anchor="middle" font-size="14" font-weight="bold">${pages} × 4 KiB page${pages > 1 ? 's' : ''} per commit</text>`,
    );
    out.push(
      `<rect x="${x0}" y="${margin.top}" width="${panelW}" height="${panelH}" fill="none" stroke="#888"/>`,
    );
    for (let d = lo; d <= hi * 1.0001; d *= 10) {
      const y = yOf(d);
      out.push(
        `<line x1="${x0}" y1="${y}" x2="${x0 + panelW}" y2="${y}" stroke="#ddd"/>` +
          `<text x="${x0 - 6}" y="${y + 4}" text-anchor="end">${fmtInt(d)}</text>`,
      );
      for (const k of [2, 5]) {
        if (d * k < hi) {
          out.push(
            `<line x1="${x0}" y1="${yOf(d * k)}" x2="${x0 + panelW}" y2="${yOf(d * k)}" stroke="#f2f2f2"/>`,
          );
        }
      }
    }
    xs.forEach((c, i) => {
      out.push(
        `<text x="${xOf(i)}" y="${margin.top + panelH + 18}" text-anchor="middle">${c}</text>`,
      );
    });
    out.push(
      `<text x="${x0 + panelW / 2}" y="${margin.top + panelH + 38}" text-anchor="middle">concurrent committers (async, one thread)</text>`,
    );
    if (pi === 0) {
      const cy = margin.top + panelH / 2;
      out.push(
        `<text x="18" y="${cy}" text-anchor="middle" transform="rotate(-90 18 ${cy})">durable commits / s (log scale)</text>`,
      );
    }
    const refs: { a: Aggregate | undefined; perSec: (a: Aggregate) => number; text: string }[] = [
      {
        a: aggs.get(keyOf('floor', pages, 1, 0)),
        perSec: (a) => a.commitsPerSec,
        text: 'raw append+fdatasync, 1 writer',
      },
      {
        a: aggs.get(keyOf('floorseg', pages, 1, 0)),
        perSec: (a) => a.commitsPerSec,
        text: 'raw new file+rename+dir fsync, 1 writer',
      },
      {
        a: bw,
        perSec: (a) => (a.commitsPerSec * a.pages) / pages,
        text: 'disk bandwidth bound (1 MiB append+fdatasync)',
      },
      {
        a: aggs.get(keyOf('flooro', pages, 1, 0)),
        perSec: (a) => a.commitsPerSec,
        text: 'raw overwrite+fdatasync, 1 writer',
      },
      {
        a: bwOver,
        perSec: (a) => (a.commitsPerSec * a.pages) / pages,
        text: 'overwrite bandwidth bound (1 MiB overwrite+fdatasync)',
      },
    ];
    for (const [i, ref] of refs.entries()) {
      if (!ref.a || ref.a.repsOk === 0) continue;
      const v = ref.perSec(ref.a);
      if (!(v > lo && v < hi)) continue;
      const y = yOf(v);
      const color = ['#555', '#999', '#222', '#17becf', '#0e7c86'][i] ?? '#555';
      const dash = i === 2 || i === 4 ? '2 3' : '6 4';
      out.push(
        `<line x1="${x0}" y1="${y}" x2="${x0 + panelW}" y2="${y}" stroke="${color}" stroke-dasharray="${dash}"/>` +
          `<text x="${x0 + panelW - 4}" y="${y - 5}" text-anchor="end" fill="${color}" font-size="11">${fmtInt(v)}: ${ref.text}</text>`,
      );
    }
    for (const s of SYSTEMS) {
      if (isFloor(s.name)) continue;
      const pts = xs
        .map((c, i) => ({ i, a: aggs.get(keyOf(s.name, pages, c, 0)) }))
        .filter((p) => p.a && p.a.repsOk > 0 && p.a.commitsPerSec > 0)
        .map((p) => ({ x: xOf(p.i), y: yOf(p.a!.commitsPerSec), v: p.a!.commitsPerSec }));
      if (pts.length === 0) continue;
      // A series measured only at some concurrencies is dashed: its segments skip points.
      const sparse = pts.length < xs.length ? ' stroke-dasharray="3 3"' : '';
      out.push(
        `<polyline fill="none" stroke="${s.color}" stroke-width="2"${sparse} points="${pts.map((p) => `${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(' ')}"/>`,
      );
      for (const p of pts) {
        out.push(
          `<circle cx="${p.x.toFixed(1)}" cy="${p.y.toFixed(1)}" r="3.5" fill="${s.color}"><title>${esc(s.label)}: ${fmtInt(p.v)} commits/s</title></circle>`,
        );
      }
    }
  });
  // Legend: entries flow left to right, wrapping at the chart's width (text width estimated).
  const shown = SYSTEMS.filter((s) => all.some((a) => a.system === s.name));
  let lx = margin.left;
  let ly = margin.top + panelH + margin.bottom + 8;
  for (const s of shown) {
    const text = `${s.label} (${s.settings})`;
    const w = 34 + text.length * 6.6 + 24;
    if (lx + w > width - 10 && lx > margin.left) {
      lx = margin.left;
      ly += 22;
    }
    const dash = isFloor(s.name) ? ' stroke-dasharray="6 4"' : '';
    out.push(
      `<line x1="${lx}" y1="${ly}" x2="${lx + 28}" y2="${ly}" stroke="${s.color}" stroke-width="2"${dash}/>` +
        `<text x="${lx + 34}" y="${ly + 4}">${esc(text)}</text>`,
    );
    lx += w;
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/**
 * Formats the written files the way the repository's `biome check` expects (it pads markdown
 * tables), so the committed report passes lint. Skipped when the root has no biome installed.
 */
function formatWithBiome(files: string[]): void {
  const repoRoot = fileURLToPath(new URL('../../..', import.meta.url));
  const biome = path.join(repoRoot, 'node_modules', '.bin', 'biome');
  if (!fs.existsSync(biome)) return;
  spawnSync(biome, ['format', '--write', ...files], { cwd: repoRoot, stdio: 'ignore' });
}

/** Writes latest.jsonl, latest.md and latest.svg into `dir`; returns their paths. */
export function writeReport(dir: string, data: RunData): string[] {
  const aggs = aggregate(data.results);
  // One JSON object per line: raw cells, easy to diff and to load elsewhere.
  const json = path.join(dir, 'latest.jsonl');
  const md = path.join(dir, 'latest.md');
  const svg = path.join(dir, 'latest.svg');
  const { results, ...header } = data;
  fs.writeFileSync(
    json,
    [header, ...results]
      .map((x) => JSON.stringify(x))
      .join('\n')
      .concat('\n'),
  );
  fs.writeFileSync(svg, svgChart(aggs));
  fs.writeFileSync(md, markdown(data, aggs, 'latest.svg'));
  formatWithBiome([md, svg]);
  return [md, svg, json];
}
