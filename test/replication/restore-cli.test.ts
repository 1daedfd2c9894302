/**
 * `pwal restore … --apply` (and `pwal follow --once`) end to end against a real 3-node JetStream
 * suite.cluster (see test/support/nats-suite.cluster.ts; without `nats-server` the file
 * logs a note and checks nothing): a replicated page store commits pages,
 * the CLI rebuilds a fresh database from its stream and folds it into the
 * database file, and a page store opened there reads exactly the source —
 * at the end of the stream and at a chosen epoch.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openReplicatedStore } from '../../src/replication/replicated-store.js';
import { PageStore } from '../../src/store/page-store.js';
import { runCliCaptured as cli } from '../support/cli.js';
import { clusterSuite } from '../support/cluster-suite.js';
import { randBytes, randInt, seededRng } from '../support/rng.js';

const suite = clusterSuite('restore CLI tests');

/** A database's contents: its size in pages and every page's image. */
interface DbImage {
  size: number;
  pages: Map<number, Uint8Array>;
}

function copyImage(image: DbImage): DbImage {
  return { size: image.size, pages: new Map(image.pages) };
}

/** What the source holds after each commit, by the commit's epoch. */
interface History {
  final: DbImage;
  byEpoch: { epoch: bigint; image: DbImage }[];
  pageSize: number;
}

/**
 * Commits `count` random transactions (1–6 pages each, some large enough to
 * span several stream messages, one shrink and regrowth) through a
 * replicated page store on `stream`, and waits until the suite.cluster has them.
 */
async function commitHistory(
  dbPath: string,
  stream: string,
  pageSize: number,
  count: number,
  seed: number,
): Promise<History> {
  const rng = seededRng(seed);
  const { store, replicator, close } = await openReplicatedStore(dbPath, {
    pageSize,
    autoCheckpoint: false,
    fsync: 'normal',
    replication: suite.replication(stream),
  });
  const image: DbImage = { size: 0, pages: new Map() };
  const byEpoch: History['byEpoch'] = [];
  try {
    let last = 0n;
    for (let i = 0; i < count; i++) {
      const shrink = i === Math.floor(count / 2);
      const highest = shrink ? 20 : 60;
      const wanted = new Set<number>();
      const pages = i % 10 === 3 ? 40 : randInt(rng, 1, 6);
      while (wanted.size < pages) wanted.add(randInt(rng, 1, highest));
      const writes = [...wanted].map((pageNumber) => ({
        pageNumber,
        data: randBytes(rng, pageSize),
      }));
      const result = await store.commit(writes, shrink ? { dbSizePages: 20 } : {});
      if (shrink) {
        for (const p of [...image.pages.keys()]) if (p > 20) image.pages.delete(p);
        image.size = 20;
      }
      for (const w of writes) image.pages.set(w.pageNumber, w.data);
      image.size = Math.max(image.size, ...wanted);
      expect(result.dbSizePages).toBe(image.size);
      byEpoch.push({ epoch: result.epoch, image: copyImage(image) });
      last = result.epoch;
    }
    await replicator.waitForReplicated(last, 15_000);
    // The model is the source: check it against the store itself.
    await expectImage(store, image, 'source');
  } finally {
    await close();
  }
  return { final: image, byEpoch, pageSize };
}

/** The source's contents as of `epoch`: the last commit at or before it. */
function imageAt(history: History, epoch: bigint): DbImage {
  let found: DbImage | null = null;
  for (const entry of history.byEpoch) if (entry.epoch <= epoch) found = entry.image;
  if (found === null) throw new Error(`no commit at or before epoch ${epoch}`);
  return found;
}

async function expectImage(store: PageStore, want: DbImage, what: string): Promise<void> {
  expect(store.dbSizePages, `${what}: database size`).toBe(want.size);
  const zeros = new Uint8Array(store.pageSize);
  for (let p = 1; p <= want.size; p++) {
    const data = await store.read(p);
    const expected = want.pages.get(p) ?? zeros;
    expect(Buffer.from(data).equals(Buffer.from(expected)), `${what}: page ${p}`).toBe(true);
  }
  await expect(store.read(want.size + 1), `${what}: past the end`).rejects.toMatchObject({
    code: 'ERR_STORE_PAGE_OUT_OF_RANGE',
  });
}

