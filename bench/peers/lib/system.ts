/**
 * The adapter contract every benchmarked system implements, and the helpers adapters share.
 */
import { readFileSync } from 'node:fs';
import type { Transferable } from 'node:worker_threads';
import type { CellSpec, CommitFn } from './common.js';

/** A store opened on the main thread of a cell's child process. */
export interface OpenStore {
  /** Durable commit: resolves (or returns) only once the commit survives a crash. */
  commit: CommitFn;
  close(): Promise<void>;
  /** fsync-family calls the library counted itself, if it counts them. */
  libraryFsyncs?(): number | undefined;
  /**
   * A value posted to each worker thread (handed to {@link SystemDef.openWorker}) and the
   * objects to transfer with it (e.g. a MessagePort).
   */
  workerHandle?(): { value: unknown; transferList: Transferable[] };
}

/** A writer opened inside a worker thread. */
export interface WorkerStore {
  commit: CommitFn;
  close(): Promise<void>;
}

/** Outcome of reading every acknowledged commit back. */
export interface VerifyResult {
  checked: number;
  failures: number;
  firstFailure?: string;
}

export interface SystemDef {
  name: string;
  /** Human label for tables and the chart. */
  label: string;
  /** Settings that decide durability, as shown in the table. */
  settings: string;
  versions(): Promise<Record<string, string>>;
  /** Whether two worker threads can commit into one store. */
  supportsWorkers: boolean;
  /** Concurrency the API really gives `committers` async committers per writer. */
  effectiveConcurrency(committers: number, workers: number): { n: number; note?: string };
  open(dir: string, spec: CellSpec): Promise<OpenStore>;
  openWorker?(dir: string, handle: unknown, spec: CellSpec): Promise<WorkerStore>;
  /** Reopens the store from `dir` (after close) and compares every acknowledged commit. */
  verify(dir: string, acked: readonly number[], pages: number): Promise<VerifyResult>;
}

/** Version of an installed package of this benchmark package. */
export function packageVersion(name: string): string {
  try {
    const url = new URL(`../node_modules/${name}/package.json`, import.meta.url);
    const pkg = JSON.parse(readFileSync(url, 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'not installed';
  }
}

/**
 * Loads a peer library by name at run time. The name is a variable on purpose: the root
 * project's type-check must not need `bench/peers/node_modules`.
 */
export async function loadPeer<T>(name: string): Promise<T> {
  const specifier: string = name;
  return (await import(specifier)) as T;
}

/** Accumulates verification failures, keeping the first message. */
export class VerifyTally implements VerifyResult {
  checked = 0;
  failures = 0;
  firstFailure?: string;

  check(ok: boolean, what: () => string): void {
    this.checked += 1;
    if (!ok) {
      this.failures += 1;
      this.firstFailure ??= what();
    }
  }
}
