/**
 * The raw floor of this disk, measured with plain `node:fs/promises` calls
 * (no log code): what one durable append costs, and how fast large durable
 * appends go. Other benches import these functions so that every comparison
 * is made against a floor measured in the same run, on the same disk.
 *
 * It also measures the durable segment protocol (one file per epoch: create
 * a temp file, write, fdatasync, rename, fsync the directory) against
 * alternatives, to put a number on what the crash guarantee costs.
 *
 * Run alone: `npx tsx bench/raw-floor.ts [--dir DIR] [--runs N]`.
 */
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { EarlyAckSegmentSink } from '../src/engine/segment-writer.js';
import { encodeSegment } from '../src/format/segment.js';
import { nodeFileSystem } from '../src/storage/fs.js';
import { writeSegmentFile } from '../src/storage/segment-files.js';

/** Latency percentiles in microseconds and the resulting rate. */
export interface LatencyFigures {
  p50Us: number;
  p99Us: number;
  opsPerSec: number;
  iterations: number;
}

/** Sustained durable bandwidth. */
export interface BandwidthFigures {
  mbPerSec: number;
  bytes: number;
}

/** p-th percentile (0..100) of sorted values. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index]!;
}

/** Median of values (mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function summarize(samplesUs: number[], elapsedMs: number): LatencyFigures {
  const sorted = samplesUs.sort((a, b) => a - b);
  return {
    p50Us: percentile(sorted, 50),
    p99Us: percentile(sorted, 99),
    opsPerSec: (samplesUs.length * 1000) / elapsedMs,
    iterations: samplesUs.length,
  };
}

/** Makes a fresh temporary directory under `parent` (default the OS temp dir). */
export async function benchDir(parent = os.tmpdir()): Promise<string> {
  return fsp.mkdtemp(path.join(parent, 'pwal-bench-'));
}

/**
 * A loop of `recordBytes` appends, each followed by fdatasync, to one file:
 * the cheapest durable write that grows a file (the data, plus the inode for
 * the new size: a journal commit on a journalled ext4, an inode-block write
 * without a journal).
 */
export async function measureAppendFsync(
  dir: string,
  options: { recordBytes?: number; iterations?: number } = {},
): Promise<LatencyFigures> {
  const recordBytes = options.recordBytes ?? 4096;
  const iterations = options.iterations ?? 500;
  const file = path.join(dir, `append-${process.pid}-${Date.now()}.bin`);
  const handle = await fsp.open(file, 'w');
  const data = new Uint8Array(randomBytes(recordBytes));
  const samples: number[] = [];
  try {
    let position = 0;
    // Warm-up: the first syncs of a new file pay for its creation.
    for (let i = 0; i < 10; i++) {
      await handle.write(data, 0, data.length, position);
      position += data.length;
      await handle.datasync();
    }
    const started = performance.now();
    for (let i = 0; i < iterations; i++) {
      const t0 = performance.now();
      await handle.write(data, 0, data.length, position);
      position += data.length;
      await handle.datasync();
      samples.push((performance.now() - t0) * 1000);
    }
    return summarize(samples, performance.now() - started);
  } finally {
    await handle.close();
    await fsp.rm(file, { force: true });
  }
}

/** Durable bandwidth: `chunkBytes` appends, each followed by fdatasync, up to `totalBytes`. */
export async function measureBandwidth(
  dir: string,
  options: { chunkBytes?: number; totalBytes?: number } = {},
): Promise<BandwidthFigures> {
  const chunkBytes = options.chunkBytes ?? 1024 * 1024;
  const totalBytes = options.totalBytes ?? 128 * 1024 * 1024;
  const file = path.join(dir, `bandwidth-${process.pid}-${Date.now()}.bin`);
  const handle = await fsp.open(file, 'w');
  const data = new Uint8Array(randomBytes(chunkBytes));
  try {
    let position = 0;
    const started = performance.now();
    while (position < totalBytes) {
      await handle.write(data, 0, data.length, position);
      position += data.length;
      await handle.datasync();
    }
    const seconds = (performance.now() - started) / 1000;
    return { mbPerSec: position / 1e6 / seconds, bytes: position };
  } finally {
    await handle.close();
    await fsp.rm(file, { force: true });
  }
}

