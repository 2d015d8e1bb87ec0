/**
 * `createHorae()`: the one object an application builds. It wires the core scheduler, the storage middleware
 * (single- or multi-node), recurring schedules and their materializer loop, and status hooks.
 */
import { randomUUID } from 'node:crypto';
import {
  HoraeError,
  InvalidInputError,
  Scheduler,
  TypedEventEmitter,
  realClock,
  stallTimeout,
  toScheduleCall,
  type EventTriggerSpec,
  type Clock,
  type Middleware,
  type ScheduleCallOptions,
  type TaskHandle,
} from '@horae/core';
import type { StorageEvents } from './node/events.js';
import type { Repository } from './contract/repository.js';
import { ScheduleLoop, type ScheduleLoopRecovery } from './schedules/schedule-loop.js';
import { ScheduleMaterializer } from './schedules/schedule-materializer.js';
import { isScheduleStore, type Schedule } from './schedules/schedule-store.js';
import { Schedules } from './schedules/schedules.js';
import { DurableStatusHooks, type DurableStatusHookOptions } from './hooks/durable-status-hooks.js';
import { isHookOutboxProvider } from './hooks/hook-outbox.js';
import { StatusHookBridge, type StatusHookTarget } from './hooks/status-hook-bridge.js';
import { statusHooks, type StatusHookOptions, type StatusHookSender } from './hooks/status-hooks.js';
import { multiNodeStorage, singleNodeStorage, type StorageMiddleware, type StorageOptions } from './node/storage-middleware.js';
import type { TaskAttempt, TaskInfo } from './contract/task-info.js';
import type { WorkRegistry } from './works/work-registry.js';
import { DEFAULT_MAX_PARAM_BYTES, assertParamSize } from './contract/validation.js';
import {
  DEFAULT_HORAE_HOOK_GRACE_MS,
  DEFAULT_HORAE_LEASE_MS,
  DEFAULT_HORAE_SCHEDULE_TICK_MS,
  type HoraeEvents,
  type HoraeMode,
  type HoraeOptions,
  type HoraeStatusHook,
  type HoraeStopOptions,
  type OneTimeScheduleOptions,
  type RecurringScheduleOptions,
} from './horae-options.js';

/**
 * Horae, wired: a scheduler whose tasks are durable, recurring schedules materialized on a loop, and status
 * hooks. Build it with {@link createHorae}.
 *
 * Rules:
 * - Nothing runs before `start()`; after `stop()` resolved nothing runs and no loop is armed.
 * - `schedule()` is the one API for every job kind: run now, at, after (a task, `TaskInfo.kind` `immediate` or
 *   `scheduled`), or periodically (`every` / `cron` with a `name`: a persisted schedule whose occurrences are
 *   tasks of kind `periodic`).
 * - Each occurrence of a schedule runs once across every node sharing the repository.
 * - Status hooks are called after the transition they report was written; a failing hook never changes a task.
 */
export class Horae {
  /** The core scheduler (its `events` are the in-memory run events). */
  readonly scheduler: Scheduler;
  /** The storage middleware behind the scheduler. */
  readonly storage: StorageMiddleware;
  /** The storage events: task lifecycle, repository outages, sync passes. */
  readonly events: TypedEventEmitter<StorageEvents>;
  /** The facade's own events: the schedule loop and hooks that threw. */
  readonly horaeEvents: TypedEventEmitter<HoraeEvents>;
  /** The repository. */
  readonly repository: Repository;
  /** The work registry. */
  readonly registry: WorkRegistry;
  /** Whether this is one node of many. */
  readonly mode: HoraeMode;
  /**
   * The in-memory status hook senders built from URL options, when the repository has no hook outbox (for their
   * `hook:*` events and `flush()`); empty when {@link Horae.durableHooks} delivers them.
   */
  readonly hookSenders: readonly StatusHookSender[];
  /**
   * The durable status hooks built from URL options when the repository has a hook outbox (MemoryRepository,
   * SqliteRepository, PostgresRepository, MongoRepository): their `hook:*` events, and the outbox where operators list
   * pending deliveries and dead letters and redrive them. Undefined without URL hooks or without an outbox.
   */
  readonly durableHooks: DurableStatusHooks | undefined;
  readonly #schedules: Schedules | undefined;
  readonly #loop: ScheduleLoop | undefined;
  readonly #bridge: StatusHookBridge;
  readonly #repository: Repository;
  readonly #closeRepository: boolean;
  #state: 'new' | 'starting' | 'started' | 'stopping' | 'stopped' = 'new';
  #startPromise: Promise<void> | undefined = undefined;
  #stopPromise: Promise<void> | undefined = undefined;

