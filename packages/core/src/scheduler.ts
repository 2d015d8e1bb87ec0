/**
 * The Scheduler: schedule work at a time, in memory, through a middleware chain.
 */
import { randomBytes } from 'node:crypto';
import { MAX_TIMER_DELAY_MS, realClock, type Clock, type ClockTimer } from './clock.js';
import { SchedulerContext, type ProgressReport, type ScheduleOptions } from './context.js';
import { contextInternals } from './context-internals.js';
import { Dispatcher } from './dispatcher.js';
import { HoraeError, InvalidInputError, RunAbandoned, RunDeferred, SchedulerStoppedError, TaskCancelledError } from './errors.js';
import { TypedEventEmitter, warnListenerError } from './events.js';
import type { Middleware, ScheduleHandler, TaskHandle } from './middleware.js';
import { RunContext, type RunHost } from './run-context.js';
import { CANCELLED, DONE, FAILED, QUEUED, RUNNING, Task, TaskExtras, WAITING, type TaskHost } from './task.js';
import { TimerQueue } from './timer-queue.js';

/** The events of a {@link Scheduler}, by name, with their payloads. */
export interface SchedulerEvents extends Record<string, unknown> {
  /** A task entered the queue. */
  'task:scheduled': { taskId: string; runAt: Date; priority: number };
  /** A run started. */
  'task:start': { taskId: string; attempt: number; scheduledAt: Date };
  /** A run succeeded: the task is done. `durationMs` is NaN for a run that started before any success/failure listener existed. */
  'task:success': { taskId: string; attempt: number; value: unknown; durationMs: number };
  /** A run failed: the task failed. `durationMs` as for `task:success`. */
  'task:failure': { taskId: string; attempt: number; error: unknown; durationMs: number };
  /** A run was deferred (RunDeferred): the task is queued again at `runAt`. */
  'task:deferred': { taskId: string; attempt: number; runAt: Date; reason: RunDeferred };
  /** The task was cancelled (before or during a run) or abandoned (RunAbandoned). */
  'task:cancelled': { taskId: string; reason: unknown };
  /** A run reported progress. */
  'task:progress': { taskId: string; attempt: number; progress: ProgressReport };
  /** A run checked in. */
  'task:checkin': { taskId: string; attempt: number; message: string };
  /** `stop()` finished: `aborted` runs had their signal aborted at the deadline, `unfinished` had still not settled after the grace. */
  'scheduler:stopped': { aborted: number; unfinished: number };
  /** A listener of `event` threw `error` (the scheduler went on). */
  'listener:error': { event: string; error: unknown };
}

/** Options of a {@link Scheduler}. */
export interface SchedulerOptions {
  /** Where time comes from. @defaultValue {@link realClock} */
  clock?: Clock;
  /** How many runs may be in progress at once: an integer ≥ 1, or `Infinity`. @defaultValue 10 */
  concurrency?: number;
  /**
   * How fast a due task waiting for a slot gains priority: `priority + waitedMs / agingMs`; `Infinity` turns
   * aging off. @defaultValue 10000
   */
  agingMs?: number;
  /**
   * The longest the scheduler sleeps before it reads the wall clock again; a forward jump of the wall clock is
   * noticed within this bound. @defaultValue 1000
   */
  wallClockCheckMs?: number;
  /**
   * Makes a task id when the context carries none (no `taskId` option, no TaskIdKey).
   *
   * @defaultValue ids made of a random per-scheduler prefix and the task's counter, computed on demand
   */
  idGenerator?: () => string;
  /** How long `stop()` lets running work finish before it aborts it, when not given to `stop()`. @defaultValue 10000 */
  stopTimeoutMs?: number;
  /** How long `stop()` waits for aborted runs to settle before it returns anyway. @defaultValue 1000 */
  stopGraceMs?: number;
}

/** Options of {@link Scheduler.stop}. */
export interface StopOptions {
  /**
   * How long running work may go on before its signal is aborted with a SchedulerStoppedError; `Infinity` waits
   * for it however long it takes. @defaultValue the scheduler's `stopTimeoutMs` (10000)
   */
  timeoutMs?: number;
}

