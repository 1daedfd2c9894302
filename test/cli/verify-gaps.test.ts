import * as fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { segmentPath, writeSegment } from '../../src/storage/segment-files.js';
import { readSkippedEpochs, recordSkippedEpochs } from '../../src/storage/skipped-epochs.js';
import { PageStore } from '../../src/store/page-store.js';
import { makeTempDir, recordFor } from '../storage/helpers.js';
import { runCliCaptured as run } from '../support/cli.js';

let tmp: ReturnType<typeof makeTempDir>;
let dbPath: string;

beforeEach(() => {
  tmp = makeTempDir();
  dbPath = path.join(tmp.dir, 'verify.db');
});
afterEach(() => tmp.remove());

async function writeEpochs(epochs: bigint[]): Promise<void> {
  for (const epoch of epochs) {
    await writeSegment(dbPath, { epoch, records: [recordFor(epoch, { beginSeq: epoch + 1n })] });
  }
}

describe('pwal verify and a missing epoch', () => {
  it('exits 1 with the recovery_gap message when a middle segment is lost', async () => {
    await writeEpochs([0n, 1n, 2n]);
    fs.unlinkSync(segmentPath(dbPath, 1n));
    const { code, out } = await run('verify', dbPath);
    expect(code).toBe(1);
    expect(out).toBe(
      `FAIL recovery_gap: segment of epoch 1 is missing (${segmentPath(dbPath, 1n)}), but epoch 2 has a segment: recovery would skip acknowledged commits\n`,
    );
    const allowed = await run('verify', '--allow-epoch-gaps', dbPath);
    expect(allowed.code).toBe(0);
    expect(allowed.out).toContain('ok: 2 segment(s)');
  });

  it('accepts ranges recorded as given up, even with a corrupt segment inside them', async () => {
    await writeEpochs([0n, 1n, 2n, 3n]);
    fs.writeFileSync(segmentPath(dbPath, 1n), Buffer.alloc(30, 0xee));
    fs.unlinkSync(segmentPath(dbPath, 2n));
    expect((await run('verify', dbPath)).code).toBe(1);
    await recordSkippedEpochs(dbPath, { firstEpoch: 1n, lastEpoch: 2n, commitSeqCeiling: 3n });
    const { code, out } = await run('verify', dbPath);
    expect(code).toBe(0);
    expect(out).toContain('ok: 2 segment(s)');
    expect(out).toContain('1 segment(s) in recorded skipped ranges');
  });
});

describe('pwal recover and a missing epoch', () => {
  it('fails closed on a lost segment, and gives the rest up with --skip-corrupt', async () => {
    const store = await PageStore.open(dbPath, { pageSize: 512, autoCheckpoint: false });
    for (const n of [1, 2, 3]) {
      await store.commit([{ pageNumber: n, data: new Uint8Array(512).fill(n) }]);
    }
    await store.close();
    fs.unlinkSync(segmentPath(dbPath, 1n));
    const refused = await run('recover', dbPath);
    expect(refused.code).toBe(1);
    expect(refused.err).toContain('recovery_gap: segment of epoch 1 is missing');
    const skipped = await run('recover', '--skip-corrupt', dbPath);
    expect(skipped.code).toBe(0);
    expect(skipped.out).toContain('set aside (given up');
    expect(await readSkippedEpochs(dbPath)).toEqual([
      { firstEpoch: 1n, lastEpoch: 2n, commitSeqCeiling: 3n },
    ]);
    expect((await run('verify', dbPath)).code).toBe(0);
  });
});