/** Ways to make one epoch's segment durable, for {@link measureSegmentProtocol}. */
export type SegmentProtocol =
  /** The storage layer's `writeSegmentFile`: create temp, write, fdatasync, close, rename, fsync dir. */
  | 'writeSegmentFile'
  /**
   * The same steps, but the temp file is created (and opened) ahead of time,
   * while the previous epoch is being written — the create is off the
   * critical path; write, fdatasync, close, rename and directory fsync are not.
   */
  | 'precreatedTemp'
  /**
   * UNSAFE reference only: create the final name, write, fdatasync; no rename,
   * no directory fsync. A crash can leave a partial file under a segment name
   * or lose the name entirely. Shows what the two extra steps cost.
   */
  | 'directNoDirSync'
  /**
   * The engine's `earlyAck` sink itself: pre-created temp file (name made
   * durable beforehand), write, fdatasync — timed up to here, the
   * acknowledgement — then close, rename, next pre-creation and one
   * directory fsync in the background (awaited after the timed window, so
   * successive operations do not overlap in this sequential measurement).
   */
  | 'earlyAckSink';

/** One protocol's per-operation runner, for interleaved measurement. */
interface ProtocolRunner {
  step(i: number): Promise<number>;
  close(): Promise<void>;
}

async function protocolRunner(
  dir: string,
  protocol: SegmentProtocol | 'rawAppend',
  recordBytes: number,
): Promise<ProtocolRunner> {
  const sub = await fsp.mkdtemp(path.join(dir, `proto-${protocol}-`));
  const db = path.join(sub, 'bench.db');
  const hex = (epoch: bigint): string => epoch.toString(16).padStart(16, '0');
  const segmentFor = (epoch: bigint): Uint8Array =>
    encodeSegment(epoch, [
      {
        txnToken: { id: 1n, epoch: 0 },
        epoch,
        pageId: 1,
        beginSeq: epoch + 1n,
        endSeq: epoch + 1n,
        beforeImage: new Uint8Array(0),
        afterImage: new Uint8Array(randomBytes(recordBytes)),
      },
    ]);
  const syncDir = async (): Promise<void> => {
    const handle = await fsp.open(sub, 'r');
    await handle.sync();
    await handle.close();
  };
  const cleanup = () => fsp.rm(sub, { recursive: true, force: true });
  if (protocol === 'rawAppend') {
    const handle = await fsp.open(path.join(sub, 'append.bin'), 'w');
    const data = new Uint8Array(randomBytes(recordBytes));
    let position = 0;
    return {
      async step() {
        const t0 = performance.now();
        await handle.write(data, 0, data.length, position);
        position += data.length;
        await handle.datasync();
        return (performance.now() - t0) * 1000;
      },
      async close() {
        await handle.close();
        await cleanup();
      },
    };
  }
  if (protocol === 'earlyAckSink') {
    const sink = new EarlyAckSegmentSink(db, nodeFileSystem, 'full');
    return {
      async step(i) {
        const bytes = segmentFor(BigInt(i));
        const t0 = performance.now();
        const written = await sink.write(BigInt(i), [bytes]);
        const took = (performance.now() - t0) * 1000;
        await written.published;
        return took;
      },
      async close() {
        await sink.dispose();
        await cleanup();
      },
    };
  }
  if (protocol === 'precreatedTemp') {
    let nextPath = path.join(sub, `bench.db-wal-tmp-${hex(0n)}-pre`);
    let next = await fsp.open(nextPath, 'wx');
    return {
      async step(i) {
        const epoch = BigInt(i);
        const bytes = segmentFor(epoch);
        const t0 = performance.now();
        await next.write(bytes, 0, bytes.length, 0);
        await next.datasync();
        await next.close();
        await fsp.rename(nextPath, path.join(sub, `bench.db-wal-seg-${hex(epoch)}`));
        await syncDir();
        const took = (performance.now() - t0) * 1000;
        // Off the critical path: in the engine this overlaps the next epoch's filling.
        nextPath = path.join(sub, `bench.db-wal-tmp-${hex(epoch + 1n)}-pre`);
        next = await fsp.open(nextPath, 'wx');
        return took;
      },
      async close() {
        await next.close().catch(() => {});
        await cleanup();
      },
    };
  }
  return {
    async step(i) {
      const epoch = BigInt(i);
      const bytes = segmentFor(epoch);
      const t0 = performance.now();
      if (protocol === 'writeSegmentFile') {
        await writeSegmentFile(db, epoch, [bytes], { fsync: 'full' });
      } else {
        const handle = await fsp.open(path.join(sub, `bench.db-wal-seg-${hex(epoch)}`), 'wx');
        await handle.write(bytes, 0, bytes.length, 0);
        await handle.datasync();
        await handle.close();
      }
      return (performance.now() - t0) * 1000;
    },
    close: cleanup,
  };
}

/**
 * Latency of making one small segment (one 4 KiB record by default) durable
 * with each protocol, beside a raw 4 KiB append+fdatasync. The protocols run
 * interleaved, one operation each in turn, so that the disk's slow and fast
 * periods hit all of them alike (this disk's latency drifts by 5x over
 * seconds; measured back to back, whichever ran first looked worst).
 */
