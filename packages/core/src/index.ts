/**
 * `@horae/core`: the in-memory timer scheduler and its middleware chain.
 *
 * @packageDocumentation
 */
export * from './errors.js';
export * from './clock.js';
export * from './context.js';
export * from './middleware.js';
