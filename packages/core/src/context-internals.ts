/**
 * Package-private access to the private state of a SchedulerContext. The scheduler keeps only a task's work and
 * values (not its context object) per pending task, and rebuilds the context when a run asks for it; this module
 * is how it reaches the private fields without making them public. Not exported from the package index.
 *
 * @internal
 * @packageDocumentation
 */
import type { SchedulerContext, ValueKey, WorkFn } from './context.js';

/** The operations the scheduler needs on a context's private state. @internal */
export interface ContextInternals {
  /** The context's value map (shared, never mutated). */
  values(ctx: SchedulerContext): ReadonlyMap<ValueKey<unknown>, unknown>;
  /** Rebuilds a context from its parts, without validation (the parts came from a valid context). */
  restore(runAtMs: number, work: WorkFn | undefined, priority: number, values: ReadonlyMap<ValueKey<unknown>, unknown>): SchedulerContext;
}

let internals: ContextInternals | undefined;

/** Called once by SchedulerContext's static initializer. @internal */
export function setContextInternals(value: ContextInternals): void {
  internals = value;
}

/**
 * The private operations of SchedulerContext.
 *
 * @returns the operations
 * @throws {@link Error} never in practice: context.ts sets them when it loads, and every caller imports it
 * @internal
 */
export function contextInternals(): ContextInternals {
  if (internals === undefined) throw new Error('context.ts was not loaded');
  return internals;
}
