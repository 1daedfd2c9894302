/**
 * The worker-writer cases of `bench/engine.ts` (its plug-in module): 1 and 2
 * worker writers with fsync `full` and `off`, from `bench/workers.ts`, run in
 * the same rounds as the async cases and printed beside them.
 */
import type { BenchCase } from './engine.js';
import { workerCases } from './workers.js';

/** Picked up by `bench/engine.ts` (`pluginCases`). */
export const cases: BenchCase[] = workerCases();
