/**
 * `@horae/repo-mongo`: a Horae `Repository` on MongoDB through the official `mongodb` driver.
 *
 * @packageDocumentation
 */
export { MongoRepository } from './mongo-repository.js';
export type { MongoRepositoryBaseOptions, MongoRepositoryOptions } from './mongo-repository.js';
export type { MongoClientLike, MongoDbLike } from './driver.js';
export { SCHEMA_VERSION, UNIQUE_KEY_INDEX, TASK_INDEXES, migrate } from './schema.js';
export { encodeParam, decodeParam, toTaskInfo, toTaskAttempt } from './task-document.js';
export type { TaskDocument, AttemptDocument, LeaseDocument } from './task-document.js';
export { MAX_ATTEMPTS_KEPT, TASK_PROJECTION } from './queries.js';
export { translateMongoError } from './translate-error.js';
export { MongoHookOutbox, type HookOutboxDocument, type OutboxCollection } from './hook-outbox.js';
export { MongoTaskSearch, MAX_PARAM_SCAN_PER_PAGE, MAX_PARAM_COUNT_SCAN, type MongoSearchRun, type SearchCollection } from './task-search.js';
