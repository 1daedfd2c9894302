/**
 * An in-memory {@link WalFileSystem} that models a disk behind a page cache,
 * so that tests can cut the power at any step and look at what survives.
 *
 * ## The crash model
 *
 * It follows the models of ALICE ("All File Systems Are Not Created Equal",
 * Pillai et al., OSDI 2014), SQLite's crash-test VFS (`src/test6.c`) and
 * RocksDB's `FaultInjectionTestFS`: what the application wrote but did not make
 * durable may be lost, kept, or kept in part; what it did make durable stays.
 * It is deliberately at least as hostile as Linux ext4 with its default mount
 * options (`data=ordered`, delayed allocation, 4 KiB pages on 512 B sectors):
 *
 * - **File data.** Each file has a durable content (as of its last successful
 *   `datasync`/`sync`) and a cached one (what reads see). At a power cut every
 *   dirty 512 B sector (a sector whose cached bytes differ from what the cache
 *   believes is on disk) is independently decided, per file, by one of:
 *   *drop* (all dirty sectors lost), *keep* (all kept), *prefix* (the first k
 *   dirty sectors kept, optionally the next one **torn**: its first j bytes new,
 *   the rest old), or *scatter* (any subset kept; writeback order is not file
 *   order). The file length is the durable length, the cached length, or, for a
 *   partial outcome, the end of the last kept byte clamped between the two.
 *   Bytes inside the length that no kept write covers read as the durable
 *   bytes, or zeros past the durable end (a hole). ext4 `data=ordered` never
 *   exposes stale blocks of other files, and neither does this model; it does
 *   show zeros in holes (as XFS and ext4 with delalloc writeback can).
 * - **Directory entries.** Each directory has a durable entry set (as of its
 *   last `syncDirectory`) and a cached one. Creations (`open` with a create
 *   mode, `mkdir`), renames and unlinks since then are pending operations. At
 *   a power cut, in mode `subset` (the default) each pending operation is kept
 *   or lost independently and the kept ones are replayed in their original
 *   order, each only if its precondition still holds (a rename whose source
 *   entry is not there is lost). A rename is one operation, so it is atomic:
 *   after the cut the file has its old name or its new name, never both, and
 *   never neither unless its creation was lost too. A rename over an existing
 *   file is an atomic replace. Mode `prefix` keeps a prefix of the pending
 *   operations in issue order, which is what the ext4 journal shows (its
 *   metadata commits are ordered); `subset` is a superset of those states.
 *   `fsync` of a file does NOT make its directory entry durable (POSIX does
 *   not promise it; ext4 happens to for a new file): only `syncDirectory` of
 *   the directory holding the entry does. A rename between two directories
 *   becomes durable with a sync of either. Syncing a directory also makes
 *   durable the earlier pending operations on the same inodes (a rename
 *   cannot be durable while the creation it renames is not).
 * - **fsyncgate.** {@link SimulatedFileSystem.failSyncDroppingData} reproduces
 *   Linux's behaviour after a failed writeback: the dirty pages are marked
 *   clean without reaching the disk, reads still show the new bytes, and a
 *   later fsync reports success without writing them.
 * - **Process crash** (SIGKILL) is the special case "keep everything": the
 *   page cache survives the process. Use `{ data: 'keepAll', dirOps: 'keepAll' }`.
 *
 * Simplifications: no symlinks, no hard links, no permissions; `open` of a
 * directory fails with `EISDIR` (Linux allows a read-only open of a directory
 * and fails the read instead). Errors are shaped like Node's (`code`, `errno`,
 * `syscall`, `path`).
 *
 * ## Steps
 *
 * Every call counts as one step (1-based) and is appended to {@link opLog}.
 * {@link SimulatedFileSystem.armPowerCut} cuts the power just *before* step k
 * runs: steps 1..k-1 took effect, step k and everything later fail with `EIO`
 * (the machine is gone), and {@link SimulatedFileSystem.crashedDisk} holds the
 * disk as the next boot sees it. Operations take effect when they are called;
 * the returned promise then settles on a later microtask (or macrotask, see
 * {@link SimulatedFsOptions.settle}), so concurrent callers interleave.
 */
import * as posix from 'node:path/posix';
import type { OpenMode, WalFileHandle, WalFileSystem, WalStat } from '../../src/storage/fs.js';
import { fsError } from './fs-errors.js';
import { type Rng, randInt } from './rng.js';

