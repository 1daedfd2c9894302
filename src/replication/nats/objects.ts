/**
 * The snapshot bucket over the JetStream object store.
 *
 * Listing and reading do not go through the object store client's own
 * readers: a listing reads each object's metadata message by subject, and a
 * read fetches one chunk message at a time (one more prefetched) by subject,
 * instead of the client's push consumer, which would queue the whole object
 * if the caller is slow. The chunks and metadata live where the object
 * store's wire format puts them (NATS ADR-20): stream `OBJ_<bucket>`,
 * metadata on `$O.<bucket>.M.<base64url(name)>` (one rolled-up message per
 * object), chunks on `$O.<bucket>.C.<nuid>`.
 *
 * Every request is bounded by the API timeout and retried like the other
 * one-off API calls; a final failure is a {@link ReplicationError}
 * (`ERR_REPLICATION_STREAM` for a JetStream rejection,
 * `ERR_REPLICATION_UNAVAILABLE` otherwise).
 */
import type {
  JetStreamClient,
  JetStreamManager,
  MsgRequest,
  NextMsgRequest,
  StoredMsg,
  StreamInfo,
} from '@nats-io/jetstream';
import type { ObjectInfo, ObjectStore } from '@nats-io/obj';
import type { NatsConnection } from '@nats-io/transport-node';
import { WalError } from '../../errors.js';
import type { ObjectEntry, ObjectLookup, ObjectPut, StoredObject } from '../client.js';
import { withApiRetries } from '../client.js';
import { ReplicationError, ReplicationErrorCode } from '../errors.js';
import { isApiError } from './jetstream.js';
import { loadedNats, loadNats } from './peer.js';

/** Metadata messages fetched at once while listing a bucket. */
export const OBJECT_LIST_WINDOW = 16;

/** An open bucket: its object store and the manager of its stream. */
interface BucketHandle {
  os: ObjectStore;
  jsm: JetStreamManager;
}

/** The object store bucket's stream. */
function bucketStreamName(bucket: string): string {
  return `OBJ_${bucket}`;
}

/** The bucket's objects, over one connection. */
export class ObjectBucketClient {
  constructor(
    private readonly nc: NatsConnection,
    private readonly apiTimeoutMs: number,
  ) {}

  async list(bucket: string, onUnreadable: (where: string) => void): Promise<ObjectEntry[] | null> {
    const streamName = bucketStreamName(bucket);
    const { jsm } = await this.clients();
    const info = await call(`listing snapshot bucket ${bucket}`, () =>
      metaSubjectsOrNull(jsm, streamName, `$O.${bucket}.M.>`),
    );
    if (info === null) return null;
    const subjects = Object.keys(info.state.subjects ?? {});
    const found: ObjectEntry[] = [];
    for (let i = 0; i < subjects.length; i += OBJECT_LIST_WINDOW) {
      const messages = await Promise.all(
        subjects
          .slice(i, i + OBJECT_LIST_WINDOW)
          .map((subject) =>
            call(`reading snapshot metadata ${subject}`, () =>
              jsm.streams.getMessage(streamName, { last_by_subj: subject }),
            ),
          ),
      );
      for (const message of messages) {
        if (message === null) continue; // purged meanwhile
        const entry = objectEntryOf(message);
        if (entry === null) onUnreadable(message.subject);
        else found.push(entry);
      }
    }
    return found;
  }

  async find(bucket: string, name: string): Promise<ObjectLookup> {
    const handle = await this.open(bucket);
    if (handle === null) return { bucket: false };
    const info = await call(`reading snapshot ${name} in bucket ${bucket}`, () =>
      handle.os.info(name),
    );
    return { bucket: true, object: info === null ? null : storedObjectOf(info) };
  }

  async put(
    bucket: string,
    object: ObjectPut,
    data: ReadableStream<Uint8Array>,
    options: { replicas: number; timeoutMs: number },
  ): Promise<{ size: number }> {
    const handle = await this.ensure(bucket, options.replicas);
    try {
      const info = await handle.os.put(
        {
          name: object.name,
          description: object.description,
          metadata: object.metadata,
          options: { max_chunk_size: object.chunkBytes },
        },
        data,
        { timeout: options.timeoutMs },
      );
      return { size: info.size };
    } catch (error) {
      throw asReplicationError(error, `publishing snapshot ${object.name} to bucket ${bucket}`);
    }
  }

  async *read(bucket: string, object: StoredObject): AsyncGenerator<Uint8Array | null> {
    const streamName = bucketStreamName(bucket);
    const { jsm } = await this.clients();
    const subject = `$O.${bucket}.C.${object.version}`;
    // The stream leader's MSG.GET takes `next_by_subj` too (nats-server
    // >= 2.9); the client types it only for direct gets, which any replica may
    // answer from a possibly stale copy.
    const fetch = (seq: number): Promise<StoredMsg | null> => {
      const request: NextMsgRequest = { next_by_subj: subject, seq };
      return call(`reading snapshot ${object.name} in bucket ${bucket}`, () =>
        jsm.streams.getMessage(streamName, request as unknown as MsgRequest),
      );
    };
    // One chunk prefetched while the previous one is consumed: two in memory.
    let next: Promise<StoredMsg | null> | null = object.chunks > 0 ? fetch(1) : null;
    try {
      for (let chunk = 1; chunk <= object.chunks; chunk++) {
        const message = await next!;
        next = null;
        if (message === null || message.subject !== subject) {
          yield null;
          return;
        }
        if (chunk < object.chunks) next = fetch(message.seq + 1);
        yield message.data;
      }
    } finally {
      // Never leave the prefetch unobserved when the reader stopped early.
      await next?.catch(() => undefined);
    }
  }

