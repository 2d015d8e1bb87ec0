/**
 * `@horae/repo-postgres`: the Horae Repository on PostgreSQL through `pg`, with an exact change cursor and
 * LISTEN/NOTIFY change notices.
 *
 * @packageDocumentation
 */
export {
  PostgresRepository,
  channelOf,
  type PostgresConnectionOptions,
  type PostgresPoolOptions,
  type PostgresRepositoryCommonOptions,
  type PostgresRepositoryOptions,
} from './postgres-repository.js';
export { MIGRATIONS, SCHEMA_VERSION, migrate, type Migration } from './schema.js';
export type { PgNotification, PgPool, PgPoolClient, PgQueryConfig, PgQueryResult, PgQueryable } from './pg-types.js';
export { PostgresHookOutbox } from './hook-outbox.js';
export { PostgresTaskSearch, type PgSearchQuery } from './task-search.js';