/** Size of a disk sector, the unit in which unsynced data survives or not. */
export const SECTOR_BYTES = 512;

/** How a power cut treats what was not made durable. */
export interface CrashModel {
  /** File data written since the file's last sync. Default `random`. */
  data?: 'random' | 'keepAll' | 'dropAll';
  /** Directory operations since the directory's last sync. Default `subset`. */
  dirOps?: 'subset' | 'prefix' | 'keepAll' | 'dropAll';
  /** Allow a torn sector (first bytes new, rest old) in a partial outcome. Default true. */
  tornSectors?: boolean;
  /** Allow any subset of dirty sectors to survive, not only a prefix. Default true. */
  reorderSectors?: boolean;
}

/** Kinds of operation, as counted in steps and in {@link OpLogEntry.op}. */
export type SimOpKind =
  | 'open'
  | 'write'
  | 'writev'
  | 'read'
  | 'datasync'
  | 'sync'
  | 'truncate'
  | 'size'
  | 'close'
  | 'readFile'
  | 'stat'
  | 'readdir'
  | 'rename'
  | 'unlink'
  | 'mkdir'
  | 'syncDirectory';

/** One operation as the simulated disk saw it. */
export interface OpLogEntry {
  step: number;
  op: SimOpKind;
  path: string;
  /** Second path (rename), open mode, byte count, … */
  detail?: string;
}

/** Construction options. */
export interface SimulatedFsOptions {
  /** Total bytes of file data the disk holds; a write beyond fails with ENOSPC. Default unlimited. */
  capacityBytes?: number;
  /** How a call's promise settles: on a microtask (default) or on `setImmediate`. */
  settle?: 'microtask' | 'macrotask';
  /** Keep at most this many entries in {@link SimulatedFileSystem.opLog}. Default 100 000. */
  opLogLimit?: number;
}

interface FileNode {
  kind: 'file';
  ino: number;
  /** On the platter, as of the last successful sync. */
  durable: Uint8Array;
  /** What reads see. */
  cache: Uint8Array;
  /** What the page cache believes is on the platter (differs from `durable` only after fsyncgate). */
  clean: Uint8Array;
}

interface DirNode {
  kind: 'dir';
  ino: number;
  durable: Map<string, number>;
  entries: Map<string, number>;
}

type Node = FileNode | DirNode;

type DirOp =
  | { kind: 'link'; dir: number; name: string; ino: number }
  | { kind: 'unlink'; dir: number; name: string; ino: number }
  | {
      kind: 'rename';
      fromDir: number;
      fromName: string;
      toDir: number;
      toName: string;
      ino: number;
    };

const ROOT_INO = 1;
const EMPTY = new Uint8Array(0);

function bytesEqual(a: Uint8Array, b: Uint8Array, from = 0, to = Math.max(a.length, b.length)) {
  for (let i = from; i < to; i++) if (a[i] !== b[i]) return false;
  return true;
}

function touches(op: DirOp, dir: number): boolean {
  return op.kind === 'rename' ? op.fromDir === dir || op.toDir === dir : op.dir === dir;
}

/** The simulated disk. See the file comment for the crash model. */
export class SimulatedFileSystem implements WalFileSystem {
  /** Every operation so far (bounded by `opLogLimit`, oldest dropped first). */
  readonly opLog: OpLogEntry[] = [];
  /** Steps taken so far (the number of calls made). */
  stepCount = 0;
  /** Set once the power is cut: every later call fails with EIO. */
  dead = false;
  /** The disk as the next boot sees it, once an armed power cut fired. */
  crashedDisk: SimulatedFileSystem | null = null;

  private readonly nodes = new Map<number, Node>();
  private pending: DirOp[] = [];
  private nextIno = ROOT_INO + 1;
  private readonly options: Required<SimulatedFsOptions>;
  private armed: { atStep: number; rng: Rng; model: CrashModel } | null = null;
  private readonly stepListeners: ((entry: OpLogEntry) => void)[] = [];

  constructor(options: SimulatedFsOptions = {}) {
    this.options = {
      capacityBytes: options.capacityBytes ?? Number.POSITIVE_INFINITY,
      settle: options.settle ?? 'microtask',
      opLogLimit: options.opLogLimit ?? 100_000,
    };
    this.nodes.set(ROOT_INO, {
      kind: 'dir',
      ino: ROOT_INO,
      durable: new Map(),
      entries: new Map(),
    });
  }

