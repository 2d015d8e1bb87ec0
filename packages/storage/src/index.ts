/**
 * `@horae/storage`: what makes a task survive a restart and run once across many nodes.
 *
 * @packageDocumentation
 */
export * from './errors.js';
export * from './task-info.js';
export * from './repository.js';
export * from './work-limits.js';
export * from './validation.js';
export * from './memory-repository.js';
export * from './param-validator.js';
export * from './work-registry.js';
export * from './retry.js';
export * from './durable-write.js';
export { DEFAULT_REPOSITORY_ERROR_INTERVAL_MS, type RepositoryFailure } from './repository-health.js';
export { BackpressureError, DEFAULT_MAX_PENDING_SCHEDULES, DEFAULT_MAX_PENDING_SCHEDULE_BYTES } from './schedule-gate.js';
export * from './lease-keeper.js';
export * from './events.js';
export * from './sync.js';
export * from './storage-middleware.js';
export * from './status-hooks.js';
export * from './schedule-store.js';
export * from './schedule-definition.js';
export * from './memory-schedule-store.js';
export * from './occurrence-task-id.js';
export * from './schedule-materializer.js';
export * from './schedules.js';
export * from './status-hook-bridge.js';
export * from './schedule-loop.js';
export * from './horae.js';
