import type { ProgressReport, SchedulerContext } from './context.js';

/** What a task's handle reports: scheduled, running, or one of the three ends. */
export type TaskRunState = 'scheduled' | 'running' | 'done' | 'failed' | 'cancelled';

/** A scheduled task, as seen by the code that scheduled it. */
export interface TaskHandle {
  /** The task's id. */
  readonly taskId: string;
  /** When the task is due (changes when a retry defers it). */
  readonly runAt: Date;
  /** Its priority. */
  readonly priority: number;
  /** Where the task is now. */
  readonly state: TaskRunState;
  /** The last progress the run reported, if any. */
  readonly progress: ProgressReport | undefined;
  /**
   * Settles when the task ends: resolves with the work's value, rejects with its error (or a
   * TaskCancelledError). A rejection nobody awaits is not reported as unhandled.
   */
  readonly result: Promise<unknown>;
  /**
   * Cancels the task: a scheduled one never starts; a running one has its signal aborted.
   *
   * @returns true when this call cancelled it, false when it had already ended
   */
  cancel(reason?: string): Promise<boolean>;
}

/** Takes a scheduling request and returns the handle of the scheduled task. */
export type ScheduleHandler = (ctx: SchedulerContext) => TaskHandle | Promise<TaskHandle>;

/**
 * A middleware wraps the next handler of the chain, as in gokugen: it may change the context (runAt,
 * values), wrap the work (`ctx.withWork`), or decide not to call `next` at all. The first registered is the
 * outermost.
 *
 * @example
 * ```ts
 * const tag: Middleware = (next) => (ctx) => next(ctx.withValue(TenantKey, 'acme'));
 * ```
 */
export type Middleware = (next: ScheduleHandler) => ScheduleHandler;
