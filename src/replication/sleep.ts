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
