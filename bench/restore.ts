/**
 * Restore throughput from a JetStream stream: the ordered-consumer reader
 * (`readStreamRange`) against the per-message reader it replaced
 * (`readStreamRangeByRequest`: one STREAM.MSG.GET per message, 32 in flight),
 * against a real 3-node cluster on loopback (R3 stream), started here.
 *
 * A ReplicatedWal commits EPOCHS epochs of one PAGE_BYTES page each (one
 * commit per epoch), which it ships into the stream. Then, interleaved over
 * REPS repetitions, medians printed:
 * - `read only`: both readers over the whole stream (bytes of message data);
 * - `restoreFromStream` into a fresh directory, segment fsync `off` (reading
 *   and verifying) and `full` (what `pwal restore` does), MB of segments and
 *   epochs per second.
 * `restoreFromStream` always uses `readStreamRange`; its `per-message` runs
 * take the reader's own fallback, made to happen the way it does in
 * production: the stream allows one consumer (`max_consumers: 1`) and a
 * durable consumer holds that slot during those runs, so the ordered consumer
 * is refused and the read falls back to per-message requests (one refused
 * creation, ~2 ms, is included).
 *
 * Run: `npm run bench:restore` or `npx tsx bench/restore.ts` (needs
 * `nats-server` on PATH). EPOCHS, PAGE_BYTES, REPS override the defaults.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AckPolicy, type JetStreamManager, StorageType } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { ParallelWalBatch } from '../src/engine/wal.js';
import { duplicateWindowMsDefault, messageBytesMaxDefault } from '../src/replication/client.js';
import { connectBounded, managerFor } from '../src/replication/nats/jetstream.js';
import {
  readStreamRange,
  readStreamRangeByRequest,
} from '../src/replication/nats/stream-reader.js';
import { ReplicatedWal } from '../src/replication/replicated-wal.js';
import { restoreFromStream } from '../src/replication/restore.js';
import type { FsyncPolicy } from '../src/storage/segment-files.js';
import { type NatsCluster, startBenchCluster } from '../test/support/nats-cluster.js';

const EPOCHS = Number(process.env.EPOCHS ?? 20_000);
const PAGE_BYTES = Number(process.env.PAGE_BYTES ?? 4096);
const REPS = Number(process.env.REPS ?? 3);
const STREAM = 'BENCH_RESTORE';
const OCCUPANT = 'bench-occupant';
/** Bound of the wait until the cluster acknowledged every epoch. */
const SHIP_TIMEOUT_MS = 300_000;

type Reader = 'ordered consumer' | 'per-message';
const READERS: Reader[] = ['ordered consumer', 'per-message'];

