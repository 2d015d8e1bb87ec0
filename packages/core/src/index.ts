/**
 * `@horae/core`: the in-memory timer scheduler and its middleware chain.
 *
 * @packageDocumentation
 */
export * from './errors.js';
export * from './quote-input.js';
export * from './clock.js';
export * from './context.js';
export * from './middleware.js';
export * from './events.js';
export * from './timer-queue.js';
export * from './dispatcher.js';
export * from './scheduler.js';
export * from './schedule-call.js';
export * from './retry.js';
export * from './logging.js';
export * from './timeout.js';
export * from './stall-timeout.js';
export { type EventTriggerSpec, type EventTriggerParam } from './event-triggers.js';
export {
  type TaskGenerator,
  type GeneratorSource,
  type GeneratorOptions,
  type GeneratorHandle,
} from './generators.js';
export * from './recurrence.js';
export * from './catch-up.js';
export { isWorkAborted } from './run-context.js';