  // ---------------------------------------------------------------- power

  /**
   * Cuts the power now: returns the disk as the next boot sees it under
   * `model`, and makes this instance dead (every later call fails with EIO),
   * like a machine that lost power with the process still running.
   */
  powerCut(rng: Rng, model: CrashModel = {}): SimulatedFileSystem {
    const disk = this.crashImage(rng, model);
    this.dead = true;
    this.armed = null;
    return disk;
  }

  /**
   * Arranges a power cut just before step `atStep` (1-based) runs. When it
   * fires, {@link crashedDisk} is set and this instance is dead.
   */
  armPowerCut(atStep: number, rng: Rng, model: CrashModel = {}): void {
    if (atStep <= this.stepCount) throw new Error(`step ${atStep} already happened`);
    this.armed = { atStep, rng, model };
  }

  /** Calls `listener` after every step is counted (before it runs). */
  onStep(listener: (entry: OpLogEntry) => void): void {
    this.stepListeners.push(listener);
  }

  /**
   * The disk as a reboot after a power cut now would see it, without cutting
   * the power of this instance. Everything in the result is durable.
   */
  crashImage(rng: Rng, model: CrashModel = {}): SimulatedFileSystem {
    const full: Required<CrashModel> = {
      data: model.data ?? 'random',
      dirOps: model.dirOps ?? 'subset',
      tornSectors: model.tornSectors ?? true,
      reorderSectors: model.reorderSectors ?? true,
    };
    // Directory entries: durable sets, plus the pending operations that survive.
    const dirs = new Map<number, Map<string, number>>();
    for (const node of this.nodes.values()) {
      if (node.kind === 'dir') dirs.set(node.ino, new Map(node.durable));
    }
    const keepCount =
      full.dirOps === 'prefix' ? randInt(rng, 0, this.pending.length) : this.pending.length;
    this.pending.forEach((op, index) => {
      const keep =
        full.dirOps === 'keepAll' ||
        (full.dirOps === 'subset' && rng() < 0.5) ||
        (full.dirOps === 'prefix' && index < keepCount);
      if (keep) applyDirOp(dirs, op);
    });
    // Copy what is reachable from the root; everything else is gone.
    const disk = new SimulatedFileSystem({
      capacityBytes: this.options.capacityBytes,
      settle: this.options.settle,
      opLogLimit: this.options.opLogLimit,
    });
    disk.nextIno = this.nextIno;
    disk.nodes.clear();
    const visit = (ino: number): void => {
      if (disk.nodes.has(ino)) return;
      const node = this.nodes.get(ino);
      if (node === undefined) throw new Error(`simulated fs: dangling inode ${ino}`);
      if (node.kind === 'file') {
        const bytes = crashFileData(node, rng, full);
        disk.nodes.set(ino, { kind: 'file', ino, durable: bytes, cache: bytes, clean: bytes });
        return;
      }
      const entries = dirs.get(ino) ?? new Map<string, number>();
      disk.nodes.set(ino, {
        kind: 'dir',
        ino,
        durable: new Map(entries),
        entries: new Map(entries),
      });
      for (const child of entries.values()) visit(child);
    };
    visit(ROOT_INO);
    return disk;
  }

  /** Makes everything durable, like `sync(2)` followed by a clean unmount. */
  syncAll(): void {
    for (const node of this.nodes.values()) {
      if (node.kind === 'file') {
        node.durable = node.cache.slice();
        node.clean = node.durable;
      } else {
        node.durable = new Map(node.entries);
      }
    }
    this.pending = [];
  }

  /**
   * The fsyncgate pattern: the writeback of `path`'s dirty data failed. Its
   * dirty pages are marked clean without reaching the disk: reads still see
   * them, a later successful sync does not write them, a power cut loses them.
   */
  failSyncDroppingData(path: string): void {
    const node = this.lookup(path, 'fsync');
    if (node.kind !== 'file') throw fsError('EISDIR', 'fsync', path);
    node.clean = node.cache.slice();
  }

  // ---------------------------------------------------------------- helpers for tests

