/**
 * A {@link WalFileSystem} wrapper that injects I/O errors: `EIO`, `ENOSPC` (or
 * any code) at the n-th call of a chosen kind, optionally only for paths that
 * match, optionally for several calls in a row or for good; and the fsyncgate
 * pattern: an fsync fails once with `EIO` while the kernel drops the dirty
 * data, and a retry reports success (Linux before 4.13 and, for a different
 * reason, ext4 after it: see "PostgreSQL's fsync() surprise", LWN 2018).
 *
 * The fsyncgate drop is real only over a {@link SimulatedFileSystem} (which can
 * mark dirty pages clean without writing them); over the real file system the
 * failure is reported but the data is in fact written, which is enough to test
 * that nothing after the failure is acknowledged.
 */
import type { OpenMode, WalFileHandle, WalFileSystem, WalStat } from '../../src/storage/fs.js';
import { fsError } from './fs-errors.js';
import { SimulatedFileSystem } from './simulated-fs.js';

/** Kinds of call a fault can target. `fsync` matches both `datasync` and `sync`. */
export type FaultKind =
  | 'open'
  | 'write'
  | 'writev'
  | 'read'
  | 'datasync'
  | 'sync'
  | 'fsync'
  | 'truncate'
  | 'close'
  | 'readFile'
  | 'stat'
  | 'readdir'
  | 'rename'
  | 'unlink'
  | 'mkdir'
  | 'syncDirectory';

/** One injected fault. */
export interface FaultRule {
  /** Which calls it targets (one kind or several). */
  kind: FaultKind | readonly FaultKind[];
  /** Fail the n-th matching call (1-based), counted from when the rule was added. Default 1. */
  nth?: number;
  /** How many matching calls in a row fail from the n-th on. Default 1; `Infinity` = for good. */
  times?: number;
  /** Error code thrown. Default `EIO`. */
  code?: string;
  /** Only calls whose path contains this string (or matches this pattern) count. */
  path?: string | RegExp;
  /**
   * For `write`/`writev`: write this many leading bytes before failing (a
   * short write that ran out of space). Default 0.
   */
  partialBytes?: number;
  /**
   * For `datasync`/`sync`: the fsyncgate pattern. The dirty data of the file
   * is dropped (over a {@link SimulatedFileSystem}) and the call fails; later
   * syncs succeed without writing it.
   */
  dropDirtyData?: boolean;
}

/** A fault that fired. */
export interface FiredFault {
  kind: FaultKind;
  path: string;
  code: string;
  /** The rule's matching-call number that failed (1-based). */
  call: number;
}

interface ActiveRule {
  rule: FaultRule;
  kinds: readonly FaultKind[];
  seen: number;
}

/** The fault-injecting wrapper. Add rules at any time with {@link inject}. */
export class FaultyFileSystem implements WalFileSystem {
  /** Faults that fired, in order. */
  readonly fired: FiredFault[] = [];
  /** Calls per kind so far (including failed ones). */
  readonly calls = new Map<FaultKind, number>();
  private rules: ActiveRule[] = [];

  constructor(
    readonly inner: WalFileSystem,
    rules: readonly FaultRule[] = [],
  ) {
    for (const rule of rules) this.inject(rule);
  }

  /** Adds a rule; its call count starts now. */
  inject(rule: FaultRule): void {
    const kinds = typeof rule.kind === 'string' ? [rule.kind] : rule.kind;
    this.rules.push({ rule, kinds: kinds as readonly FaultKind[], seen: 0 });
  }

  /** Removes every rule ("the fault is gone"). */
  heal(): void {
    this.rules = [];
  }

  /**
   * Counts a call and returns the rule that fails it, if any. Exported for the
   * handle wrapper; tests do not call it.
   * @internal
   */
  check(kind: FaultKind, path: string): FaultRule | null {
    this.calls.set(kind, (this.calls.get(kind) ?? 0) + 1);
    let failing: FaultRule | null = null;
    for (const active of this.rules) {
      const { rule } = active;
      const matchesKind =
        active.kinds.includes(kind) ||
        (active.kinds.includes('fsync') && (kind === 'datasync' || kind === 'sync'));
      if (!matchesKind || !pathMatches(rule.path, path)) continue;
      active.seen += 1;
      const first = rule.nth ?? 1;
      const last = first + (rule.times ?? 1) - 1;
      if (failing === null && active.seen >= first && active.seen <= last) {
        failing = rule;
        this.fired.push({ kind, path, code: rule.code ?? 'EIO', call: active.seen });
      }
    }
    return failing;
  }

  /** @internal Throws the error of a failing rule, shaped like Node's. */
  fail(rule: FaultRule, syscall: string, path: string, dest?: string): never {
    throw fsError(rule.code ?? 'EIO', syscall, path, dest);
  }

