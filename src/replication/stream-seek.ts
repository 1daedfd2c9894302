/**
 * Finds where in a database's stream the epochs above a given one begin,
 * with a binary search over stream sequence numbers (one message read per
 * step): epochs only grow along the stream, and the chunks of an epoch are
 * consecutive, so the first message above the epoch is chunk 0 of the first
 * epoch a reader starting from a snapshot needs.
 *
 * The result is a hint: the reader still verifies everything from there
 * (a stream that is not ordered as expected shows up as a gap, never as
 * silently skipped data).
 */
import type { ReplicaClient } from './client.js';
import { parseChunkHeader } from './wire.js';

/**
 * The smallest sequence in `firstSeq ..= lastSeq` whose message is of an
 * epoch above `epoch` (`lastSeq + 1` when none is). Deleted sequences are
 * stepped over.
 */
export async function firstSeqAboveEpoch(
  client: ReplicaClient,
  stream: string,
  epoch: bigint,
  firstSeq: number,
  lastSeq: number,
): Promise<number> {
  let low = firstSeq;
  let high = lastSeq + 1;
  while (low < high) {
    const mid = low + Math.floor((high - low) / 2);
    const found = await epochAtOrAfter(client, stream, mid, high - 1);
    if (found === null) {
      high = mid;
    } else if (found.epoch > epoch) {
      high = mid;
    } else {
      low = found.seq + 1;
    }
  }
  return low;
}

/** The epoch of the first stored message in `seq ..= maxSeq` (null: none stored). */
async function epochAtOrAfter(
  client: ReplicaClient,
  stream: string,
  seq: number,
  maxSeq: number,
): Promise<{ seq: number; epoch: bigint } | null> {
  for (let at = seq; at <= maxSeq; at++) {
    const message = await client.message(stream, at);
    if (message === null) continue;
    return { seq: at, epoch: parseChunkHeader(message.header, at).epoch };
  }
  return null;
}