  /**
   * Prefer {@link createHorae}.
   *
   * @param options - see {@link HoraeOptions}
   * @throws InvalidInputError on a missing repository or registry, or an invalid option
   */
  constructor(options: HoraeOptions) {
    if (options === null || typeof options !== 'object') throw new InvalidInputError('createHorae takes an options object { repository, registry, ... }');
    const { repository, registry, mode: givenMode, middlewares = [], statusHooks: hookOption, schedulerOptions = {}, concurrency, workConcurrency, clock: givenClock } = options;
    if (repository === null || typeof repository !== 'object') throw new InvalidInputError('createHorae needs a repository');
    if (registry === null || typeof registry !== 'object' || typeof registry.middleware !== 'function') {
      throw new InvalidInputError('createHorae needs a WorkRegistry');
    }
    if (givenMode !== undefined && givenMode !== 'single-node' && givenMode !== 'multi-node') {
      throw new InvalidInputError(`mode must be 'single-node' or 'multi-node', got ${String(givenMode)}`);
    }
    if (!Array.isArray(middlewares)) throw new InvalidInputError('middlewares must be an array of middlewares');
    this.#repository = repository;
    this.#closeRepository = options.closeRepositoryOnStop === true;
    const userMiddlewares: readonly Middleware[] = options.middlewares ?? [];
    this.repository = repository;
    this.registry = registry;
    this.mode = givenMode ?? (options.nodeId !== undefined ? 'multi-node' : 'single-node');
    const clock = givenClock ?? realClock;
    this.horaeEvents = new TypedEventEmitter<HoraeEvents>();

    const storageOptions = pickStorageOptions(options);
    this.storage =
      this.mode === 'multi-node'
        ? multiNodeStorage(repository, registry, {
            ...storageOptions,
            nodeId: options.nodeId ?? randomUUID(),
            leaseMs: options.leaseMs ?? DEFAULT_HORAE_LEASE_MS,
          })
        : singleNodeStorage(repository, registry, storageOptions);
    this.events = this.storage.events;

    this.scheduler = new Scheduler({
      ...schedulerOptions,
      clock,
      ...(concurrency === undefined ? {} : { concurrency }),
      ...(workConcurrency === undefined ? {} : { workConcurrency }),
    });
    // registry.middleware() first, so that the user's middlewares see the work of a task scheduled by workId. The
    // stall watch comes right before storage: its wrapper runs inside storage's, so storage records the
    // StalledError and retries it by its policy, and the progress it watches is the progress storage persists.
    this.scheduler.use(registry.middleware(), ...userMiddlewares, stallTimeout(options.stallTimeoutMs), this.storage.middleware);

    const { targets, senders, durable } = toHookTargets(hookOption, clock, repository);
    this.hookSenders = senders;
    this.durableHooks = durable;
    this.#bridge = new StatusHookBridge(this.storage.events, targets, {
      onHookError: (error, change) => this.#emitOwn('hook:error', { error, change }),
    });

    if (isScheduleStore(repository)) {
      this.#schedules = new Schedules({ repository, registry });
      const tickMs = options.scheduleTickMs ?? (options.syncIntervalMs !== undefined && options.syncIntervalMs >= 1 ? options.syncIntervalMs : DEFAULT_HORAE_SCHEDULE_TICK_MS);
      if (!Number.isSafeInteger(tickMs) || tickMs < 0) throw new InvalidInputError(`scheduleTickMs must be an integer ≥ 0, got ${String(tickMs)}`);
      if (tickMs > 0) {
        const materializer = new ScheduleMaterializer({
          repository,
          clock,
          ...(options.scheduleLookaheadMs === undefined ? {} : { lookaheadMs: options.scheduleLookaheadMs }),
          ...(options.scheduleGraceMs === undefined ? {} : { graceMs: options.scheduleGraceMs }),
        });
        this.#loop = new ScheduleLoop({
          materializer,
          clock,
          intervalMs: tickMs,
          onCreated: (tasks) => {
            for (const task of tasks) this.#bridge.created(task);
          },
          sync: () => this.storage.sync(),
          onTick: (result) => this.#emitOwn('schedules:ticked', result),
          onError: (error, scheduleName) => this.#emitOwn('schedules:error', { error, scheduleName }),
          onRecovered: (report) => this.#emitOwn('schedules:recovered', report),
        });
      }
    }
  }

  /** This node's id (the lease owner it writes). */
  get nodeId(): string {
    return this.storage.nodeId;
  }

  /** Whether `start()` finished and `stop()` was not called. */
  get started(): boolean {
    return this.#state === 'started';
  }

  /**
   * The recurring schedules of the repository: upsert, pause, resume, remove, runSoon, get, list.
   *
   * @throws HoraeError `INVALID_STATE` when the repository does not persist schedules (it does not implement
   * ScheduleStore; MemoryRepository, SqliteRepository and PostgresRepository do)
   */
  get schedules(): Schedules {
    if (this.#schedules === undefined) {
      throw new HoraeError('INVALID_STATE', 'this repository does not persist recurring schedules (it does not implement ScheduleStore); use one that does, such as SqliteRepository or PostgresRepository');
    }
    return this.#schedules;
  }

  /**
   * Starts Horae: restores the stored tasks into the scheduler and starts the storage's sync loop, starts the
   * scheduler, materializes the schedules due now (and syncs what that created), then ticks the schedule loop
   * every `scheduleTickMs`. Calling it again while it runs, or after it resolved, returns the same promise.
   *
   * While the database is down: the first read of the restore (the change cursor) is tried once. When it fails,
   * `start()` rejects with that error at once, and neither the storage nor the scheduler was started (no task held,
   * no sync or schedule loop armed): call `start()` again later (with your own backoff), or let the process exit for
   * its supervisor to restart it. An outage that begins after that first read is retried until the reads land, like every repository
   * call (reported as `repository:error`); `start()` resolves once they did. The schedule loop's first tick never
   * fails `start()`: its errors go to `schedules:error`.
   *
   * @returns a promise that resolves once the first tick of the schedule loop finished
   * @throws HoraeError `INVALID_STATE` (as a rejection) after `stop()`
   * @throws RepositoryError (as a rejection) when the repository cannot be reached at the start; `start()` may be
   * called again
   */
  start(): Promise<void> {
    if (this.#state === 'stopping' || this.#state === 'stopped') {
      return Promise.reject(new HoraeError('INVALID_STATE', 'this Horae was stopped; create a new one to start again'));
    }
    this.#startPromise ??= this.#start();
    return this.#startPromise;
  }

  async #start(): Promise<void> {
    this.#state = 'starting';
    try {
      // Before any change of this node: from here on the database writes the hooks' rows with each change.
      await this.durableHooks?.subscribe();
      this.#bridge.start();
      this.durableHooks?.start();
      await this.storage.start(this.scheduler);
    } catch (error) {
      // Nothing was started: a later start() tries again, unless stop() was called meanwhile.
      if (this.#state === 'starting') {
        this.#state = 'new';
        this.#startPromise = undefined;
        this.#bridge.stop();
      }
      throw error;
    }
    // stop() may have been called while the restore ran: then it owns the shutdown.
    if (this.#state !== 'starting') return;
    this.scheduler.start();
    await this.#loop?.start();
    if (this.#state === 'starting') this.#state = 'started';
  }

  /**
   * Stops Horae: the schedule loop, then the scheduler (running work may finish within `timeoutMs`, then its
   * signal aborts and the run goes back to Initialized), then the storage (its loops, and the writes under way),
   * then the status hooks (they deliver what they hold within `hookGraceMs`). Calling it again returns the same
   * promise.
   *
   * @param options - the deadlines
   * @returns a promise that resolves when everything stopped
   * @throws InvalidInputError (as a rejection) on an invalid `timeoutMs` or `hookGraceMs`
   */
  stop(options: HoraeStopOptions = {}): Promise<void> {
    if (this.#stopPromise !== undefined) return this.#stopPromise;
    const graceMs = options.hookGraceMs ?? DEFAULT_HORAE_HOOK_GRACE_MS;
    if (typeof graceMs !== 'number' || !(graceMs >= 0)) return Promise.reject(new InvalidInputError(`hookGraceMs must be a number ≥ 0, got ${String(graceMs)}`));
    this.#stopPromise = this.#stop(options.timeoutMs, graceMs);
    return this.#stopPromise;
  }

  async #stop(timeoutMs: number | undefined, graceMs: number): Promise<void> {
    const wasStarting = this.#state === 'starting' ? this.#startPromise : undefined;
    this.#state = 'stopping';
    // A start under way finishes its restore first: storage.stop() must come after storage.start().
    await wasStarting?.catch(() => undefined);
    await this.#loop?.stop();
    await this.scheduler.stop(timeoutMs === undefined ? {} : { timeoutMs });
    await this.storage.stop();
    this.#bridge.stop();
    await Promise.all([...this.hookSenders.map((sender) => sender.close({ graceMs })), this.durableHooks?.stop(graceMs)]);
    if (this.#closeRepository) await this.#repository.close();
    this.#state = 'stopped';
  }

  /**
   * Schedules work, durably. One API for every kind of job:
   * - run now: `{ workId, param }`: a task of kind `immediate`;
   * - run at: `{ workId, runAt }`, or after: `{ workId, delayMs }`: a task of kind `scheduled` (`immediate` when
   *   the time is not in the future);
   * - periodically: `{ name, workId, every: ms }` or `{ name, workId, cron, timezone? }`: a persisted schedule
   *   (upserted: the same name again updates it), whose occurrences are tasks of kind `periodic`.
   *
   * While the database is down, a one-time task's insert is retried until it lands, and the call waits; at most
   * `maxPendingSchedules` inserts are under way at once (with `maxPendingScheduleBytes` of params waiting), and a call
   * past that bound is refused at once with a BackpressureError (while the database is up it waits its turn). `call` bounds one call's wait (see ScheduleCallOptions). A recurring
   * schedule is written once, without retries: during an outage its call rejects with the RepositoryError.
   *
   * @param options - what to run, and when
   * @param call - bounds on this call's wait: `{ signal, timeoutMs }`
   * @returns the task's handle, or, for a recurring schedule, the stored schedule
   * @throws InvalidInputError (as a rejection) on bad input (an unknown workId, an invalid param or date, a
   * malformed cron expression, a recurring schedule without a name, a key over its limit, a param whose JSON takes
   * more than the repository's `maxParamBytes`, 1 MiB by default: checked first, as given); nothing is written
   * @throws HoraeError `INVALID_STATE` for a recurring schedule when the repository does not persist schedules
   * @throws BackpressureError (as a rejection) when the database is down and the bound of waiting calls is reached;
   * nothing is written
   * @throws ScheduleAbortedError / ScheduleTimeoutError (as a rejection) when `call.signal` aborts or `call.timeoutMs`
   * passes before the task was written; `mayHaveBeenWritten` says whether a try failed without an answer (then the
   * task's id is cancelled, durably, in case that try landed)
   *
   * @example
   * ```ts
   * await horae.schedule({ workId: 'email', param: { to: 'ada@example.com' } });           // now
   * await horae.schedule({ workId: 'email', param, runAt: new Date('2027-01-01T09:00Z') }); // at
   * await horae.schedule({ workId: 'email', param, delayMs: 60_000 });                     // after
   * await horae.schedule({ name: 'digest', workId: 'email', cron: '0 9 * * MON', timezone: 'Europe/Paris' });
   * await horae.schedule({ workId: 'email', param }, { timeoutMs: 2_000 }); // give up after 2 s of an outage
   * ```
   */
  schedule(options: RecurringScheduleOptions, call?: ScheduleCallOptions): Promise<Schedule>;
  schedule(options: OneTimeScheduleOptions, call?: ScheduleCallOptions): Promise<TaskHandle>;
  schedule(options: RecurringScheduleOptions | OneTimeScheduleOptions, call?: ScheduleCallOptions): Promise<Schedule | TaskHandle> {
    if (options === null || typeof options !== 'object') return Promise.reject(new InvalidInputError('schedule() takes an options object'));
    try {
      // First, before the work's validator or a serialization reads it: an oversized param costs a walk over the
      // bound, not over all of it.
      assertParamSize(options.param, this.repository.maxParamBytes ?? DEFAULT_MAX_PARAM_BYTES);
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new InvalidInputError(String(error)));
    }
    if (options.every !== undefined || options.cron !== undefined) {
      // The same checks as a one-time call (a signal aborted already, an invalid timeout); the upsert is one write.
      return Promise.resolve()
        .then(() => toScheduleCall(call, () => this.scheduler.clock.now()))
        .then(() => this.#scheduleRecurring(options));
    }
    if ((options as { name?: unknown }).name !== undefined) {
      return Promise.reject(new InvalidInputError('`name` names a recurring schedule: give `every` or `cron` with it (a one-time task has no name)'));
    }
    return this.scheduler.schedule(options, call);
  }

  async #scheduleRecurring(options: RecurringScheduleOptions): Promise<Schedule> {
    if (options.every !== undefined && options.cron !== undefined) throw new InvalidInputError('give either `every` or `cron`, not both');
    if (typeof options.name !== 'string' || options.name === '') {
      throw new InvalidInputError('a recurring schedule needs a `name`: it identifies the schedule across restarts and nodes');
    }
    const oneTime = options as { runAt?: unknown; delayMs?: unknown; taskId?: unknown; uniqueKey?: unknown; work?: unknown };
    for (const key of ['runAt', 'delayMs', 'taskId', 'uniqueKey', 'work'] as const) {
      if (oneTime[key] !== undefined) throw new InvalidInputError(`\`${key}\` does not apply to a recurring schedule (every / cron)`);
    }
    const schedules = this.schedules;
    const common = {
      name: options.name,
      workId: options.workId,
      ...(options.param === undefined ? {} : { param: options.param }),
      ...(options.priority === undefined ? {} : { priority: options.priority }),
      ...(options.maxAttempts === undefined ? {} : { maxAttempts: options.maxAttempts }),
      ...(options.catchUp === undefined ? {} : { catchUp: options.catchUp }),
      ...(options.maxCatchUp === undefined ? {} : { maxCatchUp: options.maxCatchUp }),
      ...(options.overlap === undefined ? {} : { overlap: options.overlap }),
    };
    const result =
      options.cron !== undefined
        ? await schedules.upsert({ ...common, cron: options.cron, ...(options.timezone === undefined ? {} : { timezone: options.timezone }) })
        : await schedules.upsert({ ...common, everyMs: options.every, ...(options.anchor === undefined ? {} : { anchor: options.anchor }) });
    return result.schedule;
  }

  /**
   * Cancels a task from any node: a scheduled task never starts; a running one has its signal aborted on
   * whichever node runs it (here at once, elsewhere within that node's sync interval), and ends Cancelled.
   *
   * @param taskId - the task's id
   * @param reason - recorded with the cancel
   * @returns true when this call cancelled it, false when it had already ended
   * @throws TaskNotFoundError (as a rejection) when no task has the id
   */
  cancel(taskId: string, reason?: string): Promise<boolean> {
    return this.storage.cancel(taskId, reason);
  }

  /**
   * Reads a task as stored.
   *
   * @param taskId - the task's id
   * @returns its TaskInfo (state, kind, progress, lastError, ...)
   * @throws TaskNotFoundError (as a rejection) when no task has the id
   */
  getTask(taskId: string): Promise<TaskInfo> {
    return this.repository.getById(taskId);
  }

  /**
   * Lists a task's runs (execution history), oldest first.
   *
   * @param taskId - the task's id
   * @returns one record per run; `[]` for a task that never ran
   * @throws TaskNotFoundError (as a rejection) when no task has the id
   */
  listAttempts(taskId: string): Promise<TaskAttempt[]> {
    return this.repository.listAttempts(taskId);
  }

  /**
   * Registers what an event starts (an event trigger): each later `emit(eventName, payload)` on this node
   * schedules one durable task from `spec`. Registrations live in memory: make them at every start, on every node
   * that may receive the event.
   *
   * @param eventName - the event
   * @param spec - the options of the task to schedule (`workId`, `param` or a payload → param function, `delayMs`, `uniqueKey`, …)
   * @returns a function that removes this registration
   * @throws InvalidInputError on an empty name, or a spec without a work or with an invalid option
   *
   * @example
   * ```ts
   * horae.onEvent<{ userId: string }>('user.signed-up', { workId: 'welcome-email', param: (p) => ({ userId: p.userId }), delayMs: 60_000 });
   * await horae.emit('user.signed-up', { userId: 'u1' }); // a durable task, run once by whichever node claims it
   * ```
   */
  onEvent<P = unknown>(eventName: string, spec: EventTriggerSpec<P>): () => void {
    return this.scheduler.onEvent(eventName, spec);
  }

  /**
   * Emits an event: schedules one task per registration of `eventName` on this node, through the whole chain, so
   * each is written to the repository (durable, and run once across nodes) like any other task.
   *
   * @param eventName - the event
   * @param payload - what the registrations' param mappers receive
   * @returns the handles of the tasks, in registration order (`[]` when nothing is registered on the event)
   * @throws InvalidInputError (as a rejection) on an empty name, a param mapper that throws, or a refused task
   * @throws SchedulerStoppedError (as a rejection) after `stop()`
   */
  emit(eventName: string, payload?: unknown): Promise<TaskHandle[]> {
    return this.scheduler.emit(eventName, payload);
  }

  /**
   * Runs the schedule loop's tick now (materializes what is due and syncs what it created) instead of waiting
   * for the next period.
   *
   * @returns a promise that resolves when the tick finished; it never rejects (errors go to `schedules:error`)
   */
  tickSchedules(): Promise<void> {
    return this.#loop?.tickNow() ?? Promise.resolve();
  }

  #emitOwn<K extends keyof HoraeEvents>(name: K, payload: HoraeEvents[K]): void {
    if (name === 'schedules:recovered' && !this.horaeEvents.hasListeners(name)) {
      // The outage was said in the process warnings (nobody listened to it): so is its end.
      if (this.horaeEvents.hasListeners('schedules:error')) return;
      const { failedTicks, downMs } = payload as ScheduleLoopRecovery;
      process.emitWarning(`horae schedules: the repository answers again, after ${failedTicks} ticks failed over ${downMs} ms`, { code: 'HORAE_SCHEDULES_RECOVERED' });
      return;
    }
    if (name !== 'schedules:ticked' && !this.horaeEvents.hasListeners(name)) {
      // Nobody listens: say it in the process warnings rather than swallow it. An outage is no bug of the code: its
      // message says what failed, a stack would not.
      const error = (payload as { error: unknown }).error;
      const outage = error instanceof HoraeError && error.code === 'REPOSITORY_UNAVAILABLE';
      const detail = error instanceof Error ? (outage ? error.message : (error.stack ?? error.message)) : String(error);
      process.emitWarning(`horae ${String(name)}: ${detail}`, { code: name === 'hook:error' ? 'HORAE_HOOK_ERROR' : 'HORAE_SCHEDULES_ERROR' });
      return;
    }
    this.horaeEvents.emit(name, payload);
  }
}

