/**
 * Stats that `JSON.stringify` can write. Stats objects keep `bigint` for every
 * u64 (epochs, sequence numbers) and `JSON.stringify` throws on a bigint, so
 * each `stats()` result carries a `toJSON` that gives the same figures with
 * every bigint as a decimal string (exact, unlike a number past 2^53) and
 * every error as `{ name, code, message }`. The figures themselves stay
 * `bigint` for code that reads them.
 */

/** `T` as its `toJSON` gives it: bigints as decimal strings, errors as plain objects. */
export type JsonSafe<T> = T extends bigint
  ? string
  : T extends Error
    ? { name: string; code?: string; message: string }
    : T extends readonly (infer U)[]
      ? JsonSafe<U>[]
      : T extends object
        ? {
            [K in keyof T as T[K] extends (...args: never[]) => unknown ? never : K]: JsonSafe<
              T[K]
            >;
          }
        : T;

/** A stats object whose `toJSON` makes `JSON.stringify(stats)` work. */
export type LoggableStats<T> = T & {
  /** The same figures, JSON-safe: bigints as decimal strings, errors as plain objects. */
  toJSON(): JsonSafe<T>;
};

/** Deepest nesting {@link jsonSafe} follows; stats objects are a few levels deep. */
const jsonSafeDepthMax = 32;

/** A deep copy of `value` with bigints as decimal strings and errors as plain objects. */
export function jsonSafe<T>(value: T): JsonSafe<T> {
  return convert(value, 0) as JsonSafe<T>;
}

function convert(value: unknown, depth: number): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value === null || typeof value !== 'object') return value;
  if (depth >= jsonSafeDepthMax) return '[too deep]';
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    return typeof code === 'string'
      ? { name: value.name, code, message: value.message }
      : { name: value.name, message: value.message };
  }
  if (Array.isArray(value)) return value.map((item) => convert(item, depth + 1));
  if (value instanceof Map) {
    return Object.fromEntries([...value].map(([k, v]) => [String(k), convert(v, depth + 1)]));
  }
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    if (typeof item !== 'function') out[key] = convert(item, depth + 1);
  }
  return out;
}

/**
 * Gives `stats` a non-enumerable `toJSON` (so spreading, `Object.keys` and
 * deep equality see only the figures) and returns it.
 */
export function loggableStats<T extends object>(stats: T): LoggableStats<T> {
  Object.defineProperty(stats, 'toJSON', {
    value: () => jsonSafe(stats),
    enumerable: false,
    configurable: true,
    writable: true,
  });
  return stats as LoggableStats<T>;
}
