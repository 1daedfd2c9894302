import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  CRC32C_NATIVE_THRESHOLD_BYTES,
  crc32c,
  crc32cJs,
  crc32cNative,
} from '../../src/format/crc32c.js';

const CHECK_INPUT = new TextEncoder().encode('123456789');

describe('crc32c', () => {
  it('matches the CRC-32C check value 0xE3069283 in every implementation', () => {
    expect(crc32cJs(CHECK_INPUT)).toBe(0xe3069283);
    expect(crc32cNative(CHECK_INPUT)).toBe(0xe3069283);
    expect(crc32c(CHECK_INPUT)).toBe(0xe3069283);
  });

  it('is not zlib CRC-32 (IEEE)', () => {
    // CRC-32/ISO-HDLC of "123456789" is 0xCBF43926.
    expect(crc32c(CHECK_INPUT)).not.toBe(0xcbf43926);
  });

  it('gives 0 for empty input and known values for short ones', () => {
    expect(crc32cJs(new Uint8Array(0))).toBe(0);
    expect(crc32cNative(new Uint8Array(0))).toBe(0);
    // RFC 3720 (iSCSI) B.4 test vectors: 32 bytes of zeros / of 0xff.
    expect(crc32cJs(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(crc32cJs(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43);
    const ascending = Uint8Array.from({ length: 32 }, (_, i) => i);
    expect(crc32cJs(ascending)).toBe(0x46dd794e);
    expect(crc32cNative(ascending)).toBe(0x46dd794e);
  });

  it('agrees between the JS table and the native code on random inputs of every small length', () => {
    for (let length = 0; length < 300; length++) {
      const data = new Uint8Array(randomBytes(length));
      expect(crc32cJs(data)).toBe(crc32cNative(data));
    }
    for (const length of [1023, 4096, 65536 + 7]) {
      const data = new Uint8Array(randomBytes(length));
      expect(crc32cJs(data)).toBe(crc32cNative(data));
      expect(crc32c(data)).toBe(crc32cNative(data));
    }
  });

  it('chains through the seed argument: crc(a ++ b) = crc(b, crc(a))', () => {
    const data = new Uint8Array(randomBytes(1000));
    for (const split of [0, 1, 7, 8, 95, 96, 500, 1000]) {
      const a = data.subarray(0, split);
      const b = data.subarray(split);
      expect(crc32cJs(b, crc32cJs(a))).toBe(crc32cJs(data));
      expect(crc32cNative(b, crc32cNative(a))).toBe(crc32cJs(data));
      expect(crc32c(b, crc32c(a))).toBe(crc32cJs(data));
    }
  });

  it('reads only the view it is given, not the whole underlying buffer', () => {
    const backing = new Uint8Array(randomBytes(256));
    const view = backing.subarray(10, 10 + CRC32C_NATIVE_THRESHOLD_BYTES + 5);
    const copy = Uint8Array.from(view);
    expect(crc32c(view)).toBe(crc32cJs(copy));
    expect(crc32cNative(view)).toBe(crc32cJs(copy));
    const small = backing.subarray(3, 20);
    expect(crc32c(small)).toBe(crc32cNative(Uint8Array.from(small)));
  });
});
