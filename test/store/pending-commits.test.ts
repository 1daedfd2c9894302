/**
 * The store's own commits between the log and the page index: a memory
 * checkpoint never folds an epoch one of them may still land in.
 */
import { AssertionError } from 'node:assert';
import { describe, expect, it } from 'vitest';
import { PendingCommits } from '../../src/store/pending-commits.js';

describe('PendingCommits', () => {
  it('stops a memory fold below the lowest epoch a pending commit may land in', () => {
    const pending = new PendingCommits();
    expect(pending.foldCeiling(9n)).toBe(9n);
    pending.begin(5n);
    pending.begin(7n);
    pending.begin(5n);
    expect(pending.foldCeiling(9n)).toBe(4n);
    expect(pending.foldCeiling(3n)).toBe(3n);
    pending.end(5n);
    expect(pending.foldCeiling(9n)).toBe(4n); // one commit still registered at 5
    pending.end(5n);
    expect(pending.foldCeiling(9n)).toBe(6n);
    pending.end(7n);
    expect(pending.foldCeiling(9n)).toBe(9n);
  });

  it('stops trusting the index once a commit lands below the epoch it was registered at', () => {
    const pending = new PendingCommits();
    pending.begin(4n);
    pending.landed(4n, 6n);
    expect(pending.memorySourceOk).toBe(true);
    pending.landed(4n, 3n);
    expect(pending.memorySourceOk).toBe(false);
    pending.end(4n);
    expect(pending.memorySourceOk).toBe(false);
  });

  it('asserts that every commit it ends was begun', () => {
    const pending = new PendingCommits();
    expect(() => pending.end(2n)).toThrow(AssertionError);
    pending.begin(2n);
    pending.end(2n);
    expect(() => pending.end(2n)).toThrow(/no commit is pending at epoch 2/);
  });
});