  /** Creates or replaces a file directly (no step); durable unless told otherwise. */
  writeFileSync(path: string, data: Uint8Array, options: { durable?: boolean } = {}): void {
    const abs = this.abs(path);
    const { dir, name } = this.parent(abs, 'open');
    const existing = dir.entries.get(name);
    const bytes = data.slice();
    const durable = options.durable ?? true;
    if (existing !== undefined) {
      const node = this.node(existing);
      if (node.kind !== 'file') throw fsError('EISDIR', 'open', abs);
      node.cache = bytes;
      if (durable) {
        node.durable = bytes.slice();
        node.clean = node.durable;
      }
      return;
    }
    const node = this.newFile();
    if (durable) {
      node.cache = bytes;
      node.durable = bytes.slice();
      node.clean = node.durable;
      dir.entries.set(name, node.ino);
      dir.durable.set(name, node.ino);
    } else {
      node.cache = bytes;
      this.link(dir, name, node.ino);
    }
  }

  /** Creates a directory (and its parents) directly and durably (no step). */
  mkdirSync(path: string): void {
    let dir = this.node(ROOT_INO) as DirNode;
    for (const part of this.abs(path)
      .split('/')
      .filter((p) => p.length > 0)) {
      const ino = dir.entries.get(part);
      if (ino === undefined) {
        const child = this.newDir();
        dir.entries.set(part, child.ino);
        dir.durable.set(part, child.ino);
        dir = child;
      } else {
        const node = this.node(ino);
        if (node.kind !== 'dir') throw fsError('ENOTDIR', 'mkdir', path);
        dir = node;
      }
    }
  }

  /** Removes a file directly and durably (no step); false if it was not there. */
  removeSync(path: string): boolean {
    const abs = this.abs(path);
    const { dir, name } = this.parent(abs, 'unlink');
    const ino = dir.entries.get(name);
    if (ino === undefined || this.node(ino).kind !== 'file') return false;
    dir.entries.delete(name);
    dir.durable.delete(name);
    return true;
  }

  /** What a read of `path` returns now, or `null` if there is no such file. */
  readFileSync(path: string): Uint8Array | null {
    const node = this.tryLookup(this.abs(path));
    return node?.kind === 'file' ? node.cache.slice() : null;
  }

  /** Names in a directory now (sorted), or `null` if there is no such directory. */
  listSync(path: string): string[] | null {
    const node = this.tryLookup(this.abs(path));
    return node?.kind === 'dir' ? [...node.entries.keys()].sort() : null;
  }

  /** Bytes of file data in the cache, over all files reachable or open. */
  usedBytes(): number {
    let total = 0;
    for (const ino of this.liveInodes(false)) {
      const node = this.nodes.get(ino);
      if (node?.kind === 'file') total += node.cache.length;
    }
    return total;
  }

  /** Inodes reachable from the root through cached (and, if asked, durable) entries, or open. */
  private liveInodes(includeDurable: boolean): Set<number> {
    const live = new Set<number>();
    const visit = (ino: number): void => {
      if (live.has(ino)) return;
      live.add(ino);
      const node = this.nodes.get(ino);
      if (node?.kind !== 'dir') return;
      for (const child of node.entries.values()) visit(child);
      if (includeDurable) for (const child of node.durable.values()) visit(child);
    };
    visit(ROOT_INO);
    for (const [ino, count] of this.openCounts) if (count > 0) visit(ino);
    if (includeDurable) for (const op of this.pending) visit(op.ino);
    return live;
  }

  /** Forgets inodes nothing can reach any more (not even a power cut). */
  private collect(): void {
    const live = this.liveInodes(true);
    for (const ino of [...this.nodes.keys()]) if (!live.has(ino)) this.nodes.delete(ino);
  }

  /** @internal Open handles per inode, so that an unlinked open file keeps its space. */
  readonly openCounts = new Map<number, number>();

  /** Pending (not yet durable) directory operations, for assertions. */
  pendingDirOps(): number {
    return this.pending.length;
  }

  // ---------------------------------------------------------------- WalFileSystem

