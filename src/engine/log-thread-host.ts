/**
 * The program of a log's own thread (see `log-thread.ts`): it opens the
 * {@link ParallelWal} with the configuration it was started with, hands the
 * starting thread a worker lane of its own, and then answers its requests
 * (another lane handle, stats, close) until the log is closed. Every seal,
 * write and acknowledgement of the log runs on this thread's event loop,
 * which runs nothing else.
 *
 * It is an entry of its own (`new Worker(<this module>)`), started only by
 * `log-thread.ts`; loaded anywhere else it does nothing.
 */

import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import {
  type HostReply,
  type HostRequest,
  type HostStart,
  isHostStart,
  serializeError,
} from './log-thread-protocol.js';
import { ParallelWal } from './wal.js';
import { workerHandleTransferList } from './worker-layout.js';

if (parentPort !== null && isHostStart(workerData)) void serve(parentPort, workerData);

/** Opens the log, then answers requests until `close`. */
async function serve(port: MessagePort, start: HostStart): Promise<void> {
  let wal: ParallelWal | null = null;
  try {
    wal = await ParallelWal.open(start.dbPath, start.config);
    const handle = wal.workerHandle();
    reply(port, { kind: 'opened', handle }, workerHandleTransferList(handle));
  } catch (error) {
    // Opened but no lane for the starting thread: close it (its lock with it).
    await wal?.close().catch(() => {});
    reply(port, { kind: 'openFailed', error: serializeError(error) });
    port.close();
    return;
  }
  const opened = wal;
  port.on('message', (request: HostRequest) => {
    void answer(opened, request).then(
      ({ value, transfer }) => {
        reply(port, { kind: 'reply', id: request.id, ok: true, value }, transfer);
        if (request.kind === 'close') port.close();
      },
      (error: unknown) => {
        reply(port, { kind: 'reply', id: request.id, ok: false, error: serializeError(error) });
        if (request.kind === 'close') port.close();
      },
    );
  });
}

/** The answer to one request, and what its message must transfer. */
async function answer(
  wal: ParallelWal,
  request: HostRequest,
): Promise<{ value: unknown; transfer: MessagePort[] }> {
  switch (request.kind) {
    case 'handle': {
      const handle = wal.workerHandle();
      return { value: handle, transfer: workerHandleTransferList(handle) };
    }
    case 'stats':
      return { value: { ...wal.stats() }, transfer: [] };
    case 'close':
      await wal.close();
      return { value: null, transfer: [] };
  }
}

function reply(port: MessagePort, message: HostReply, transfer: MessagePort[] = []): void {
  port.postMessage(message, transfer);
}
