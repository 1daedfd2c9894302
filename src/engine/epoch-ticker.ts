/**
 * The flusher's ticker: every `intervalMs` it runs one tick (a flush cycle)
 * until it is stopped, its abort signal fires, or a tick reports that the
 * log can no longer flush. At most one loop runs per start; `stop` waits for
 * the loops started so far.
 */
import { setTimeout as sleep } from 'node:timers/promises';

/** Runs `tick` every `intervalMs` while started; see the file comment. */
export class EpochTicker {
  private runningNow = false;
  private controller: AbortController | null = null;
  private readonly loops = new Set<Promise<void>>();

  /**
   * @param intervalMs time between ticks
   * @param tick one tick; resolves false when the ticker must end (the log
   *   failed or closed)
   */
  constructor(
    private readonly intervalMs: number,
    private readonly tick: () => Promise<boolean>,
  ) {}

  /** True while started and not stopped or aborted. */
  get running(): boolean {
    return this.runningNow;
  }

  /** Starts a loop; `signal` aborting stops it like {@link stop}. */
  start(signal?: AbortSignal): void {
    const controller = new AbortController();
    if (signal !== undefined) {
      if (signal.aborted) return;
      const onAbort = (): void => {
        if (this.controller === controller) this.runningNow = false;
        controller.abort();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      controller.signal.addEventListener(
        'abort',
        () => signal.removeEventListener('abort', onAbort),
        { once: true },
      );
    }
    this.controller = controller;
    this.runningNow = true;
    const loop = this.loop(controller.signal);
    this.loops.add(loop);
    void loop.finally(() => this.loops.delete(loop));
  }

  /** Stops the ticker and waits until its loops have finished. Idempotent. */
  async stop(): Promise<void> {
    this.runningNow = false;
    this.controller?.abort();
    this.controller = null;
    await Promise.all([...this.loops]);
  }

  private async loop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await sleep(this.intervalMs, undefined, { signal });
      } catch {
        break; // aborted
      }
      if (signal.aborted || !(await this.tick())) break;
    }
  }
}