  async open(path: string, mode: OpenMode): Promise<WalFileHandle> {
    const abs = this.abs(path);
    this.step('open', abs, mode);
    const { dir, name } = this.parent(abs, 'open');
    const ino = dir.entries.get(name);
    let node: FileNode;
    if (ino === undefined) {
      if (mode === 'read' || mode === 'readWrite') throw fsError('ENOENT', 'open', abs);
      node = this.newFile();
      this.link(dir, name, node.ino);
    } else {
      const existing = this.node(ino);
      if (existing.kind === 'dir') throw fsError('EISDIR', 'open', abs);
      if (mode === 'createExclusive') throw fsError('EEXIST', 'open', abs);
      node = existing;
      if (mode === 'createOrTruncate') node.cache = EMPTY;
    }
    this.openCounts.set(node.ino, (this.openCounts.get(node.ino) ?? 0) + 1);
    await this.settle();
    const readable = mode === 'read' || mode === 'readWrite';
    return new SimHandle(this, abs, node, readable, mode !== 'read');
  }

  async readFile(path: string): Promise<Uint8Array> {
    const abs = this.abs(path);
    this.step('readFile', abs);
    const node = this.lookup(abs, 'open');
    if (node.kind === 'dir') throw fsError('EISDIR', 'read', abs);
    const copy = node.cache.slice();
    await this.settle();
    return copy;
  }

  async stat(path: string): Promise<WalStat> {
    const abs = this.abs(path);
    this.step('stat', abs);
    const node = this.lookup(abs, 'stat');
    await this.settle();
    return node.kind === 'file'
      ? { size: node.cache.length, kind: 'file' }
      : { size: 4096, kind: 'directory' };
  }

  async readdir(dir: string): Promise<string[]> {
    const abs = this.abs(dir);
    this.step('readdir', abs);
    const node = this.lookup(abs, 'scandir');
    if (node.kind !== 'dir') throw fsError('ENOTDIR', 'scandir', abs);
    const names = [...node.entries.keys()];
    await this.settle();
    return names;
  }

  async rename(from: string, to: string): Promise<void> {
    const src = this.abs(from);
    const dst = this.abs(to);
    this.step('rename', src, dst);
    const a = this.parent(src, 'rename', dst);
    const b = this.parent(dst, 'rename', dst);
    const ino = a.dir.entries.get(a.name);
    if (ino === undefined) throw fsError('ENOENT', 'rename', src, dst);
    const moving = this.node(ino);
    const target = b.dir.entries.get(b.name);
    if (target !== ino) {
      if (target !== undefined) {
        const replaced = this.node(target);
        if (moving.kind === 'file' && replaced.kind === 'dir')
          throw fsError('EISDIR', 'rename', src, dst);
        if (moving.kind === 'dir' && replaced.kind === 'file')
          throw fsError('ENOTDIR', 'rename', src, dst);
        if (replaced.kind === 'dir' && replaced.entries.size > 0)
          throw fsError('ENOTEMPTY', 'rename', src, dst);
      }
      if (moving.kind === 'dir' && (dst === src || dst.startsWith(`${src}/`)))
        throw fsError('EINVAL', 'rename', src, dst);
      a.dir.entries.delete(a.name);
      b.dir.entries.set(b.name, ino);
      this.pending.push({
        kind: 'rename',
        fromDir: a.dir.ino,
        fromName: a.name,
        toDir: b.dir.ino,
        toName: b.name,
        ino,
      });
    }
    await this.settle();
  }

  async unlink(path: string): Promise<void> {
    const abs = this.abs(path);
    this.step('unlink', abs);
    const { dir, name } = this.parent(abs, 'unlink');
    const ino = dir.entries.get(name);
    if (ino === undefined) throw fsError('ENOENT', 'unlink', abs);
    if (this.node(ino).kind === 'dir') throw fsError('EISDIR', 'unlink', abs);
    dir.entries.delete(name);
    this.pending.push({ kind: 'unlink', dir: dir.ino, name, ino });
    await this.settle();
  }

  async mkdir(path: string, options?: { recursive?: boolean }): Promise<void> {
    const abs = this.abs(path);
    this.step('mkdir', abs, options?.recursive ? 'recursive' : undefined);
    if (options?.recursive) {
      let dir = this.node(ROOT_INO) as DirNode;
      for (const part of abs.split('/').filter((p) => p.length > 0)) {
        const ino = dir.entries.get(part);
        if (ino === undefined) {
          const child = this.newDir();
          this.link(dir, part, child.ino);
          dir = child;
        } else {
          const node = this.node(ino);
          if (node.kind !== 'dir')
            throw fsError(abs.endsWith(part) ? 'EEXIST' : 'ENOTDIR', 'mkdir', abs);
          dir = node;
        }
      }
    } else {
      if (abs === '/') throw fsError('EEXIST', 'mkdir', abs);
      const { dir, name } = this.parent(abs, 'mkdir');
      if (dir.entries.has(name)) throw fsError('EEXIST', 'mkdir', abs);
      this.link(dir, name, this.newDir().ino);
    }
    await this.settle();
  }

