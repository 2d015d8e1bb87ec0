/**
 * `horae`: the package to install. A durable task scheduler for Node.js on the embedded SQLite default, with typed
 * works; `@horae/repo-postgres` and `@horae/repo-mongo` plug in through `repository`. Everything of `@horae/core`
 * and `@horae/storage` is here too, and `SqliteRepository`.
 *
 * @packageDocumentation
 */
export * from '@horae/core';
export * from '@horae/storage';
export { SqliteRepository, type SqliteRepositoryOptions } from '@horae/repo-sqlite';
export { createHorae, defaultDatabaseFile, DEFAULT_DATABASE_FILE, type CreateHoraeOptions } from './create-horae.js';
export { defineWork, type AnyWorkDefinition, type WorkDefinition, type WorkDefinitionInput } from './define-work.js';
export type { HoraeFor, ParamField, TypedHorae, TypedOneTimeScheduleOptions, TypedRecurringScheduleOptions, WorkIdOf, WorkInputOf } from './typed-horae.js';
