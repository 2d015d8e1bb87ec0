/**
 * Turns what better-sqlite3 throws into Horae errors, keeping the driver's error as `cause`.
 */
import { HoraeError, InvalidInputError } from '@horae/core';
import { RepositoryError } from '@horae/storage';

/** The SQLite result code of a driver error (`SQLITE_BUSY`, `SQLITE_CONSTRAINT_PRIMARYKEY`…), if it has one. */
export function sqliteCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_') ? code : undefined;
}

/** True for a constraint violation: SQLite rolled back the one statement, the transaction goes on. */
export function isConstraintError(error: unknown): boolean {
  return sqliteCode(error)?.startsWith('SQLITE_CONSTRAINT') === true;
}

/**
 * True for an error SQLite confines to one statement (a constraint, a value too big): it undid that
 * statement and the transaction goes on, so in a batch only the write that ran it fails.
 */
export function isStatementError(error: unknown): boolean {
  const code = sqliteCode(error);
  return code !== undefined && (code.startsWith('SQLITE_CONSTRAINT') || code === 'SQLITE_TOOBIG' || code === 'SQLITE_MISMATCH' || code === 'SQLITE_RANGE');
}

/** True when `error` is the primary key of `horae_tasks` refusing a second row with one id. */
export function isIdTakenError(error: unknown): boolean {
  const code = sqliteCode(error);
  if (code === 'SQLITE_CONSTRAINT_PRIMARYKEY') return true;
  return code === 'SQLITE_CONSTRAINT_UNIQUE' && error instanceof Error && error.message.includes('horae_tasks.id');
}

/**
 * Wraps anything a driver call threw into a Horae error: Horae errors pass through, the rest become a
 * RepositoryError (bad input never reaches the driver: it is validated before).
 *
 * @param error - what was thrown
 * @param action - what the adapter was doing, for the message
 * @returns the error to throw
 */
export function translateError(error: unknown, action: string): HoraeError {
  if (error instanceof HoraeError) return error;
  const code = sqliteCode(error);
  if (code === 'SQLITE_BUSY' || code?.startsWith('SQLITE_BUSY_') === true || code === 'SQLITE_LOCKED') {
    return new RepositoryError(`${action}: the SQLite database stayed locked by another connection past the busy timeout`, { cause: error });
  }
  const message = error instanceof Error ? error.message : String(error);
  if (isConstraintError(error) || code === 'SQLITE_TOOBIG') return new InvalidInputError(`${action}: SQLite refused the write: ${message}`, { cause: error });
  return new RepositoryError(`${action} failed: ${message}`, { cause: error });
}

/** The InvalidInputError of an insert whose id another task already has. */
export function idTakenError(id: string, cause: unknown): InvalidInputError {
  return new InvalidInputError(`the id "${id}" is taken by another task`, { cause });
}
