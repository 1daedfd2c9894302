/**
 * Codec throughput: encode+CRC and decode+verify of version-2 segments with
 * 4 KiB and 64 KiB pages, beside a baseline measured in the same run — copy
 * the same page bytes into one buffer and CRC-32C them (the least work any
 * checksummed log must do). Prints MB/s of page payload and the ratio to the
 * baseline; each figure is the median of RUNS runs.
 *
 *   npx tsx bench/codec.ts            (or: npm run bench:codec)
 */
import { randomBytes } from 'node:crypto';
import { crc32c } from '../src/format/crc32c.js';
import { encodedRecordBytes, encodeRecordInto } from '../src/format/record.js';
import { decodeSegment, encodeSegment } from '../src/format/segment.js';
import type { WalRecord } from '../src/format/types.js';

const RUNS = 7;
/** Payload per segment, so both page sizes move the same bytes per iteration. */
const SEGMENT_PAYLOAD_BYTES = 8 * 1024 * 1024;
/** Each run repeats its operation for at least this long, to beat timer noise. */
const RUN_MIN_MS = 150;

function makeRecords(pageBytes: number): WalRecord[] {
  const count = SEGMENT_PAYLOAD_BYTES / pageBytes;
  const records: WalRecord[] = [];
  for (let i = 0; i < count; i++) {
    const seq = 1_000_000n + BigInt(i);
    records.push({
      txnToken: { id: BigInt(1 + (i >> 2)), epoch: 0 },
      epoch: 42n,
      pageId: 1 + i,
      beginSeq: seq,
      endSeq: seq,
      beforeImage: new Uint8Array(0),
      afterImage: new Uint8Array(randomBytes(pageBytes)),
    });
  }
  return records;
}

/** Median MB/s of `fn`, each run repeating it for RUN_MIN_MS. */
function measure(payloadBytes: number, fn: () => void): number {
  const rates: number[] = [];
  for (let w = 0; w < 3; w++) fn(); // warm-up: JIT and page faults
  for (let run = 0; run < RUNS; run++) {
    let iterations = 0;
    const start = process.hrtime.bigint();
    let elapsedNs = 0n;
    do {
      fn();
      iterations++;
      elapsedNs = process.hrtime.bigint() - start;
    } while (elapsedNs < BigInt(RUN_MIN_MS) * 1_000_000n);
    rates.push((payloadBytes * iterations) / (Number(elapsedNs) / 1e9) / 1e6);
  }
  rates.sort((a, b) => a - b);
  return rates[Math.floor(rates.length / 2)]!;
}

let sink = 0;

function benchPageSize(pageBytes: number): void {
  const records = makeRecords(pageBytes);
  const payload = records.reduce((n, r) => n + r.afterImage.length, 0);

  // Baseline: copy every page into one buffer, CRC the buffer once.
  const scratch = new Uint8Array(payload);
  const baseline = measure(payload, () => {
    let at = 0;
    for (const r of records) {
      scratch.set(r.afterImage, at);
      at += r.afterImage.length;
    }
    sink ^= crc32c(scratch);
  });

  // encodeSegment: validate, order canonically, size, allocate once, write, CRC each record.
  const encode = measure(payload, () => {
    sink ^= encodeSegment(42n, records, 2).length;
  });

  // Lane path: encodeRecordInto a reused buffer (validation + write + CRC per record).
  const laneBytes = records.reduce((n, r) => n + 4 + encodedRecordBytes(r, 2), 0);
  const lane = new Uint8Array(laneBytes);
  const encodeInto = measure(payload, () => {
    let at = 0;
    for (const r of records) at = encodeRecordInto(r, 2, lane, at);
    sink ^= at;
  });

  const bytes = encodeSegment(42n, records, 2);
  const decode = measure(payload, () => {
    sink ^= decodeSegment(bytes).records.length;
  });
  const decodeViews = measure(payload, () => {
    sink ^= decodeSegment(bytes, { copyImages: false }).records.length;
  });

  const kib = pageBytes / 1024;
  const row = (name: string, rate: number) =>
    console.log(
      `  ${name.padEnd(34)} ${rate.toFixed(0).padStart(7)} MB/s   ${(rate / baseline).toFixed(2)}x baseline`,
    );
  console.log(`${kib} KiB pages, ${records.length} records per segment (median of ${RUNS} runs):`);
  row('baseline: copy + CRC-32C', baseline);
  row('encode+CRC: encodeSegment v2', encode);
  row('encode+CRC: encodeRecordInto v2', encodeInto);
  row('decode+verify: decodeSegment v2', decode);
  row('decode+verify: views (no copy)', decodeViews);
}

console.log(
  `codec benchmark — node ${process.version}, ${SEGMENT_PAYLOAD_BYTES >> 20} MiB payload per segment`,
);
for (const pageBytes of [4096, 65536]) benchPageSize(pageBytes);
if (sink === 0.5) console.log(sink); // keep results observable to the optimiser
