/**
 * parallel-wal, `fsync: 'full'`: `wal.commit(batch)` resolves once the commit's epoch is durable.
 * Async committers share the main thread's lane(s); worker writers get their own lanes through
 * `wal.workerHandle()` + `attachWriter(handle)`.
 *
 * The library is loaded from TypeScript sources through tsx: by default a snapshot of the
 * repository's committed HEAD (see `run.ts`), so the report names the commit it measured. Its
 * shape is described locally and checked at run time, so this file type-checks whatever state
 * the engine is in.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MessagePort, type Transferable } from 'node:worker_threads';
import { pageImage, pageNumberOf } from '../lib/common.js';
import { type SystemDef, VerifyTally, type WorkerStore } from '../lib/system.js';

interface Frame {
  pageNumber: number;
  pageData: Uint8Array;
  dbSizeIfCommit: number;
}
interface Batch {
  txnToken: { id: bigint; epoch: number };
  frames: Frame[];
}
interface Wal {
  commit(batch: Batch): Promise<unknown>;
  close(): Promise<void>;
  stats(): Record<string, unknown>;
  workerHandle?(): unknown;
  recycleSegments?(
    entries: readonly { epoch: bigint; path: string }[],
    floor: bigint,
  ): Promise<number>;
}
interface Writer {
  commit(batch: Batch): Promise<unknown>;
  close?(): Promise<void> | void;
}
interface SegmentRecord {
  txnToken: { id: bigint; epoch: number };
  pageId: number;
  endSeq: bigint | null;
  afterImage: Uint8Array;
}
interface WalConfig {
  fsync: 'full';
  precreateSegmentFiles?: boolean;
  segmentSink?: 'storage' | 'precreate' | 'earlyAck' | 'pool';
  ioThread?: boolean;
  callerWriteBytesMax?: number;
}
interface PwalModule {
  ParallelWal: { open(dbPath: string, config: WalConfig): Promise<Wal> };
  attachWriter?(handle: unknown): Writer | Promise<Writer>;
  workerHandleTransferList?(handle: unknown): Transferable[];
  listSegments?(dbPath: string): Promise<{ epoch: bigint; path: string }[]>;
  readSegment?(path: string): Promise<{ records: SegmentRecord[] }>;
  recoverSegments?(dbPath: string, options?: object): Promise<{ records: SegmentRecord[] }>;
}

/**
 * The library's sources (see {@link pwalSourceDir}), or an error saying what is missing. The
 * worker-side pieces come from the package root when it exports them, else from
 * `src/engine/worker.ts` (the `parallel-wal/worker` entry).
 */
export async function loadPwal(): Promise<PwalModule> {
  const base = pwalSourceDir();
  const root = pathToFileURL(path.join(base, 'src', 'index.ts')).href;
  const mod = { ...((await import(root)) as Partial<PwalModule>) };
  if (typeof mod.ParallelWal?.open !== 'function') {
    throw new Error(`parallel-wal: ${base}/src/index.ts does not export ParallelWal`);
  }
  if (!mod.attachWriter) {
    const workerModule = pathToFileURL(path.join(base, 'src', 'engine', 'worker.ts')).href;
    try {
      Object.assign(mod, (await import(workerModule)) as Partial<PwalModule>);
    } catch {
      // no worker writers in this version
    }
  }
  return mod as PwalModule;
}

/**
 * Where the library's sources are: `PWAL_SRC_DIR` (the runner sets it to a snapshot of the
 * committed HEAD, so colleagues' uncommitted edits are not measured), else the working tree.
 */
export function pwalSourceDir(): string {
  return process.env.PWAL_SRC_DIR ?? fileURLToPath(new URL('../../..', import.meta.url));
}

/** The MessagePorts inside a handle: what must be transferred with it. */
function portsOf(handle: unknown): Transferable[] {
  if (typeof handle !== 'object' || handle === null) return [];
  return Object.values(handle).filter((v): v is MessagePort => v instanceof MessagePort);
}

const dbPathOf = (dir: string): string => path.join(dir, 'bench.db');

function batchOf(id: number, pages: Buffer[]): Batch {
  return {
    txnToken: { id: BigInt(id), epoch: 0 },
    frames: pages.map((pageData, i) => ({
      pageNumber: pageNumberOf(id, i),
      pageData,
      dbSizeIfCommit: i === pages.length - 1 ? pageNumberOf(id, i) : 0,
    })),
  };
}

function fsyncsOf(stats: Record<string, unknown>): number | undefined {
  const v = stats.fsyncs;
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  return undefined;
}

