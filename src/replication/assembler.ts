/**
 * Reads a database's stream message by message and hands back verified
 * epochs, strictly in order (pure: no I/O, no transport).
 *
 * Used by restore and by the follower. It checks, for every message: the
 * framing headers, the database id, each chunk's CRC-32C, that chunks of one
 * epoch arrive complete and in order, that each epoch names as predecessor the
 * last verified epoch (a missing epoch is a gap even though empty epochs have
 * no segment), the reassembled length and SHA-256 digest, that the segment
 * decodes (every reader check of docs/format.md#4-reading-validation-order-and-error-codes) with
 * the announced epoch, and —
 * through an injected verifier — the commit certificate chain.
 *
 * Exact copies of messages already verified (a publisher retry that landed
 * twice) are reported as duplicates and skipped: they cannot change what was
 * applied. A *different* copy of an epoch already verified is fatal. Any
 * failure throws {@link ReplicaVerificationError} and leaves the assembler at
 * the last verified epoch: point-in-time semantics, never E+1 without E.
 */

import { CERTIFIED_SEGMENT_VERSION, splitCertificateTrailer } from '../control/segment-v3.js';
import { crc32c } from '../format/crc32c.js';
import { decodeSegment, relabelSegment } from '../format/segment.js';
import { ReplicaErrorCode, ReplicaVerificationError } from './errors.js';
import {
  type ChunkHeader,
  concatBytes,
  crcHex,
  type EpochEnvelope,
  objectDigest,
  parseChunkHeader,
} from './wire.js';

/** How many recent epoch digests are remembered to tell an exact duplicate from a conflicting one. */
export const DUPLICATE_MEMORY_EPOCHS = 4096;

/** One stream message as the assembler sees it. */
export interface StreamMessage {
  /** Stream sequence number. */
  seq: number;
  /** Returns a header's value, or `undefined`. */
  header: (name: string) => string | undefined;
  data: Uint8Array;
}

/** A verified epoch and where it sits in the stream. */
export interface VerifiedEpoch extends EpochEnvelope {
  /** SHA-256 (hex) of segment ‖ certificate. */
  digest: string;
  /**
   * The certificate the chain check used: the shipped one, else the one in a
   * version-3 segment's trailer; `null` when the epoch has none.
   */
  chainCertificate: Uint8Array | null;
  firstSeq: number;
  lastSeq: number;
}

/** A message skipped because it repeats one already verified. */
export interface DuplicateMessage {
  epoch: bigint;
  chunk: number;
  seq: number;
}

/** What {@link EpochAssembler.push} found. */
export type AssemblerEvent =
  | { kind: 'partial' }
  | { kind: 'epoch'; epoch: VerifiedEpoch }
  | { kind: 'duplicate'; duplicate: DuplicateMessage }
  /** A message of an epoch the base (a snapshot) already holds. */
  | { kind: 'beforeBase'; epoch: bigint };

/**
 * Checks a commit certificate against its segment and the previous verified
 * certificate (`null` for the first one seen). Throws to reject the epoch.
 */
export type CertificateVerifier = (input: {
  epoch: bigint;
  certificate: Uint8Array;
  segment: Uint8Array;
  previous: { epoch: bigint; certificate: Uint8Array } | null;
}) => void;

/** Options of {@link EpochAssembler}. */
export interface EpochAssemblerOptions {
  /** Only messages of this database are accepted (default: the first message's). */
  databaseId?: string;
  /**
   * The last epoch already applied by the reader (`null`, the default, for an
   * empty target). The first epoch must name it as predecessor.
   */
  afterEpoch?: bigint | null;
  /**
   * The reader starts from a base — a snapshot of the database through this
   * epoch — instead of from `afterEpoch`: messages of epochs at or below it
   * are skipped (`beforeBase`), and the first epoch above it must follow an
   * epoch at or below it (or none). Ignored when `afterEpoch` is given.
   */
  baseEpoch?: bigint | null;
  /** The last applied certificate, for the chain check of the next one. */
  previousCertificate?: { epoch: bigint; certificate: Uint8Array } | null;
  /** Certificate chain check; without it certificates are carried but only digest-checked. */
  verifyCertificate?: CertificateVerifier;
}

interface PartialEpoch {
  header: ChunkHeader;
  parts: Uint8Array[];
  firstSeq: number;
  received: number;
}

/** Incremental, verifying reader of one database's stream. */
export class EpochAssembler {
  private databaseId: string | undefined;
  private lastEpoch: bigint | null;
  /** Set until the first epoch above the base is verified. */
  private base: bigint | null;
  private previousCertificate: { epoch: bigint; certificate: Uint8Array } | null;
  private partial: PartialEpoch | null = null;
  private readonly digests = new Map<bigint, string>();
  private readonly verifyCertificate: CertificateVerifier | undefined;
  private duplicateCount = 0;

