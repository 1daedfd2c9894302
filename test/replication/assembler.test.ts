import { describe, expect, it } from 'vitest';
import { encodeSegment } from '../../src/format/segment.js';
import type { WalRecord } from '../../src/format/types.js';
import {
  type AssemblerEvent,
  EpochAssembler,
  type StreamMessage,
} from '../../src/replication/assembler.js';
import { ReplicaErrorCode, ReplicaVerificationError } from '../../src/replication/errors.js';
import {
  type ChunkMessage,
  chunkPayloadBytesMin,
  encodeEpochChunks,
  ReplicationHeader,
} from '../../src/replication/wire.js';

function record(epoch: bigint, pageId: number, seq: bigint, size = 100): WalRecord {
  const afterImage = new Uint8Array(size);
  afterImage.fill((pageId * 7 + Number(seq)) & 0xff);
  return {
    txnToken: { id: seq, epoch: 0 },
    epoch,
    pageId,
    beginSeq: seq,
    endSeq: seq,
    beforeImage: new Uint8Array(0),
    afterImage,
  };
}

function segmentOf(epoch: bigint, pages: number, size = 100): Uint8Array {
  const records: WalRecord[] = [];
  for (let p = 1; p <= pages; p++) records.push(record(epoch, p, epoch * 100n + BigInt(p), size));
  return encodeSegment(epoch, records);
}

function chunksOf(
  epoch: bigint,
  prevEpoch: bigint | null,
  options: { pages?: number; size?: number; chunkBytes?: number; certificate?: Uint8Array } = {},
): ChunkMessage[] {
  return encodeEpochChunks(
    {
      databaseId: 'db1',
      epoch,
      prevEpoch,
      segment: segmentOf(epoch, options.pages ?? 2, options.size),
      certificate: options.certificate ?? null,
    },
    options.chunkBytes ?? 64 * 1024,
  );
}

let nextSeq = 1;
function asStream(messages: ChunkMessage[]): StreamMessage[] {
  return messages.map((m) => ({
    seq: nextSeq++,
    header: (name: string) => (name === ReplicationHeader.msgId ? m.msgId : m.headers.get(name)),
    data: m.data,
  }));
}

function feed(assembler: EpochAssembler, messages: StreamMessage[]): AssemblerEvent[] {
  return messages.map((m) => assembler.push(m));
}

function failureOf(fn: () => unknown): ReplicaVerificationError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ReplicaVerificationError);
    return error as ReplicaVerificationError;
  }
  throw new Error('expected a verification failure');
}

