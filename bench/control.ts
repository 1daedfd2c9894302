/**
 * Control-plane costs per epoch, as ratios to the segment encode cost measured
 * in the same run (epochs of 1, 64 and 1024 records of 4 KiB):
 *
 *   encode      encodeSegment(epoch, records, 2)        — the baseline (1.00)
 *   assemble    sort + concatenate already-encoded lane records (what the engine does)
 *   digest      SHA-256 of header + records
 *   certify     buildCommitCertificate: record walk + SHA-256 + certificate + both CRCs
 *   trailer     certify + encode the version-3 trailer
 *   shadow      shadowCompare: independent conservative build + certificate + byte compare
 *
 * Then the storage choice, on the real disk of this machine (fsync 'full'):
 * one version-3 file per epoch (segment + trailer) against a segment file plus a
 * sidecar certificate file (a second durable create: write, fdatasync, rename,
 * directory fsync).
 *
 * Then the real engine with and without the control plane (1 and 64
 * committers), and last the lane budget: the controller's budget acting on
 * the engine against the same controller with its budget pinned (skip both
 * with --no-engine).
 *
 * Medians of RUNS runs, each repeating for at least RUN_MIN_MS.
 *   npx tsx bench/control.ts [--no-engine]       (or: npm run bench:control)
 *   npx tsx bench/control.ts --lane-budget       (the lane-budget part alone)
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buildCommitCertificate, certificatePayloadDigest } from '../src/control/certify.js';
import type { LaneBudgetChange } from '../src/control/controller.js';
import { ControlPlane } from '../src/control/plane.js';
import { encodeCertificateTrailer } from '../src/control/segment-v3.js';
import { conservativeSegment, type ShadowBatch, shadowCompare } from '../src/control/shadow.js';
import { ParallelWal } from '../src/engine/wal.js';
import { encodedRecordBytes, encodeRecordInto } from '../src/format/record.js';
import { encodeSegment } from '../src/format/segment.js';
import type { WalRecord } from '../src/format/types.js';
import { writeSegmentFile } from '../src/storage/segment-files.js';

const RUNS = 7;
const RUN_MIN_MS = 200;
const PAGE_BYTES = 4096;
const EPOCH = 42n;
const LANES = 2;

function makeRecords(count: number): WalRecord[] {
  const records: WalRecord[] = [];
  for (let i = 0; i < count; i++) {
    const seq = 1000n + BigInt(i);
    records.push({
      txnToken: { id: seq, epoch: 0 },
      epoch: EPOCH,
      pageId: 1 + i,
      beginSeq: seq,
      endSeq: seq,
      beforeImage: new Uint8Array(0),
      afterImage: new Uint8Array(randomBytes(PAGE_BYTES)),
    });
  }
  return records;
}

function wire(records: readonly WalRecord[]): Uint8Array {
  const out = new Uint8Array(records.reduce((n, r) => n + 4 + encodedRecordBytes(r, 2), 0));
  let at = 0;
  for (const r of records) at = encodeRecordInto(r, 2, out, at);
  return out;
}

/** µs per call of `fn` over one run of at least RUN_MIN_MS. */
function runOnce(fn: () => unknown): number {
  let calls = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0n;
  do {
    fn();
    calls++;
    elapsed = process.hrtime.bigint() - start;
  } while (elapsed < BigInt(RUN_MIN_MS) * 1_000_000n);
  return Number(elapsed) / 1000 / calls;
}

/**
 * Median µs per call of each function. Every function is warmed up first, then
 * the runs go round-robin (run 1 of each, run 2 of each, …) so that JIT
 * warm-up and background load fall on all of them alike.
 */
function measureAll(fns: readonly (() => unknown)[]): number[] {
  for (const fn of fns) for (let i = 0; i < 3; i++) fn();
  const samples = fns.map(() => [] as number[]);
  for (let run = 0; run < RUNS; run++) {
    fns.forEach((fn, i) => {
      samples[i]!.push(runOnce(fn));
    });
  }
  return samples.map((s) => s.sort((a, b) => a - b)[s.length >> 1]!);
}

const pct = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;

