/**
 * Base snapshots in a JetStream Object Store, against a real 3-node cluster
 * on loopback (see test/support/nats-cluster.ts). When `nats-server` is not
 * installed, the file logs a note and checks nothing.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { jetstream, jetstreamManager, type MsgRequest } from '@nats-io/jetstream';
import { Base64UrlPaddedCodec, type ObjectStore, Objm } from '@nats-io/obj';
import { headers, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isWalError } from '../../src/errors.js';
import { ReplicaErrorCode, ReplicationErrorCode } from '../../src/replication/errors.js';
import { connectBounded } from '../../src/replication/nats/jetstream.js';
import {
  downloadSnapshot,
  latestSnapshot,
  listSnapshots,
  pruneSnapshots,
  publishSnapshot,
  type SkippedSnapshot,
  SNAPSHOT_CHUNK_BYTES,
  SNAPSHOT_READ_BYTES,
  type SnapshotImage,
} from '../../src/replication/snapshot.js';
import {
  type SnapshotMeta,
  snapshotBucketName,
  snapshotObjectName,
} from '../../src/replication/snapshot-meta.js';
import { nodeFileSystem } from '../../src/storage/fs.js';
import { listSegments, segmentPath } from '../../src/storage/segment-files.js';
import { writeStoreHeader } from '../../src/store/header.js';
import { PageStore } from '../../src/store/page-store.js';
import { NatsCluster, natsServerAvailable } from '../support/nats-cluster.js';
import { requireNatsServer } from '../support/nats-skip.js';

const available = natsServerAvailable();
let cluster: NatsCluster | null = null;
let nc: NatsConnection;
const dirs: string[] = [];

function tempDb(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pwal-'));
  dirs.push(dir);
  return path.join(dir, 'db');
}

/** An in-memory image; records the length of every read. */
function memoryImage(
  bytes: Uint8Array,
  fields: { epoch: bigint; pageSize?: number; consistentEpoch?: bigint; commitSeq?: bigint },
): SnapshotImage & { reads: number[] } {
  const pageSize = fields.pageSize ?? 4096;
  const reads: number[] = [];
  return {
    epoch: fields.epoch,
    ...(fields.consistentEpoch === undefined ? {} : { consistentEpoch: fields.consistentEpoch }),
    pageSize,
    dbSizePages: bytes.length / pageSize,
    commitSeq: fields.commitSeq ?? 7n,
    reads,
    async read(offset, length) {
      reads.push(length);
      return bytes.slice(offset, offset + length);
    },
  };
}

/** Downloads into memory; records the length of every chunk written. */
async function download(
  stream: string,
  meta: SnapshotMeta,
): Promise<{ bytes: Buffer; chunks: number[] }> {
  const out = Buffer.alloc(meta.bytes);
  const chunks: number[] = [];
  let expected = 0;
  await downloadSnapshot(nc, stream, meta, async (chunk, offset) => {
    expect(offset).toBe(expected);
    expected += chunk.length;
    chunks.push(chunk.length);
    out.set(chunk, offset);
  });
  return { bytes: out, chunks };
}

async function codeOf(promise: Promise<unknown>): Promise<string | null> {
  return promise.then(
    () => null,
    (error: unknown) => (isWalError(error) ? error.code : `not a WalError: ${String(error)}`),
  );
}