async function expectRestored(dbPath: string, want: DbImage, pageSize: number, what: string) {
  // A plain page store opens the restored database: everything is in the file.
  const store = await PageStore.open(dbPath, { autoCheckpoint: false });
  try {
    expect(store.pageSize).toBe(pageSize);
    await expectImage(store, want, what);
    expect(store.recovery.segmentsApplied, `${what}: nothing left to fold`).toBe(0);
  } finally {
    await store.close();
  }
}

function restoreArgs(stream: string, target: string, ...extra: string[]): string[] {
  return ['restore', '--from', suite.cluster!.urls.join(','), '--stream', stream, target, ...extra];
}

describe('pwal restore --apply', () => {
  it('rebuilds a fresh database whose page store reads exactly the source, at the end and at a chosen epoch', async () => {
    if (suite.cluster === null) return;
    const source = suite.tempDb();
    const history = await commitHistory(source, 'RCLIAPPLY', 4096, 40, 7);
    const epochs = history.byEpoch.map((e) => e.epoch);

    const full = suite.tempDb();
    const run = await cli(...restoreArgs('RCLIAPPLY', full, '--apply'));
    expect(run.err).toBe('');
    expect(run.code).toBe(0);
    const lastEpoch = epochs.at(-1)!;
    expect(run.out).toMatch(/^restored \d+ epoch\(s\), \d+ bytes into /);
    expect(run.out).toContain(`up to epoch ${lastEpoch}\n`);
    expect(run.out).toMatch(/applied into the database file: \d+ page\(s\) written\n$/);
    expect(run.out).not.toContain('stopped at');
    await expectRestored(full, history.final, 4096, 'whole stream');

    // Point in time: the state right after an early, a middle and the shrinking commit.
    for (const cut of [epochs[2]!, epochs[20]!, epochs[27]!]) {
      const target = suite.tempDb();
      const atCut = await cli(
        ...restoreArgs('RCLIAPPLY', target, '--until-epoch', String(cut), '--apply'),
      );
      expect(atCut.code, atCut.err).toBe(0);
      expect(atCut.out).toContain(`up to epoch ${cut}\n`);
      await expectRestored(target, imageAt(history, cut), 4096, `epoch ${cut}`);
    }
  }, 120_000);

  it('prints one JSON object with --json', async () => {
    if (suite.cluster === null) return;
    const source = suite.tempDb();
    const history = await commitHistory(source, 'RCLIJSON', 1024, 12, 11);
    const cut = history.byEpoch[5]!.epoch;
    const target = suite.tempDb();
    const run = await cli(
      ...restoreArgs(
        'RCLIJSON',
        target,
        '--until-epoch',
        String(cut),
        '--apply',
        '--page-size',
        '1024',
        '--json',
      ),
    );
    expect(run.code, run.err).toBe(0);
    expect(run.out.trim().split('\n')).toHaveLength(1);
    const report = JSON.parse(run.out) as Record<string, unknown>;
    expect(report.lastEpoch).toBe(String(cut));
    expect(report.stoppedBy).toBeNull();
    expect(report.duplicateCount).toBe(0);
    expect(report.incompleteTail).toBe(false);
    expect(typeof report.databaseId).toBe('string');
    expect(report.epochsRestored).toBeGreaterThan(0);
    expect(report.bytesRestored).toBeGreaterThan(0);
    const applied = report.applied as { pagesWritten: number; checkpointEpoch: string };
    expect(applied.checkpointEpoch).toBe(String(cut));
    expect(applied.pagesWritten).toBeGreaterThan(0);
    await expectRestored(target, imageAt(history, cut), 1024, 'json run');
  }, 120_000);

  it('fails with a message when the stream is missing or the target already has a database', async () => {
    if (suite.cluster === null) return;
    const missing = await cli(...restoreArgs('RCLINOSUCH', suite.tempDb(), '--apply'));
    expect(missing.code).toBe(1);
    expect(missing.err).toContain('RCLINOSUCH');
    expect(missing.err).toContain('ERR_REPLICATION_STREAM');

    const source = suite.tempDb();
    await commitHistory(source, 'RCLITWICE', 4096, 3, 5);
    const target = suite.tempDb();
    expect((await cli(...restoreArgs('RCLITWICE', target))).code).toBe(0);
    const again = await cli(...restoreArgs('RCLITWICE', target, '--apply'));
    expect(again.code).toBe(1);
    expect(again.err).toContain('already has');

    // Another database at the target (a checkpointed one: no segments) is refused too.
    const occupied = suite.tempDb();
    const other = await PageStore.open(occupied, { pageSize: 4096 });
    await other.commit([{ pageNumber: 1, data: new Uint8Array(4096).fill(3) }]);
    await other.close({ checkpoint: true });
    const mixed = await cli(...restoreArgs('RCLITWICE', occupied, '--apply'));
    expect(mixed.code).toBe(1);
    expect(mixed.err).toContain('already holds a database');
    expect(Buffer.from((await readFirstPage(occupied)).subarray(0, 4))).toEqual(
      Buffer.from([3, 3, 3, 3]),
    );

    // A bad --page-size is a usage error found before anything is written.
    const early = suite.tempDb();
    const bad = await cli(...restoreArgs('RCLITWICE', early, '--apply', '--page-size', 'abc'));
    expect(bad.code).toBe(2);
    expect(fs.readdirSync(path.dirname(early))).toEqual([]);
  }, 120_000);

  it('learns the page size for --apply from the stream when --page-size is not given', async () => {
    if (suite.cluster === null) return;
    const source = suite.tempDb();
    const history = await commitHistory(source, 'RCLILEARN', 1024, 8, 13);
    const target = suite.tempDb();
    const run = await cli(...restoreArgs('RCLILEARN', target, '--apply'));
    expect(run.code, run.err).toBe(0);
    await expectRestored(target, history.final, 1024, 'learned page size');
  }, 120_000);
});

