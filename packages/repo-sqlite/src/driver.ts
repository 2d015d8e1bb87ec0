/**
 * The slice of better-sqlite3 the adapter uses, typed structurally (Kysely style), so that a caller can hand
 * in the `Database` they already opened and the adapter depends on no more of the driver than it calls.
 */
import BetterSqlite3 from 'better-sqlite3';

/** The result of running a statement that writes. */
export interface SqliteRunResult {
  /** Rows changed by the statement. */
  changes: number;
}

/** A prepared statement: prepared once per repository, then run many times. */
export interface SqliteStatement {
  /** Runs the statement to completion. */
  run(...params: unknown[]): SqliteRunResult;
  /** Runs it and returns the first row, or undefined. */
  get(...params: unknown[]): unknown;
  /** Runs it and returns every row. */
  all(...params: unknown[]): unknown[];
  /**
   * With `true`, rows come back as arrays of column values, in the order of the SELECT list; returns the statement.
   * Optional: without it, the adapter reads those rows as objects.
   */
  raw?(toggle?: boolean): SqliteStatement;
}

/** The part of a better-sqlite3 `Database` the adapter uses; a better-sqlite3 `Database` satisfies it. */
export interface SqliteDatabase {
  /** Compiles one SQL statement. */
  prepare(source: string): SqliteStatement;
  /** Runs SQL text that may hold several statements (DDL of the migrations). */
  exec(source: string): unknown;
  /** Runs a PRAGMA. */
  pragma(source: string, options?: { simple?: boolean }): unknown;
  /** Closes the connection. */
  close(): unknown;
  /** False once closed. */
  readonly open: boolean;
  /** True while a transaction is open on this connection. */
  readonly inTransaction: boolean;
}

/**
 * Opens a better-sqlite3 database at `path` (':memory:' for a private in-memory one).
 *
 * @param path - a file path, or ':memory:'
 * @returns the opened database
 * @throws the driver's error when the file cannot be opened (the caller translates it)
 */
export function openDatabase(path: string): SqliteDatabase {
  return new BetterSqlite3(path);
}
