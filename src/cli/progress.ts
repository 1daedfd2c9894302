/**
 * A one-line progress display on stderr for long work (`verify`,
 * `checkpoint`, `recover`, `restore`, `follow` catching up, `demo`). It is
 * drawn only for a person at a terminal: both stdout and stderr are
 * terminals, `TERM` is not `dumb`, and `--json` is off. Piped or scripted
 * runs see nothing of it, so their output stays byte-for-byte the same.
 */
import type { CliIo } from './context.js';

/** Redraws at most this often, ms (a terminal line, not a log). */
export const PROGRESS_REDRAW_INTERVAL_MS = 100;
/** Width of the bar, in cells. */
export const PROGRESS_BAR_CELLS = 24;

/** Progress of one piece of work. */
export interface Progress {
  /**
   * Reports `done` of `total` units (`total` null: unknown, shows a count),
   * with an optional short `detail`.
   */
  update(done: number, total: number | null, detail?: string): void;
  /** Removes the line; later updates do nothing. */
  end(): void;
}

/** A progress that shows nothing. */
export const NO_PROGRESS: Progress = {
  update: () => {},
  end: () => {},
};

/** The terminal facts the decision rests on. */
export type ProgressTerminal = Pick<CliIo, 'stdoutIsTTY' | 'stderrIsTTY' | 'term'>;

/**
 * True when a progress line should be drawn: a person is watching (stdout and
 * stderr are terminals, `TERM` is not `dumb`) and the output is not for a
 * program (`--json`).
 */
export function progressWanted(terminal: ProgressTerminal, json: boolean): boolean {
  return (
    !json &&
    terminal.stdoutIsTTY === true &&
    terminal.stderrIsTTY === true &&
    terminal.term !== 'dumb'
  );
}

/** `[######------]` for `done` of `total`. */
export function progressBar(done: number, total: number, cells = PROGRESS_BAR_CELLS): string {
  const fraction = total <= 0 ? 1 : Math.min(1, Math.max(0, done / total));
  const full = Math.round(fraction * cells);
  return `[${'#'.repeat(full)}${'-'.repeat(cells - full)}] ${Math.floor(fraction * 100)
    .toString()
    .padStart(3)}%`;
}

/**
 * The line on a terminal's stderr. One is shared by a run: the CLI clears it
 * before any other output so that lines never mix.
 */
export class ProgressLine {
  private visible = false;
  private lastDrawAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly write: (text: string) => void,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Starts a progress for `label`. */
  start(label: string): Progress {
    let ended = false;
    return {
      update: (done, total, detail) => {
        if (ended) return;
        const at = this.now();
        // The first and the last state are always drawn; the rest is throttled.
        const last = total !== null && done >= total;
        if (this.visible && !last && at - this.lastDrawAt < PROGRESS_REDRAW_INTERVAL_MS) return;
        this.lastDrawAt = at;
        const amount = total === null ? `${done}` : `${progressBar(done, total)} ${done}/${total}`;
        this.write(`\r\x1b[K${label} ${amount}${detail === undefined ? '' : ` ${detail}`}`);
        this.visible = true;
      },
      end: () => {
        if (ended) return;
        ended = true;
        this.clear();
      },
    };
  }

  /** Erases the line if it is shown. */
  clear(): void {
    if (!this.visible) return;
    this.write('\r\x1b[K');
    this.visible = false;
  }
}