async function bucketOf(stream: string): Promise<ObjectStore> {
  return new Objm(jetstream(nc)).open(snapshotBucketName(stream));
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

beforeAll(async () => {
  if (!available) return;
  cluster = await NatsCluster.start();
  nc = await connectBounded(cluster.urls, { name: 'snapshot-tests' });
}, 30_000);

afterAll(async () => {
  await nc?.close();
  await cluster?.stop();
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

describe('snapshot names', () => {
  it('derives a bucket name from the stream and rejects names a bucket cannot carry', () => {
    expect(snapshotBucketName('PWAL_db-1')).toBe('PWAL_db-1_snapshots');
    for (const bad of ['', 'a.b', 'a b', 'a*', 'a>', 'x'.repeat(250)]) {
      expect(() => snapshotBucketName(bad)).toThrow(/snapshot bucket/);
    }
    expect(snapshotObjectName('db', 42n)).toBe('db.00000000000000000042');
    expect(snapshotObjectName('db', 2n ** 64n - 1n)).toBe('db.18446744073709551615');
  });
});

describe('base snapshots in a 3-node object store', () => {
  requireNatsServer('snapshot tests');

  it('round-trips a multi-MiB image byte for byte in bounded pieces, with its metadata', async () => {
    if (cluster === null) return;
    const bytes = randomBytes(1000 * 4096);
    const epoch = 2n ** 63n + 5n;
    const image = memoryImage(bytes, {
      epoch,
      consistentEpoch: epoch + 3n,
      commitSeq: 2n ** 64n - 2n,
    });
    const certificate = randomBytes(200);
    const meta = await publishSnapshot(nc, {
      stream: 'SNAP_RT',
      databaseId: 'db-rt',
      image,
      certificate,
    });
    expect(meta).toMatchObject({
      name: snapshotObjectName('db-rt', epoch),
      databaseId: 'db-rt',
      epoch,
      consistentEpoch: epoch + 3n,
      pageSize: 4096,
      dbSizePages: 1000,
      commitSeq: 2n ** 64n - 2n,
      bytes: bytes.length,
      sha256: sha256(bytes),
    });
    expect(Buffer.from(meta.certificate!).equals(certificate)).toBe(true);
    // Read twice (digest, upload), never more than one piece at a time.
    expect(image.reads.reduce((a, b) => a + b, 0)).toBe(2 * bytes.length);
    expect(Math.max(...image.reads)).toBeLessThanOrEqual(SNAPSHOT_READ_BYTES);
    const listed = await listSnapshots(nc, 'SNAP_RT');
    expect(listed).toEqual([meta]);
    const { bytes: copy, chunks } = await download('SNAP_RT', listed[0]!);
    expect(copy.equals(bytes)).toBe(true);
    expect(chunks.length).toBeGreaterThan(4);
    expect(Math.max(...chunks)).toBeLessThanOrEqual(SNAPSHOT_CHUNK_BYTES);
    const status = await (await bucketOf('SNAP_RT')).status();
    expect(status.replicas).toBe(3);
  });

  it('publishes and downloads an empty database', async () => {
    if (cluster === null) return;
    const meta = await publishSnapshot(nc, {
      stream: 'SNAP_EMPTY',
      databaseId: 'db-empty',
      replicas: 1,
      image: memoryImage(new Uint8Array(0), { epoch: 0n, pageSize: 512 }),
    });
    expect(meta).toMatchObject({
      dbSizePages: 0,
      bytes: 0,
      consistentEpoch: 0n,
      certificate: null,
    });
    expect(meta.sha256).toBe(sha256(new Uint8Array(0)));
    const [listed] = await listSnapshots(nc, 'SNAP_EMPTY');
    expect(listed).toEqual(meta);
    const { bytes, chunks } = await download('SNAP_EMPTY', listed!);
    expect(bytes.length).toBe(0);
    expect(chunks).toEqual([]);
  });

  it('lists ascending by epoch, picks the latest that can restore a target epoch, and keeps databases apart', async () => {
    if (cluster === null) return;
    const stream = 'SNAP_LIST';
    const publish = (databaseId: string, epoch: bigint, consistentEpoch = epoch) =>
      publishSnapshot(nc, {
        stream,
        databaseId,
        image: memoryImage(randomBytes(2 * 512), { epoch, consistentEpoch, pageSize: 512 }),
      });
    await publish('A', 20n, 25n);
    await publish('A', 5n);
    await publish('B', 30n);
    await publish('A', 12n);
    const epochs = (list: SnapshotMeta[]) => list.map((m) => `${m.databaseId}@${m.epoch}`);
    expect(epochs(await listSnapshots(nc, stream, { databaseId: 'A' }))).toEqual([
      'A@5',
      'A@12',
      'A@20',
    ]);
    expect(epochs(await listSnapshots(nc, stream))).toEqual(['A@5', 'A@12', 'A@20', 'B@30']);
    const latest = (options: { databaseId?: string; untilEpoch?: bigint }) =>
      latestSnapshot(nc, stream, options).then((m) =>
        m === null ? null : `${m.databaseId}@${m.epoch}`,
      );
    expect(await latest({ databaseId: 'A' })).toBe('A@20');
    // The snapshot of epoch 20 holds pages up to epoch 25: no use for a target before that.
    expect(await latest({ databaseId: 'A', untilEpoch: 24n })).toBe('A@12');
    expect(await latest({ databaseId: 'A', untilEpoch: 25n })).toBe('A@20');
    expect(await latest({ databaseId: 'A', untilEpoch: 4n })).toBeNull();
    expect(await latest({ databaseId: 'B' })).toBe('B@30');
    expect(await latest({ databaseId: 'C' })).toBeNull();
    expect(await latest({})).toBe('B@30');
  });

  it('answers an empty list and no latest snapshot for a bucket that does not exist', async () => {
    if (cluster === null) return;
    expect(await listSnapshots(nc, 'SNAP_NONE')).toEqual([]);
    expect(await latestSnapshot(nc, 'SNAP_NONE', { databaseId: 'x' })).toBeNull();
    expect(await pruneSnapshots(nc, 'SNAP_NONE', { databaseId: 'x', keep: 1 })).toBe(0);
    const ghost: SnapshotMeta = {
      name: snapshotObjectName('x', 1n),
      databaseId: 'x',
      epoch: 1n,
      consistentEpoch: 1n,
      pageSize: 512,
      dbSizePages: 0,
      commitSeq: 0n,
      bytes: 0,
      sha256: sha256(new Uint8Array(0)),
      certificate: null,
      createdAt: new Date().toISOString(),
    };
    expect(await codeOf(downloadSnapshot(nc, 'SNAP_NONE', ghost, async () => {}))).toBe(
      ReplicaErrorCode.snapshot,
    );
  });

  it('replaces a snapshot re-published for the same epoch, and refuses a download by the old metadata', async () => {
    if (cluster === null) return;
    const stream = 'SNAP_REPUB';
    const first = randomBytes(3 * 512);
    const second = randomBytes(3 * 512);
    const old = await publishSnapshot(nc, {
      stream,
      databaseId: 'db',
      image: memoryImage(first, { epoch: 9n, pageSize: 512 }),
    });
    const fresh = await publishSnapshot(nc, {
      stream,
      databaseId: 'db',
      image: memoryImage(second, { epoch: 9n, pageSize: 512 }),
    });
    const listed = await listSnapshots(nc, stream);
    expect(listed).toEqual([fresh]);
    expect((await download(stream, fresh)).bytes.equals(second)).toBe(true);
    const error = await downloadSnapshot(nc, stream, old, async () => {}).catch((e: unknown) => e);
    expect(isWalError(error, ReplicaErrorCode.snapshot)).toBe(true);
    expect(String((error as Error).message)).toContain(old.name);
  });

  it('detects an object re-put with other bytes under the old metadata', async () => {
    if (cluster === null) return;
    const stream = 'SNAP_TAMPER';
    const meta = await publishSnapshot(nc, {
      stream,
      databaseId: 'db',
      image: memoryImage(randomBytes(600 * 1024), { epoch: 3n, pageSize: 1024 }),
    });
    const bucket = await bucketOf(stream);
    const original = (await bucket.info(meta.name))!;
    // Same length, other bytes, the snapshot's metadata copied over.
    await bucket.putBlob({ name: meta.name, metadata: original.metadata }, randomBytes(meta.bytes));
    let written = 0;
    const error = await downloadSnapshot(nc, stream, meta, async (chunk) => {
      written += chunk.length;
    }).catch((e: unknown) => e);
    expect(isWalError(error, ReplicaErrorCode.snapshot)).toBe(true);
    expect(String((error as Error).message)).toContain(meta.name);
    // Caught by the store's own digest before a byte was handed out.
    expect(written).toBe(0);
    // A shorter object under the same metadata is no snapshot at all.
    await bucket.putBlob({ name: meta.name, metadata: original.metadata }, randomBytes(1024));
    const skipped: SkippedSnapshot[] = [];
    expect(await listSnapshots(nc, stream, { onSkipped: (s) => skipped.push(s) })).toEqual([]);
    expect(skipped).toEqual([{ name: meta.name, reason: expect.stringContaining('bytes') }]);
    expect(await codeOf(downloadSnapshot(nc, stream, meta, async () => {}))).toBe(
      ReplicaErrorCode.snapshot,
    );
  });

  it('checks its own SHA-256 after streaming, even when the object store digest was forged', async () => {
    if (cluster === null) return;
    const stream = 'SNAP_FORGED';
    const meta = await publishSnapshot(nc, {
      stream,
      databaseId: 'db',
      image: memoryImage(randomBytes(700 * 1024), { epoch: 4n, pageSize: 1024 }),
    });
    const bucket = await bucketOf(stream);
    const original = (await bucket.info(meta.name))!;
    await bucket.putBlob({ name: meta.name, metadata: original.metadata }, randomBytes(meta.bytes));
    // Rewrite the object's metadata message so its digest is the original one.
    const objectStream = `OBJ_${snapshotBucketName(stream)}`;
    const metaSubject = `$O.${snapshotBucketName(stream)}.M.${Base64UrlPaddedCodec.encode(meta.name)}`;
    const jsm = await jetstreamManager(nc);
    const stored = (await jsm.streams.getMessage(objectStream, { last_by_subj: metaSubject }))!;
    const forged = { ...stored.json<Record<string, unknown>>(), digest: original.digest };
    const rollup = headers();
    rollup.set('Nats-Rollup', 'sub');
    await jetstream(nc).publish(metaSubject, JSON.stringify(forged), { headers: rollup });
    let written = 0;
    const error = await downloadSnapshot(nc, stream, meta, async (chunk) => {
      written += chunk.length;
    }).catch((e: unknown) => e);
    expect(isWalError(error, ReplicaErrorCode.snapshot)).toBe(true);
    expect(String((error as Error).message)).toMatch(/its bytes have SHA-256 [0-9a-f]{64}/);
    expect(written).toBe(meta.bytes);
  });

  it('detects a chunk missing from the object', async () => {
    if (cluster === null) return;
    const stream = 'SNAP_CHUNK';
    const meta = await publishSnapshot(nc, {
      stream,
      databaseId: 'db',
      image: memoryImage(randomBytes(800 * 1024), { epoch: 6n, pageSize: 1024 }),
    });
    const info = (await (await bucketOf(stream)).info(meta.name))!;
    const objectStream = `OBJ_${snapshotBucketName(stream)}`;
    const jsm = await jetstreamManager(nc);
    const next = { next_by_subj: `$O.${snapshotBucketName(stream)}.C.${info.nuid}`, seq: 1 };
    const firstChunk = (await jsm.streams.getMessage(objectStream, next as unknown as MsgRequest))!;
    await jsm.streams.deleteMessage(objectStream, firstChunk.seq + 1);
    expect(await codeOf(downloadSnapshot(nc, stream, meta, async () => {}))).toBe(
      ReplicaErrorCode.snapshot,
    );
  });

  it('skips and reports objects that are not valid snapshots', async () => {
    if (cluster === null) return;
    const stream = 'SNAP_JUNK';
    const good = await publishSnapshot(nc, {
      stream,
      databaseId: 'db',
      image: memoryImage(randomBytes(512), { epoch: 1n, pageSize: 512 }),
    });
    const bucket = await bucketOf(stream);
    const goodMetadata = (await bucket.info(good.name))!.metadata;
    await bucket.putBlob({ name: 'notes.txt' }, new TextEncoder().encode('not a snapshot'));
    await bucket.putBlob(
      { name: snapshotObjectName('db', 2n), metadata: { ...goodMetadata, 'pwal-epoch': '2x' } },
      randomBytes(512),
    );
    await bucket.putBlob({ name: 'renamed', metadata: goodMetadata }, new Uint8Array(512));
    await bucket.putBlob(
      { name: snapshotObjectName('db', 3n), metadata: { ...goodMetadata, 'pwal-snapshot': '9' } },
      randomBytes(512),
    );
    const deleted = await publishSnapshot(nc, {
      stream,
      databaseId: 'db',
      image: memoryImage(randomBytes(512), { epoch: 8n, pageSize: 512 }),
    });
    await bucket.delete(deleted.name);
    const skipped: SkippedSnapshot[] = [];
    const listed = await listSnapshots(nc, stream, { onSkipped: (s) => skipped.push(s) });
    expect(listed).toEqual([good]);
    expect(skipped.sort((a, b) => (a.name < b.name ? -1 : 1))).toEqual([
      { name: snapshotObjectName('db', 2n), reason: expect.stringContaining('pwal-epoch') },
      { name: snapshotObjectName('db', 3n), reason: expect.stringContaining('format 9') },
      { name: 'notes.txt', reason: expect.stringContaining('no pwal snapshot metadata') },
      { name: 'renamed', reason: expect.stringContaining('named renamed') },
    ]);
  });

  it('prunes all but the newest snapshots of one database', async () => {
    if (cluster === null) return;
    const stream = 'SNAP_PRUNE';
    for (const [databaseId, epoch] of [
      ['A', 1n],
      ['A', 2n],
      ['B', 3n],
      ['A', 3n],
      ['A', 4n],
      ['A', 5n],
    ] as const) {
      await publishSnapshot(nc, {
        stream,
        databaseId,
        image: memoryImage(randomBytes(512), { epoch, pageSize: 512 }),
      });
    }
    const epochs = async (databaseId: string) =>
      (await listSnapshots(nc, stream, { databaseId })).map((m) => m.epoch);
    expect(await pruneSnapshots(nc, stream, { databaseId: 'A', keep: 2 })).toBe(3);
    expect(await epochs('A')).toEqual([4n, 5n]);
    expect(await epochs('B')).toEqual([3n]);
    expect(await pruneSnapshots(nc, stream, { databaseId: 'A', keep: 2 })).toBe(0);
    expect(await codeOf(pruneSnapshots(nc, stream, { databaseId: 'A', keep: -1 }))).toBe(
      'ERR_INVALID_ARGUMENT',
    );
    expect(await pruneSnapshots(nc, stream, { databaseId: 'A', keep: 0 })).toBe(2);
    expect(await epochs('A')).toEqual([]);
    expect(await epochs('B')).toEqual([3n]);
  });

  it('rejects invalid images, and an image that changes while it is published leaves nothing behind', async () => {
    if (cluster === null) return;
    const stream = 'SNAP_ARGS';
    const bytes = randomBytes(4 * 512);
    const publish = (image: SnapshotImage, databaseId = 'db') =>
      codeOf(publishSnapshot(nc, { stream, databaseId, image }));
    expect(await publish(memoryImage(bytes, { epoch: 1n, pageSize: 512 }), 'no.dots')).toBe(
      'ERR_INVALID_ARGUMENT',
    );
    expect(
      await publish({ ...memoryImage(bytes, { epoch: 1n, pageSize: 512 }), pageSize: 1000 }),
    ).toBe('ERR_INVALID_ARGUMENT');
    expect(
      await publish({ ...memoryImage(bytes, { epoch: 5n, pageSize: 512 }), consistentEpoch: 4n }),
    ).toBe('ERR_INVALID_ARGUMENT');
    expect(await publish({ ...memoryImage(bytes, { epoch: -1n, pageSize: 512 }) })).toBe(
      'ERR_INVALID_ARGUMENT',
    );
    const short = memoryImage(bytes, { epoch: 1n, pageSize: 512 });
    expect(await publish({ ...short, read: async (o, l) => bytes.slice(o, o + l - 1) })).toBe(
      'ERR_INVALID_ARGUMENT',
    );
    // Bytes that differ between the digest pass and the upload pass.
    let pass = 0;
    const shifting: SnapshotImage = {
      ...memoryImage(bytes, { epoch: 2n, pageSize: 512 }),
      async read(offset, length) {
        const out = bytes.slice(offset, offset + length);
        if (offset === 0 && pass++ === 1) out[0] = (out[0]! + 1) & 0xff;
        return out;
      },
    };
    expect(await publish(shifting)).toBe(ReplicaErrorCode.snapshot);
    expect(await listSnapshots(nc, stream)).toEqual([]);
  });

  it('copies a page store’s checkpointed file while commits flow, and the copy plus the log after it is the database', async () => {
    if (cluster === null) return;
    const source = tempDb();
    const store = await PageStore.open(source, { pageSize: 4096, autoCheckpoint: false });
    const page = (n: number, fill: number) => new Uint8Array(4096).fill(fill).fill(n & 0xff, 0, 4);
    for (let i = 1; i <= 600; i += 50) {
      const pages = Array.from({ length: 50 }, (_, k) => ({
        pageNumber: i + k,
        data: page(i + k, 1),
      }));
      await store.commit(pages);
    }
    await store.checkpoint();
    let stop = false;
    const writer = (async () => {
      for (let n = 2; !stop; n++)
        await store.commit([{ pageNumber: 1 + (n % 700), data: page(n, n) }]);
    })();
    const { meta, fileBytes, held } = await store.withCheckpointImage(async (image) => {
      const published = await publishSnapshot(nc, {
        stream: 'SNAP_STORE',
        databaseId: 'store-db',
        image: { ...image, epoch: image.epoch! },
      });
      const { read: _read, ...fields } = image;
      const checkpointEpoch = store.checkpointEpoch;
      return {
        meta: published,
        fileBytes: fs.readFileSync(source),
        held: { ...fields, checkpointEpoch },
      };
    });
    stop = true;
    await writer;
    await store.close();
    expect(meta.epoch).toBe(held.checkpointEpoch);
    expect(meta.epoch).toBe(held.epoch);
    expect(meta.consistentEpoch).toBe(held.consistentEpoch);
    expect(meta.commitSeq).toBe(held.commitSeq);
    expect(meta.dbSizePages).toBe(600);
    expect(meta.bytes).toBe(fileBytes.length);
    // Download into a fresh file and compare with the source file as it was.
    const restored = tempDb();
    const handle = await fs.promises.open(restored, 'w');
    try {
      await downloadSnapshot(nc, 'SNAP_STORE', meta, async (chunk, offset) => {
        await handle.write(chunk, 0, chunk.length, offset);
      });
    } finally {
      await handle.close();
    }
    expect(fs.readFileSync(restored).equals(fileBytes)).toBe(true);
    // The snapshot plus the source's log after its epoch opens as the source database.
    await writeStoreHeader(
      restored,
      {
        pageSize: meta.pageSize,
        dbSizePages: meta.dbSizePages,
        nextEpoch: meta.epoch + 1n,
        checkpointCommitSeq: meta.commitSeq,
      },
      nodeFileSystem,
    );
    const later = (await listSegments(source)).filter((s) => s.epoch > meta.epoch);
    expect(later.at(-1)!.epoch >= meta.consistentEpoch).toBe(true);
    for (const segment of later)
      fs.copyFileSync(segment.path, segmentPath(restored, segment.epoch));
    const original = await PageStore.open(source, { autoCheckpoint: false });
    const copy = await PageStore.open(restored, { autoCheckpoint: false });
    try {
      expect(copy.dbSizePages).toBe(original.dbSizePages);
      for (let p = 1; p <= original.dbSizePages; p++) {
        expect(
          Buffer.from(await copy.read(p)).equals(Buffer.from(await original.read(p))),
          `page ${p}`,
        ).toBe(true);
      }
    } finally {
      await copy.close();
      await original.close();
    }
  });

  // Last: takes the whole cluster away.
  it('reports a cluster that is down as ERR_REPLICATION_UNAVAILABLE', async () => {
    if (cluster === null) return;
    const meta = (await listSnapshots(nc, 'SNAP_RT'))[0]!;
    for (const name of cluster.nodeNames) await cluster.kill(name);
    const options = { apiTimeoutMs: 300 };
    expect(await codeOf(listSnapshots(nc, 'SNAP_RT', options))).toBe(
      ReplicationErrorCode.unavailable,
    );
    expect(
      await codeOf(
        publishSnapshot(nc, {
          stream: 'SNAP_DOWN',
          databaseId: 'db',
          apiTimeoutMs: 300,
          image: memoryImage(randomBytes(512), { epoch: 1n, pageSize: 512 }),
        }),
      ),
    ).toBe(ReplicationErrorCode.unavailable);
    expect(await codeOf(downloadSnapshot(nc, 'SNAP_RT', meta, async () => {}, options))).toBe(
      ReplicationErrorCode.unavailable,
    );
  });
});
