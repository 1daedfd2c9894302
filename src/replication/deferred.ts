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

/**
 * Waits `ms` milliseconds or until one of `signals` settles, whichever comes
 * first, then clears the timer.
 */
export async function sleepUnless(ms: number, signals: readonly Promise<unknown>[]): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const slept = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  await Promise.race([slept, ...signals]);
  clearTimeout(timer);
}
