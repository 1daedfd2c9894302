/**
 * The store's own commits between submitting to the log and entering the
 * page index. A memory checkpoint folds from the index, so it must not fold
 * an epoch such a commit may still land in: each one is registered under the
 * log's append epoch read before submitting, a lower bound of its epoch.
 */
import { strict as assert } from 'node:assert';

/** Commits of `PageStore.commit` on their way into the index. */
export class PendingCommits {
  /** Commits in flight, by the append epoch read before submitting. */
  private readonly floors = new Map<bigint, number>();
  private trusted = true;

  /**
   * False once the log placed a commit in an epoch older than announced: a
   * checkpoint can no longer trust the index to hold every commit of the
   * epochs it folds, and folds from the log instead.
   */
  get memorySourceOk(): boolean {
    return this.trusted;
  }

  /** A commit is about to be submitted while the log appends to `floor`. */
  begin(floor: bigint): void {
    this.floors.set(floor, (this.floors.get(floor) ?? 0) + 1);
  }

  /** The commit registered under `floor` landed in `epoch` (durable). */
  landed(floor: bigint, epoch: bigint): void {
    // Never expected; if the log ever did it, memory checkpoints could
    // miss this commit, so fold from the log from now on.
    if (epoch < floor) this.trusted = false;
  }

  /** The commit registered under `floor` is in the index, or failed. */
  end(floor: bigint): void {
    const left = this.floors.get(floor);
    assert.ok(left !== undefined && left > 0, `no commit is pending at epoch ${floor}`);
    if (left === 1) this.floors.delete(floor);
    else this.floors.set(floor, left - 1);
  }

  /**
   * The newest epoch a memory fold may go through, at most `through`: each
   * pending commit lands in an epoch at or above its floor, so the fold stops
   * below the lowest floor.
   */
  foldCeiling(through: bigint): bigint {
    let ceiling = through;
    for (const floor of this.floors.keys()) {
      if (floor - 1n < ceiling) ceiling = floor - 1n;
    }
    return ceiling;
  }
}
