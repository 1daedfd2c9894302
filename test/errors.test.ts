import { describe, expect, it } from 'vitest';
import { isWalError, WalArgumentError, WalError } from '../src/errors.js';

describe('WalError', () => {
  it('carries a stable code and its subclass name', () => {
    const error = new WalArgumentError('pageId must be >= 1');
    expect(error).toBeInstanceOf(WalError);
    expect(error.code).toBe('ERR_INVALID_ARGUMENT');
    expect(error.name).toBe('WalArgumentError');
    expect(isWalError(error, 'ERR_INVALID_ARGUMENT')).toBe(true);
    expect(isWalError(error, 'ERR_OTHER')).toBe(false);
    expect(isWalError(new Error('plain'))).toBe(false);
  });
});