  async syncDirectory(path: string): Promise<void> {
    const abs = this.abs(path);
    this.step('syncDirectory', abs);
    const node = this.lookup(abs, 'open');
    if (node.kind === 'file') {
      // Like the real one: fsync of a file descriptor, whatever it points to.
      this.persistFile(node);
    } else {
      this.persistDir(node.ino);
    }
    await this.settle();
  }

  // ---------------------------------------------------------------- internals used by handles

  /** @internal Counts a step; fails if the power is (or is about to be) off. */
  step(op: SimOpKind, path: string, detail?: string): void {
    if (this.dead) throw fsError('EIO', op, path);
    this.stepCount += 1;
    const entry: OpLogEntry = { step: this.stepCount, op, path };
    if (detail !== undefined) entry.detail = detail;
    this.opLog.push(entry);
    if (this.opLog.length > this.options.opLogLimit) this.opLog.shift();
    for (const listener of this.stepListeners) listener(entry);
    if (this.armed !== null && this.stepCount >= this.armed.atStep) {
      this.crashedDisk = this.crashImage(this.armed.rng, this.armed.model);
      this.armed = null;
      this.dead = true;
      throw fsError('EIO', op, path);
    }
  }

  /** @internal */
  async settle(): Promise<void> {
    if (this.options.settle === 'macrotask') await new Promise<void>((r) => setImmediate(r));
    else await Promise.resolve();
  }

  /** @internal Writes into a file's cache, honouring the capacity. */
  writeAt(node: FileNode, path: string, data: Uint8Array, position: number, syscall: string): void {
    const end = position + data.length;
    const grow = Math.max(0, end - node.cache.length);
    if (grow > 0 && this.usedBytes() + grow > this.options.capacityBytes) {
      throw fsError('ENOSPC', syscall, path);
    }
    if (data.length === 0) return;
    if (grow > 0) {
      const bigger = new Uint8Array(end);
      bigger.set(node.cache);
      node.cache = bigger;
    } else if (node.cache === node.clean || node.cache === node.durable) {
      node.cache = node.cache.slice();
    }
    node.cache.set(data, position);
  }

  /** @internal */
  truncateFile(node: FileNode, path: string, length: number): void {
    if (
      length > node.cache.length &&
      this.usedBytes() + length - node.cache.length > this.options.capacityBytes
    ) {
      throw fsError('ENOSPC', 'ftruncate', path);
    }
    const next = new Uint8Array(length);
    next.set(node.cache.subarray(0, Math.min(length, node.cache.length)));
    node.cache = next;
  }

  /** @internal A successful fsync/fdatasync: dirty sectors reach the platter. */
  persistFile(node: FileNode): void {
    const length = node.cache.length;
    const next = new Uint8Array(length);
    for (let i = 0; i < length; i++) {
      next[i] =
        node.cache[i] !== node.clean[i] || i >= node.clean.length
          ? node.cache[i]!
          : (node.durable[i] ?? 0);
    }
    node.durable = next;
    node.clean = node.cache.slice();
  }

