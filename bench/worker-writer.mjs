// Worker entry of bench/workers.ts: one writer committing 4 KiB pages in a
// loop with `inFlight` commits outstanding, until the parent raises the stop
// word. Latencies (µs) of commits that finish while the measure word is 1
// are posted back at the end. Plain .mjs: Node 20 cannot start a worker on a
// .ts file, so tsx's loader is registered before the library is imported.
import { randomBytes } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
const { attachWriter } = await import('../src/engine/worker.ts');

const { handle, flags, pageBytes, inFlight, txnBase } = workerData;
const control = new Int32Array(flags); // [0] measure, [1] stop
const writer = attachWriter(handle);
// Random bytes: incompressible.
const page = new Uint8Array(randomBytes(pageBytes));
let latencies = new Float64Array(1 << 16);
let measured = 0;
let txn = BigInt(txnBase);

function record(micros) {
  if (measured === latencies.length) {
    const grown = new Float64Array(latencies.length * 2);
    grown.set(latencies);
    latencies = grown;
  }
  latencies[measured++] = micros;
}

async function loop() {
  while (Atomics.load(control, 1) === 0) {
    txn += 1n;
    const started = performance.now();
    await writer.commit({
      txnToken: { id: txn, epoch: 0 },
      frames: [{ pageNumber: 1 + Number(txn % 1000n), pageData: page, dbSizeIfCommit: 1000 }],
    });
    if (Atomics.load(control, 0) === 1) record((performance.now() - started) * 1000);
  }
}

await Promise.all(Array.from({ length: inFlight }, loop));
await writer.close();
const out = latencies.slice(0, measured);
parentPort.postMessage({ latencies: out }, [out.buffer]);
