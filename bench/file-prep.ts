/**
 * Why one committer cannot reach the overwrite floor while every epoch gets
 * a file of its own: raw file operations, no engine.
 *
 * One committer in a closed loop writes a 4,180-byte segment (one 4 KiB page
 * with its header and record framing) at offset 0 of a file made ready in the
 * background, and fdatasyncs it on the calling thread (the critical path, as
 * the log's small-epoch path does). Files are made ready in batches of 32,
 * side by side on libuv's thread pool, and one directory fsync; a used file
 * is closed and renamed (its publication) in batches of 8 with one directory
 * fsync. Two ways to make a file ready:
 *
 * - `empty`: created empty (the early-ack sink's files). The critical write
 *   allocates blocks and sets the file size, so its fdatasync also writes
 *   the file's inode (a journal commit on a journalled ext4).
 * - `prewritten`: created and filled with 8 KiB of random bytes, fdatasynced
 *   (a recycled or pre-filled file). The critical write overwrites written
 *   blocks: its fdatasync writes the data alone, but every file costs a
 *   write and an fdatasync more before it can be used.
 *
 * - `ahead`: created empty, like `empty`, but every file the run will use
 *   is created (and its directory fsynced) before the timed window, so no
 *   file is created while the writer runs: the difference from `empty` is
 *   what creating the next files in the background costs the critical path.
 *   (They are closed once made and opened again when taken, about 2 µs, so
 *   that thousands of them need no more than a few file descriptors.)
 *
 * Reported per variant: commits/s, the commit latency (including any wait
 * for a ready file), and the time to make one batch ready. Variants
 * alternate round by round; medians of `--rounds`.
 *
 * Run: `npx tsx bench/file-prep.ts [--seconds 3] [--rounds 3] [--segment-bytes 4180] [--dir DIR]`
 * (`--segment-bytes 65600`: an epoch of 16 such commits).
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { benchDir, median, percentile } from './raw-floor.js';

/** Default segment: one 4 KiB page with its header and record framing. */
const SEGMENT_BYTES_DEFAULT = 4180;
const PREWRITTEN_BYTES = 8192;
/** Files the `ahead` variant creates before its window: more than any window here uses. */
const AHEAD_FILES = 12_000;
const READY_BATCH = 32;
const PUBLISH_BATCH = 8;

const VARIANTS = ['empty', 'prewritten', 'ahead'] as const;
type Variant = (typeof VARIANTS)[number];

interface Figures {
  commitsPerSec: number;
  p50Us: number;
  p90Us: number;
  /** `ahead`: the whole run's files, made ready before the window. */
  batchReadyMs: number;
}

/** Files made ready in the background and published behind the writer. */
class Files {
  private readonly ready: fsp.FileHandle[] = [];
  private readonly paths = new Map<fsp.FileHandle, string>();
  private preparing: Promise<void> | null = null;
  private readonly published: { handle: fsp.FileHandle; epoch: number }[] = [];
  private publishing: Promise<void> = Promise.resolve();
  private next = 0;
  readonly batchMs: number[] = [];

  constructor(
    private readonly dir: string,
    private readonly variant: Variant,
    private readonly prewrittenBytes: number,
  ) {}

  /** `ahead`: names of files made ready before the window, closed until taken. */
  private readonly closedAhead: string[] = [];
  /** `ahead`, once they are made: batches are opened from {@link closedAhead}, never created. */
  private reopening = false;

  /** `ahead`: makes every file the run will use ready now (before the timed window). */
  async prepareAll(count: number): Promise<void> {
    const started = performance.now();
    for (let made = 0; made < count; made += READY_BATCH) {
      this.prepare(READY_BATCH);
      await this.preparing;
      for (const handle of this.ready.splice(0)) {
        this.closedAhead.push(this.paths.get(handle)!);
        this.paths.delete(handle);
        await handle.close();
      }
    }
    this.batchMs.push(performance.now() - started);
    this.reopening = true;
  }

  /** A ready file, waiting for a batch when none is. */
  async take(): Promise<fsp.FileHandle> {
    for (;;) {
      if (this.ready.length < READY_BATCH) this.prepare(READY_BATCH);
      const handle = this.ready.shift();
      if (handle !== undefined) return handle;
      await this.preparing;
    }
  }

  /** Queues a written file for publication (close, rename, directory fsync). */
  publish(handle: fsp.FileHandle, epoch: number): void {
    this.published.push({ handle, epoch });
    if (this.published.length < PUBLISH_BATCH) return;
    const batch = this.published.splice(0);
    this.publishing = this.publishing.then(async () => {
      await Promise.all(batch.map(({ handle: h }) => h.close()));
      for (const { handle: h, epoch: e } of batch) {
        await fsp.rename(this.paths.get(h)!, path.join(this.dir, `seg-${e}`));
        this.paths.delete(h);
      }
      await syncDirectory(this.dir);
    });
  }

  async close(): Promise<void> {
    await this.preparing;
    await this.publishing;
    for (const handle of [...this.ready, ...this.published.map((p) => p.handle)]) {
      await handle.close();
    }
  }