  async open(path: string, mode: OpenMode): Promise<WalFileHandle> {
    const rule = this.check('open', path);
    if (rule !== null) this.fail(rule, 'open', path);
    return new FaultyHandle(this, await this.inner.open(path, mode));
  }

  async readFile(path: string): Promise<Uint8Array> {
    const rule = this.check('readFile', path);
    if (rule !== null) this.fail(rule, 'read', path);
    return this.inner.readFile(path);
  }

  async stat(path: string): Promise<WalStat> {
    const rule = this.check('stat', path);
    if (rule !== null) this.fail(rule, 'stat', path);
    return this.inner.stat(path);
  }

  async readdir(dir: string): Promise<string[]> {
    const rule = this.check('readdir', dir);
    if (rule !== null) this.fail(rule, 'scandir', dir);
    return this.inner.readdir(dir);
  }

  async rename(from: string, to: string): Promise<void> {
    const rule = this.check('rename', `${from} -> ${to}`);
    if (rule !== null) this.fail(rule, 'rename', from, to);
    return this.inner.rename(from, to);
  }

  async unlink(path: string): Promise<void> {
    const rule = this.check('unlink', path);
    if (rule !== null) this.fail(rule, 'unlink', path);
    return this.inner.unlink(path);
  }

  async mkdir(path: string, options?: { recursive?: boolean }): Promise<void> {
    const rule = this.check('mkdir', path);
    if (rule !== null) this.fail(rule, 'mkdir', path);
    return this.inner.mkdir(path, options);
  }

  async syncDirectory(dir: string): Promise<void> {
    const rule = this.check('syncDirectory', dir);
    if (rule !== null) this.fail(rule, 'fsync', dir);
    return this.inner.syncDirectory(dir);
  }
}

function pathMatches(filter: string | RegExp | undefined, path: string): boolean {
  if (filter === undefined) return true;
  return typeof filter === 'string' ? path.includes(filter) : filter.test(path);
}

class FaultyHandle implements WalFileHandle {
  constructor(
    private readonly owner: FaultyFileSystem,
    private readonly inner: WalFileHandle,
  ) {}

  get path(): string {
    return this.inner.path;
  }

  async write(data: Uint8Array, position: number): Promise<void> {
    const rule = this.owner.check('write', this.path);
    if (rule !== null) {
      const partial = Math.min(rule.partialBytes ?? 0, data.length);
      if (partial > 0) await this.inner.write(data.subarray(0, partial), position);
      this.owner.fail(rule, 'write', this.path);
    }
    return this.inner.write(data, position);
  }

  async writev(chunks: readonly Uint8Array[], position: number): Promise<void> {
    const rule = this.owner.check('writev', this.path);
    if (rule !== null) {
      let partial = rule.partialBytes ?? 0;
      const prefix: Uint8Array[] = [];
      for (const chunk of chunks) {
        if (partial <= 0) break;
        prefix.push(chunk.subarray(0, Math.min(partial, chunk.length)));
        partial -= chunk.length;
      }
      if (prefix.length > 0) await this.inner.writev(prefix, position);
      this.owner.fail(rule, 'writev', this.path);
    }
    return this.inner.writev(chunks, position);
  }

  async read(into: Uint8Array, position: number, length?: number): Promise<number> {
    const rule = this.owner.check('read', this.path);
    if (rule !== null) this.owner.fail(rule, 'read', this.path);
    return this.inner.read(into, position, length);
  }

  async datasync(): Promise<void> {
    const rule = this.owner.check('datasync', this.path);
    if (rule !== null) this.failSync(rule, 'fdatasync');
    return this.inner.datasync();
  }

  async sync(): Promise<void> {
    const rule = this.owner.check('sync', this.path);
    if (rule !== null) this.failSync(rule, 'fsync');
    return this.inner.sync();
  }

  async truncate(length: number): Promise<void> {
    const rule = this.owner.check('truncate', this.path);
    if (rule !== null) this.owner.fail(rule, 'ftruncate', this.path);
    return this.inner.truncate(length);
  }

  size(): Promise<number> {
    return this.inner.size();
  }

  async close(): Promise<void> {
    const rule = this.owner.check('close', this.path);
    if (rule !== null) {
      // close(2) releases the descriptor even when it reports an error.
      await this.inner.close().catch(() => undefined);
      this.owner.fail(rule, 'close', this.path);
    }
    return this.inner.close();
  }

  private failSync(rule: FaultRule, syscall: string): never {
    if (rule.dropDirtyData && this.owner.inner instanceof SimulatedFileSystem) {
      this.owner.inner.failSyncDroppingData(this.path);
    }
    this.owner.fail(rule, syscall, this.path);
  }
}
