/**
 * A promise with its resolve/reject functions and a `settled` flag (Node 20
 * has no `Promise.withResolvers`): the one such helper of the package, used
 * by the engine and by replication above it. The promise is marked handled,
 * so rejecting a deferred nobody awaits yet never raises an unhandled
 * rejection; whoever awaits it later still sees the rejection.
 *
 * `resolve` and `reject` are plain closures, not methods: they may be passed
 * around or spread into another object and still work.
 */
export interface Deferred<T> {
  readonly promise: Promise<T>;
  /** True once resolved or rejected. */
  readonly settled: boolean;
  resolve(value: T): void;
  reject(error: unknown): void;
}

/** Creates a {@link Deferred}. */
export function createDeferred<T = void>(): Deferred<T> {
  let resolvePromise!: (value: T) => void;
  let rejectPromise!: (error: unknown) => void;
  const promise = new Promise<T>((resolve, reject) => {
    resolvePromise = resolve;
    rejectPromise = reject;
  });
  promise.catch(() => {});
  let settled = false;
  return {
    promise,
    get settled() {
      return settled;
    },
    resolve(value: T) {
      settled = true;
      resolvePromise(value);
    },
    reject(error: unknown) {
      settled = true;
      rejectPromise(error);
    },
  };
}