  constructor(options: EpochAssemblerOptions = {}) {
    this.databaseId = options.databaseId;
    this.lastEpoch = options.afterEpoch ?? null;
    this.base = this.lastEpoch === null ? (options.baseEpoch ?? null) : null;
    this.previousCertificate = options.previousCertificate ?? null;
    this.verifyCertificate = options.verifyCertificate;
  }

  /** The last fully verified epoch (or the starting point; `null`: none). */
  get lastVerifiedEpoch(): bigint | null {
    return this.lastEpoch;
  }

  /** Messages skipped as exact duplicates so far. */
  get duplicates(): number {
    return this.duplicateCount;
  }

  /** The database id in use (set by the first message when not given). */
  get database(): string | undefined {
    return this.databaseId;
  }

  /** True while an epoch's chunks are only partly received. */
  get inEpoch(): boolean {
    return this.partial !== null;
  }

  /** Feeds the next stream message; throws {@link ReplicaVerificationError} on anything wrong. */
  push(message: StreamMessage): AssemblerEvent {
    const seq = message.seq;
    const header = parseChunkHeader(message.header, seq);
    if (this.databaseId === undefined) this.databaseId = header.databaseId;
    if (header.databaseId !== this.databaseId) {
      throw new ReplicaVerificationError(
        ReplicaErrorCode.foreignDatabase,
        `message of database ${header.databaseId} in the stream of database ${this.databaseId}`,
        { epoch: header.epoch, streamSeq: seq },
      );
    }
    const crc = crc32c(message.data);
    if (crc !== header.chunkCrc) {
      throw new ReplicaVerificationError(
        ReplicaErrorCode.chunkChecksum,
        `epoch ${header.epoch} chunk ${header.chunk} checksum mismatch: stored=${crcHex(header.chunkCrc)}, computed=${crcHex(crc)}`,
        { epoch: header.epoch, streamSeq: seq },
      );
    }
    if (this.base !== null && header.epoch <= this.base) {
      return { kind: 'beforeBase', epoch: header.epoch };
    }
    if (this.lastEpoch !== null && header.epoch <= this.lastEpoch) {
      return this.duplicateOfVerified(header, seq);
    }
    if (this.partial !== null) return this.continueEpoch(this.partial, header, message);
    return this.startEpoch(header, message);
  }

  private duplicateOfVerified(header: ChunkHeader, seq: number): AssemblerEvent {
    const known = this.digests.get(header.epoch);
    if (known !== undefined && known !== header.digest) {
      throw new ReplicaVerificationError(
        ReplicaErrorCode.conflictingDuplicate,
        `epoch ${header.epoch} appears again at stream sequence ${seq} with different contents (digest ${header.digest.slice(0, 16)}…, verified ${known.slice(0, 16)}…)`,
        { epoch: header.epoch, streamSeq: seq },
      );
    }
    this.duplicateCount += 1;
    return { kind: 'duplicate', duplicate: { epoch: header.epoch, chunk: header.chunk, seq } };
  }

  private startEpoch(header: ChunkHeader, message: StreamMessage): AssemblerEvent {
    const seq = message.seq;
    const base = this.base;
    if (base !== null) {
      // The first epoch above a snapshot: nothing may be missing between them.
      if (header.prevEpoch !== null && header.prevEpoch > base) {
        throw new ReplicaVerificationError(
          ReplicaErrorCode.gap,
          `gap after the snapshot of epoch ${base}: the next epoch in the stream is ${header.epoch}, which follows epoch ${header.prevEpoch} (not in the snapshot, not in the stream)`,
          { epoch: header.epoch, streamSeq: seq },
        );
      }
    } else if (header.prevEpoch !== this.lastEpoch) {
      throw new ReplicaVerificationError(
        ReplicaErrorCode.gap,
        `gap before epoch ${header.epoch}: it follows epoch ${header.prevEpoch ?? 'none'}, but the last verified epoch is ${this.lastEpoch ?? 'none'}`,
        { epoch: header.epoch, streamSeq: seq },
      );
    }
    if (header.chunk !== 0) {
      throw new ReplicaVerificationError(
        ReplicaErrorCode.gap,
        `epoch ${header.epoch} starts at chunk ${header.chunk} of ${header.chunks}: its first chunks are missing`,
        { epoch: header.epoch, streamSeq: seq },
      );
    }
    this.partial = { header, parts: [message.data], firstSeq: seq, received: 1 };
    return this.maybeComplete(this.partial, seq);
  }