async function readFirstPage(dbPath: string): Promise<Uint8Array> {
  const store = await PageStore.open(dbPath, { autoCheckpoint: false });
  try {
    return await store.read(1);
  } finally {
    await store.close();
  }
}

describe('pwal follow --once', () => {
  function followArgs(stream: string, target: string, ...extra: string[]): string[] {
    return [
      'follow',
      '--from',
      suite.cluster!.urls.join(','),
      '--stream',
      stream,
      target,
      '--once',
      ...extra,
    ];
  }

  it('prints JSON status lines and a final "stopped" line with --json', async () => {
    if (suite.cluster === null) return;
    const source = suite.tempDb();
    const history = await commitHistory(source, 'RCLIFOLLOW', 1024, 8, 17);
    const last = history.byEpoch.at(-1)!.epoch;
    const replica = suite.tempDb();
    const run = await cli(...followArgs('RCLIFOLLOW', replica, '--json'));
    expect(run.code, run.err).toBe(0);
    expect(run.err).toBe('');
    const lines = run.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.at(-1)).toEqual({ type: 'stopped', reason: 'caught-up', epoch: String(last) });
    for (const line of lines.slice(0, -1)) expect(line.type).toBe('status');
    expect(lines.at(-2)).toMatchObject({ epoch: String(last) });
  }, 120_000);

  it('fails with the typed error, creating nothing, when the stream does not exist', async () => {
    if (suite.cluster === null) return;
    const replica = suite.tempDb();
    const run = await cli(...followArgs('RCLIFOLLOWNONE', replica));
    expect(run.code).toBe(1);
    expect(run.err).toBe('pwal: stream RCLIFOLLOWNONE does not exist (ERR_REPLICATION_STREAM)\n');
    expect(
      fs.existsSync(path.dirname(replica)) ? fs.readdirSync(path.dirname(replica)) : [],
    ).toEqual([]);
  }, 120_000);
});