/** What the read-back has found so far in one cell's directory (the truncating consumer reads early). */
interface ReadBack {
  found: Map<number, number>;
  tally: VerifyTally;
}
const readBacks = new Map<string, ReadBack>();

function readBackOf(dir: string): ReadBack {
  let state = readBacks.get(dir);
  if (state === undefined) {
    state = { found: new Map(), tally: new VerifyTally() };
    readBacks.set(dir, state);
  }
  return state;
}

/** Checks one record read back against what the cell wrote, and counts it. */
function takeRecord(state: ReadBack, r: SegmentRecord): void {
  const id = Number(r.txnToken.id);
  const image = Buffer.from(r.afterImage.buffer, r.afterImage.byteOffset, r.afterImage.length);
  const index = image.length >= 12 ? image.readUInt32LE(8) : -1;
  const ok =
    r.endSeq !== null &&
    index >= 0 &&
    r.pageId === pageNumberOf(id, index) &&
    Buffer.compare(image, pageImage(id, index)) === 0;
  if (!ok) {
    state.tally.check(false, () => `record of txn ${id} page ${r.pageId} is not what was written`);
  }
  state.found.set(id, (state.found.get(id) ?? 0) + 1);
}

/** How often the truncating consumer reads and gives back published segments. */
const TRUNCATE_EVERY_MS = 20;

/**
 * The log's consumer in the truncating variant, as a real user of a write-ahead log runs one:
 * every {@link TRUNCATE_EVERY_MS} it reads every published segment but the newest (CRC-checked
 * by `readSegment`, each page compared with what was written, exactly as the final read-back
 * does) and hands them back with `wal.recycleSegments` (the pool sink writes later epochs over
 * them; other sinks unlink them). Its reads, checks and renames run on the cell's event loop,
 * inside the measured window. Returns a function that stops it and waits for the current round.
 */
function startTruncating(mod: PwalModule, wal: Wal, dir: string): () => Promise<void> {
  const { listSegments, readSegment } = mod;
  if (!listSegments || !readSegment || typeof wal.recycleSegments !== 'function') {
    throw new Error('parallel-wal: listSegments/readSegment/recycleSegments not exported');
  }
  const state = readBackOf(dir);
  const dbPath = dbPathOf(dir);
  let stopped = false;
  let failure: unknown = null;
  const round = async (): Promise<void> => {
    // Published segment names only, sorted by epoch.
    const published = await listSegments(dbPath);
    if (published.length < 2) return;
    const consumed = published.slice(0, -1);
    for (const seg of consumed) {
      for (const r of (await readSegment(seg.path)).records) takeRecord(state, r);
    }
    await wal.recycleSegments!(consumed, published[published.length - 1]!.epoch);
  };
  const loop = (async () => {
    while (!stopped) {
      await new Promise((resolve) => setTimeout(resolve, TRUNCATE_EVERY_MS));
      if (stopped) break;
      try {
        await round();
      } catch (error) {
        failure = error;
        return;
      }
    }
  })();
  return async () => {
    stopped = true;
    await loop;
    if (failure !== null) throw failure;
  };
}

/** parallel-wal opened with `config`, under a name and label of its own. */
function pwalSystem(
  name: string,
  label: string,
  settings: string,
  config: WalConfig,
  truncate = false,
): SystemDef {
  return {
    name,
    label,
    settings,
    supportsWorkers: true,
    async versions() {
      const pkg = JSON.parse(readFileSync(path.join(pwalSourceDir(), 'package.json'), 'utf8')) as {
        version: string;
      };
      return {
        'parallel-wal': `${pkg.version} (${process.env.PWAL_SRC_DESC ?? 'working tree'})`,
      };
    },
    effectiveConcurrency(committers, workers) {
      return { n: committers * Math.max(1, workers) };
    },
    async open(dir) {
      const mod = await loadPwal();
      const wal = await mod.ParallelWal.open(dbPathOf(dir), config);
      const stopTruncating = truncate ? startTruncating(mod, wal, dir) : null;
      return {
        commit: async (id, pages) => {
          await wal.commit(batchOf(id, pages));
        },
        close: async () => {
          try {
            await stopTruncating?.();
          } finally {
            await wal.close();
          }
        },
        libraryFsyncs: () => fsyncsOf(wal.stats()),
        workerHandle: () => {
          if (typeof wal.workerHandle !== 'function') {
            throw new Error('parallel-wal: wal.workerHandle() does not exist yet');
          }
          const value = wal.workerHandle();
          const transferList = mod.workerHandleTransferList?.(value) ?? portsOf(value);
          return { value, transferList };
        },
      };
    },
    async openWorker(_dir, handle): Promise<WorkerStore> {
      const mod = await loadPwal();
      if (typeof mod.attachWriter !== 'function') {
        throw new Error('parallel-wal: attachWriter is not exported yet');
      }
      const writer = await mod.attachWriter(handle);
      return {
        commit: async (id, pages) => {
          await writer.commit(batchOf(id, pages));
        },
        close: async () => {
          await writer.close?.();
        },
      };
    },
    async verify(dir, acked, pages) {
      const mod = await loadPwal();
      const dbPath = dbPathOf(dir);
      // Reopening validates the log and recovers; it must succeed on what we wrote.
      const reopened = await mod.ParallelWal.open(dbPath, { fsync: 'full' });
      await reopened.close();
      // What the truncating consumer already read (and gave back) counts too.
      const state = readBackOf(dir);
      readBacks.delete(dir);
      const { found, tally } = state;
      const take = (r: SegmentRecord): void => takeRecord(state, r);
      if (mod.listSegments && mod.readSegment) {
        for (const seg of await mod.listSegments(dbPath)) {
          for (const r of (await mod.readSegment(seg.path)).records) take(r);
        }
      } else if (mod.recoverSegments) {
        for (const r of (await mod.recoverSegments(dbPath, {})).records) take(r);
      } else {
        throw new Error(
          'parallel-wal: neither listSegments/readSegment nor recoverSegments exported',
        );
      }
      for (const id of acked) {
        const n = found.get(id) ?? 0;
        tally.check(n === pages, () => `commit ${id}: ${n} of ${pages} pages found`);
      }
      return tally;
    },
  };
}

