import type Database from 'better-sqlite3';
import type { SqliteDatabase, SqliteStatement } from '@horae/repo-sqlite';

/**
 * A real better-sqlite3 connection seen through the adapter's driver slice, with each prepared statement passed
 * through `statementOf` (instrumentation, not a mock: every statement still runs on the database).
 *
 * @param db - the connection
 * @param statementOf - what `prepare` returns for a source, given the real statement
 */
export function driverSlice(db: Database.Database, statementOf: (source: string, statement: Database.Statement) => SqliteStatement): SqliteDatabase {
  return {
    prepare: (source) => statementOf(source, db.prepare(source)),
    exec: (source) => db.exec(source),
    pragma: (source, options) => db.pragma(source, options),
    close: () => db.close(),
    get open() {
      return db.open;
    },
    get inTransaction() {
      return db.inTransaction;
    },
  };
}
