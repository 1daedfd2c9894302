/**
 * With certificates on, opening a log (ParallelWal.open, PageStore.open)
 * verifies the certificate chain on disk: a broken chain fails the open
 * closed with the reason's code, or falls back under `onChainFailure:
 * 'fallback'`; `pwal verify` reports the same reason.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ControlPlane } from '../../src/control/plane.js';
import { ParallelWal } from '../../src/engine/wal.js';
import { isWalError } from '../../src/errors.js';
import { listSegments } from '../../src/storage/segment-files.js';
import { PageStore } from '../../src/store/page-store.js';
import { runCliCaptured as cli } from '../support/cli.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

const PAGE = 512;

function tempDb(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-chain-'));
  dirs.push(dir);
  return path.join(dir, 'db');
}

function certifyingPlane(extra: Partial<ConstructorParameters<typeof ControlPlane>[0]> = {}) {
  return new ControlPlane({
    control: { mode: 'auto' },
    env: {},
    trace: null,
    controller: false,
    certificates: true,
    ...extra,
  });
}

/** Three certified epochs (one commit each), written through a page store left unfolded. */
async function threeCertifiedEpochs(db: string): Promise<void> {
  const plane = certifyingPlane();
  const store = await PageStore.open(db, {
    pageSize: PAGE,
    autoCheckpoint: false,
    controlPlane: plane,
    slotCount: 1,
  });
  for (let i = 1; i <= 3; i++) {
    await store.commit([{ pageNumber: i, data: new Uint8Array(PAGE).fill(i) }]);
    await store.log.advanceAndFlush(5000);
  }
  await store.close();
  plane.close();
  expect((await listSegments(db)).length).toBeGreaterThanOrEqual(3);
}

/** Alters one byte of the certificate in the middle segment's trailer (its records stay valid). */
async function alterMiddleCertificate(db: string): Promise<void> {
  const segments = await listSegments(db);
  const middle = segments[1]!.path;
  const bytes = fs.readFileSync(middle);
  const magic = Buffer.from([0x50, 0x57, 0x43, 0x54]); // "PWCT"
  const trailer = bytes.lastIndexOf(magic);
  expect(trailer).toBeGreaterThan(24);
  // Certificate byte 12: inside commitSeqLo (covered by its checksum).
  bytes[trailer + 8 + 12]! ^= 0x01;
  fs.writeFileSync(middle, bytes);
}

async function openError(open: () => Promise<{ close(): Promise<void> }>): Promise<unknown> {
  return open().then(
    async (handle) => {
      await handle.close();
      return null;
    },
    (error: unknown) => error,
  );
}

describe('certificate chain checked at open', () => {
  it('ParallelWal.open fails closed with ERR_CERTIFICATE_CHECKSUM_MISMATCH on altered certificate bytes', async () => {
    const db = tempDb();
    await threeCertifiedEpochs(db);
    await alterMiddleCertificate(db);
    const error = await openError(() =>
      ParallelWal.open(db, { controlPlane: certifyingPlane(), slotCount: 1 }),
    );
    expect(isWalError(error, 'ERR_CERTIFICATE_CHECKSUM_MISMATCH'), String(error)).toBe(true);
    const verify = await cli('verify', db);
    expect(verify.code).toBe(1);
    // pwal verify and the open agree: the same code and reason.
    expect(verify.out).toContain('ERR_CERTIFICATE_CHECKSUM_MISMATCH certificateChecksumMismatch');
  });

  it('ParallelWal.open fails closed with ERR_RECOVERY_GAP on a missing middle segment', async () => {
    const db = tempDb();
    await threeCertifiedEpochs(db);
    fs.rmSync((await listSegments(db))[1]!.path);
    const error = await openError(() =>
      ParallelWal.open(db, { controlPlane: certifyingPlane(), slotCount: 1 }),
    );
    expect(isWalError(error, 'ERR_RECOVERY_GAP'), String(error)).toBe(true);
    expect((await cli('verify', db)).code).toBe(1);
  });

  it('PageStore.open fails closed before folding or deleting any segment', async () => {
    const db = tempDb();
    await threeCertifiedEpochs(db);
    await alterMiddleCertificate(db);
    const before = (await listSegments(db)).map((s) => s.epoch);
    const error = await openError(() =>
      PageStore.open(db, { pageSize: PAGE, controlPlane: certifyingPlane(), slotCount: 1 }),
    );
    expect(isWalError(error, 'ERR_CERTIFICATE_CHECKSUM_MISMATCH'), String(error)).toBe(true);
    expect((await listSegments(db)).map((s) => s.epoch)).toEqual(before);
  });

  it("falls back to the conservative path with the reason under onChainFailure: 'fallback', and keeps committing", async () => {
    const db = tempDb();
    await threeCertifiedEpochs(db);
    await alterMiddleCertificate(db);
    const plane = certifyingPlane({ onChainFailure: 'fallback' });
    const wal = await ParallelWal.open(db, { controlPlane: plane, slotCount: 1 });
    try {
      expect(plane.stats().fallbackActive).toBe(true);
      expect(plane.stats().fallbackReason).toBe('certificate_checksum_mismatch');
      const result = await wal.commit({
        txnToken: { id: 99n, epoch: 0 },
        frames: [{ pageNumber: 1, pageData: new Uint8Array(PAGE), dbSizeIfCommit: 3 }],
      });
      expect(result.serialized).toBe(true);
    } finally {
      await wal.close();
      plane.close();
    }
  });

  it('opens an intact chain, also after an explicit verifyChainOnDisk (no second check against its anchor)', async () => {
    const db = tempDb();
    await threeCertifiedEpochs(db);
    expect((await cli('verify', db)).code).toBe(0);
    const plane = certifyingPlane();
    await plane.verifyChainOnDisk(db);
    const wal = await ParallelWal.open(db, { controlPlane: plane, slotCount: 1 });
    expect(plane.stats().fallbackActive).toBe(false);
    await wal.close();
    const store = await PageStore.open(db, {
      pageSize: PAGE,
      controlPlane: certifyingPlane(),
      slotCount: 1,
    });
    expect(store.dbSizePages).toBe(3);
    await store.close();
  });
});
