/**
 * Turns what the `pg` driver throws into Horae errors, keeping the driver's error as `cause`.
 */
import { HoraeError, InvalidInputError } from '@horae/core';
import { RepositoryError } from '@horae/storage';

/** The SQLSTATE of a driver error, when it has one. */
export function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** The constraint a driver error names, when it names one. */
function constraintOf(error: unknown): string | undefined {
  const constraint = (error as { constraint?: unknown } | null)?.constraint;
  return typeof constraint === 'string' ? constraint : undefined;
}

/**
 * True for errors after which the same statement may simply be sent again: a deadlock or a serialization
 * failure aborted it before it wrote anything.
 */
export function isRetryable(error: unknown): boolean {
  const state = sqlState(error);
  return state === '40P01' || state === '40001';
}

/**
 * Maps a driver error to a Horae error.
 *
 * - a HoraeError passes through unchanged;
 * - 23505 unique_violation on the primary key → InvalidInputError ("id taken");
 * - other integrity violations (class 23) and data exceptions (class 22: a NUL character in a string, a number
 *   out of range) → InvalidInputError; the statement failed, so nothing was written;
 * - anything else (connection refused or dropped, server shutting down, timeouts) → RepositoryError.
 *
 * @param error - what the driver threw
 * @param action - what the adapter was doing, for the message ("insert a task")
 * @returns the error to throw, with `error` as its `cause`
 */
export function translateError(error: unknown, action: string): HoraeError {
  if (error instanceof HoraeError) return error;
  const state = sqlState(error);
  const detail = error instanceof Error ? error.message : String(error);
  if (state === '23505' && constraintOf(error) === 'tasks_pkey') {
    return new InvalidInputError(`cannot ${action}: the id is taken by another task`, { cause: error });
  }
  if (state !== undefined && (state.startsWith('23') || state.startsWith('22'))) {
    return new InvalidInputError(`cannot ${action}: ${detail}`, { cause: error });
  }
  return new RepositoryError(`PostgreSQL failed to ${action}: ${detail}`, { cause: error });
}
