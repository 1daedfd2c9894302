/**
 * Checks a shipped epoch's commit certificate with the control plane's chain
 * rules: its checksum, its digest of the segment, what it states about the
 * segment, and its link to the previous verified certificate (contiguous
 * commit sequences, predecessor epoch and CRC).
 */
import { decodeCertificate } from '../control/certificate.js';
import { verifyCertificateChain } from '../control/certificate-chain.js';
import type { CertificateVerifier } from './assembler.js';

/**
 * The default {@link CertificateVerifier} of restore and follow. Without a
 * previous certificate (the first one read) the first certificate may name
 * any predecessor: the stream may start after a checkpointed prefix.
 */
export const verifyShippedCertificate: CertificateVerifier = ({
  epoch,
  certificate,
  segment,
  previous,
}) => {
  const cert = decodeCertificate(certificate);
  if (cert.certificateEpoch !== epoch) {
    throw new Error(`certificate names epoch ${cert.certificateEpoch}, the message epoch ${epoch}`);
  }
  const anchor = previous === null ? null : decodeCertificate(previous.certificate).link();
  verifyCertificateChain([cert], [segment], { anchor });
};