let schedulerCount = 0;
const PROCESS_PREFIX = randomBytes(4).toString('hex');

function validateStopMs(value: number, what: string, allowInfinity: boolean): number {
  const ok = typeof value === 'number' && value >= 0 && (value <= MAX_TIMER_DELAY_MS || (allowInfinity && value === Number.POSITIVE_INFINITY));
  if (!ok) throw new InvalidInputError(`${what} must be a number of ms in [0, 2^31-1]${allowInfinity ? ' or Infinity' : ''}, got ${String(value)}`);
  return value;
}

// create() reads `now` only for delayMs or a missing runAt; the clock read is skipped otherwise (hot path).
function needsNow(input: ScheduleOptions): boolean {
  return input === null || typeof input !== 'object' || input.runAt === undefined || input.delayMs !== undefined;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof (value as { then?: unknown }).then === 'function';
}

function validateProgress(report: ProgressReport): ProgressReport {
  if (report === null || typeof report !== 'object' || !Number.isFinite(report.completed) || !Number.isFinite(report.total)) {
    throw new InvalidInputError('progress must be { completed, total } with finite numbers');
  }
  return { completed: report.completed, total: report.total };
}

/**
 * The in-memory scheduler: one timer over a heap of due times, a concurrency-limited dispatcher, and a
 * middleware chain in front (gokugen-style: the first middleware registered is the outermost).
 *
 * Rules:
 * - A task runs at or after its runAt, never before (on the wall clock), and at most once per attempt.
 * - Tasks may be scheduled before `start()`; nothing runs before `start()` nor after `stop()` began.
 * - `schedule()` either returns a handle of a queued task or rejects and queues nothing.
 * - A handle's `result` settles exactly once: with the work's value (done), its error (failed), or a
 *   TaskCancelledError / RunAbandoned (cancelled). Nobody reading it never causes an unhandled rejection.
 * - A run whose handle was cancelled ends `cancelled`, whatever its work returns or throws; `cancel()` on a
 *   running task aborts its signal and returns true at once, and the handle turns `cancelled` when the work settles.
 * - A run aborted by `stop()` ends with whatever its work throws (`failed`, usually with the SchedulerStoppedError),
 *   unless a middleware turns it into RunDeferred (back to `scheduled`) or RunAbandoned (`cancelled`).
 * - `get(taskId)` finds a task while it is scheduled or running; once it ended it returns undefined.
 *
 * @example
 * ```ts
 * const scheduler = new Scheduler({ concurrency: 4 }).use(logging(), timeout(30_000));
 * scheduler.start();
 * const handle = await scheduler.schedule({ delayMs: 1000, work: () => 42 });
 * await handle.result; // 42
 * await scheduler.stop();
 * ```
 */
export class Scheduler {
  /** The scheduler's events. A throwing listener is reported as `listener:error` (or a process warning) and ignored. */
  readonly events: TypedEventEmitter<SchedulerEvents>;
  readonly #clock: Clock;
  readonly #queue: TimerQueue;
  readonly #dispatcher: Dispatcher;
  readonly #idGenerator: (() => string) | undefined;
  readonly #idPrefix: string;
  readonly #stopTimeoutMs: number;
  readonly #stopGraceMs: number;
  // Tasks by slot; freed slots are reused so that the tables stay dense.
  readonly #tasks: (Task | undefined)[] = [];
  readonly #free: number[] = [];
  // Tasks whose id is not generated from their slot.
  readonly #byId = new Map<string, Task>();
  readonly #middlewares: Middleware[] = [];
  readonly #host: TaskHost & RunHost;
  // Task, with this scheduler as `host` on its prototype (saves a field per task).
  readonly #Task: typeof Task;
  // Ended tasks keep their runAt relative to this, so that it stays a small integer.
  readonly #base: number;
  readonly #enqueueHandler: ScheduleHandler;
  #chain: ScheduleHandler | undefined = undefined;
  #seq = 0;
  #started = false;
  #stopped = false;
  #stopPromise: Promise<void> | undefined = undefined;
  #onIdle: (() => void) | undefined = undefined;