interface Run {
  seconds: number;
  bytes: number;
  epochs: number;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function batch(txn: bigint): ParallelWalBatch {
  return {
    txnToken: { id: txn, epoch: 0 },
    frames: [
      {
        pageNumber: Number(txn % 1000n) + 1,
        pageData: new Uint8Array(PAGE_BYTES).fill(Number(txn & 0xffn)),
        dbSizeIfCommit: 0,
      },
    ],
  };
}

/** Ships EPOCHS epochs into the stream (created here, allowing one consumer). */
async function buildStream(cluster: NatsCluster, jsm: JetStreamManager, dir: string) {
  await jsm.streams.add({
    name: STREAM,
    subjects: [`${STREAM}.epochs`],
    num_replicas: 3,
    storage: StorageType.File,
    max_msg_size: messageBytesMaxDefault,
    duplicate_window: duplicateWindowMsDefault * 1_000_000,
    max_consumers: 1,
  });
  const log = await ReplicatedWal.open(path.join(dir, 'source'), {
    fsync: 'off',
    replication: {
      servers: cluster.urls,
      stream: STREAM,
      subject: `${STREAM}.epochs`,
      createStream: false,
    },
  });
  try {
    let last = 0n;
    const started = performance.now();
    for (let txn = 1n; txn <= BigInt(EPOCHS); txn++) last = (await log.commit(batch(txn))).epoch;
    await log.replicator.waitForReplicated(last, SHIP_TIMEOUT_MS);
    const info = await jsm.streams.info(STREAM);
    console.log(
      `stream: ${info.state.messages} messages, ${(info.state.bytes / 1e6).toFixed(1)} MB stored, ` +
        `epochs 0..${last}, built in ${((performance.now() - started) / 1000).toFixed(1)} s`,
    );
    return info.state;
  } finally {
    await log.close();
  }
}

async function withOccupant<T>(jsm: JetStreamManager, reader: Reader, run: () => Promise<T>) {
  if (reader === 'ordered consumer') return run();
  await jsm.consumers.add(STREAM, { durable_name: OCCUPANT, ack_policy: AckPolicy.None });
  try {
    return await run();
  } finally {
    await jsm.consumers.delete(STREAM, OCCUPANT);
  }
}

async function readOnly(jsm: JetStreamManager, reader: Reader, first: number, last: number) {
  const read = reader === 'ordered consumer' ? readStreamRange : readStreamRangeByRequest;
  const started = performance.now();
  let bytes = 0;
  let messages = 0;
  for await (const m of read(jsm, STREAM, first, last)) {
    bytes += m.data.length;
    messages += 1;
  }
  const run = { seconds: (performance.now() - started) / 1000, bytes, epochs: messages };
  if (messages !== last - first + 1) throw new Error(`${reader} read ${messages} messages`);
  return run;
}

async function restoreOnce(
  nc: NatsConnection,
  jsm: JetStreamManager,
  reader: Reader,
  fsync: FsyncPolicy,
): Promise<Run> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-bench-restore-'));
  try {
    return await withOccupant(jsm, reader, async () => {
      const started = performance.now();
      const result = await restoreFromStream({
        connection: nc,
        stream: STREAM,
        dbPath: path.join(dir, 'db'),
        fsync,
      });
      const seconds = (performance.now() - started) / 1000;
      if (result.stoppedBy !== null || result.epochsRestored !== EPOCHS) {
        throw new Error(
          `${reader} restored ${result.epochsRestored} epochs (${result.stoppedBy?.message ?? 'no error'})`,
        );
      }
      return { seconds, bytes: result.bytesRestored, epochs: result.epochsRestored };
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function report(label: string, runs: Map<Reader, Run[]>): void {
  const figures = (reader: Reader) => {
    const list = runs.get(reader)!;
    return {
      mbPerSec: median(list.map((r) => r.bytes / 1e6 / r.seconds)),
      epochsPerSec: median(list.map((r) => r.epochs / r.seconds)),
      seconds: median(list.map((r) => r.seconds)),
    };
  };
  const base = figures('per-message');
  for (const reader of READERS) {
    const f = figures(reader);
    console.log(
      [
        label.padEnd(26),
        reader.padEnd(17),
        f.mbPerSec.toFixed(1).padStart(8),
        f.epochsPerSec.toFixed(0).padStart(11),
        f.seconds.toFixed(2).padStart(9),
        `${(f.mbPerSec / base.mbPerSec).toFixed(2)}x`.padStart(8),
      ].join(' '),
    );
  }
}

async function main(): Promise<void> {
  const cluster = await startBenchCluster();
  if (cluster === null) return;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-bench-restore-src-'));
  const nc = await connectBounded(cluster.urls, { name: 'bench-restore' });
  try {
    const jsm = await managerFor(nc);
    const state = await buildStream(cluster, jsm, dir);
    const cells: { label: string; run: (reader: Reader) => Promise<Run> }[] = [
      { label: 'read only', run: (r) => readOnly(jsm, r, state.first_seq, state.last_seq) },
      { label: 'restore, segment fsync off', run: (r) => restoreOnce(nc, jsm, r, 'off') },
      { label: 'restore, segment fsync full', run: (r) => restoreOnce(nc, jsm, r, 'full') },
    ];
    const results = new Map<string, Map<Reader, Run[]>>();
    for (let rep = 0; rep < REPS; rep++) {
      // Interleaved, alternating which reader goes first.
      const order = rep % 2 === 0 ? READERS : [...READERS].reverse();
      for (const cell of cells) {
        const byReader = results.get(cell.label) ?? new Map<Reader, Run[]>();
        results.set(cell.label, byReader);
        for (const reader of order) {
          const run = await cell.run(reader);
          byReader.set(reader, [...(byReader.get(reader) ?? []), run]);
          console.log(
            `  rep ${rep + 1} ${cell.label} / ${reader}: ${run.seconds.toFixed(2)} s, ${(run.bytes / 1e6 / run.seconds).toFixed(1)} MB/s`,
          );
        }
      }
    }
    console.log(
      `\nrestore benchmark: ${EPOCHS} epochs of one ${PAGE_BYTES}-byte page, R3 stream on a 3-node loopback cluster, ` +
        `${REPS} reps interleaved, medians; ${os.cpus().length} cores`,
    );
    console.log(
      `${'cell'.padEnd(26)} ${'reader'.padEnd(17)} ${'MB/s'.padStart(8)} ${'epochs/s'.padStart(11)} ${'seconds'.padStart(9)} ${'vs msg'.padStart(8)}`,
    );
    for (const cell of cells) report(cell.label, results.get(cell.label)!);
    console.log('(read only: MB of message data; restore: MB of segments written)');
  } finally {
    await nc.close();
    await cluster.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

await main();
