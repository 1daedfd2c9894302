/**
 * Limits shared by the engine and the layers above it, in a module with no
 * dependencies so that the control surface can import them without the
 * engine.
 */

/**
 * Most in-process lanes a log runs with: the engine's `slotCount` maximum and
 * the control surface's lane-count clamp (`laneCountOverride`,
 * `FSQLITE_PARALLEL_WAL_LANES`), one number so that
 * `slotCount: plane.laneCount()` always opens. The seed clamps to 65535 (u16
 * lane ids); the engine scans every lane at each epoch and registers them at
 * open, which measured 28 ms to open with 1024 lanes, 0.5 s with 8192, and did
 * not finish within two minutes with 65535 (this machine, 2 cores). Past the
 * core count, more lanes only add scan work.
 */
export const laneCountMax = 1024;