/**
 * Builds a {@link Horae}: a Scheduler with `registry.middleware()`, your middlewares and the storage middleware
 * (multi-node when `nodeId` is given), recurring schedules when the repository persists them, and status hooks.
 *
 * @param options - the repository, the registry, and the options of each part
 * @returns the Horae; call `await horae.start()`
 * @throws InvalidInputError on a missing repository or registry, or an invalid option
 *
 * @example
 * ```ts
 * import { SqliteRepository } from '@horae/repo-sqlite';
 * import { WorkRegistry, createHorae } from '@horae/storage';
 *
 * const registry = new WorkRegistry().register('email', async (ctx) => sendEmail(ctx.param, ctx.signal), { maxAttempts: 5 });
 * const horae = createHorae({ repository: new SqliteRepository('./horae.db'), registry });
 * await horae.start();
 * await horae.schedule({ workId: 'email', param: { to: 'ada@example.com' }, delayMs: 60_000 });
 * // at shutdown
 * await horae.stop({ timeoutMs: 10_000 });
 * ```
 */
export function createHorae(options: HoraeOptions): Horae {
  return new Horae(options);
}

/** The storage middleware's own options out of the facade's (the facade decides nodeId and leaseMs per mode). */
function pickStorageOptions(options: HoraeOptions): StorageOptions {
  const {
    repository: _repository,
    closeRepositoryOnStop: _closeRepositoryOnStop,
    registry: _registry,
    mode: _mode,
    concurrency: _concurrency,
    workConcurrency: _workConcurrency,
    stallTimeoutMs: _stallTimeoutMs,
    middlewares: _middlewares,
    statusHooks: _statusHooks,
    scheduleTickMs: _scheduleTickMs,
    scheduleLookaheadMs: _scheduleLookaheadMs,
    scheduleGraceMs: _scheduleGraceMs,
    schedulerOptions: _schedulerOptions,
    ...storage
  } = options;
  return storage;
}

