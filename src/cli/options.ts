/**
 * Option values shared by several subcommands. A value that does not parse
 * is a usage error (exit 2), reported before anything is opened.
 */
import { validatePageSize } from '../store/header.js';
import { CliUsageError } from './errors.js';

/** `--page-size` as a number. @throws {CliUsageError} when it is not a valid page size. */
export function parsePageSizeOption(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const pageSize = Number(text);
  try {
    validatePageSize(pageSize);
  } catch (error) {
    throw new CliUsageError(`--page-size: ${(error as Error).message}`);
  }
  return pageSize;
}

/** A positive integer option such as `--keep` or `--flush-every`. @throws {CliUsageError} otherwise. */
export function parsePositiveIntegerOption(
  name: string,
  text: string | undefined,
): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^[0-9]+$/.test(text) || !Number.isSafeInteger(value) || value < 1) {
    throw new CliUsageError(`--${name} must be a positive integer, got ${text}`);
  }
  return value;
}