  private continueEpoch(
    partial: PartialEpoch,
    header: ChunkHeader,
    message: StreamMessage,
  ): AssemblerEvent {
    const seq = message.seq;
    const open = partial.header;
    if (
      header.epoch === open.epoch &&
      header.digest === open.digest &&
      header.chunk < partial.received
    ) {
      this.duplicateCount += 1;
      return { kind: 'duplicate', duplicate: { epoch: header.epoch, chunk: header.chunk, seq } };
    }
    const sameEpoch =
      header.epoch === open.epoch &&
      header.prevEpoch === open.prevEpoch &&
      header.chunks === open.chunks &&
      header.digest === open.digest &&
      header.segmentBytes === open.segmentBytes &&
      header.certificateBytes === open.certificateBytes;
    if (!sameEpoch || header.chunk !== partial.received) {
      this.partial = null;
      throw new ReplicaVerificationError(
        ReplicaErrorCode.gap,
        `epoch ${open.epoch} is incomplete: expected chunk ${partial.received} of ${open.chunks}, found epoch ${header.epoch} chunk ${header.chunk} at stream sequence ${seq}`,
        { epoch: open.epoch, streamSeq: seq },
      );
    }
    partial.parts.push(message.data);
    partial.received += 1;
    return this.maybeComplete(partial, seq);
  }

  private maybeComplete(partial: PartialEpoch, seq: number): AssemblerEvent {
    const header = partial.header;
    if (partial.received < header.chunks) return { kind: 'partial' };
    this.partial = null;
    const object = concatBytes(partial.parts);
    const where = { epoch: header.epoch, streamSeq: seq };
    const expected = header.segmentBytes + header.certificateBytes;
    if (object.length !== expected) {
      throw new ReplicaVerificationError(
        ReplicaErrorCode.digest,
        `epoch ${header.epoch} has ${object.length} bytes, headers announce ${expected}`,
        where,
      );
    }
    const digest = objectDigest([object]);
    if (digest !== header.digest) {
      throw new ReplicaVerificationError(
        ReplicaErrorCode.digest,
        `epoch ${header.epoch} digest mismatch: stored=${header.digest.slice(0, 16)}…, computed=${digest.slice(0, 16)}…`,
        where,
      );
    }
    const segment = object.subarray(0, header.segmentBytes);
    const certificate = header.certificateBytes > 0 ? object.subarray(header.segmentBytes) : null;
    checkSegment(segment, header.epoch, seq);
    if (certificate !== null && this.verifyCertificate !== undefined) {
      try {
        this.verifyCertificate({
          epoch: header.epoch,
          certificate,
          segment,
          previous: this.previousCertificate,
        });
      } catch (error) {
        throw new ReplicaVerificationError(
          ReplicaErrorCode.certificate,
          `epoch ${header.epoch} certificate rejected: ${(error as Error).message}`,
          { ...where, cause: error },
        );
      }
    }
    if (certificate !== null) this.previousCertificate = { epoch: header.epoch, certificate };
    this.lastEpoch = header.epoch;
    this.base = null;
    this.remember(header.epoch, digest);
    return {
      kind: 'epoch',
      epoch: {
        databaseId: header.databaseId,
        epoch: header.epoch,
        prevEpoch: header.prevEpoch,
        segment,
        certificate: header.certificateBytes > 0 ? certificate : null,
        digest,
        chainCertificate: certificate,
        firstSeq: partial.firstSeq,
        lastSeq: seq,
      },
    };
  }

  private remember(epoch: bigint, digest: string): void {
    this.digests.set(epoch, digest);
    if (this.digests.size > DUPLICATE_MEMORY_EPOCHS) {
      const oldest = this.digests.keys().next().value;
      if (oldest !== undefined) this.digests.delete(oldest);
    }
  }
}

/**
 * The segment must decode (all reader checks of
 * docs/format.md#4-reading-validation-order-and-error-codes) and be of the
 * announced epoch. A version-3 segment (control plane: version-2 records plus
 * a certificate trailer) is split first; its records are checked in their
 * version-2 form and its trailer certificate is returned.
 * @returns the certified bytes (header + records) and the trailer certificate, if any.
 */
function checkSegment(
  bytes: Uint8Array,
  epoch: bigint,
  seq: number,
): { certified: Uint8Array; trailerCertificate: Uint8Array | null } {
  let decodedEpoch: bigint;
  let certified = bytes;
  let trailerCertificate: Uint8Array | null = null;
  try {
    const split = splitCertificateTrailer(bytes);
    if (split.version === CERTIFIED_SEGMENT_VERSION) {
      certified = split.segment;
      trailerCertificate = split.certificate?.encode() ?? null;
      const asV2 = relabelSegment(certified, 2);
      decodedEpoch = decodeSegment(asV2, { copyImages: false }).header.epoch;
    } else {
      decodedEpoch = decodeSegment(bytes, { copyImages: false }).header.epoch;
    }
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const reason =
      typeof code === 'string' ? `${code}: ${(error as Error).message}` : String(error);
    throw new ReplicaVerificationError(
      ReplicaErrorCode.segment,
      `epoch ${epoch} segment is invalid: ${reason}`,
      { epoch, streamSeq: seq, cause: error },
    );
  }
  if (decodedEpoch !== epoch) {
    throw new ReplicaVerificationError(
      ReplicaErrorCode.segment,
      `mismatched epoch: message announces epoch ${epoch}, segment header says ${decodedEpoch}`,
      { epoch, streamSeq: seq },
    );
  }
  return { certified, trailerCertificate };
}
