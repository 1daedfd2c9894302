/**
 * The certificate trailer of a version-3 segment (docs/format.md, section 7):
 * after the records, `u32 magic 0x54435750 | u32 length L | L bytes`, running
 * exactly to the end of the file. This module frames and unframes those bytes;
 * what the L bytes mean (the commit certificate) is the control plane's
 * business. Pure bytes, no I/O.
 */
import { hex32, readU32, writeU32 } from './bytes.js';
import { CERTIFICATE_TRAILER_MAGIC, CERTIFICATE_TRAILER_PREFIX_BYTES } from './types.js';

/** The trailer around `certificate`: magic, length, certificate. */
export function frameCertificateTrailer(certificate: Uint8Array): Uint8Array {
  const trailer = new Uint8Array(CERTIFICATE_TRAILER_PREFIX_BYTES + certificate.length);
  writeU32(trailer, 0, CERTIFICATE_TRAILER_MAGIC);
  writeU32(trailer, 4, certificate.length);
  trailer.set(certificate, CERTIFICATE_TRAILER_PREFIX_BYTES);
  return trailer;
}

/** Why the bytes after the records are not a trailer. */
export type CertificateTrailerFault = 'truncated' | 'magic' | 'length';

/**
 * The trailer read at some offset: the certificate bytes (a view, unchecked),
 * or the fault, its message and the offset of the field at fault.
 */
export type CertificateTrailerRead =
  | { ok: true; certificate: Uint8Array }
  | { ok: false; fault: CertificateTrailerFault; message: string; offset: number };

/**
 * Reads the trailer that starts at `at` and must end exactly at the end of
 * `bytes`. Returns its fault instead of throwing, so that each reader raises
 * its own typed error (the segment decoder one code for all three, the
 * control plane one code each).
 */
export function readCertificateTrailer(bytes: Uint8Array, at: number): CertificateTrailerRead {
  const left = bytes.length - at;
  if (left < CERTIFICATE_TRAILER_PREFIX_BYTES) {
    return {
      ok: false,
      fault: 'truncated',
      message: `certificate trailer truncated: ${left} bytes after the records`,
      offset: at,
    };
  }
  const magic = readU32(bytes, at);
  if (magic !== CERTIFICATE_TRAILER_MAGIC) {
    return {
      ok: false,
      fault: 'magic',
      message: `invalid certificate trailer magic: ${hex32(magic)}`,
      offset: at,
    };
  }
  const declared = readU32(bytes, at + 4);
  const present = left - CERTIFICATE_TRAILER_PREFIX_BYTES;
  if (declared !== present) {
    return {
      ok: false,
      fault: 'length',
      message: `certificate trailer declares ${declared} bytes, ${present} present`,
      offset: at + 4,
    };
  }
  return { ok: true, certificate: bytes.subarray(at + CERTIFICATE_TRAILER_PREFIX_BYTES) };
}