  private prepare(count: number): void {
    if (this.preparing !== null) return;
    const started = performance.now();
    this.preparing = (async () => {
      if (this.reopening) {
        // Opened again, a batch at a time in the background: no file is created.
        const names = this.closedAhead.splice(0, count);
        if (names.length === 0) throw new Error(`the ${AHEAD_FILES} files made ahead ran out`);
        const opened = await Promise.all(names.map((name) => fsp.open(name, 'r+')));
        for (const [i, handle] of opened.entries()) this.paths.set(handle, names[i]!);
        this.ready.push(...opened);
        this.preparing = null;
        return;
      }
      const made = await Promise.all(
        Array.from({ length: count }, async () => {
          const file = path.join(this.dir, `tmp-${this.next++}`);
          const handle = await fsp.open(file, 'wx');
          this.paths.set(handle, file);
          if (this.variant === 'prewritten') {
            await handle.write(randomBytes(this.prewrittenBytes), 0, this.prewrittenBytes, 0);
            await handle.datasync();
          }
          return handle;
        }),
      );
      await syncDirectory(this.dir);
      this.ready.push(...made);
      if (this.variant !== 'ahead') this.batchMs.push(performance.now() - started);
      this.preparing = null;
    })();
  }
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await fsp.open(dir, 'r');
  await handle.sync();
  await handle.close();
}

async function run(
  root: string,
  variant: Variant,
  seconds: number,
  segmentBytes: number,
): Promise<Figures> {
  const dir = await fsp.mkdtemp(path.join(root, `file-prep-${variant}-`));
  // Pre-written files hold at least the segment (8 KiB for one page, as before).
  const prewritten = Math.max(PREWRITTEN_BYTES, Math.ceil(segmentBytes / 4096) * 4096);
  const files = new Files(dir, variant, prewritten);
  if (variant === 'ahead') await files.prepareAll(AHEAD_FILES);
  const segment = randomBytes(segmentBytes);
  const latencies: number[] = [];
  const ends = performance.now() + seconds * 1000;
  let epoch = 0;
  while (performance.now() < ends) {
    const started = performance.now();
    const handle = await files.take();
    fs.writeSync(handle.fd, segment, 0, segmentBytes, 0);
    fs.fdatasyncSync(handle.fd);
    latencies.push((performance.now() - started) * 1000);
    files.publish(handle, epoch++);
    // One event-loop turn between commits, as the log's seal hop gives.
    await new Promise((resolve) => setImmediate(resolve));
  }
  await files.close();
  await fsp.rm(dir, { recursive: true, force: true });
  latencies.sort((a, b) => a - b);
  return {
    commitsPerSec: latencies.length / seconds,
    p50Us: percentile(latencies, 50),
    p90Us: percentile(latencies, 90),
    batchReadyMs: median(files.batchMs),
  };
}

async function main(): Promise<void> {
  const value = (flag: string): string | undefined => {
    const i = process.argv.indexOf(flag);
    return i >= 0 ? process.argv[i + 1] : undefined;
  };
  const seconds = Number(value('--seconds') ?? 3);
  const rounds = Number(value('--rounds') ?? 3);
  const segmentBytes = Number(value('--segment-bytes') ?? SEGMENT_BYTES_DEFAULT);
  if (!Number.isInteger(segmentBytes) || segmentBytes < 1 || segmentBytes > 16 << 20) {
    throw new Error(`--segment-bytes must be an integer in 1..=16777216, got ${segmentBytes}`);
  }
  const root = await benchDir(value('--dir'));
  const results: Record<Variant, Figures[]> = { empty: [], prewritten: [], ahead: [] };
  for (let round = 0; round < rounds; round++) {
    // Rotated round by round: each variant runs first, second and third.
    const order = VARIANTS.map((_, i) => VARIANTS[(i + round) % VARIANTS.length]!);
    for (const variant of order) {
      results[variant].push(await run(root, variant, seconds, segmentBytes));
    }
  }
  process.stdout.write(
    `one committer, ${segmentBytes}-byte segment per epoch, write + fdatasync on the calling thread; files made ready ${READY_BATCH} at a time (ahead: ${AHEAD_FILES} before the window); medians of ${rounds} rounds of ${seconds} s\n\n`,
  );
  process.stdout.write(
    '| files | epochs/s | epoch p50 µs | epoch p90 µs | one batch of 32 ready, ms (ahead: all) |\n',
  );
  process.stdout.write('|---|--:|--:|--:|--:|\n');
  for (const variant of VARIANTS) {
    const m = (f: (x: Figures) => number): number => median(results[variant].map(f));
    process.stdout.write(
      `| ${variant} | ${m((x) => x.commitsPerSec).toFixed(0)} | ${m((x) => x.p50Us).toFixed(0)} | ${m((x) => x.p90Us).toFixed(0)} | ${m((x) => x.batchReadyMs).toFixed(1)} |\n`,
    );
  }
}

await main();