/** Your own targets as given; URL hooks become durable ones over the repository's outbox, else in-memory senders. */
function toHookTargets(
  option: HoraeOptions['statusHooks'],
  clock: Clock,
  repository: Repository,
): { targets: StatusHookTarget[]; senders: StatusHookSender[]; durable: DurableStatusHooks | undefined } {
  const list: readonly HoraeStatusHook[] = option === undefined ? [] : Array.isArray(option) ? option : [option as HoraeStatusHook];
  const targets: StatusHookTarget[] = [];
  const senders: StatusHookSender[] = [];
  const urlHooks: Array<StatusHookOptions & DurableStatusHookOptions> = [];
  for (const hook of list) {
    if (hook !== null && typeof hook === 'object' && typeof (hook as Partial<StatusHookTarget>).onTransition === 'function') targets.push(hook as StatusHookTarget);
    else urlHooks.push(hook as StatusHookOptions & DurableStatusHookOptions);
  }
  if (urlHooks.length > 0 && isHookOutboxProvider(repository)) {
    const durable = new DurableStatusHooks({ outbox: repository.hookOutbox(), hooks: urlHooks, clock });
    targets.push(durable);
    return { targets, senders, durable };
  }
  for (const hook of urlHooks) {
    const hooks = statusHooks({ clock, ...hook });
    targets.push(hooks);
    senders.push(hooks.sender);
  }
  return { targets, senders, durable: undefined };
}