  async delete(bucket: string, name: string): Promise<boolean> {
    const handle = await this.open(bucket);
    if (handle === null) return false;
    await call(`deleting snapshot ${name} from bucket ${bucket}`, () => handle.os.delete(name));
    return true;
  }

  /** A JetStream client and manager whose requests time out after the API timeout. */
  private async clients(): Promise<{ js: JetStreamClient; jsm: JetStreamManager }> {
    // checkAPI false: no account-info round trip; a JetStream that is down
    // shows up in the first real request (bounded like every other).
    const { jetstream } = await loadNats();
    const js = jetstream.jetstream(this.nc, { timeout: this.apiTimeoutMs, checkAPI: false });
    return { js, jsm: await js.jetstreamManager(false) };
  }

  /** The bucket, or `null` when it does not exist. */
  private async open(bucket: string): Promise<BucketHandle | null> {
    const { js, jsm } = await this.clients();
    const what = `opening snapshot bucket ${bucket}`;
    const exists = await call(what, async () => {
      try {
        await jsm.streams.info(bucketStreamName(bucket));
        return true;
      } catch (error) {
        if (isApiError(error, loadedNats()!.jetstream.JetStreamApiCodes.StreamNotFound)) {
          return false;
        }
        throw error;
      }
    });
    if (!exists) return null;
    const { obj } = await loadNats();
    return { os: await call(what, () => new obj.Objm(js).open(bucket, false)), jsm };
  }

  /**
   * The bucket, created with `replicas` when missing (an existing bucket is
   * used as it is). Two publishers creating it at once both succeed: the
   * server accepts an identical stream configuration again.
   */
  private async ensure(bucket: string, replicas: number): Promise<BucketHandle> {
    const existing = await this.open(bucket);
    if (existing !== null) return existing;
    const { js, jsm } = await this.clients();
    const { obj, jetstream } = await loadNats();
    const os = await call(`creating snapshot bucket ${bucket}`, () =>
      new obj.Objm(js).create(bucket, {
        replicas,
        storage: jetstream.StorageType.File,
        description: 'pwal base snapshots of the databases of one stream',
      }),
    );
    return { os, jsm };
  }
}

/** Stream info with the subjects matching `filter`, or `null` when the stream does not exist. */
async function metaSubjectsOrNull(
  jsm: JetStreamManager,
  streamName: string,
  filter: string,
): Promise<StreamInfo | null> {
  try {
    return await jsm.streams.info(streamName, { subjects_filter: filter });
  } catch (error) {
    if (isApiError(error, loadedNats()!.jetstream.JetStreamApiCodes.StreamNotFound)) return null;
    throw error;
  }
}

/**
 * A NATS call with the API retries of {@link withApiRetries}; a final
 * failure becomes a {@link ReplicationError} naming `what`.
 */
async function call<T>(what: string, request: () => Promise<T>): Promise<T> {
  try {
    return await withApiRetries(request);
  } catch (error) {
    throw asReplicationError(error, what);
  }
}

/** Our own errors pass; JetStream rejections are `stream`, everything else `unavailable`. */
function asReplicationError(error: unknown, what: string): Error {
  if (error instanceof WalError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const jetstream = loadedNats()?.jetstream;
  const code =
    jetstream !== undefined && error instanceof jetstream.JetStreamApiError
      ? ReplicationErrorCode.stream
      : ReplicationErrorCode.unavailable;
  return new ReplicationError(code, `${what}: ${message}`, { cause: error });
}

/** The object store's JSON info in a metadata message, or `null` when it is not JSON. */
function objectEntryOf(message: StoredMsg): ObjectEntry | null {
  try {
    const value: unknown = JSON.parse(new TextDecoder().decode(message.data));
    if (typeof value !== 'object' || value === null) return null;
    const info = value as Record<string, unknown> & { options?: { link?: unknown } };
    return {
      name: info.name,
      size: info.size,
      deleted: info.deleted,
      metadata: info.metadata,
      link: info.options?.link !== undefined && info.options.link !== null,
    };
  } catch {
    return null;
  }
}

function storedObjectOf(info: ObjectInfo): StoredObject {
  return {
    name: info.name,
    size: info.size,
    deleted: info.deleted === true,
    metadata: info.metadata,
    link: info.options?.link !== undefined && info.options.link !== null,
    digest: info.digest,
    chunks: info.chunks,
    version: info.nuid,
  };
}
