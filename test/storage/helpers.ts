import * as fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { WalRecord } from '../../src/format/types.js';

/** A fresh temporary directory; call the returned `remove` in afterEach. */
export function makeTempDir(): { dir: string; remove: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
  return { dir, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** One committed record of `epoch` on `pageId` whose after-image is `fill` repeated. */
export function recordFor(
  epoch: bigint,
  options: {
    txnId?: bigint;
    pageId?: number;
    beginSeq?: bigint;
    fill?: number;
    size?: number;
    committed?: boolean;
  } = {},
): WalRecord {
  const beginSeq = options.beginSeq ?? epoch * 100n;
  return {
    txnToken: { id: options.txnId ?? (epoch === 0n ? 1n : epoch), epoch: 0 },
    epoch,
    pageId: options.pageId ?? 1,
    beginSeq,
    endSeq: options.committed === false ? null : beginSeq,
    beforeImage: new Uint8Array(0),
    afterImage: new Uint8Array(options.size ?? 16).fill(options.fill ?? Number(epoch & 0xffn)),
  };
}

/** Asserts `fn` rejects and returns the rejection. */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}