/** The library as users open it by default for durable commits. */
export const pwal = pwalSystem('pwal', 'parallel-wal', "fsync: 'full'", { fsync: 'full' });

/**
 * The engine's optional pre-created segment files (the next epoch's temporary file is created
 * while the current one is made durable): measured at the target cells to show what it buys.
 */
export const pwalPrecreate = pwalSystem(
  'pwalpre',
  'parallel-wal + precreate',
  "fsync: 'full', precreateSegmentFiles: true",
  { fsync: 'full', precreateSegmentFiles: true },
);

/**
 * The engine's opt-in early acknowledgement: the epoch is acknowledged once its data is
 * fdatasynced into a pre-created temporary file whose name is already durable; rename and
 * directory fsync follow in the background (recovery adopts a complete temporary file).
 */
export const pwalEarlyAck = pwalSystem(
  'pwalearly',
  'parallel-wal + earlyAck',
  "fsync: 'full', segmentSink: 'earlyAck'",
  { fsync: 'full', segmentSink: 'earlyAck' },
);

/**
 * The default sink with its segment write on the event loop (`ioThread: false`: the promise
 * API, each write and fdatasync a round trip through libuv's thread pool) instead of the I/O
 * thread: the flush path before the I/O thread, measured beside it in the same run.
 */
export const pwalInline = pwalSystem(
  'pwalinline',
  'parallel-wal, write on the event loop',
  "fsync: 'full', ioThread: false",
  { fsync: 'full', ioThread: false },
);

/**
 * The recycled-file pool sink (`segmentSink: 'pool'`): each epoch is written in place into a
 * pre-written pool file (one write + fdatasync, no allocation), on the I/O thread.
 */
export const pwalPool = pwalSystem(
  'pwalpool',
  'parallel-wal + pool',
  "fsync: 'full', segmentSink: 'pool'",
  { fsync: 'full', segmentSink: 'pool' },
);

/**
 * The default with epochs of at most 256 KiB written synchronously on the owner thread
 * (`callerWriteBytesMax`, off by default): no cross-thread wake-up for a small epoch, at the
 * price of blocking the event loop during its write. Measured beside the default.
 */
export const pwalCaller = pwalSystem(
  'pwalcaller',
  'parallel-wal, small writes on the owner thread',
  "fsync: 'full', callerWriteBytesMax: 262144",
  { fsync: 'full', callerWriteBytesMax: 262144 },
);

/**
 * The pool sink with the log truncated as it goes: a consumer reads and gives back every
 * published segment but the newest every 20 ms (see {@link startTruncating}), as a user of a
 * write-ahead log does once what it holds is applied elsewhere; the pool writes later epochs
 * over the files it is given. Every other pwal cell lets the log grow for the whole run.
 */
export const pwalTruncating = pwalSystem(
  'pwaltrunc',
  'parallel-wal + pool, log truncated as it goes',
  "fsync: 'full', segmentSink: 'pool'; consumer reads and recycles segments every 20 ms",
  { fsync: 'full', segmentSink: 'pool' },
  true,
);