export async function compareSegmentProtocols(
  dir: string,
  options: { recordBytes?: number; iterations?: number } = {},
): Promise<Record<SegmentProtocol | 'rawAppend', LatencyFigures>> {
  const iterations = options.iterations ?? 300;
  const recordBytes = options.recordBytes ?? 4096;
  const names = [
    'rawAppend',
    'writeSegmentFile',
    'precreatedTemp',
    'earlyAckSink',
    'directNoDirSync',
  ] as const;
  const runners: ProtocolRunner[] = [];
  for (const name of names) runners.push(await protocolRunner(dir, name, recordBytes));
  const samples: number[][] = names.map(() => []);
  const started = performance.now();
  try {
    for (let i = 0; i < iterations; i++) {
      for (let k = 0; k < runners.length; k++) samples[k]!.push(await runners[k]!.step(i));
    }
  } finally {
    for (const runner of runners) await runner.close();
  }
  const elapsedMs = (performance.now() - started) / names.length;
  const out = {} as Record<SegmentProtocol | 'rawAppend', LatencyFigures>;
  names.forEach((name, k) => {
    out[name] = summarize(samples[k]!, elapsedMs);
  });
  return out;
}

/** The floor figures every bench prints beside its own. */
export interface RawFloor {
  append4k: LatencyFigures;
  bandwidth1m: BandwidthFigures;
  /** The bandwidth floor expressed in 4 KiB pages per second. */
  pagesPerSecFloor: number;
}

/** Measures the floor `runs` times and keeps the median of each figure. */
export async function measureRawFloor(dir: string, runs = 3): Promise<RawFloor> {
  const appends: LatencyFigures[] = [];
  const bandwidths: BandwidthFigures[] = [];
  for (let i = 0; i < runs; i++) {
    appends.push(await measureAppendFsync(dir));
    bandwidths.push(await measureBandwidth(dir, { totalBytes: 64 * 1024 * 1024 }));
  }
  const append4k: LatencyFigures = {
    p50Us: median(appends.map((a) => a.p50Us)),
    p99Us: median(appends.map((a) => a.p99Us)),
    opsPerSec: median(appends.map((a) => a.opsPerSec)),
    iterations: appends.reduce((n, a) => n + a.iterations, 0),
  };
  const mbPerSec = median(bandwidths.map((b) => b.mbPerSec));
  return {
    append4k,
    bandwidth1m: { mbPerSec, bytes: bandwidths.reduce((n, b) => n + b.bytes, 0) },
    pagesPerSecFloor: (mbPerSec * 1e6) / 4096,
  };
}

/** Formats microseconds as milliseconds with 3 decimals. */
export function ms(us: number): string {
  return (us / 1000).toFixed(3);
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const dirArg = args.indexOf('--dir');
  const runsArg = args.indexOf('--runs');
  const runs = runsArg >= 0 ? Number(args[runsArg + 1]) : 3;
  const dir = await benchDir(dirArg >= 0 ? args[dirArg + 1] : undefined);
  try {
    const floor = await measureRawFloor(dir, runs);
    console.log(`raw floor (median of ${runs} runs) in ${dir}`);
    console.log(
      `  4 KiB append+fdatasync: p50 ${ms(floor.append4k.p50Us)} ms, p99 ${ms(floor.append4k.p99Us)} ms, ${floor.append4k.opsPerSec.toFixed(0)} ops/s`,
    );
    console.log(
      `  1 MiB append+fdatasync: ${floor.bandwidth1m.mbPerSec.toFixed(1)} MB/s = ${floor.pagesPerSecFloor.toFixed(0)} pages/s of 4 KiB`,
    );
    console.log('segment protocol, one 4 KiB record per segment (interleaved, median of runs):');
    const runsOut: Record<string, LatencyFigures>[] = [];
    for (let i = 0; i < runs; i++) runsOut.push(await compareSegmentProtocols(dir));
    for (const name of [
      'rawAppend',
      'writeSegmentFile',
      'precreatedTemp',
      'earlyAckSink',
      'directNoDirSync',
    ]) {
      const p50 = median(runsOut.map((r) => r[name]!.p50Us));
      const p99 = median(runsOut.map((r) => r[name]!.p99Us));
      const raw = median(runsOut.map((r) => r.rawAppend!.p50Us));
      console.log(
        `  ${name.padEnd(17)} p50 ${ms(p50)} ms (${(p50 / raw).toFixed(2)}x raw append), p99 ${ms(p99)} ms`,
      );
    }
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await main();
}
