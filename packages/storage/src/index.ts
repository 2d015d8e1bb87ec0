/**
 * `@horae/storage`: what makes a task survive a restart and run once across many nodes.
 *
 * @packageDocumentation
 */
export * from './errors.js';
export * from './task-info.js';
export * from './repository.js';
export * from './validation.js';
