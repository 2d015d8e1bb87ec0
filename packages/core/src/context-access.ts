/**
 * The private operations of SchedulerContext, typed (see context-internals.ts). Not exported from the package index.
 *
 * @internal
 * @packageDocumentation
 */
import type { SchedulerContext, ValueKey, WorkFn } from './context.js';
import { registeredContextInternals, type ContextInternals } from './context-internals.js';

/** The operations on a SchedulerContext's private state. @internal */
export type SchedulerContextInternals = ContextInternals<SchedulerContext, ReadonlyMap<ValueKey<unknown>, unknown>, WorkFn>;

/**
 * The private operations of SchedulerContext.
 *
 * @returns the operations context.ts registered when it loaded
 * @internal
 */
export function contextInternals(): SchedulerContextInternals {
  return registeredContextInternals<SchedulerContextInternals>();
}
