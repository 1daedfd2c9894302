/**
 * How `checkpoint` and `recover` use the page store: with a progress line
 * over the segment files recovery reads, and, when the command fails, with
 * the database file and store header it created taken away again (see
 * {@link removeFreshFiles}), so that a failed run leaves the directory as it
 * found it.
 */
import * as nodePath from 'node:path';
import type { WalFileSystem } from '../storage/fs.js';
import { SEGMENT_NAME_INFIX, scanSegments, TEMP_NAME_INFIX } from '../storage/segment-files.js';
import { PageStore, type PageStoreOptions } from '../store/page-store.js';
import type { CliContext } from './context.js';
import { noteFreshFiles, removeFreshFiles } from './database.js';

/**
 * `fs`, calling `onRead` with the number of distinct segment (or temporary
 * segment) files opened or read through it so far.
 */
export function countingSegmentReads(
  fs: WalFileSystem,
  onRead: (files: number) => void,
): WalFileSystem {
  const seen = new Set<string>();
  const note = (path: string): void => {
    const name = nodePath.basename(path);
    if (!name.includes(SEGMENT_NAME_INFIX) && !name.includes(TEMP_NAME_INFIX)) return;
    if (seen.has(path)) return;
    seen.add(path);
    onRead(seen.size);
  };
  const readFile: WalFileSystem['readFile'] = (path) => {
    note(path);
    return fs.readFile(path);
  };
  const open: WalFileSystem['open'] = (path, mode) => {
    note(path);
    return fs.open(path, mode);
  };
  // A proxy, not a copy: every other member (present or added later) still
  // reaches `fs`, bound to it.
  return new Proxy(fs, {
    get(target, property) {
      if (property === 'readFile') return readFile;
      if (property === 'open') return open;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/**
 * Opens the page store at `dbPath`, runs `work` on it and closes it. On any
 * failure the files the open created are removed before the error goes on.
 */
export async function withPageStore<T>(
  ctx: CliContext,
  label: string,
  dbPath: string,
  options: Omit<PageStoreOptions, 'fs'>,
  work: (store: PageStore) => Promise<T>,
): Promise<{ store: PageStore; result: T }> {
  const fresh = await noteFreshFiles(dbPath, ctx.fs);
  const total = (await scanSegments(dbPath, { fs: ctx.fs })).length;
  const progress = ctx.progress(label);
  progress.update(0, total, 'segment(s)');
  const fs = countingSegmentReads(ctx.fs, (files) =>
    progress.update(Math.min(files, total), total, 'segment(s)'),
  );
  let store: PageStore | null = null;
  try {
    store = await PageStore.open(dbPath, { ...options, fs });
    const result = await work(store);
    await store.close();
    return { store, result };
  } catch (error) {
    await store?.close().catch(() => undefined);
    await removeFreshFiles(fresh, ctx.fs).catch(() => undefined);
    throw error;
  } finally {
    progress.end();
  }
}