function cpuCosts(): void {
  console.log(
    `control plane CPU cost per epoch (${PAGE_BYTES}-byte pages, ${LANES} lanes; µs, ratio to encode)`,
  );
  console.log('records  encode µs   assemble     digest       certify      trailer      shadow');
  for (const count of [1, 64, 1024]) {
    const records = makeRecords(count);
    // Lane i holds every LANES-th commit, as interleaved writers would.
    const laneRecords = Array.from({ length: LANES }, (_, lane) =>
      records.filter((_, i) => i % LANES === lane),
    );
    const batches: ShadowBatch[] = laneRecords.map((rs, lane) => ({
      laneId: lane,
      commitSeq: rs[0]?.endSeq ?? 0n,
      records: wire(rs),
    }));
    const laneCounts = laneRecords.map((rs) => rs.length);
    const segment = conservativeSegment(EPOCH, 3, batches);
    const certify = () =>
      buildCommitCertificate({
        segment,
        laneCount: LANES,
        laneRecordCounts: laneCounts,
        dbSizePages: 0,
        fallbackActive: false,
        predecessor: { epoch: EPOCH - 1n, certificateCrc32c: 1, commitSeqHi: 999n, dbSizePages: 0 },
      });
    const certificate = certify();
    const predecessor = {
      epoch: EPOCH - 1n,
      certificateCrc32c: 1,
      commitSeqHi: 999n,
      dbSizePages: 0,
    };
    const [encode, assemble, digest, cert, trailer, shadow] = measureAll([
      () => encodeSegment(EPOCH, records, 2),
      () => conservativeSegment(EPOCH, 3, batches),
      () => certificatePayloadDigest(segment),
      certify,
      () => encodeCertificateTrailer(certify()),
      () =>
        shadowCompare({ epoch: EPOCH, batches, parallel: { segment, certificate }, predecessor }),
    ]) as [number, number, number, number, number, number];
    const outcome = shadowCompare({
      epoch: EPOCH,
      batches,
      parallel: { segment, certificate },
      predecessor,
    });
    if (outcome.verdict !== 'clean')
      throw new Error(`bench setup diverged: ${outcome.differences}`);
    const cell = (us: number) =>
      `${us.toFixed(1).padStart(8)} ${(us / encode).toFixed(2).padStart(4)}x`;
    console.log(
      `${String(count).padStart(7)}  ${encode.toFixed(1).padStart(9)}  ${cell(assemble)} ${cell(digest)} ${cell(cert)} ${cell(trailer)} ${cell(shadow)}`,
    );
  }
}

