/**
 * The Scheduler: schedule work at a time, in memory, through a middleware chain.
 */
import { randomBytes } from 'node:crypto';
import { MAX_TIMER_DELAY_MS, realClock, type Clock, type ClockTimer } from './clock.js';
import { SchedulerContext, WorkIdKey, type ProgressReport, type ScheduleOptions, type ValueKey } from './context.js';
import { contextInternals } from './context-access.js';
import { DEFAULT_AGING_MS, Dispatcher, validateConcurrency } from './dispatcher.js';
import { HoraeError, InvalidInputError, RunAbandoned, RunDeferred, SchedulerStoppedError, TaskCancelledError } from './errors.js';
import { EventTriggers, validateEventName, eventTaskOptions, type EventTriggerSpec } from './event-triggers.js';
import { TypedEventEmitter, warnListenerError } from './events.js';
import { GeneratorPool, GeneratorReservationKey, type GeneratorHandle, type GeneratorOptions, type GeneratorSource } from './generators.js';
import type { Middleware, ScheduleHandler, TaskHandle } from './middleware.js';
import { ScheduleCallKey, toScheduleCall, type ScheduleCallOptions } from './schedule-call.js';
import { RunContext, type RunHost } from './run-context.js';
import { CANCELLED, DONE, FAILED, QUEUED, RUNNING, Task, TaskExtras, WAITING, type TaskHost } from './task.js';
import { TimerQueue } from './timer-queue.js';
import { quoteInput } from './quote-input.js';

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
  /**
   * `stop()` was called: no new run starts from now on. Emitted before the scheduler waits for running work, so that
   * a middleware can give back at once what it holds for runs that will not start (storage hands back the tasks it
   * claimed ahead).
   */
  'scheduler:stopping': { timeoutMs: number };
  /** `stop()` finished: `aborted` runs had their signal aborted at the deadline, `unfinished` had still not settled after the grace. */
  'scheduler:stopped': { aborted: number; unfinished: number };
  /** A generator's pull threw or rejected, it produced something that is not schedule options, or `schedule()` refused its item (the scheduler went on). */
  'generator:error': { generator: string; error: unknown };
  /** A generator's round is done (a periodic one starts the next round after its interval). */
  'generator:done': { generator: string; round: number };
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
  /**
   * Limits per work: at most `workConcurrency[workId]` runs of tasks carrying that WorkIdKey (the `workId` option)
   * are in progress at once on this scheduler, within the global `concurrency`. See
   * {@link Scheduler.setWorkConcurrency}. @defaultValue no per-work limit
   */
  workConcurrency?: Readonly<Record<string, number>>;
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
  if (!ok) throw new InvalidInputError(`${what} must be a number of ms in [0, 2^31-1]${allowInfinity ? ' or Infinity' : ''}, got ${quoteInput(value)}`);
  return value;
}

// create() reads `now` only for delayMs or a missing runAt; the clock read is skipped otherwise (hot path).
function needsNow(input: ScheduleOptions): boolean {
  return input === null || typeof input !== 'object' || input.runAt === undefined || input.delayMs !== undefined;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === 'object' || typeof value === 'function') && typeof (value as { then?: unknown }).then === 'function';
}

// The work a task counts against for the per-work limits. Most tasks carry no values at all: skip the lookup.
function workIdOf(values: ReadonlyMap<ValueKey<unknown>, unknown>): string | undefined {
  return values.size === 0 ? undefined : (values.get(WorkIdKey) as string | undefined);
}

