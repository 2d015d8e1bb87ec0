/**
 * `@horae/storage`: what makes a task survive a restart and run once across many nodes.
 *
 * @packageDocumentation
 */
export * from './contract/errors.js';
export * from './contract/task-info.js';
export * from './contract/repository.js';
export * from './contract/work-limits.js';
export * from './contract/task-search.js';
export * from './contract/peer-dependency.js';
export * from './contract/validation.js';
export * from './memory/memory-repository.js';
export * from './works/param-validator.js';
export * from './works/work-registry.js';
export * from './works/retry.js';
export * from './node/durable-write.js';
export { DEFAULT_REPOSITORY_ERROR_INTERVAL_MS, type RepositoryFailure } from './node/repository-health.js';
export { BackpressureError, DEFAULT_MAX_PENDING_SCHEDULES, DEFAULT_MAX_PENDING_SCHEDULE_BYTES } from './node/schedule-gate.js';
export * from './node/lease-keeper.js';
export * from './node/events.js';
export * from './node/sync.js';
export * from './node/storage-middleware.js';
export * from './hooks/status-hooks.js';
export * from './schedules/schedule-store.js';
export * from './schedules/schedule-definition.js';
export * from './memory/memory-schedule-store.js';
export * from './schedules/occurrence-task-id.js';
export * from './schedules/schedule-materializer.js';
export * from './schedules/schedules.js';
export * from './hooks/status-hook-bridge.js';
export * from './schedules/schedule-loop.js';
export * from './horae-options.js';
export * from './horae.js';
