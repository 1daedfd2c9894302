/**
 * The control plane inside the real engine: ParallelWal opened with a
 * ControlPlane (`controlPlane` option), several writers committing
 * concurrently, then a reopen that recovers the pages.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { verifyCertificateChainOnDisk } from '../../src/control/chain-files.js';
import { ControlPlane, type ControlPlaneOptions } from '../../src/control/plane.js';
import { memoryTraceSink, summarizeTrace } from '../../src/control/trace.js';
import type { EngineControl } from '../../src/engine/control-hooks.js';
import { type CommitResult, ParallelWal } from '../../src/engine/wal.js';
import { recoverAndApplySegments } from '../../src/storage/recovery.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

const WRITERS = 4;
const COMMITS_PER_WRITER = 40;

function page(writer: number, i: number): Uint8Array {
  return new Uint8Array(128).fill((writer * 31 + i) & 0xff);
}

interface Outcome {
  pages: Map<number, Uint8Array>;
  results: CommitResult[];
  plane: ControlPlane;
  db: string;
}

async function workload(
  options: ControlPlaneOptions,
  wrap: (plane: ControlPlane) => EngineControl = (plane) => plane,
  bigBatchEvery = 0,
  engine: { precreateSegmentFiles?: boolean } = {},
): Promise<Outcome> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
  dirs.push(dir);
  const db = path.join(dir, 'db.sqlite');
  const plane = new ControlPlane({ env: {}, trace: null, ...options });
  const wal = await ParallelWal.open(db, {
    controlPlane: wrap(plane),
    slotCount: plane.laneCount(),
    fsync: 'off',
    ...engine,
  });
  const results: CommitResult[] = [];
  try {
    await Promise.all(
      Array.from({ length: WRITERS }, async (_, w) => {
        const writer = wal.openWriter();
        for (let i = 0; i < COMMITS_PER_WRITER; i++) {
          const big = bigBatchEvery > 0 && i % bigBatchEvery === 0;
          const frames = [
            { pageNumber: 1 + w * 100 + (i % 10), pageData: page(w, i), dbSizeIfCommit: 0 },
            { pageNumber: 1000 + w, pageData: page(w, i + 1), dbSizeIfCommit: 2000 },
          ];
          if (big)
            frames.push({
              pageNumber: 5000 + w,
              pageData: new Uint8Array(8192),
              dbSizeIfCommit: 6000,
            });
          results.push(
            await writer.commit({ txnToken: { id: BigInt(w * 1000 + i + 1), epoch: 0 }, frames }),
          );
          if (i % 7 === 0) await new Promise((resolve) => setImmediate(resolve));
        }
        await writer.close();
      }),
    );
  } finally {
    await wal.close();
    plane.close();
  }
  const pages = new Map<number, Uint8Array>();
  await recoverAndApplySegments(db, pages);
  return { pages, results, plane, db };
}

describe('ParallelWal with a ControlPlane', () => {
  it('commits identical pages in auto, conservative and shadowCompare', async () => {
    const auto = await workload({ control: { mode: 'auto', laneCountOverride: 3 } });
    const conservative = await workload({ control: { mode: 'conservative' } });
    const shadow = await workload({ control: { mode: 'shadowCompare', laneCountOverride: 3 } });
    expect(auto.pages.size).toBe(WRITERS * 11);
    expect(conservative.pages).toEqual(auto.pages);
    expect(shadow.pages).toEqual(auto.pages);
    // auto: parallel lanes, no fallback.
    expect(auto.results.some((r) => !r.serialized)).toBe(true);
    expect(auto.plane.stats().fallbackActive).toBe(false);
    // conservative: one lane, every commit on the serialized path, operator_forced.
    expect(conservative.plane.laneCount()).toBe(1);
    expect(conservative.results.every((r) => r.serialized)).toBe(true);
    expect(conservative.plane.stats().fallbackReason).toBe('operator_forced');
    // shadowCompare: every epoch compared, all clean.
    const s = shadow.plane.stats().shadow;
    expect(s.compared).toBeGreaterThan(0);
    expect(s).toMatchObject({ diverged: 0, substituted: 0 });
    expect(s.clean).toBe(s.compared);
  });

  it('commits the same records with the controller off', async () => {
    const on = await workload({
      control: { mode: 'auto', laneCountOverride: 2 },
      controller: true,
    });
    const off = await workload({
      control: { mode: 'auto', laneCountOverride: 2 },
      controller: false,
    });
    expect(off.pages).toEqual(on.pages);
    const seqs = (o: Outcome) => o.results.map((r) => r.commitSeq).sort((a, b) => Number(a - b));
    expect(seqs(off)).toEqual(seqs(on));
  });

  it('repairs an injected divergence with the conservative result, latches publication_mismatch', async () => {
    const sink = memoryTraceSink();
    let injected = 0;
    const corrupting = (plane: ControlPlane): EngineControl => ({
      route: (bytes, lane) => plane.route(bytes, lane),
      noteLaneRefused: (lane) => plane.noteLaneRefused(lane),
      get stagingBatches() {
        return plane.stagingBatches;
      },
      stageBatch: (input) => plane.stageBatch(input),
      onSealPoint: (state) => plane.onSealPoint(state),
      prepareEpoch: (input) => {
        // A lane bug: the second non-empty epoch loses a byte of its records.
        if (input.recordCount > 0 && ++injected === 2) {
          const chunks = input.chunks.map((c) => c.slice());
          chunks[0]![chunks[0]!.length - 20]! ^= 0x5a;
          return plane.prepareEpoch({ ...input, chunks });
        }
        return plane.prepareEpoch(input);
      },
      epochDurable: (prepared, micros) => plane.epochDurable(prepared as never, micros),
      epochFailed: (epoch, cause) => plane.epochFailed(epoch, cause),
    });
    const repaired = await workload(
      { control: { mode: 'shadowCompare', laneCountOverride: 2 }, trace: sink },
      corrupting,
    );
    const reference = await workload({ control: { mode: 'auto', laneCountOverride: 2 } });
    expect(repaired.pages).toEqual(reference.pages);
    expect(repaired.plane.stats()).toMatchObject({
      fallbackActive: true,
      fallbackReason: 'publication_mismatch',
      shadow: { diverged: 1, substituted: 1 },
    });
    // After the divergence everything took the serialized path.
    const last = repaired.results.slice(-WRITERS);
    expect(last.every((r) => r.serialized)).toBe(true);
    const summary = summarizeTrace(sink.lines().join('\n'));
    expect(summary.byEvent.diverged_substituted).toBe(1);
    expect(summary.byFallbackReason.publication_mismatch).toBeGreaterThan(0);
  });

  it('sends a batch over maxParallelCommitBytes to the serialized path as lane_overflow', async () => {
    const run = await workload(
      { control: { mode: 'auto', laneCountOverride: 2, maxParallelCommitBytes: 4096 } },
      undefined,
      10,
    );
    expect(run.plane.stats().fallbackCounts.lane_overflow).toBeGreaterThan(0);
    expect(run.results.filter((r) => r.serialized).length).toBeGreaterThan(0);
    expect(run.pages.get(5000)).toEqual(new Uint8Array(8192));
  });

  it.each([
    ['writeSegmentFile', false],
    ['the pre-creating sink', true],
  ])(
    'writes a verified certificate chain in the segment files (%s) that recovers like version 2',
    async (_sink, precreateSegmentFiles) => {
      const run = await workload(
        { control: { mode: 'auto', laneCountOverride: 2 }, certificates: true },
        undefined,
        0,
        { precreateSegmentFiles },
      );
      const report = await verifyCertificateChainOnDisk(run.db);
      expect(report.failure).toBeNull();
      expect(report.certifiedSegments).toBe(report.segments);
      expect(report.segments).toBe(run.plane.stats().certificates.issued);
      expect(run.plane.lastCertificate?.dbSizePages).toBe(2000);
      // Version-3 segments recover through the storage layer like version 2.
      const plain = await workload({ control: { mode: 'auto', laneCountOverride: 2 } });
      expect(run.pages.size).toBe(WRITERS * 11);
      expect(run.pages).toEqual(plain.pages);
    },
  );
});