  private persistDir(dirIno: number): void {
    // The operations on this directory, and the earlier ones on the same inodes
    // (a rename cannot be durable without the creation it renames).
    const chosen = new Set<number>();
    const inodes = new Set<number>();
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const op = this.pending[i]!;
      if (touches(op, dirIno) || inodes.has(op.ino)) {
        chosen.add(i);
        inodes.add(op.ino);
      }
    }
    if (chosen.size === 0) return;
    const dirs = new Map<number, Map<string, number>>();
    for (const node of this.nodes.values())
      if (node.kind === 'dir') dirs.set(node.ino, node.durable);
    const rest: DirOp[] = [];
    this.pending.forEach((op, i) => {
      if (chosen.has(i)) applyDirOp(dirs, op);
      else rest.push(op);
    });
    this.pending = rest;
    this.collect();
  }

  private newFile(): FileNode {
    const node: FileNode = {
      kind: 'file',
      ino: this.nextIno++,
      durable: EMPTY,
      cache: EMPTY,
      clean: EMPTY,
    };
    this.nodes.set(node.ino, node);
    return node;
  }

  private newDir(): DirNode {
    const node: DirNode = {
      kind: 'dir',
      ino: this.nextIno++,
      durable: new Map(),
      entries: new Map(),
    };
    this.nodes.set(node.ino, node);
    return node;
  }

  private link(dir: DirNode, name: string, ino: number): void {
    dir.entries.set(name, ino);
    this.pending.push({ kind: 'link', dir: dir.ino, name, ino });
  }

  private node(ino: number): Node {
    const node = this.nodes.get(ino);
    if (node === undefined) throw new Error(`simulated fs: dangling inode ${ino}`);
    return node;
  }

  private abs(path: string): string {
    if (typeof path !== 'string' || path.length === 0)
      throw fsError('ENOENT', 'open', String(path));
    return posix.resolve('/', path);
  }

  private tryLookup(abs: string): Node | null {
    let node = this.node(ROOT_INO);
    for (const part of abs.split('/').filter((p) => p.length > 0)) {
      if (node.kind !== 'dir') return null;
      const ino = node.entries.get(part);
      if (ino === undefined) return null;
      node = this.node(ino);
    }
    return node;
  }

  private lookup(abs: string, syscall: string): Node {
    let node = this.node(ROOT_INO);
    for (const part of abs.split('/').filter((p) => p.length > 0)) {
      if (node.kind !== 'dir') throw fsError('ENOTDIR', syscall, abs);
      const ino = node.entries.get(part);
      if (ino === undefined) throw fsError('ENOENT', syscall, abs);
      node = this.node(ino);
    }
    return node;
  }

  private parent(abs: string, syscall: string, dest?: string): { dir: DirNode; name: string } {
    if (abs === '/') throw fsError('EISDIR', syscall, abs, dest);
    const dir = this.lookup(posix.dirname(abs), syscall);
    if (dir.kind !== 'dir') throw fsError('ENOTDIR', syscall, abs, dest);
    return { dir, name: posix.basename(abs) };
  }
}

function applyDirOp(dirs: Map<number, Map<string, number>>, op: DirOp): void {
  if (op.kind === 'link') {
    const dir = dirs.get(op.dir);
    if (dir !== undefined && !dir.has(op.name)) dir.set(op.name, op.ino);
  } else if (op.kind === 'unlink') {
    const dir = dirs.get(op.dir);
    if (dir !== undefined && dir.get(op.name) === op.ino) dir.delete(op.name);
  } else {
    const from = dirs.get(op.fromDir);
    const to = dirs.get(op.toDir);
    if (from === undefined || to === undefined || from.get(op.fromName) !== op.ino) return;
    from.delete(op.fromName);
    to.set(op.toName, op.ino);
  }
}