describe('epoch framing and stream verification', () => {
  it('cuts a large epoch into chunks with idempotent message ids and reassembles it exactly', () => {
    const messages = chunksOf(5n, null, {
      pages: 10,
      size: 4000,
      chunkBytes: chunkPayloadBytesMin * 4,
    });
    expect(messages.length).toBeGreaterThan(5);
    expect(messages.map((m) => m.msgId)).toEqual(messages.map((_, i) => `db1.5.${i}`));
    for (const m of messages) expect(m.data.length).toBeLessThanOrEqual(chunkPayloadBytesMin * 4);
    const assembler = new EpochAssembler();
    const events = feed(assembler, asStream(messages));
    expect(events.slice(0, -1).every((e) => e.kind === 'partial')).toBe(true);
    const last = events.at(-1);
    expect(last?.kind).toBe('epoch');
    if (last?.kind !== 'epoch') return;
    expect(last.epoch.epoch).toBe(5n);
    expect(Buffer.from(last.epoch.segment).equals(Buffer.from(segmentOf(5n, 10, 4000)))).toBe(true);
    expect(last.epoch.certificate).toBeNull();
    expect(assembler.lastVerifiedEpoch).toBe(5n);
  });

  it('carries a certificate after the segment and hands both to the chain verifier', () => {
    const certificate = new Uint8Array([1, 2, 3, 4, 5]);
    const seen: Array<{ epoch: bigint; previous: bigint | null }> = [];
    const assembler = new EpochAssembler({
      verifyCertificate: ({ epoch, certificate: c, previous }) => {
        expect(Array.from(c)).toEqual([1, 2, 3, 4, 5]);
        seen.push({ epoch, previous: previous?.epoch ?? null });
      },
    });
    feed(assembler, asStream(chunksOf(1n, null, { certificate })));
    feed(assembler, asStream(chunksOf(3n, 1n, { certificate })));
    expect(seen).toEqual([
      { epoch: 1n, previous: null },
      { epoch: 3n, previous: 1n },
    ]);
  });

  it('reports a rejected certificate as a certificate failure and stays at the last good epoch', () => {
    const assembler = new EpochAssembler({
      verifyCertificate: ({ epoch }) => {
        if (epoch === 2n) throw new Error('broken chain');
      },
    });
    feed(assembler, asStream(chunksOf(1n, null, { certificate: new Uint8Array([9]) })));
    const error = failureOf(() =>
      feed(assembler, asStream(chunksOf(2n, 1n, { certificate: new Uint8Array([9]) }))),
    );
    expect(error.code).toBe(ReplicaErrorCode.certificate);
    expect(assembler.lastVerifiedEpoch).toBe(1n);
  });

  it('detects a missing epoch between two shipped epochs as a gap', () => {
    const assembler = new EpochAssembler();
    feed(assembler, asStream(chunksOf(1n, null)));
    feed(assembler, asStream(chunksOf(4n, 1n)));
    const error = failureOf(() => feed(assembler, asStream(chunksOf(9n, 7n))));
    expect(error.code).toBe(ReplicaErrorCode.gap);
    expect(error.epoch).toBe(9n);
    expect(assembler.lastVerifiedEpoch).toBe(4n);
  });

  it('detects a missing chunk inside an epoch', () => {
    const messages = chunksOf(2n, null, { pages: 8, size: 2000, chunkBytes: 4096 });
    messages.splice(1, 1);
    const assembler = new EpochAssembler();
    const error = failureOf(() => feed(assembler, asStream(messages)));
    expect(error.code).toBe(ReplicaErrorCode.gap);
    expect(assembler.lastVerifiedEpoch).toBeNull();
  });

  it('skips exact duplicates of chunks and epochs and counts them', () => {
    const first = chunksOf(1n, null, { pages: 8, size: 2000, chunkBytes: 4096 });
    const second = chunksOf(2n, 1n);
    const stream = [first[0]!, first[0]!, ...first.slice(1), first[1]!, ...second, ...second];
    const assembler = new EpochAssembler();
    const events = feed(assembler, asStream(stream));
    expect(events.filter((e) => e.kind === 'epoch').length).toBe(2);
    expect(events.filter((e) => e.kind === 'duplicate').length).toBe(2 + second.length);
    expect(assembler.duplicates).toBe(2 + second.length);
    expect(assembler.lastVerifiedEpoch).toBe(2n);
  });

  it('rejects a second, different copy of an epoch already verified', () => {
    const assembler = new EpochAssembler();
    feed(assembler, asStream(chunksOf(1n, null)));
    const error = failureOf(() => feed(assembler, asStream(chunksOf(1n, null, { pages: 3 }))));
    expect(error.code).toBe(ReplicaErrorCode.conflictingDuplicate);
  });

  it('rejects a chunk whose bytes changed in the stream', () => {
    const [message] = chunksOf(1n, null);
    const data = Uint8Array.from(message!.data);
    data[40] = (data[40]! + 1) & 0xff;
    const assembler = new EpochAssembler();
    const error = failureOf(() => feed(assembler, asStream([{ ...message!, data }])));
    expect(error.code).toBe(ReplicaErrorCode.chunkChecksum);
  });

  it('rejects an epoch whose reassembled bytes do not match the digest', () => {
    const [message] = chunksOf(1n, null);
    const headers = new Map(message!.headers);
    headers.set(ReplicationHeader.digest, 'ab'.repeat(32));
    const error = failureOf(() =>
      new EpochAssembler().push(asStream([{ ...message!, headers }])[0]!),
    );
    expect(error.code).toBe(ReplicaErrorCode.digest);
  });

  it('rejects a segment whose header names another epoch than the message', () => {
    const messages = encodeEpochChunks(
      {
        databaseId: 'db1',
        epoch: 7n,
        prevEpoch: null,
        segment: segmentOf(6n, 1),
        certificate: null,
      },
      4096,
    );
    const error = failureOf(() => feed(new EpochAssembler(), asStream(messages)));
    expect(error.code).toBe(ReplicaErrorCode.segment);
  });

  it('rejects messages of another database and malformed headers', () => {
    const assembler = new EpochAssembler({ databaseId: 'other' });
    expect(failureOf(() => feed(assembler, asStream(chunksOf(1n, null)))).code).toBe(
      ReplicaErrorCode.foreignDatabase,
    );
    const [message] = chunksOf(1n, null);
    const headers = new Map(message!.headers);
    headers.delete(ReplicationHeader.epoch);
    expect(
      failureOf(() => new EpochAssembler().push(asStream([{ ...message!, headers }])[0]!)).code,
    ).toBe(ReplicaErrorCode.framing);
  });

  it('resumes after a given epoch and requires the next epoch to name it', () => {
    const assembler = new EpochAssembler({ afterEpoch: 4n });
    expect(feed(assembler, asStream(chunksOf(3n, 1n)))[0]?.kind).toBe('duplicate');
    expect(feed(assembler, asStream(chunksOf(6n, 4n)))[0]?.kind).toBe('epoch');
  });

  it('starts from a snapshot base: skips epochs it holds, accepts the next one after any epoch up to it', () => {
    const assembler = new EpochAssembler({ baseEpoch: 10n });
    const early = feed(assembler, asStream([...chunksOf(7n, null), ...chunksOf(9n, 7n)]));
    expect(early.map((e) => e.kind)).toEqual(['beforeBase', 'beforeBase']);
    // Epoch 10 had no segment (an empty epoch); 12 follows 9, inside the snapshot.
    const next = feed(assembler, asStream(chunksOf(12n, 9n)));
    expect(next[0]).toMatchObject({ kind: 'epoch', epoch: { epoch: 12n } });
    expect(assembler.lastVerifiedEpoch).toBe(12n);
    // From here on the chain is strict again.
    expect(failureOf(() => feed(assembler, asStream(chunksOf(14n, 13n)))).code).toBe(
      ReplicaErrorCode.gap,
    );
  });

  it('detects a gap between a snapshot base and the stream', () => {
    const assembler = new EpochAssembler({ baseEpoch: 10n });
    // Epoch 11 is neither in the snapshot nor in the stream.
    const error = failureOf(() => feed(assembler, asStream(chunksOf(12n, 11n))));
    expect(error.code).toBe(ReplicaErrorCode.gap);
    expect(error.epoch).toBe(12n);
    // A stream that begins after a base without one cannot be restored from scratch.
    const fromScratch = new EpochAssembler();
    expect(failureOf(() => feed(fromScratch, asStream(chunksOf(12n, 10n)))).code).toBe(
      ReplicaErrorCode.gap,
    );
  });
});

describe('epoch zero', () => {
  it('accepts epoch 0 as a first epoch and requires the next to name it', () => {
    const assembler = new EpochAssembler();
    const first = new EpochAssembler().push(asStream(chunksOf(0n, null))[0]!);
    expect(first.kind).toBe('epoch');
    feed(assembler, asStream(chunksOf(0n, null)));
    expect(assembler.lastVerifiedEpoch).toBe(0n);
    expect(failureOf(() => feed(assembler, asStream(chunksOf(2n, null)))).code).toBe(
      ReplicaErrorCode.gap,
    );
    expect(feed(assembler, asStream(chunksOf(2n, 0n)))[0]?.kind).toBe('epoch');
  });
});
