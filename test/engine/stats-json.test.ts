import path from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ParallelWal } from '../../src/engine/wal.js';
import { CommitLatencyHistogram } from '../../src/engine/wal-stats.js';
import { jsonSafe } from '../../src/stats-json.js';
import { PageStore } from '../../src/store/page-store.js';
import { makeTempDir } from '../storage/helpers.js';

let tmp: ReturnType<typeof makeTempDir>;
beforeEach(() => {
  tmp = makeTempDir();
});
afterEach(() => tmp.remove());

function batch(id: bigint) {
  return {
    txnToken: { id, epoch: 0 },
    frames: [{ pageNumber: 1, pageData: new Uint8Array(512).fill(1), dbSizeIfCommit: 1 }],
  };
}

describe('stats people can log', () => {
  it('JSON.stringify(wal.stats()) writes every figure, bigints as exact decimal strings', async () => {
    const wal = await ParallelWal.open(path.join(tmp.dir, 'app.db'), { fsync: 'off' });
    try {
      await wal.commit(batch(1n));
      await wal.commit(batch(2n));
      const stats = wal.stats();
      const logged = JSON.parse(JSON.stringify(stats));
      expect(logged.currentEpoch).toBe(stats.currentEpoch.toString());
      expect(logged.acknowledgedEpoch).toBe(String(stats.acknowledgedEpoch));
      expect(logged.commits).toBe(2);
      expect(logged.commitLatencyMicros).toEqual(stats.commitLatencyMicros);
      expect(logged.queueDepths).toEqual(stats.queueDepths);
      // The figures stay bigint for code, and toJSON is not one of them.
      expect(typeof stats.currentEpoch).toBe('bigint');
      expect(Object.keys(stats)).not.toContain('toJSON');
      expect(Object.keys(logged).sort()).toEqual(Object.keys(stats).sort());
    } finally {
      await wal.close();
    }
  });

  it('JSON.stringify(store.stats()) writes the store, its log and its last checkpoint error', async () => {
    const store = await PageStore.open(path.join(tmp.dir, 'pages.db'), { pageSize: 4096 });
    try {
      await store.commit([{ pageNumber: 1, data: new Uint8Array(4096).fill(2) }]);
      await store.checkpoint();
      const stats = store.stats();
      const logged = JSON.parse(JSON.stringify(stats));
      expect(logged.checkpointEpoch).toBe(String(stats.checkpointEpoch));
      expect(logged.wal.currentEpoch).toBe(stats.wal.currentEpoch.toString());
      expect(logged.pageSize).toBe(4096);
    } finally {
      await store.close();
    }
  });

  it('turns errors into name, code and message, and leaves nested bigints nowhere', () => {
    const error = Object.assign(new Error('disk gone'), { code: 'ERR_IO' });
    expect(jsonSafe({ a: [1n, { b: 2n ** 64n }], e: error, n: null })).toEqual({
      a: ['1', { b: '18446744073709551616' }],
      e: { name: 'Error', code: 'ERR_IO', message: 'disk gone' },
      n: null,
    });
  });
});

describe('commit latency summary', () => {
  it('never reports p99 above max (12,121 µs recorded: the bucket top 12,127 is not reported)', () => {
    const histogram = new CommitLatencyHistogram();
    for (let i = 0; i < 100; i++) histogram.record(12.121);
    const summary = histogram.summary();
    expect(summary.max).toBe(12121);
    expect(summary.p99).toBe(12121);
    expect(summary.p50).toBe(12121);
  });

  it('keeps p50 <= p90 <= p99 <= max, max exact, for any recorded latencies', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 50_000_000 }), { minLength: 1 }), (micros) => {
        const histogram = new CommitLatencyHistogram();
        for (const us of micros) histogram.record(us / 1000);
        const s = histogram.summary();
        expect(s.max).toBe(Math.max(...micros));
        expect(s.p50).toBeLessThanOrEqual(s.p90);
        expect(s.p90).toBeLessThanOrEqual(s.p99);
        expect(s.p99).toBeLessThanOrEqual(s.max);
        expect(s.count).toBe(micros.length);
      }),
    );
  });
});