// NaN for a run that started before anyone listened for durations (its start time was not read).
function durationOf(clock: Clock, run: RunContext): number {
  return run.startedAt === undefined ? Number.NaN : clock.now() - run.startedAt;
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
  // Freed slots, a stack in a typed array: a plain array that grew past a few hundred thousand entries stalled the
  // event loop for 13–28 ms at each growth (a copy the GC then had to sweep), the largest source of late runs in the
  // 1M-task bench. A typed array's store is outside the JS heap and doubles rarely.
  #free = new Int32Array(1024);
  #freeCount = 0;
  // Tasks whose id is not generated from their slot.
  readonly #byId = new Map<string, Task>();
  readonly #middlewares: Middleware[] = [];
  readonly #host: TaskHost & RunHost;
  // Task, with this scheduler as `host` on its prototype (saves a field per task).
  readonly #Task: typeof Task;
  // Ended tasks keep their runAt relative to this, so that it stays a small integer.
  readonly #base: number;
  readonly #enqueueHandler: ScheduleHandler;
  readonly #triggers = new EventTriggers();
  #generators: GeneratorPool | undefined = undefined;
  #chain: ScheduleHandler | undefined = undefined;
  #seq = 0;
  #started = false;
  #stopped = false;
  #stopPromise: Promise<void> | undefined = undefined;
  #onIdle: (() => void) | undefined = undefined;
  // Runs whose work is executing synchronously now, innermost last (a run may start another: setWorkConcurrency).
  readonly #syncRuns: RunContext[] = [];

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
      agingMs: options.agingMs ?? DEFAULT_AGING_MS,
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
      // Every task and run this host serves is a Task of this scheduler: run-context.ts types them by shape only
      // (RunTask), so that it need not import task.ts.
      idOf: (task) => this.#idOf(task as Task),
      runAtOf: (task) => (task.status === QUEUED ? this.#queue.runAtOf(task.slot) : this.#base + task.runAtRel!),
      cancel: (task, reason) => this.#cancel(task, reason),
      progress: (task, run, report) => this.#progress(task as Task, run, report),
      checkIn: (task, run, message) => this.#checkIn(task as Task, run, message),
    };
    const workConcurrency = options.workConcurrency;
    if (workConcurrency !== undefined) {
      if (workConcurrency === null || typeof workConcurrency !== 'object') throw new InvalidInputError('workConcurrency must be an object of workId → limit');
      for (const [workId, limit] of Object.entries(workConcurrency)) this.#dispatcher.setWorkLimit(workId, limit);
    }
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

  /** The most runs in progress at once (the `concurrency` option); `Infinity` when unbounded. */
  get concurrency(): number {
    return this.#dispatcher.concurrency;
  }

  /** The aging of the ready queue: a due task waiting for a slot gains one priority point per `agingMs`. */
  get agingMs(): number {
    return this.#dispatcher.agingMs;
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
   * @param call - bounds on the call's wait: a `signal` and a `timeoutMs` (see {@link ScheduleCallOptions}); the
   * middlewares read them from {@link ScheduleCallKey}
   * @returns the task's handle
   * @throws {@link InvalidInputError} (as a rejection) on an invalid date, priority or option, or no work; nothing is queued
   * @throws {@link SchedulerStoppedError} (as a rejection) once `stop()` was called; nothing is queued
   * @throws {@link ScheduleAbortedError} (as a rejection) when `call.signal` is aborted already (nothing is queued),
   * or aborts while a middleware waits; {@link ScheduleTimeoutError} when `call.timeoutMs` passes while one waits
   */
  schedule(input: SchedulerContext | ScheduleOptions, call?: ScheduleCallOptions): Promise<TaskHandle> {
    try {
      if (this.#stopped) throw new SchedulerStoppedError();
      let ctx = input instanceof SchedulerContext ? input : SchedulerContext.create(input, needsNow(input) ? this.#clock.now() : 0);
      if (call !== undefined) {
        const bounds = toScheduleCall(call, () => this.#clock.now());
        if (bounds !== undefined) ctx = ctx.withValue(ScheduleCallKey, bounds);
      }
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
    this.#generators?.wake();
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
    this.#generators?.stop();
    this.events.emit('scheduler:stopping', { timeoutMs });
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
          const run = task?.status === RUNNING ? this.#runOf(task) : undefined;
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

  /**
   * Sets the limit of runs of one work in progress at once on this scheduler (Harbor's per-job concurrency, DMS
   * maxRunningTasks), within the global `concurrency`. The limit applies to tasks whose context carries
   * {@link WorkIdKey} (the `workId` schedule option; every task with storage).
   *
   * Rules:
   * - At most `limit` runs of the work are in progress; its due tasks beyond that wait.
   * - A task whose work is at its limit does not hold up other works' tasks: free slots go to the best runnable
   *   task (priority and aging order among what may run).
   * - Raising or removing a limit starts waiting tasks of the work at once when slots are free; lowering it
   *   aborts no run in progress.
   *
   * @remarks The limit is per scheduler (per node); a limit across nodes through the repository is not part of
   * the core.
   * @param workId - the work
   * @param limit - an integer ≥ 1; `Infinity` or `undefined` removes the limit
   * @returns this scheduler, for chaining
   * @throws {@link InvalidInputError} when `workId` is not a non-empty string or `limit` is not an integer ≥ 1, Infinity or undefined
   *
   * @example
   * ```ts
   * scheduler.setWorkConcurrency('send-email', 2); // never more than 2 emails at once, whatever the backlog
   * ```
   */
  setWorkConcurrency(workId: string, limit: number | undefined): this {
    if (limit !== undefined) validateConcurrency(limit);
    this.#dispatcher.setWorkLimit(workId, limit);
    return this;
  }

  /**
   * @param workId - the work
   * @returns its limit of runs at once on this scheduler; `Infinity` when it has none
   */
  workConcurrency(workId: string): number {
    return this.#dispatcher.workLimit(workId);
  }

  /**
   * @param workId - the work
   * @returns how many runs of that work are in progress on this scheduler
   */
  runningOf(workId: string): number {
    return this.#dispatcher.runningOf(workId);
  }

  /**
   * Registers what an event starts (DMS event trigger): each later `emit(eventName, payload)` schedules one task
   * from `spec`, with `param` mapped from the payload when it is a function.
   *
   * @remarks Registrations live in this scheduler (this node): register them at every start, on every node that
   * may receive the event, like works in a WorkRegistry.
   * @param eventName - the event
   * @param spec - the options of the task to schedule (`work` or `workId`, `param` or a payload → param
   * function, priority, delayMs, …)
   * @returns a function that removes this registration (calling it twice does nothing)
   * @throws {@link InvalidInputError} on an empty name, or a spec without `work`/`workId` or with an invalid option
   *
   * @example
   * ```ts
   * scheduler.onEvent<{ userId: string }>('user.signed-up', {
   *   workId: 'send-welcome-email',
   *   param: (payload) => ({ userId: payload.userId }),
   *   delayMs: 60_000,
   * });
   * await scheduler.emit('user.signed-up', { userId: 'u1' });
   * ```
   */
  onEvent<P = unknown>(eventName: string, spec: EventTriggerSpec<P>): () => void {
    return this.#triggers.add(eventName, spec);
  }

  /**
   * Emits an event: schedules one task per registration of `eventName`, in registration order, each THROUGH THE
   * WHOLE MIDDLEWARE CHAIN (`schedule()`), so that with a storage middleware the tasks are durable like any other,
   * on whichever node receives the emit.
   *
   * Rules:
   * - An event with no registration schedules nothing and resolves with `[]` (it is not an error: events may be
   *   emitted before anyone listens).
   * - Every param mapper runs first; when one throws, the emit rejects with an {@link InvalidInputError} (the
   *   mapper's error as `cause`) and nothing is scheduled.
   * - The schedules are independent, like separate `schedule()` calls: when one is refused, the emit rejects with
   *   the first refusal once all settled, and the others stay scheduled.
   *
   * @param eventName - the event
   * @param payload - what the param mappers receive
   * @returns the handles of the tasks, in registration order
   * @throws {@link SchedulerStoppedError} (as a rejection) once `stop()` was called, even for an unknown event
   * @throws {@link InvalidInputError} (as a rejection) on an empty event name or a param mapper that throws
   */
  emit(eventName: string, payload?: unknown): Promise<TaskHandle[]> {
    let all: ScheduleOptions[];
    try {
      if (this.#stopped) throw new SchedulerStoppedError();
      validateEventName(eventName);
      all = this.#triggers.specs(eventName).map((spec) => eventTaskOptions(spec, payload, eventName));
    } catch (error) {
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- always a HoraeError
      return Promise.reject(error);
    }
    if (all.length === 0) return Promise.resolve([]);
    return Promise.allSettled(all.map((options) => this.schedule(options))).then((results) => {
      const handles: TaskHandle[] = [];
      for (const result of results) {
        if (result.status === 'rejected') throw result.reason;
        handles.push(result.value);
      }
      return handles;
    });
  }

  /**
   * Adds a generator (zot): a source of tasks that the scheduler pulls from one item at a time, ONLY when it has
   * a free slot, and schedules each item (through the whole chain) at the generator's priority.
   *
   * Rules:
   * - A pull happens only while `running + reserved < concurrency`, where each pulled item is reserved from its
   *   pull until its run starts; so at most `concurrency` items are pulled and not finished, and a generator of
   *   a million tasks holds memory for about one per slot. Pulls resume when a run ends.
   * - A TaskGenerator's `isDone()` ends the round; `isReady()` false skips it until the next check: each slot
   *   release, and a timer (`readyCheckMs`). An iterator's round ends when it is done.
   * - A periodic generator (`intervalMs`) is reset (`reset()`, or a fresh iterator of the iterable) `intervalMs`
   *   after each round is done, and pulled again.
   * - What a pull throws, and an item `schedule()` refuses, is reported as `generator:error`; the scheduler and
   *   the other generators go on. `generator:done` reports each round's end.
   * - Among generators, the one with the highest `priority + msSinceLastPull / agingMs` is pulled first; a ready
   *   generator of `precedence: 'first'` (the storage backlog) before all of them, and the `heldSlots` it declares
   *   are kept from the others.
   *
   * @remarks Nothing is pulled before `start()` nor after `stop()`. An item with a future `runAt` / `delayMs` keeps
   * its reservation until it runs, so generators are for work to run now. With `concurrency: Infinity` there is no
   * free-slot bound: the scheduler pulls as fast as the generator gives (1000 items per event-loop turn).
   * @param generator - an async iterator or (async) iterable of schedule options, or a {@link TaskGenerator}
   * @param options - priority, intervalMs, readyCheckMs, name, precedence, heldSlots
   * @returns a handle to remove the generator
   * @throws {@link InvalidInputError} on an invalid source or option (a periodic generator needs a source that can start over)
   * @throws {@link SchedulerStoppedError} once `stop()` was called
   *
   * @example
   * ```ts
   * async function* everyUser() {
   *   for await (const user of db.users()) yield { workId: 'reindex-user', param: { id: user.id } };
   * }
   * const handle = scheduler.addGenerator({ [Symbol.asyncIterator]: everyUser }, { priority: 'low', intervalMs: 3_600_000 });
   * ```
   */
  addGenerator(generator: GeneratorSource, options: GeneratorOptions = {}): GeneratorHandle {
    if (this.#stopped) throw new SchedulerStoppedError();
    const pool = (this.#generators ??= new GeneratorPool({
      clock: this.#clock,
      agingMs: this.#dispatcher.agingMs,
      freeSlots: () => (this.#started && !this.#stopped ? this.#dispatcher.concurrency - this.#dispatcher.running : 0),
      schedule: (item) => this.schedule(item),
      reportError: (name, error) => this.events.emit('generator:error', { generator: name, error }),
      reportDone: (name, round) => this.events.emit('generator:done', { generator: name, round }),
    }));
    return pool.add(generator, options);
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
    const slot = this.#freeCount > 0 ? this.#free[--this.#freeCount]! : this.#tasks.length;
    const seq = this.#seq++;
    const values = contextInternals().values(ctx);
    const task = new this.#Task(slot, seq, ctx.priority, work, values);
    if (id !== undefined) {
      task.x = new TaskExtras();
      task.x.id = id;
      this.#byId.set(id, task);
    }
    if (values.size !== 0) {
      const reservation = values.get(GeneratorReservationKey);
      if (reservation !== undefined) (task.x ??= new TaskExtras()).reservation = reservation as { release(): void };
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
    this.#dispatcher.submit(slot, task.priority, runAt, task.seq, workIdOf(task.values));
  }

  #run(slot: number): void {
    const task = this.#tasks[slot]!;
    task.status = RUNNING;
    const events = this.events;
    // The clock is read only for a listener that wants durationMs (a clock read per run is measurable).
    const timed = events.hasListeners('task:success') || events.hasListeners('task:failure');
    const run = new RunContext(task, task.attempt, task.runAtRel!, timed ? this.#clock.now() : undefined);
    // While the work executes synchronously, the run is found through #syncRuns, not task.run: the task is
    // usually in the old generation and the run is young, so storing it there would cost a remembered-set entry
    // that the next scavenge must visit (a random old object per run): that, not the allocation, is what makes
    // scavenges long at high run rates. Only a work that returns a promise gets its run stored in the task.
    const syncRuns = this.#syncRuns;
    syncRuns.push(run);
    let result: unknown;
    let ok = true;
    try {
      const x = task.x;
      if (x?.reservation !== undefined) {
        x.reservation.release();
        x.reservation = undefined;
      }
      if (events.hasListeners('task:start')) {
        events.emit('task:start', { taskId: this.#idOf(task), attempt: run.attempt, scheduledAt: run.scheduledAt });
      }
      result = task.work!(run);
    } catch (error) {
      ok = false;
      result = error;
    } finally {
      syncRuns.pop();
    }
    if (ok && isThenable(result)) {
      task.run = run;
      void Promise.resolve(result).then(
        (value) => this.#settleAsync(task, run, true, value),
        (error: unknown) => this.#settleAsync(task, run, false, error),
      );
    } else {
      // No promise: settle at once (no promise allocated, no microtask turn per run).
      this.#settle(task, run, ok, result);
    }
  }

  // The run in progress of a RUNNING task: stored in the task while its work awaits, else on #syncRuns.
  #runOf(task: Task): RunContext | undefined {
    const run = task.run;
    if (run !== undefined) return run;
    const syncRuns = this.#syncRuns;
    for (let i = syncRuns.length - 1; i >= 0; i--) {
      if (syncRuns[i]!.task === task) return syncRuns[i];
    }
    return undefined;
  }

  // An awaited run ended (once per run: task.run guards against a second settlement).
  #settleAsync(task: Task, run: RunContext, ok: boolean, value: unknown): void {
    if (task.run !== run) return;
    task.run = undefined;
    this.#settle(task, run, ok, value);
  }

  // A run ended: decide the task's fate. The run is no longer reachable from the task (see #run).
  #settle(task: Task, run: RunContext, ok: boolean, value: unknown): void {
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
    this.#dispatcher.release(workIdOf(task.values));
    this.#generators?.slotReleased();
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
    if (this.#freeCount === this.#free.length) {
      const grown = new Int32Array(this.#free.length * 2);
      grown.set(this.#free);
      this.#free = grown;
    }
    this.#free[this.#freeCount++] = slot;
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
        events.emit('task:success', { taskId: this.#idOf(task), attempt: run!.attempt, value: outcome, durationMs: durationOf(this.#clock, run!) });
      }
    } else if (status === FAILED) {
      if (events.hasListeners('task:failure')) {
        events.emit('task:failure', { taskId: this.#idOf(task), attempt: run!.attempt, error: outcome, durationMs: durationOf(this.#clock, run!) });
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
        const run = this.#runOf(task)!;
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
    if (this.#runOf(task) !== run) return;
    (task.x ??= new TaskExtras()).progress = progress;
    if (this.events.hasListeners('task:progress')) this.events.emit('task:progress', { taskId: this.#idOf(task), attempt: run.attempt, progress });
  }

  #checkIn(task: Task, run: RunContext, message: string): void {
    if (typeof message !== 'string') throw new InvalidInputError('checkIn takes a string message');
    if (this.#runOf(task) !== run) return;
    if (this.events.hasListeners('task:checkin')) this.events.emit('task:checkin', { taskId: this.#idOf(task), attempt: run.attempt, message });
  }
}
