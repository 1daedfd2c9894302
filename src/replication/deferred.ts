/**
 * A promise with its resolve/reject functions and a `settled` flag (Node 20
 * has no `Promise.withResolvers`). The promise is marked handled, so a
 * deferred rejected before anyone awaits it never raises an unhandled
 * rejection; a later `await` still sees the rejection.
 */
export interface Deferred<T> {
  readonly promise: Promise<T>;
  /** True once resolved or rejected. */
  readonly settled: boolean;
  resolve(value: T): void;
  reject(error: unknown): void;
}

/** Creates a {@link Deferred}. */
export function deferred<T = void>(): Deferred<T> {
  let resolveFn!: (value: T) => void;
  let rejectFn!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolveFn = res;
    rejectFn = rej;
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
      resolveFn(value);
    },
    reject(error: unknown) {
      settled = true;
      rejectFn(error);
    },
  };
}
