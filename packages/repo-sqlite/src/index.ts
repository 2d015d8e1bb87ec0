/**
 * `@horae/repo-sqlite`: the embedded default repository of Horae, on one SQLite file through better-sqlite3.
 *
 * @packageDocumentation
 */
export { SqliteRepository, type SqliteRepositoryOptions, type SqliteSynchronous } from './sqlite-repository.js';
export type { SqliteDatabase, SqliteStatement, SqliteRunResult } from './driver.js';
export { DatabaseFileReplacedError, type DatabaseFileKind, type DatabaseFileChange } from './database-file-replaced-error.js';
export { migrate, readSchemaVersion, MIGRATIONS, SCHEMA_VERSION, type Migration, type MigrationResult } from './schema.js';
export { SqliteHookOutbox, type SqliteOutboxAccess } from './hook-outbox.js';
export { SqliteTaskSearch, type SqliteTaskSearchAccess } from './task-search.js';
