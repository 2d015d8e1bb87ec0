/**
 * Package-private access to the private state of a SchedulerContext. The scheduler keeps only a task's work and
 * values (not its context object) per pending task, and rebuilds the context when a run asks for it; this module
 * is how it reaches the private fields without making them public. Not exported from the package index.
 *
 * It imports nothing: context.ts registers the operations when it loads, and context-access.ts gives them their
 * types, so that the dependencies go one way (context-access → context → context-internals).
 *
 * @internal
 * @packageDocumentation
 */

/** The operations the scheduler needs on a context's private state, by the types context.ts gives them. @internal */
export interface ContextInternals<Ctx, Values, Work> {
  /** The context's value map (shared, never mutated). */
  values(ctx: Ctx): Values;
  /** Rebuilds a context from its parts, without validation (the parts came from a valid context). */
  restore(runAtMs: number, work: Work | undefined, priority: number, values: Values): Ctx;
}

let internals: unknown;

/** Called once by SchedulerContext's static initializer. @internal */
export function setContextInternals<Ctx, Values, Work>(value: ContextInternals<Ctx, Values, Work>): void {
  internals = value;
}

/**
 * The registered operations, as the type the caller names (context-access.ts names the one context.ts registered).
 *
 * @returns the operations
 * @throws {@link Error} never in practice: context.ts sets them when it loads, and every caller imports it
 * @internal
 */
export function registeredContextInternals<T>(): T {
  if (internals === undefined) throw new Error('context.ts was not loaded');
  return internals as T;
}
