/**
 * The {@link WorkContext} a work function receives. Its AbortController is created on the first read of
 * `signal` (most work never reads it, and a controller costs ~1 µs and ~1 KB); an abort that comes first is
 * remembered and applied to the controller when it is created, so the work sees the same signal state either way.
 *
 * @internal
 * @packageDocumentation
 */
import type { Clock } from './clock.js';
import { ParamKey, type ProgressReport, type SchedulerContext, type ValueKey, type WorkContext, type WorkFn } from './context.js';
import { contextInternals } from './context-access.js';
import type { TaskCancelledError } from './errors.js';

/**
 * What a run reads of its task: a `Task` of task.ts, described here by its shape so that this module does not
 * import task.ts (which holds its run: the dependency goes one way). @internal
 */
export interface RunTask {
  /** The scheduler. */
  readonly host: RunHost;
  /** Its priority. */
  readonly priority: number;
  /** The work it runs. */
  readonly work: WorkFn | undefined;
  /** The values of the context it was scheduled with. */
  readonly values: ReadonlyMap<ValueKey<unknown>, unknown>;
}

/** What a run asks of its scheduler. @internal */
export interface RunHost {
  /** The scheduler's clock. */
  readonly clock: Clock;
  /** The scheduler's base time (runAt values are kept relative to it). */
  readonly base: number;
  /** The task's id (see `TaskHost.idOf`). */
  idOf(task: RunTask): string;
  /** Records progress of a run (ignored once the run ended). */
  progress(task: RunTask, run: RunContext<RunTask>, report: ProgressReport): void;
  /** Records a check-in of a run (ignored once the run ended). */
  checkIn(task: RunTask, run: RunContext<RunTask>, message: string): void;
}

// The rarely needed part of a run: its abort state. Most runs are never aborted and never read `signal`, so a
// run allocates none of this (a run is allocated per execution: its size is GC pressure at high rates).
class AbortState {
  controller: AbortController | undefined = undefined;
  aborted = false;
  reason: unknown = undefined;
  cancelError: TaskCancelledError | undefined = undefined;
}

/**
 * One run of a task.
 *
 * Memory rules (one is allocated per run, so its size is what the garbage collector pays per run): five fields;
 * the scheduler is reached through the task (whose prototype holds it); the abort state is allocated on the
 * first abort, cancel or read of `signal`; `startedAt` is `undefined`, not NaN, when untimed, so that no heap
 * number is boxed per run.
 *
 * @internal
 */
export class RunContext<T extends RunTask = RunTask> implements WorkContext {
  readonly #task: T;
  // runAt relative to the scheduler's base: a small integer instead of a boxed double.
  readonly #runAtRel: number;
  #abortState: AbortState | undefined;
  /** {@inheritDoc WorkContext.attempt} */
  readonly attempt: number;
  /** When the run started, on the scheduler's clock; undefined when nobody listened for durations at the start. */
  readonly startedAt: number | undefined;

  /**
   * @param task - the task that runs (its `host` is the scheduler)
   * @param attempt - this run's attempt, from 1
   * @param runAtRel - when the run was due, relative to the scheduler's base time
   * @param startedAt - when it started, or undefined when untimed
   */
  constructor(task: T, attempt: number, runAtRel: number, startedAt: number | undefined) {
    this.#task = task;
    this.#runAtRel = runAtRel;
    this.#abortState = undefined;
    this.attempt = attempt;
    this.startedAt = startedAt;
  }

  /** The task that runs. */
  get task(): T {
    return this.#task;
  }

  /** {@inheritDoc WorkContext.signal} */
  get signal(): AbortSignal {
    const state = (this.#abortState ??= new AbortState());
    if (state.controller === undefined) {
      state.controller = new AbortController();
      if (state.aborted) state.controller.abort(state.reason);
    }
    return state.controller.signal;
  }

  /** Whether the run's signal was aborted. */
  get aborted(): boolean {
    return this.#abortState?.aborted === true;
  }

  /** Set by `handle.cancel()` while running: the run ends `cancelled` whatever the work does. */
  get cancelError(): TaskCancelledError | undefined {
    return this.#abortState?.cancelError;
  }

  set cancelError(error: TaskCancelledError | undefined) {
    (this.#abortState ??= new AbortState()).cancelError = error;
  }

  /** Aborts the run's signal with `reason`; later calls do nothing. */
  abort(reason: unknown): void {
    const state = (this.#abortState ??= new AbortState());
    if (state.aborted) return;
    state.aborted = true;
    state.reason = reason;
    state.controller?.abort(reason);
  }

  /** {@inheritDoc WorkContext.scheduledAt} */
  get scheduledAt(): Date {
    return new Date(this.#task.host.base + this.#runAtRel);
  }

  /** {@inheritDoc WorkContext.taskId} */
  get taskId(): string {
    return this.#task.host.idOf(this.#task);
  }

  /** {@inheritDoc WorkContext.param} */
  get param(): unknown {
    return this.#task.values.get(ParamKey);
  }

  /** {@inheritDoc WorkContext.context} */
  get context(): SchedulerContext {
    const task = this.#task;
    return contextInternals().restore(task.host.base + this.#runAtRel, task.work, task.priority, task.values);
  }

  /** {@inheritDoc WorkContext.clock} */
  get clock(): Clock {
    return this.#task.host.clock;
  }

  /** {@inheritDoc WorkContext.value} */
  value<T>(key: ValueKey<T>): T | undefined {
    return this.#task.values.get(key) as T | undefined;
  }

  /** {@inheritDoc WorkContext.progress} */
  progress(report: ProgressReport): void {
    this.#task.host.progress(this.#task, this, report);
  }

  /** {@inheritDoc WorkContext.checkIn} */
  checkIn(message: string): void {
    this.#task.host.checkIn(this.#task, this, message);
  }
}

/**
 * Whether the signal of a work's context was aborted, without creating that signal: a run's own context builds
 * its AbortController only when `signal` is read, so a middleware that needs to know only at the end of a run
 * whether the run was aborted (as storage does, to tell a stop or a cancel from a failure) can ask here, and a
 * run that nobody aborted allocates no controller. Any other context is asked through its `signal`.
 *
 * @param ctx - the context a work function received
 * @returns true when the context's signal was aborted (its reason is then `ctx.signal.reason`)
 *
 * @example
 * ```ts
 * const work: WorkFn = async (ctx) => {
 *   await doSomething();
 *   if (isWorkAborted(ctx)) console.log('aborted', ctx.signal.reason);
 * };
 * ```
 */
export function isWorkAborted(ctx: WorkContext): boolean {
  return ctx instanceof RunContext ? ctx.aborted : ctx.signal.aborted;
}
