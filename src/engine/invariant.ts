/**
 * The engine's assertion helper (docs/design.md#invariants). An invariant is
 * a fact the engine's own code guarantees whatever its callers and its disk
 * do: bad input and failed I/O have their own typed errors, so a broken
 * invariant is an engine bug. It throws {@link EngineInvariantError}
 * (`ERR_ENGINE_INVARIANT`); on the flush path the flusher turns that into
 * the log's failure, so nothing is acknowledged after it.
 *
 * Cheap enough for the hot path: one comparison when the invariant holds.
 * Pass the message as a function where building it costs something (it is
 * only called when the check fails).
 */
import { EngineInvariantError } from './errors.js';

/**
 * Throws {@link EngineInvariantError} with `message` unless `condition` holds.
 * @throws {EngineInvariantError} when `condition` is false.
 */
export function invariant(condition: boolean, message: string | (() => string)): asserts condition {
  if (condition) return;
  throw new EngineInvariantError(typeof message === 'string' ? message : message());
}