  /**
   * @param options - clock, concurrency, aging, wall-clock check, ids and stop timings
   * @throws {@link InvalidInputError} on an invalid option
   */
  constructor(options: SchedulerOptions = {}) {
    this.#clock = options.clock ?? realClock;
    if (options.idGenerator !== undefined && typeof options.idGenerator !== 'function') throw new InvalidInputError('idGenerator must be a function');
    this.#idGenerator = options.idGenerator;
    this.#idPrefix = `${PROCESS_PREFIX}-${(schedulerCount++).toString(36)}-`;
    this.#stopTimeoutMs = validateStopMs(options.stopTimeoutMs ?? 10_000, 'stopTimeoutMs', true);
    this.#stopGraceMs = validateStopMs(options.stopGraceMs ?? 1000, 'stopGraceMs', false);
    this.#queue = new TimerQueue({
      clock: this.#clock,
      wallClockCheckMs: options.wallClockCheckMs ?? 1000,
      onDue: (slot, runAt) => this.#onDue(slot, runAt),
    });
    this.#dispatcher = new Dispatcher({
      clock: this.#clock,
      concurrency: options.concurrency ?? 10,
      agingMs: options.agingMs ?? 10_000,
      start: (slot) => this.#run(slot),
    });
    this.events = new TypedEventEmitter<SchedulerEvents>({
      onListenerError: (error, event) => {
        if (event !== 'listener:error' && this.events.hasListeners('listener:error')) this.events.emit('listener:error', { event, error });
        else warnListenerError(error, event);
      },
    });
    this.#base = Math.trunc(this.#clock.now());
    this.#host = {
      clock: this.#clock,
      base: this.#base,
      idOf: (task) => this.#idOf(task),
      runAtOf: (task) => (task.status === QUEUED ? this.#queue.runAtOf(task.slot) : this.#base + task.runAtRel!),
      cancel: (task, reason) => this.#cancel(task, reason),
      progress: (task, run, report) => this.#progress(task, run, report),
      checkIn: (task, run, message) => this.#checkIn(task, run, message),
    };
    this.#enqueueHandler = (ctx) => this.#enqueue(ctx);
    const BoundTask = class extends Task {};
    Object.defineProperty(BoundTask.prototype, 'host', { value: this.#host });
    this.#Task = BoundTask;
  }

  /** The scheduler's clock. */
  get clock(): Clock {
    return this.#clock;
  }

  /** Tasks scheduled and not yet running (waiting for their time, or due and waiting for a slot). */
  get pending(): number {
    return this.#queue.size + this.#dispatcher.waiting;
  }

  /** Runs in progress. */
  get running(): number {
    return this.#dispatcher.running;
  }

  /**
   * How many task slots the scheduler's tables hold: it grows to the peak number of live (scheduled or running)
   * tasks and never beyond, because the slots of ended and cancelled tasks are reused. For memory checks.
   */
  get capacity(): number {
    return this.#tasks.length;
  }

  /** Whether `start()` was called and `stop()` was not. */
  get started(): boolean {
    return this.#started && !this.#stopped;
  }

  /**
   * Adds middlewares; the first ever registered is the outermost (it sees a request first).
   *
   * @remarks May be called at any time: middlewares added after a `schedule()` apply to later schedules only.
   * @param middlewares - functions that wrap the next handler
   * @returns this scheduler, for chaining
   * @throws {@link InvalidInputError} when one is not a function
   */
  use(...middlewares: Middleware[]): this {
    for (const middleware of middlewares) {
      if (typeof middleware !== 'function') throw new InvalidInputError('a middleware must be a function (next) => handler');
    }
    this.#middlewares.push(...middlewares);
    this.#chain = undefined;
    return this;
  }

  /**
   * Schedules a task: builds the context from the options (at `clock.now()`), runs it through the middleware
   * chain, and queues it.
   *
   * @param input - a SchedulerContext, or plain options
   * @returns the task's handle
   * @throws {@link InvalidInputError} (as a rejection) on an invalid date, priority or option, or no work; nothing is queued
   * @throws {@link SchedulerStoppedError} (as a rejection) once `stop()` was called; nothing is queued
   */
  schedule(input: SchedulerContext | ScheduleOptions): Promise<TaskHandle> {
    try {
      if (this.#stopped) throw new SchedulerStoppedError();
      const ctx = input instanceof SchedulerContext ? input : SchedulerContext.create(input, needsNow(input) ? this.#clock.now() : 0);
      const chain = (this.#chain ??= this.#compose());
      return Promise.resolve(chain(ctx));
    } catch (error) {
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- passes on what a middleware threw, as is
      return Promise.reject(error);
    }
  }

  /**
   * Starts running due tasks (including those scheduled before). Calling it twice does nothing.
   *
   * @throws {@link SchedulerStoppedError} after `stop()`: a stopped scheduler does not start again
   */
  start(): void {
    if (this.#stopped) throw new SchedulerStoppedError('the scheduler was stopped; create a new one');
    if (this.#started) return;
    this.#started = true;
    this.#queue.start();
    this.#dispatcher.resume();
  }

  /**
   * Stops the scheduler: takes no new tasks, starts no new runs (due tasks stay queued), lets running work
   * finish for `timeoutMs`, then aborts each remaining run's signal with a {@link SchedulerStoppedError} and
   * waits at most `stopGraceMs` more for those runs to settle. Clears the timer.
   *
   * @remarks A run that still has not settled after the grace is left behind: its handle stays `running` and
   * settles if the work ever ends. Calling `stop()` again returns the same promise.
   * @param options - `timeoutMs`: how long running work may go on
   * @returns a promise that resolves when every run settled or the grace ran out
   * @throws {@link InvalidInputError} (as a rejection) on an invalid timeoutMs
   */
  stop(options: StopOptions = {}): Promise<void> {
    if (this.#stopPromise !== undefined) return this.#stopPromise;
    let timeoutMs: number;
    try {
      timeoutMs = validateStopMs(options.timeoutMs ?? this.#stopTimeoutMs, 'timeoutMs', true);
    } catch (error) {
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- always an InvalidInputError
      return Promise.reject(error);
    }
    this.#stopped = true;
    this.#queue.stop();
    this.#dispatcher.pause();
    this.#stopPromise = new Promise<void>((resolve) => {
      const timers: { deadline?: ClockTimer; grace?: ClockTimer } = {};
      let aborted = 0;
      const finish = (): void => {
        this.#onIdle = undefined;
        timers.deadline?.clear();
        timers.grace?.clear();
        this.events.emit('scheduler:stopped', { aborted, unfinished: this.#dispatcher.running });
        resolve();
      };
      if (this.#dispatcher.running === 0) {
        finish();
        return;
      }
      this.#onIdle = finish;
      if (timeoutMs === Number.POSITIVE_INFINITY) return;
      timers.deadline = this.#clock.setTimer(() => {
        const reason = new SchedulerStoppedError('the scheduler stopped and the stop deadline passed; the run was aborted');
        for (const task of this.#tasks) {
          const run = task?.status === RUNNING ? task.run : undefined;
          if (run === undefined || run.aborted) continue;
          aborted++;
          run.abort(reason);
        }
        timers.grace = this.#clock.setTimer(finish, this.#stopGraceMs);
      }, timeoutMs);
    });
    return this.#stopPromise;
  }

  /**
   * Finds a task that is scheduled or running.
   *
   * @param taskId - the task's id
   * @returns its handle, or undefined when no such task is scheduled or running here
   */
  get(taskId: string): TaskHandle | undefined {
    const custom = this.#byId.get(taskId);
    if (custom !== undefined) return custom;
    if (typeof taskId !== 'string' || !taskId.startsWith(this.#idPrefix)) return undefined;
    const [seqText, slotText, extra] = taskId.slice(this.#idPrefix.length).split('.');
    if (seqText === undefined || slotText === undefined || extra !== undefined) return undefined;
    const seq = Number.parseInt(seqText, 36);
    const slot = Number.parseInt(slotText, 36);
    // Only the exact spelling #idOf produces names a task ("00" is not "0").
    if (seq.toString(36) !== seqText || slot.toString(36) !== slotText) return undefined;
    const task = this.#tasks[slot];
    if (task === undefined || task.x?.id !== undefined || task.seq !== seq) return undefined;
    return task;
  }

  #compose(): ScheduleHandler {
    let handler = this.#enqueueHandler;
    for (let i = this.#middlewares.length - 1; i >= 0; i--) {
      handler = this.#middlewares[i]!(handler);
      if (typeof handler !== 'function') throw new InvalidInputError('a middleware must return a handler function');
    }
    return handler;
  }

  // The innermost handler of the chain: validates and queues.
  #enqueue(ctx: SchedulerContext): Task {
    if (this.#stopped) throw new SchedulerStoppedError();
    if (!(ctx instanceof SchedulerContext)) throw new InvalidInputError('a middleware passed on something that is not a SchedulerContext');
    const work = ctx.work;
    if (typeof work !== 'function') {
      throw new InvalidInputError('no work to run: pass `work`, or use a middleware that supplies it from `workId`');
    }
    let id = ctx.taskId;
    if (id === undefined && this.#idGenerator !== undefined) {
      id = this.#idGenerator();
      if (typeof id !== 'string' || id === '') throw new InvalidInputError('idGenerator must return a non-empty string');
    }
    if (id !== undefined && this.#byId.has(id)) throw new HoraeError('DUPLICATE_KEY', `a task with id "${id}" is already scheduled or running`);
    const slot = this.#free.length > 0 ? this.#free.pop()! : this.#tasks.length;
    const seq = this.#seq++;
    const task = new this.#Task(slot, seq, ctx.priority, work, contextInternals().values(ctx));
    if (id !== undefined) {
      task.x = new TaskExtras();
      task.x.id = id;
      this.#byId.set(id, task);
    }
    this.#tasks[slot] = task;
    this.#queue.push(slot, ctx.runAtMs, ctx.priority, seq);
    if (this.events.hasListeners('task:scheduled')) {
      this.events.emit('task:scheduled', { taskId: this.#idOf(task), runAt: ctx.runAt, priority: ctx.priority });
    }
    return task;
  }

  #idOf(task: Task): string {
    const x = task.x;
    if (x?.id !== undefined) return x.id;
    return `${this.#idPrefix}${task.seq.toString(36)}.${task.slot.toString(36)}`;
  }

  #onDue(slot: number, runAt: number): void {
    const task = this.#tasks[slot]!;
    task.status = WAITING;
    task.runAtRel = runAt - this.#base;
    this.#dispatcher.submit(slot, task.priority, runAt, task.seq);
  }

  #run(slot: number): void {
    const task = this.#tasks[slot]!;
    task.status = RUNNING;
    const events = this.events;
    // The clock is read only for a listener that wants durationMs (a clock read per run is measurable).
    const timed = events.hasListeners('task:success') || events.hasListeners('task:failure');
    const run = new RunContext(this.#host, task, task.attempt, this.#base + task.runAtRel!, timed ? this.#clock.now() : Number.NaN);
    task.run = run;
    if (events.hasListeners('task:start')) {
      events.emit('task:start', { taskId: this.#idOf(task), attempt: run.attempt, scheduledAt: run.scheduledAt });
    }
    let result: unknown;
    try {
      result = task.work!(run);
    } catch (error) {
      this.#settle(task, run, false, error);
      return;
    }
    if (isThenable(result)) {
      void Promise.resolve(result).then(
        (value) => this.#settle(task, run, true, value),
        (error: unknown) => this.#settle(task, run, false, error),
      );
    } else {
      this.#settle(task, run, true, result);
    }
  }

  // A run ended: decide the task's fate.
  #settle(task: Task, run: RunContext, ok: boolean, value: unknown): void {
    if (task.run !== run) return;
    task.run = undefined;
    if (run.cancelError !== undefined) {
      this.#end(task, CANCELLED, run.cancelError, false);
    } else if (!ok && value instanceof RunDeferred) {
      this.#defer(task, run, value);
    } else if (!ok && value instanceof RunAbandoned) {
      this.#end(task, CANCELLED, value, false);
    } else if (ok) {
      this.#end(task, DONE, value, false, run);
    } else {
      this.#end(task, FAILED, value, false, run);
    }
    this.#dispatcher.release();
    if (this.#onIdle !== undefined && this.#dispatcher.running === 0) this.#onIdle();
  }

  #defer(task: Task, run: RunContext, deferred: RunDeferred): void {
    const slot = task.slot;
    const time = deferred.runAt instanceof Date ? deferred.runAt.getTime() : Number.NaN;
    // A RunDeferred with an invalid date comes from a buggy middleware: retry at once rather than lose the task.
    const runAt = Number.isFinite(time) ? time : Math.trunc(this.#clock.now());
    task.status = QUEUED;
    task.attempt = run.attempt + 1;
    this.#queue.push(slot, runAt, task.priority, task.seq);
    if (this.events.hasListeners('task:deferred')) {
      this.events.emit('task:deferred', { taskId: this.#idOf(task), attempt: run.attempt, runAt: new Date(runAt), reason: deferred });
    }
  }

  // Ends a task: frees its slot, settles its result, emits.
  #end(task: Task, status: number, outcome: unknown, lazyCancel: boolean, run?: RunContext): void {
    const slot = task.slot;
    // Only small integers go into the (usually old-generation) task here; an outcome worth keeping goes to
    // its extras. See the memory rules of Task. (runAtRel was set when the task left the queue.)
    task.status = status;
    task.work = undefined;
    if (outcome !== undefined || task.x !== undefined) {
      const extras = (task.x ??= new TaskExtras());
      extras.outcome = outcome;
      extras.lazyCancel = lazyCancel;
    }
    this.#tasks[slot] = undefined;
    this.#free.push(slot);
    const x = task.x;
    if (x?.id !== undefined && this.#byId.get(x.id) === task) this.#byId.delete(x.id);
    if (x?.resolve !== undefined) {
      if (status === DONE) x.resolve(outcome);
      else x.reject!(task.error());
      x.resolve = undefined;
      x.reject = undefined;
    }
    const events = this.events;
    if (status === DONE) {
      if (events.hasListeners('task:success')) {
        events.emit('task:success', { taskId: this.#idOf(task), attempt: run!.attempt, value: outcome, durationMs: this.#clock.now() - run!.startedAt });
      }
    } else if (status === FAILED) {
      if (events.hasListeners('task:failure')) {
        events.emit('task:failure', { taskId: this.#idOf(task), attempt: run!.attempt, error: outcome, durationMs: this.#clock.now() - run!.startedAt });
      }
    } else if (events.hasListeners('task:cancelled')) {
      events.emit('task:cancelled', { taskId: this.#idOf(task), reason: task.error() });
    }
  }

  #cancel(task: Task, reason: string | undefined): boolean {
    switch (task.status) {
      case QUEUED:
        task.runAtRel = this.#queue.runAtOf(task.slot) - this.#base;
        this.#queue.remove(task.slot);
        this.#end(task, CANCELLED, reason, true);
        return true;
      case WAITING:
        this.#dispatcher.remove(task.slot);
        this.#end(task, CANCELLED, reason, true);
        return true;
      case RUNNING: {
        const run = task.run!;
        if (run.cancelError !== undefined) return false;
        run.cancelError = new TaskCancelledError(reason);
        run.abort(run.cancelError);
        return true;
      }
      default:
        return false;
    }
  }

  #progress(task: Task, run: RunContext, report: ProgressReport): void {
    const progress = validateProgress(report);
    if (task.run !== run) return;
    (task.x ??= new TaskExtras()).progress = progress;
    if (this.events.hasListeners('task:progress')) this.events.emit('task:progress', { taskId: this.#idOf(task), attempt: run.attempt, progress });
  }

  #checkIn(task: Task, run: RunContext, message: string): void {
    if (typeof message !== 'string') throw new InvalidInputError('checkIn takes a string message');
    if (task.run !== run) return;
    if (this.events.hasListeners('task:checkin')) this.events.emit('task:checkin', { taskId: this.#idOf(task), attempt: run.attempt, message });
  }
}
