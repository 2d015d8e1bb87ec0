/**
 * The {@link WorkContext} a work function receives. Its AbortController is created on the first read of
 * `signal` (most work never reads it, and a controller costs ~1 µs and ~1 KB); an abort that comes first is
 * remembered and applied to the controller when it is created, so the work sees the same signal state either way.
 *
 * @internal
 * @packageDocumentation
 */
import type { Clock } from './clock.js';
import { ParamKey, type ProgressReport, type SchedulerContext, type ValueKey, type WorkContext } from './context.js';
import { contextInternals } from './context-internals.js';
import type { TaskCancelledError } from './errors.js';
import type { Task } from './task.js';

/** What a run asks of its scheduler. @internal */
export interface RunHost {
  /** The scheduler's clock. */
  readonly clock: Clock;
  /** The scheduler's base time (runAt values are kept relative to it). */
  readonly base: number;
  /** See {@link TaskHost.idOf}. */
  idOf(task: Task): string;
  /** Records progress of a run (ignored once the run ended). */
  progress(task: Task, run: RunContext, report: ProgressReport): void;
  /** Records a check-in of a run (ignored once the run ended). */
  checkIn(task: Task, run: RunContext, message: string): void;
}

/** One run of a task. @internal */
export class RunContext implements WorkContext {
  readonly #host: RunHost;
  readonly #task: Task;
  // runAt relative to the scheduler's base: a small integer instead of a boxed double.
  readonly #runAtRel: number;
  #controller: AbortController | undefined = undefined;
  #aborted = false;
  #reason: unknown = undefined;
  /** Set by `handle.cancel()` while running: the run ends `cancelled` whatever the work does. */
  cancelError: TaskCancelledError | undefined = undefined;
  /** {@inheritDoc WorkContext.attempt} */
  readonly attempt: number;
  /** When the run started, on the scheduler's clock; NaN when nobody listened for durations at the start. */
  readonly startedAt: number;

  /**
   * @param host - the scheduler
   * @param task - the task that runs
   * @param attempt - this run's attempt, from 1
   * @param runAtMs - when the run was due
   * @param startedAt - when it started
   */
  constructor(host: RunHost, task: Task, attempt: number, runAtMs: number, startedAt: number) {
    this.#host = host;
    this.#task = task;
    this.attempt = attempt;
    this.#runAtRel = runAtMs - host.base;
    this.startedAt = startedAt;
  }

  /** {@inheritDoc WorkContext.signal} */
  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  /** Whether the run's signal was aborted. */
  get aborted(): boolean {
    return this.#aborted;
  }

  /** Aborts the run's signal with `reason`; later calls do nothing. */
  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }

  /** {@inheritDoc WorkContext.scheduledAt} */
  get scheduledAt(): Date {
    return new Date(this.#host.base + this.#runAtRel);
  }

  /** {@inheritDoc WorkContext.taskId} */
  get taskId(): string {
    return this.#host.idOf(this.#task);
  }

  /** {@inheritDoc WorkContext.param} */
  get param(): unknown {
    return this.#task.values.get(ParamKey);
  }

  /** {@inheritDoc WorkContext.context} */
  get context(): SchedulerContext {
    const task = this.#task;
    return contextInternals().restore(this.#host.base + this.#runAtRel, task.work, task.priority, task.values);
  }

  /** {@inheritDoc WorkContext.clock} */
  get clock(): Clock {
    return this.#host.clock;
  }

  /** {@inheritDoc WorkContext.value} */
  value<T>(key: ValueKey<T>): T | undefined {
    return this.#task.values.get(key) as T | undefined;
  }

  /** {@inheritDoc WorkContext.progress} */
  progress(report: ProgressReport): void {
    this.#host.progress(this.#task, this, report);
  }

  /** {@inheritDoc WorkContext.checkIn} */
  checkIn(message: string): void {
    this.#host.checkIn(this.#task, this, message);
  }
}
