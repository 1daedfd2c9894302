/**
 * The certificate chain of a database's segment files on disk: what recovery
 * and `pwal verify` check. Reads one segment at a time through the
 * {@link WalFileSystem}, keeping only the last good link.
 */
import { nodeFileSystem, type WalFileSystem } from '../storage/fs.js';
import { listSegments } from '../storage/segment-files.js';
import type { CertificateLink } from './certificate.js';
import { type SegmentChainReport, SegmentChainVerifier } from './segment-v3.js';

/** Options of {@link verifyCertificateChainOnDisk}. */
export interface ChainOnDiskOptions {
  fs?: WalFileSystem;
  /** Link the first segment must chain to (the last certificate of an applied, deleted prefix). */
  anchor?: CertificateLink | null;
  /** Report the first failure instead of throwing it. */
  skipCorrupt?: boolean;
  /** Segments to leave out (epochs recorded as given up, which recovery never reads). */
  ignoreEpoch?: (epoch: bigint) => boolean;
}

/** `SegmentChainReport` plus how many segment files were listed. */
export interface ChainOnDiskReport extends SegmentChainReport {
  segments: number;
}

/**
 * Verifies the certificate chain of every segment of `dbPath`, in epoch order.
 * A missing middle segment is `recoveryGap`, a broken link or interval
 * `certificateGap`, altered bytes `certificateChecksumMismatch`.
 * @throws {CertificateChainError} at the first failure unless `skipCorrupt`.
 * @throws the storage layer's typed errors when listing or reading fails.
 */
export async function verifyCertificateChainOnDisk(
  dbPath: string,
  options: ChainOnDiskOptions = {},
): Promise<ChainOnDiskReport> {
  const fs = options.fs ?? nodeFileSystem;
  const files = (await listSegments(dbPath, { fs })).filter(
    (file) => options.ignoreEpoch?.(file.epoch) !== true,
  );
  const verifier = new SegmentChainVerifier(options.anchor ?? null);
  for (const file of files) {
    const bytes = await fs.readFile(file.path);
    if (verifier.push({ epoch: file.epoch, bytes }) !== null) break;
  }
  const report = verifier.report();
  if (report.failure !== null && options.skipCorrupt !== true) throw report.failure;
  return { ...report, segments: files.length };
}
