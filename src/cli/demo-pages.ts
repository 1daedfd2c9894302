/**
 * The deterministic page contents of `pwal demo`: the verifier regenerates a
 * page from its transaction id and page number instead of keeping a copy.
 */

/** Page `pageNumber` of transaction `txnId`, `bytes` long. */
export function demoPage(txnId: number, pageNumber: number, bytes: number): Uint8Array {
  const page = new Uint8Array(bytes).fill((txnId * 31 + pageNumber * 7) & 0xff);
  const view = new DataView(page.buffer);
  if (bytes >= 12) {
    view.setFloat64(0, txnId, true);
    view.setUint32(8, pageNumber, true);
  }
  return page;
}