async function storageChoice(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-bench-control-'));
  try {
    const iterations = 100;
    const records = makeRecords(16);
    const certificate = buildCommitCertificate({
      segment: conservativeSegment(EPOCH, 3, [
        { laneId: 0, commitSeq: 1000n, records: wire(records) },
      ]),
      laneCount: 1,
      laneRecordCounts: [records.length],
      dbSizePages: 0,
      fallbackActive: false,
      predecessor: null,
    });
    const trailer = encodeCertificateTrailer(certificate);
    // All bytes prepared before timing. The storage layer does not accept a version-3
    // header yet, so the one-file variant writes the same bytes under a version-2 header:
    // identical size and durable protocol.
    const epochs = Array.from({ length: iterations }, (_, i) => BigInt(i + 1));
    const segments = epochs.map((epoch) =>
      encodeSegment(
        epoch,
        records.map((r) => ({ ...r, epoch })),
        2,
      ),
    );
    const sidecars = epochs.map((epoch) =>
      encodeSegment(epoch, [{ ...records[0]!, epoch, afterImage: trailer }], 2),
    );
    const db = (name: string) => path.join(dir, name);
    // Round-robin so that disk warm-up and background noise hit all three alike.
    const plain: number[] = [];
    const oneFile: number[] = [];
    const withSidecar: number[] = [];
    const timed = async (into: number[], fn: () => Promise<unknown>): Promise<void> => {
      const start = process.hrtime.bigint();
      await fn();
      into.push(Number(process.hrtime.bigint() - start) / 1000);
    };
    for (let i = 0; i < iterations; i++) {
      const epoch = epochs[i]!;
      await timed(plain, () => writeSegmentFile(db('plain.db'), epoch, [segments[i]!]));
      await timed(oneFile, () => writeSegmentFile(db('v3.db'), epoch, [segments[i]!, trailer]));
      await timed(withSidecar, async () => {
        await writeSegmentFile(db('side.db'), epoch, [segments[i]!]);
        await writeSegmentFile(db('side.db-cert'), epoch, [sidecars[i]!]);
      });
    }
    for (const s of [plain, oneFile, withSidecar]) s.sort((a, b) => a - b);
    console.log('');
    console.log(
      `durable epoch write, ${records.length} x 4 KiB records, trailer ${trailer.length} bytes, ${iterations} epochs each (µs)`,
    );
    for (const [name, s] of [
      ['segment only (v2)', plain],
      ['segment + trailer (one v3 file)', oneFile],
      ['segment + sidecar file', withSidecar],
    ] as const) {
      console.log(
        `  ${name.padEnd(32)} p50 ${pct(s, 50).toFixed(0).padStart(6)}  p99 ${pct(s, 99).toFixed(0).padStart(6)}  ratio ${(pct(s, 50) / pct(plain, 50)).toFixed(2)}x`,
      );
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * One epoch through the control plane as the engine would drive it: per
 * commit, encode into a lane (the baseline work) and — when shadow compare may
 * run — stage a second, independent encoding; per epoch, prepareEpoch
 * (header, certificate, shadow compare of sampled epochs). Ratios to the
 * baseline (lane encode + assembly without the control plane).
 */
function pipelineCosts(): void {
  const commits = 64;
  const epochs = 100;
  const base = makeRecords(commits);
  // Per epoch: its records (increasing commit sequences), their canonical wire chunk,
  // and the stage inputs: all prepared outside the timed runs.
  const plan = Array.from({ length: epochs }, (_, e) => {
    const epoch = BigInt(e + 1);
    const records = base.map((r, i) => {
      const seq = BigInt(e * commits + i + 1);
      return { ...r, epoch, beginSeq: seq, endSeq: seq };
    });
    return { epoch, records, chunk: wire(records) };
  });
  /** The engine's own work per epoch: encode every commit into a lane, assemble. */
  const engineWork = (p: (typeof plan)[number]) => {
    wire(p.records);
    conservativeSegment(p.epoch, 2, [{ laneId: 0, commitSeq: 0n, records: p.chunk }]);
  };
  const baseline = () => {
    for (const p of plan) engineWork(p);
  };
  const variant = (control: ConstructorParameters<typeof ControlPlane>[0]) => () => {
    const plane = new ControlPlane({ env: {}, trace: null, controller: false, ...control });
    for (const p of plan) {
      engineWork(p);
      if (plane.stagingBatches) {
        for (let i = 0; i < p.records.length; i++) {
          const { epoch: _e, ...input } = p.records[i]!;
          plane.stageBatch({
            laneId: i % LANES,
            epoch: p.epoch,
            commitSeq: input.beginSeq,
            dbSizePages: 0,
            records: [input],
          });
        }
      }
      const prepared = plane.prepareEpoch({
        epoch: p.epoch,
        chunks: [p.chunk],
        recordCount: commits,
        laneIds: [0, 1],
        recordsPerCore: [commits / 2, commits / 2],
        dbSizePages: 0,
        externalChunks: [],
      });
      if (prepared.substituted || !prepared.acknowledge) throw new Error('bench epoch diverged');
      plane.epochDurable(prepared, 500);
    }
  };
  console.log('');
  console.log(
    `engine-side epoch pipeline, ${commits} commits x 4 KiB per epoch (CPU µs per epoch, ratio to the engine's own encode + assembly)`,
  );
  const rows: [string, ConstructorParameters<typeof ControlPlane>[0]][] = [
    ['control plane, nothing on', { control: { mode: 'auto' } }],
    ['certificates', { control: { mode: 'auto' }, certificates: true }],
    [
      'certificates + shadow 1% (10‰)',
      { control: { mode: 'auto', shadowCompareSamplingPerMille: 10 }, certificates: true },
    ],
    ['certificates + shadow 100%', { control: { mode: 'shadowCompare' }, certificates: true }],
    ['shadow 100%, no certificates', { control: { mode: 'shadowCompare' } }],
  ];
  const [baseUs, ...variantUs] = measureAll([
    baseline,
    ...rows.map(([, options]) => variant(options)),
  ]).map((us) => us / epochs) as [number, ...number[]];
  console.log(
    `  ${'engine encode + assembly'.padEnd(34)} ${baseUs.toFixed(0).padStart(6)} µs  1.00x`,
  );
  rows.forEach(([name], i) => {
    const us = variantUs[i]!;
    console.log(
      `  ${name.padEnd(34)} ${us.toFixed(0).padStart(6)} µs  ${(us / baseUs).toFixed(2)}x`,
    );
  });
}

/**
 * The real engine with and without the control plane: N async committers,
 * one 4 KiB page per commit, fsync `full`, for ENGINE_SECONDS per round;
 * rounds go round-robin over the variants; medians. All variants use the
 * pre-creating segment sink (the default sink refuses version-3 headers until
 * the format reads them), so the only difference is the control plane.
 */
const ENGINE_SECONDS = 1.5;
const ENGINE_ROUNDS = 5;

async function engineRun(
  dir: string,
  committers: number,
  options: ConstructorParameters<typeof ControlPlane>[0] | null,
): Promise<{ commitsPerSec: number; p50: number; p99: number }> {
  const runDir = fs.mkdtempSync(path.join(dir, 'run-'));
  const plane = options === null ? null : new ControlPlane({ env: {}, trace: null, ...options });
  const wal = await ParallelWal.open(path.join(runDir, 'db'), {
    fsync: 'full',
    precreateSegmentFiles: true,
    ...(plane === null ? {} : { controlPlane: plane, slotCount: plane.laneCount() }),
  });
  const image = new Uint8Array(randomBytes(PAGE_BYTES));
  let commits = 0;
  let stop = false;
  const deadline = setTimeout(() => {
    stop = true;
  }, ENGINE_SECONDS * 1000);
  const started = performance.now();
  await Promise.all(
    Array.from({ length: committers }, async (_, c) => {
      const writer = wal.openWriter();
      let i = 0;
      while (!stop) {
        await writer.commit({
          txnToken: { id: BigInt(c * 1_000_000 + ++i), epoch: 0 },
          frames: [{ pageNumber: 1 + ((c * 97 + i) % 10_000), pageData: image, dbSizeIfCommit: 0 }],
        });
        commits++;
      }
      await writer.close();
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  clearTimeout(deadline);
  const latency = wal.stats().commitLatencyMicros;
  await wal.close();
  plane?.close();
  fs.rmSync(runDir, { recursive: true, force: true });
  return { commitsPerSec: commits / seconds, p50: latency.p50, p99: latency.p99 };
}

async function engineOverhead(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-bench-control-engine-'));
  const variants: [string, ConstructorParameters<typeof ControlPlane>[0] | null][] = [
    ['engine alone', null],
    ['+ control plane (controller)', { control: { mode: 'auto' } }],
    ['+ certificates', { control: { mode: 'auto' }, certificates: true }],
    [
      '+ certificates + shadow 1% (10‰)',
      { control: { mode: 'auto', shadowCompareSamplingPerMille: 10 }, certificates: true },
    ],
    ['+ certificates + shadow 100%', { control: { mode: 'shadowCompare' }, certificates: true }],
  ];
  try {
    for (const committers of [1, 64]) {
      const figures = variants.map(
        () => [] as { commitsPerSec: number; p50: number; p99: number }[],
      );
      for (let round = 0; round < ENGINE_ROUNDS; round++) {
        for (let v = 0; v < variants.length; v++) {
          figures[v]!.push(await engineRun(dir, committers, variants[v]![1]));
        }
      }
      const med = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1]!;
      console.log('');
      console.log(
        `engine, ${committers} async committer(s), 4 KiB page per commit, fsync full (medians of ${ENGINE_ROUNDS} x ${ENGINE_SECONDS}s; ratio = median of per-round ratios)`,
      );
      variants.forEach(([name], v) => {
        const f = figures[v]!;
        const cps = med(f.map((x) => x.commitsPerSec));
        // Paired ratio: each round against the engine alone in the same round
        // (the disk drifts between rounds), then the median.
        const ratio = med(f.map((x, round) => x.commitsPerSec / figures[0]![round]!.commitsPerSec));
        const p50 = med(f.map((x) => x.p50));
        const p99 = med(f.map((x) => x.p99));
        console.log(
          `  ${name.padEnd(34)} ${cps.toFixed(0).padStart(7)} commits/s  ${ratio.toFixed(2)}x  p50 ${p50.toFixed(0).padStart(6)} µs  p99 ${p99.toFixed(0).padStart(6)} µs`,
        );
      });
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The lane budget on a workload where it matters: the bytes a lane may hold
 * before appends overflow. One log, two phases, in every variant:
 *
 * - burst: BURST_COMMITTERS async committers on the main thread (so all on
 *   lane 0, as `wal.commit` puts them) commit BURST_PAGES-page transactions
 *   back to back for BURST_SECONDS. An epoch gathers about one transaction
 *   per committer, ≈ 6 MiB: a lane that may hold less sends the rest of the
 *   epoch to its overflow list (a fresh allocation per commit, one more copy
 *   for the write, garbage).
 * - trickle: open-loop single-page commits, TRICKLE_PER_SEC a second, for
 *   TRICKLE_SECONDS: the lanes need a few KiB; a budget grown in the burst
 *   is not needed any more.
 *
 * Every variant runs the same controller (same sealing decisions) on lanes
 * of BUDGET_CAPACITY_BYTES; only who sets the lane byte budget the engine
 * sees differs: the controller's own decisions (it starts at the engine's
 * default lane capacity, 4 MiB), or the budget pinned (a plane whose
 * `laneByteBudget()` returns a constant). Rounds go round-robin; medians;
 * ratios are per round against the budget pinned at 4 MiB.
 */
const BUDGET_LANES = 2;
const BUDGET_CAPACITY_BYTES = 64 * 1024 * 1024;
const BUDGET_DEFAULT_BYTES = 4 * 1024 * 1024;
const BURST_COMMITTERS = 64;
const BURST_PAGES = 24;
const BURST_SECONDS = 1.5;
const TRICKLE_PER_SEC = 1000;
const TRICKLE_SECONDS = 1.5;
const BUDGET_ROUNDS = Number(process.env.PWAL_BENCH_ROUNDS ?? 7);
const MiB = 1024 * 1024;

/** A control plane whose lane byte budget the engine sees pinned at `pinned`, whatever the controller decides. */
class PinnedBudgetPlane extends ControlPlane {
  pinned = BUDGET_DEFAULT_BYTES;
  override laneByteBudget(): number {
    return this.pinned;
  }
}

interface PhaseFigures {
  commitsPerSec: number;
  p50: number;
  p99: number;
}

interface BudgetFigures {
  burst: PhaseFigures;
  trickle: PhaseFigures;
  overflowAppends: number;
  /** Lane buffer memory held at the end of each phase (both arenas of every in-process lane). */
  arenaBurst: number;
  arenaEnd: number;
  budgetBurst: number;
  budgetEnd: number;
  changes: readonly LaneBudgetChange[];
  burstStartMs: number;
}

function phaseFigures(latencies: number[], seconds: number): PhaseFigures {
  latencies.sort((a, b) => a - b);
  return {
    commitsPerSec: latencies.length / seconds,
    p50: pct(latencies, 50),
    p99: pct(latencies, 99),
  };
}

/** Lane buffer memory held by the log's in-process lanes (bench-only look inside). */
function arenaBytes(wal: ParallelWal): number {
  const lanes = (wal as unknown as { lanes: { inProcess: { arenaBytes(): number }[] } }).lanes;
  return lanes.inProcess.reduce((n, lane) => n + lane.arenaBytes(), 0);
}

async function budgetRun(dir: string, pinned: number | null): Promise<BudgetFigures> {
  const runDir = fs.mkdtempSync(path.join(dir, 'run-'));
  const options = {
    env: {},
    trace: null,
    control: { mode: 'auto' as const, laneCountOverride: BUDGET_LANES },
  };
  const plane =
    pinned === null
      ? new ControlPlane(options)
      : Object.assign(new PinnedBudgetPlane(options), { pinned });
  const wal = await ParallelWal.open(path.join(runDir, 'db'), {
    fsync: 'full',
    precreateSegmentFiles: true,
    controlPlane: plane,
    slotCount: BUDGET_LANES,
    bufferCapacityBytes: BUDGET_CAPACITY_BYTES,
  });
  const image = new Uint8Array(randomBytes(PAGE_BYTES));
  let issued = 0;
  const commit = (pages: number): Promise<unknown> => {
    const id = ++issued;
    return wal.commit({
      txnToken: { id: BigInt(id), epoch: 0 },
      frames: Array.from({ length: pages }, (_, k) => ({
        pageNumber: 1 + ((id * 31 + k) % 100_000),
        pageData: image,
        dbSizeIfCommit: 0,
      })),
    });
  };
  // Burst: closed loop, BURST_COMMITTERS at once.
  const overflowBefore = wal.stats().overflowAppends;
  const burstLatencies: number[] = [];
  const burstStartMs = performance.now();
  const burstEnd = burstStartMs + BURST_SECONDS * 1000;
  await Promise.all(
    Array.from({ length: BURST_COMMITTERS }, async () => {
      while (performance.now() < burstEnd) {
        const begun = performance.now();
        await commit(BURST_PAGES);
        burstLatencies.push((performance.now() - begun) * 1000);
      }
    }),
  );
  const burst = phaseFigures(burstLatencies, (performance.now() - burstStartMs) / 1000);
  const overflowAppends = wal.stats().overflowAppends - overflowBefore;
  const arenaBurst = arenaBytes(wal);
  const budgetBurst = pinned ?? plane.laneByteBudget();
  // Trickle: open loop, latency from each commit's scheduled arrival.
  const trickleLatencies: number[] = [];
  const running = new Set<Promise<unknown>>();
  const trickleStart = performance.now();
  let arrivals = 0;
  while (performance.now() < trickleStart + TRICKLE_SECONDS * 1000) {
    const due = Math.floor(((performance.now() - trickleStart) / 1000) * TRICKLE_PER_SEC);
    for (; arrivals < due; arrivals++) {
      const at = trickleStart + (arrivals / TRICKLE_PER_SEC) * 1000;
      const done: Promise<unknown> = commit(1)
        .then(() => trickleLatencies.push((performance.now() - at) * 1000))
        .finally(() => running.delete(done));
      running.add(done);
    }
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  await Promise.all([...running]);
  const trickle = phaseFigures(trickleLatencies, (performance.now() - trickleStart) / 1000);
  const arenaEnd = arenaBytes(wal);
  const budgetEnd = pinned ?? plane.laneByteBudget();
  const changes = plane.controller?.budgetChanges() ?? [];
  await wal.close();
  plane.close();
  fs.rmSync(runDir, { recursive: true, force: true });
  return {
    burst,
    trickle,
    overflowAppends,
    arenaBurst,
    arenaEnd,
    budgetBurst,
    budgetEnd,
    changes: pinned === null ? [...changes] : [],
    burstStartMs,
  };
}

const mib = (bytes: number): string => `${(bytes / MiB).toFixed(bytes < MiB ? 2 : 0)} MiB`;

function printChange(c: LaneBudgetChange, burstStartMs: number): void {
  const before = c.dimension === 'bytes' ? mib(c.bytesBefore ?? 0) : `${c.lanesBefore} lanes`;
  const after = c.dimension === 'bytes' ? mib(c.bytesAfter ?? 0) : `${c.lanesAfter} lanes`;
  const r = c.record;
  console.log(
    `    #${r.decisionId} t=${((c.atMs - burstStartMs) / 1000).toFixed(3)}s epoch ${c.epoch ?? '?'}: ${r.action} (${c.dimension}) ${before} -> ${after}; reason: ${r.topEvidenceTerms.join(' ')}; over ${r.counterfactualAction}, regret ${r.counterfactualRegretMicros} µs`,
  );
}

async function laneBudget(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-bench-control-budget-'));
  const variants: [string, number | null][] = [
    ['pinned 4 MiB (default, start)', BUDGET_DEFAULT_BYTES],
    ['controller (4 MiB ..= 64 MiB)', null],
    ['pinned 1 MiB', 1 * MiB],
    ['pinned 64 MiB (capacity)', BUDGET_CAPACITY_BYTES],
  ];
  try {
    const figures = variants.map(() => [] as BudgetFigures[]);
    for (let round = 0; round < BUDGET_ROUNDS; round++) {
      for (let v = 0; v < variants.length; v++) {
        figures[v]!.push(await budgetRun(dir, variants[v]![1]));
      }
    }
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
    const ratio = (v: number, pick: (f: BudgetFigures) => number) =>
      med(figures[v]!.map((f, round) => pick(f) / pick(figures[0]![round]!)));
    console.log('');
    console.log(
      `lane byte budget: ${BURST_SECONDS}s burst (${BURST_COMMITTERS} committers x ${BURST_PAGES}-page commits, all on lane 0), then ${TRICKLE_SECONDS}s trickle (open loop, ${TRICKLE_PER_SEC}/s single-page commits); lanes of ${mib(BUDGET_CAPACITY_BYTES)} capacity, fsync full, same controller sealing in every row`,
    );
    console.log(
      `medians of ${BUDGET_ROUNDS} interleaved rounds; (x) = median of per-round ratios to the first row (commits/s: higher is better; latencies, ms: lower is better); overflows = appends the lane sent to its overflow list in the burst; memory = lane buffers held at the end of the phase`,
    );
    console.log(
      `  ${'budget'.padEnd(31)} ${'burst commits/s'.padStart(17)} ${'burst p50'.padStart(15)} ${'burst p99'.padStart(16)} ${'overflows'.padStart(9)} ${'memory'.padStart(8)} | ${'trickle p50'.padStart(15)} ${'trickle p99'.padStart(15)} ${'memory'.padStart(8)}`,
    );
    variants.forEach(([name], v) => {
      const f = figures[v]!;
      const cell = (pick: (x: BudgetFigures) => number, scale = 1, digits = 1) =>
        `${(med(f.map(pick)) / scale).toFixed(digits)} (${ratio(v, pick).toFixed(2)}x)`;
      console.log(
        `  ${name.padEnd(31)} ${cell((x) => x.burst.commitsPerSec, 1, 0).padStart(17)} ${cell((x) => x.burst.p50, 1000).padStart(15)} ${cell((x) => x.burst.p99, 1000).padStart(16)} ${med(
          f.map((x) => x.overflowAppends),
        )
          .toFixed(0)
          .padStart(
            9,
          )} ${mib(med(f.map((x) => x.arenaBurst))).padStart(8)} | ${cell((x) => x.trickle.p50, 1000, 2).padStart(15)} ${cell((x) => x.trickle.p99, 1000, 2).padStart(15)} ${mib(med(f.map((x) => x.arenaEnd))).padStart(8)}`,
      );
    });
    const controlled = figures[1]!;
    console.log(
      `  controller's budget at the end of the burst: ${controlled.map((f) => mib(f.budgetBurst)).join(' / ')}; at the end: ${controlled.map((f) => mib(f.budgetEnd)).join(' / ')} (per round)`,
    );
    // The decision records of the round with the median burst throughput.
    const order = controlled
      .map((f, round) => ({ cps: f.burst.commitsPerSec, round }))
      .sort((a, b) => a.cps - b.cps);
    const shown = controlled[order[order.length >> 1]!.round]!;
    const changes = shown.changes;
    console.log(
      `  budget decisions of the median round (${changes.length}; t from the start of the burst, epoch = the open epoch):`,
    );
    if (changes.length === 0) console.log('    none');
    const LIST_MAX = 12;
    for (const c of changes.slice(0, LIST_MAX)) printChange(c, shown.burstStartMs);
    if (changes.length > LIST_MAX) {
      console.log(`    … ${changes.length - LIST_MAX} more; the last:`);
      printChange(changes[changes.length - 1]!, shown.burstStartMs);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv.includes('--lane-budget')) {
  await laneBudget();
} else {
  cpuCosts();
  pipelineCosts();
  await storageChoice();
  if (!process.argv.includes('--no-engine')) {
    await engineOverhead();
    await laneBudget();
  }
}