/** The bytes of one file after a power cut (see the crash model above). */
function crashFileData(node: FileNode, rng: Rng, model: Required<CrashModel>): Uint8Array {
  const { durable, cache, clean } = node;
  const span = Math.max(cache.length, clean.length);
  const dirty: number[] = [];
  for (let s = 0; s * SECTOR_BYTES < span; s++) {
    const from = s * SECTOR_BYTES;
    const to = Math.min(span, from + SECTOR_BYTES);
    // Out-of-range bytes are `undefined`, so a length change makes a sector dirty.
    if (!bytesEqual(cache, clean, from, to)) dirty.push(s);
  }
  const lengthDirty = cache.length !== clean.length;
  if (dirty.length === 0 && !lengthDirty) return durable.slice();

  let outcome: 'drop' | 'keep' | 'prefix' | 'scatter';
  if (model.data === 'dropAll') outcome = 'drop';
  else if (model.data === 'keepAll') outcome = 'keep';
  else {
    const r = rng();
    outcome =
      r < 0.25
        ? 'drop'
        : r < 0.5
          ? 'keep'
          : r < 0.8 || !model.reorderSectors
            ? 'prefix'
            : 'scatter';
  }
  const kept = new Set<number>();
  let torn: { sector: number; split: number } | null = null;
  if (outcome === 'keep') for (const s of dirty) kept.add(s);
  if (outcome === 'prefix') {
    const k = randInt(rng, 0, dirty.length);
    for (const s of dirty.slice(0, k)) kept.add(s);
    const next = dirty[k];
    if (model.tornSectors && next !== undefined && rng() < 0.5) {
      torn = { sector: next, split: randInt(rng, 1, SECTOR_BYTES - 1) };
    }
  }
  if (outcome === 'scatter') {
    for (const s of dirty) if (rng() < 0.5) kept.add(s);
    const lost = dirty.filter((s) => !kept.has(s));
    if (model.tornSectors && lost.length > 0 && rng() < 0.5) {
      torn = {
        sector: lost[randInt(rng, 0, lost.length - 1)]!,
        split: randInt(rng, 1, SECTOR_BYTES - 1),
      };
    }
  }

  // Where new bytes reached the disk.
  const isNew = (i: number): boolean => {
    const s = Math.floor(i / SECTOR_BYTES);
    return kept.has(s) || (torn !== null && torn.sector === s && i - s * SECTOR_BYTES < torn.split);
  };
  let length: number;
  if (outcome === 'keep') length = cache.length;
  else if (outcome === 'drop') length = durable.length;
  else if (cache.length > durable.length) {
    let end = 0;
    for (const s of kept) end = Math.max(end, (s + 1) * SECTOR_BYTES);
    if (torn !== null) end = Math.max(end, torn.sector * SECTOR_BYTES + torn.split);
    length = Math.min(cache.length, Math.max(durable.length, end));
  } else {
    length = rng() < 0.5 ? durable.length : cache.length;
  }
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    out[i] = isNew(i) && i < cache.length ? cache[i]! : (durable[i] ?? 0);
  }
  return out;
}

class SimHandle implements WalFileHandle {
  private closed = false;

  constructor(
    private readonly fs: SimulatedFileSystem,
    readonly path: string,
    private readonly node: FileNode,
    private readonly readable: boolean,
    private readonly writable: boolean,
  ) {}

  private check(op: SimOpKind, detail: string | undefined, need: 'read' | 'write' | null): void {
    this.fs.step(op, this.path, detail);
    if (this.closed) throw fsError('EBADF', op, this.path);
    if (need === 'read' && !this.readable) throw fsError('EBADF', 'read', this.path);
    if (need === 'write' && !this.writable) throw fsError('EBADF', 'write', this.path);
  }

  async write(data: Uint8Array, position: number): Promise<void> {
    this.check('write', `${data.length}@${position}`, 'write');
    this.fs.writeAt(this.node, this.path, data, position, 'write');
    await this.fs.settle();
  }

  async writev(chunks: readonly Uint8Array[], position: number): Promise<void> {
    const total = chunks.reduce((n, c) => n + c.length, 0);
    this.check('writev', `${total}@${position}`, 'write');
    const joined = new Uint8Array(total);
    let at = 0;
    for (const chunk of chunks) {
      joined.set(chunk, at);
      at += chunk.length;
    }
    this.fs.writeAt(this.node, this.path, joined, position, 'writev');
    await this.fs.settle();
  }

  async read(into: Uint8Array, position: number, length = into.length): Promise<number> {
    this.check('read', `${length}@${position}`, 'read');
    const available = Math.max(0, Math.min(length, into.length, this.node.cache.length - position));
    into.set(this.node.cache.subarray(position, position + available), 0);
    await this.fs.settle();
    return available;
  }

  async datasync(): Promise<void> {
    this.check('datasync', undefined, null);
    this.fs.persistFile(this.node);
    await this.fs.settle();
  }

  async sync(): Promise<void> {
    this.check('sync', undefined, null);
    this.fs.persistFile(this.node);
    await this.fs.settle();
  }

  async truncate(length: number): Promise<void> {
    this.check('truncate', String(length), null);
    if (!this.writable) throw fsError('EINVAL', 'ftruncate', this.path);
    this.fs.truncateFile(this.node, this.path, length);
    await this.fs.settle();
  }

  async size(): Promise<number> {
    this.check('size', undefined, null);
    const size = this.node.cache.length;
    await this.fs.settle();
    return size;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.fs.step('close', this.path);
    this.closed = true;
    const count = (this.fs.openCounts.get(this.node.ino) ?? 1) - 1;
    if (count > 0) this.fs.openCounts.set(this.node.ino, count);
    else this.fs.openCounts.delete(this.node.ino);
    await this.fs.settle();
  }
}
