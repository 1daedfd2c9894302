/**
 * Codec throughput: encode+CRC and decode+verify of version-2 segments with
 * 4 KiB and 64 KiB pages, beside a baseline measured in the same run — copy
 * the same page bytes into one buffer and CRC-32C them (the least work any
 * checksummed log must do). Prints MB/s of page payload and the ratio to the
 * baseline. The machine's load drifts, so the baseline and every variant are
 * measured round-robin, each ratio is taken within one round, and the median
 * over RUNS rounds is printed.
 *
 *   npx tsx bench/codec.ts            (or: npm run bench:codec)
 */
import { randomBytes } from 'node:crypto';
import { crc32c } from '../src/format/crc32c.js';
import { encodedRecordBytes, encodeRecordInto } from '../src/format/record.js';
import { decodeSegment, encodeSegment } from '../src/format/segment.js';
import type { WalRecord } from '../src/format/types.js';

const RUNS = 7;
/** Payload per segment, so both page sizes move the same bytes per call. */
const SEGMENT_PAYLOAD_BYTES = 8 * 1024 * 1024;
/** Each measurement repeats its operation for at least this long, to beat timer noise. */
const MEASURE_MIN_MS = 120;

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

/** Runs `fn` repeatedly for MEASURE_MIN_MS; returns MB/s of `payloadBytes` per call. */
function rateOf(payloadBytes: number, fn: () => void): number {
  let iterations = 0;
  const start = process.hrtime.bigint();
  let elapsedNs = 0n;
  do {
    fn();
    iterations++;
    elapsedNs = process.hrtime.bigint() - start;
  } while (elapsedNs < BigInt(MEASURE_MIN_MS) * 1_000_000n);
  return (payloadBytes * iterations) / (Number(elapsedNs) / 1e9) / 1e6;
}

function median(values: readonly number[]): number {
  const sorted = values.slice().sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

interface Variant {
  name: string;
  fn: () => void;
}

let sink = 0;

function compare(payload: number, baseline: Variant, variants: readonly Variant[]): void {
  const all = [baseline, ...variants];
  for (const v of all) for (let w = 0; w < 3; w++) v.fn(); // warm-up: JIT, page faults
  const rates = all.map(() => [] as number[]);
  const ratios = all.map(() => [] as number[]);
  for (let round = 0; round < RUNS; round++) {
    const base = rateOf(payload, baseline.fn);
    rates[0]!.push(base);
    ratios[0]!.push(1);
    variants.forEach((v, i) => {
      const rate = rateOf(payload, v.fn);
      rates[i + 1]!.push(rate);
      ratios[i + 1]!.push(rate / base);
    });
  }
  all.forEach((v, i) => {
    const rate = median(rates[i]!).toFixed(0).padStart(7);
    console.log(`  ${v.name.padEnd(54)} ${rate} MB/s  ${median(ratios[i]!).toFixed(2)}x baseline`);
  });
}

function benchPageSize(pageBytes: number): void {
  const records = makeRecords(pageBytes);
  const payload = records.reduce((n, r) => n + r.afterImage.length, 0);
  const scratch = new Uint8Array(payload);
  const lane = new Uint8Array(records.reduce((n, r) => n + 4 + encodedRecordBytes(r, 2), 0));
  const segment = encodeSegment(42n, records, 2);
  console.log(
    `${pageBytes / 1024} KiB pages, ${records.length} records per segment (medians of ${RUNS} rounds):`,
  );
  compare(
    payload,
    {
      name: 'baseline: copy pages into one buffer + CRC-32C',
      fn: () => {
        let at = 0;
        for (const r of records) {
          scratch.set(r.afterImage, at);
          at += r.afterImage.length;
        }
        sink ^= crc32c(scratch);
      },
    },
    [
      {
        // The engine's path: validate, write and CRC each record into a lane buffer.
        name: 'encode+CRC: encodeRecordInto v2 (lane buffer)',
        fn: () => {
          let at = 0;
          for (const r of records) at = encodeRecordInto(r, 2, lane, at);
          sink ^= at;
        },
      },
      {
        // writeSegment's path: validate, order, one fresh allocation, write, CRC.
        name: 'encode+CRC: encodeSegment v2 (fresh buffer)',
        fn: () => {
          sink ^= encodeSegment(42n, records, 2).length;
        },
      },
      {
        // readSegment's path: images are views into the buffer just read from disk.
        name: 'decode+verify: decodeSegment v2 (views, readSegment)',
        fn: () => {
          sink ^= decodeSegment(segment, { copyImages: false }).records.length;
        },
      },
      {
        // The default for a caller's buffer: one private copy per segment, then views.
        name: 'decode+verify: decodeSegment v2 (private copy)',
        fn: () => {
          sink ^= decodeSegment(segment).records.length;
        },
      },
    ],
  );
}

console.log(
  `codec benchmark — node ${process.version}, ${SEGMENT_PAYLOAD_BYTES >> 20} MiB payload per segment`,
);
for (const pageBytes of [4096, 65536]) benchPageSize(pageBytes);
if (sink === 0.5) console.log(sink); // keep results observable to the optimiser
