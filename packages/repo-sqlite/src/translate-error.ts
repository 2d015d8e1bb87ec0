/**
 * Turns what better-sqlite3 throws into Horae errors, keeping the driver's error as `cause`, and sorts them by
 * whether a retry can ever succeed: an outage (retried by the storage layer until the write lands) or a refusal
 * (thrown to the caller at once).
 */
import { HoraeError, quoteInput } from '@horae/core';
import { RepositoryError, ValueRefusedError } from '@horae/storage';

/** How much of SQLite's message an error quotes. */
const MAX_DETAIL_LENGTH = 200;

/** The SQLite result code of a driver error (`SQLITE_BUSY`, `SQLITE_CONSTRAINT_PRIMARYKEY`…), if it has one. */
export function sqliteCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_') ? code : undefined;
}

/**
 * True for a refusal of the values a statement carries, which no retry can cure: a constraint
 * (`SQLITE_CONSTRAINT_*`), a string or blob over SQLite's length limit (`SQLITE_TOOBIG`), a value of a type the column
 * refuses (`SQLITE_MISMATCH`). A locked database (`SQLITE_BUSY`, `SQLITE_LOCKED`), a full disk (`SQLITE_FULL`), a read-only
 * or unreachable file (`SQLITE_READONLY`, `SQLITE_CANTOPEN`, `SQLITE_IOERR`) are outages: they are retried.
 */
export function isRefusal(error: unknown): boolean {
  const code = sqliteCode(error);
  return code !== undefined && (code.startsWith('SQLITE_CONSTRAINT') || code === 'SQLITE_TOOBIG' || code === 'SQLITE_MISMATCH');
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
 * Wraps anything a driver call threw into a Horae error: Horae errors pass through; a refusal no retry can cure
 * ({@link isRefusal}) becomes a ValueRefusedError (the result code is its `driverCode`), which the storage layer
 * throws to the caller at once; the rest (a lock held too long, a full disk, an I/O error) become a
 * RepositoryError, which it retries. Bad input rarely reaches the driver: it is validated before.
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
  const detail = message.length > MAX_DETAIL_LENGTH ? quoteInput(message, MAX_DETAIL_LENGTH) : message;
  if (code !== undefined && isRefusal(error)) {
    return new ValueRefusedError(`${action}: SQLite refused the write (${code}; a retry cannot succeed): ${detail}`, code, { cause: error });
  }
  return new RepositoryError(`${action} failed: ${detail}`, { cause: error });
}

/** The ValueRefusedError of an insert whose id another task already has. */
export function idTakenError(id: string, cause: unknown): ValueRefusedError {
  return new ValueRefusedError(`the id ${quoteInput(id)} is taken by another task`, 'SQLITE_CONSTRAINT_PRIMARYKEY', { cause });
}
