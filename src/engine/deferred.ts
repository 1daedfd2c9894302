/**
 * A promise with its resolve/reject functions (Node 20 has no
 * `Promise.withResolvers`). The promise is marked handled, so rejecting a
 * deferred nobody awaits yet never raises an unhandled rejection; whoever
 * awaits it later still sees the rejection.
 */
export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

/** Creates a {@link Deferred}. */
export function createDeferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {});
  return { promise, resolve, reject };
}
