import { randomUUID } from 'node:crypto';
import {
  HoraeError,
  InvalidInputError,
  MaxAttemptsKey,
  ParamKey,
  RunAbandoned,
  RunDeferred,
  ScheduleAbortedError,
  ScheduleCallKey,
  SchedulerContext,
  SchedulerStoppedError,
  TaskCancelledError,
  StalledError,
  TaskIdKey,
  TimeoutError,
  TypedEventEmitter,
  UniqueKeyKey,
  UnrecoverableError,
  createKey,
  isWorkAborted,
  quoteInput,
  realClock,
  type Clock,
  type ProgressReport,
  type BackoffFn,
  type ClockTimer,
  type GeneratorHandle,
  type GeneratorOptions,
  type Middleware,
  type ScheduleHandler,
  type TaskGenerator,
  type TaskHandle,
  type ValueKey,
  type WorkContext,
  type WorkFn,
} from '@horae/core';
import { BACKLOG_BATCH_MAX, BacklogClaimKey, BacklogClaimer, type BacklogClaim } from './backlog-claimer.js';
import { cancelIfWritten, insertDurably } from './durable-insert.js';
import { DurableWriter } from './durable-write.js';
import { LeaseLostError, RepositoryError, TaskNotDueError, TaskNotFoundError } from '../contract/errors.js';
import type { StorageEvents, SyncReport } from './events.js';
import { LeaseKeeper } from './lease-keeper.js';
import { ProgressWriter } from './progress-writer.js';
import { DEFAULT_REPOSITORY_ERROR_INTERVAL_MS, RepositoryHealth } from './repository-health.js';
import { DEFAULT_MAX_PENDING_SCHEDULES, DEFAULT_MAX_PENDING_SCHEDULE_BYTES, ScheduleGate } from './schedule-gate.js';
import { isChangeNotifier, isWorkLimiter, type Repository } from '../contract/repository.js';
import { retryDelay, type StorageRetryOption } from '../works/retry.js';
import { StorageTaskHandle } from './storage-task-handle.js';
import { TaskSync, type LocalPhase, type LocalTaskView, type SyncAction } from './sync.js';
import type { NewTask, TaskError, TaskInfo } from '../contract/task-info.js';
import { DEFAULT_AGING_MS, checkMaxUnstartedClaims, normalizeNewTask, toTaskError } from '../contract/validation.js';
import type { RegisteredWork, WorkRegistry } from '../works/work-registry.js';

/**
 * Marks a context that re-schedules a task already stored (sync restoring it, or a uniqueKey hit): the storage
 * middleware holds it without inserting it again. Middlewares registered before storage may read it to tell a
 * restore from a new task; storage removes it from the context it passes on, so that the stored row (and its
 * param) is not kept in memory with the local timer.
 */
export const RestoredTaskKey: ValueKey<TaskInfo> = createKey<TaskInfo>('horae.storage.restoredTask');

/** The part of the core Scheduler a storage middleware uses (typed structurally). */
export interface StorageScheduler {
  /** The scheduler's clock: the storage's loops, leases and backoffs run on it. */
  readonly clock: Clock;
  /** Schedules through the whole middleware chain. */
  schedule(ctx: SchedulerContext): Promise<TaskHandle>;
  /** Sets the node-local limit of a work (the core Scheduler has it); storage applies registered `concurrency` through it. */
  setWorkConcurrency?(workId: string, limit: number | undefined): unknown;
  /** The node-local limit of a work; `Infinity` when it has none. */
  workConcurrency?(workId: string): number;
  /** The most runs in progress at once; with `running`, how many tasks a batch claim may take. */
  readonly concurrency?: number;
  /** Runs in progress. */
  readonly running?: number;
  /** The aging of the scheduler's ready queue; the database's claim order ages the same way. */
  readonly agingMs?: number;
  /** The scheduler's events: storage hands back its claims ahead as soon as `scheduler:stopping` says no run starts. */
  readonly events?: { on(name: 'scheduler:stopping', listener: () => void): () => void };
  /** Adds a generator pulled only while run slots are free: how storage claims the backlog in batches. */
  addGenerator?(generator: TaskGenerator, options: GeneratorOptions): GeneratorHandle;
}

/** Options of {@link singleNodeStorage}; {@link multiNodeStorage} takes the same, with `nodeId` and `leaseMs` required. */
export interface StorageOptions {
  /** This node's id, written as the owner of the leases it takes. @defaultValue a random uuid */
  nodeId?: string;
  /**
   * How long a claim holds a task before another node may reclaim it; renewed every third of it while the work
   * runs. A single node leases too, so that a run cut by a crash is reclaimed at the next start.
   * @defaultValue 30000
   */
  leaseMs?: number;
  /** Runs a task may have in all, when neither the schedule call nor the registered work says. @defaultValue 1 */
  maxAttempts?: number;
  /**
   * How a failed run is retried when attempts are left: a backoff function of (attempt, error) returning a delay
   * in ms, or `{ backoff, isRetryable }`. An UnrecoverableError is never retried.
   * @defaultValue exponential backoff with jitter: about 1 s, 2 s, 4 s, ... at most 5 min
   */
  retry?: StorageRetryOption;
  /**
   * Leave params in the repository between schedule and run: the local timer holds only the task's id, and the
   * claim loads the param just before the run.
   * @defaultValue false
   */
  freeParam?: boolean;
  /** How far ahead tasks are held in memory; later ones stay in the repository until they enter the window. @defaultValue 3600000 (1 h) */
  syncWindowMs?: number;
  /** Period of the sync loop, on the scheduler's clock; 0 turns the loop off. @defaultValue 5000 */
  syncIntervalMs?: number;
  /** Shortest gap between two reclaims of expired leases (run within sync passes). @defaultValue `syncIntervalMs` */
  reclaimIntervalMs?: number;
  /** Rows read per page by sync. @defaultValue 500 */
  syncPageSize?: number;
  /** Delay that gathers a burst of change notices into one sync. @defaultValue 20 */
  notifyDebounceMs?: number;
  /** Decides whether sync restores a task on this node (for example, skip overdue ones). @defaultValue every task */
  shouldRestore?: (task: TaskInfo) => boolean;
  /**
   * Claim the backlog in batches: a task already due when sync finds it, and not held here, is claimed with
   * `claimDue` together with others as run slots free up, rather than held on a local timer and claimed alone.
   * On many nodes the database spreads the backlog between them (one claim per run instead of one per node).
   * Applies to works without a `concurrency` limit (registered or node-local); needs a scheduler with generators
   * (the core Scheduler); off when `shouldRestore` is given, since a batch claim cannot ask it first.
   * @defaultValue true
   */
  claimBacklog?: boolean;
  /**
   * How many tasks of the backlog a node claims ahead of its free run slots, so that a slot that frees up finds its
   * next task already claimed instead of waiting for a claim round trip. A task claimed ahead spends no attempt until
   * its run starts; its lease is renewed while it waits; a graceful stop hands it back at once. 0 claims only for
   * free slots.
   * @defaultValue the scheduler's concurrency (at most 256)
   */
  claimAhead?: number;
  /**
   * A task whose lease expires this many times in a row before its run started (the nodes holding it died with it
   * claimed ahead) is failed as a poison task, with code `POISON_TASK`, by the node that reclaims it.
   * @defaultValue 3
   */
  maxUnstartedClaims?: number;
  /** Delay between two tries of a repository write that failed with an outage. @defaultValue 100 ms doubling to 10 s, with jitter */
  repositoryBackoff?: BackoffFn;
  /**
   * The least time between two `repository:error` reports of one operation (`insert`, `claim`, ...) during an
   * outage: its first failure is reported at once, later ones at most once per interval, each report counting in
   * `suppressed` the failures it stands for; the end of the outage is reported once as `repository:recovered`.
   * 0 reports every failure.
   * @defaultValue 10000
   */
  repositoryErrorIntervalMs?: number;
  /**
   * How many `schedule()` inserts may be under way at once (tried, or waiting to be tried again after an outage): it
   * bounds what an outage holds. While the repository is up, a call past it waits its turn (a burst is paced, never
   * refused); while it is known to be down, a call past it is refused at once with a `BackpressureError` (code
   * `BACKPRESSURE`) and nothing is written, and so are the calls waiting for their turn when the outage became known.
   * @defaultValue 1000
   */
  maxPendingSchedules?: number;
  /**
   * How many bytes of params (the UTF-8 JSON text) the `schedule()` calls waiting for the repository while it is
   * down may hold, together; past it a call is refused as for `maxPendingSchedules`.
   * @defaultValue 16777216 (16 MiB)
   */
  maxPendingScheduleBytes?: number;
  /** Shortest gap between two progress writes of one run. @defaultValue 1000 */
  progressThrottleMs?: number;
  /** The clock; by default the scheduler's, once `start(scheduler)` was called. */
  clock?: Clock;
}

/** Options of {@link multiNodeStorage}: `nodeId` and `leaseMs` are required. */
export interface MultiNodeStorageOptions extends StorageOptions {
  /** This node's id: unique among the nodes sharing the repository. */
  nodeId: string;
  /** The lease duration; choose it well above the renewal round trip. */
  leaseMs: number;
}

/** What a storage middleware is: the middleware itself, and the handles that drive sync and cancels. */
export interface StorageMiddleware {
  /** Install it with `scheduler.use(storage.middleware)`, in any position of the chain. */
  readonly middleware: Middleware;
  /** Typed events: task lifecycle, repository outages, sync passes. */
  readonly events: TypedEventEmitter<StorageEvents>;
  /** This node's id. */
  readonly nodeId: string;
  /**
   * Restores the stored tasks into `scheduler` and starts the loops: takes the change cursor, reclaims expired
   * leases, schedules every Initialized task due within the window (overdue ones run at once), subscribes to
   * change notices when the repository has them, and arms the periodic sync.
   *
   * Rules: the first read (the change cursor) is tried once; when it fails the start rejects and nothing was
   * started, so `start()` may be called again. An outage after it, during the restore, is retried until the reads
   * land (reported as `repository:error`), like every repository call of the middleware.
   * @returns what the restore did
   * @throws RepositoryError (as a rejection) when the repository cannot be reached at the start
   * @throws HoraeError `INVALID_STATE` (as a rejection) when it was started already
   */
  start(scheduler: StorageScheduler): Promise<SyncReport>;
  /** Runs one sync pass now. @throws HoraeError `INVALID_STATE` before `start()` */
  sync(): Promise<SyncReport>;
  /** Stops the loops, then waits for repository writes under way to land. Call it after `scheduler.stop()`. */
  stop(): Promise<void>;
  /**
   * Cancels a task from any node: writes Cancelled, drops the local timer, aborts the local run; a run on
   * another node is aborted when its lease renewal is refused or its sync sees the cancel.
   * @returns true when this call cancelled it, false when it had already ended
   */
  cancel(taskId: string, reason?: string): Promise<boolean>;
}

/** What this node holds of one task. */
interface LocalTask extends LocalTaskView {
  readonly taskId: string;
  workId: string;
  readonly handle: StorageTaskHandle;
  /** Bumped whenever the local timer is replaced or dropped: a stale run stops before it claims. */
  generation: number;
  /** The abort of the run under way, when this node runs it. */
  controller: RunAbort | undefined;
  cancelRequested: boolean;
  cancelWritten: boolean;
  /** How the handle settles, when something other than the local run decided it. */
  outcome: { state: 'done' | 'failed' | 'cancelled'; value: unknown } | undefined;
  /** The row as sync last read it while this node's claim was under way: what a lost claim learns from. */
  seen: TaskInfo | undefined;
  /** A batch claim of the backlog, held until the run takes it (or it is handed back). */
  backlog: BacklogClaim | undefined;
  /** When the lease of a batch claim the run took expires at the latest (its keeper's last renewal). */
  keeper: LeaseKeeper | undefined;
  /**
   * The Done write of a run that gave its slot back before the write landed: the handle settles once it has.
   * See {@link DurableStorage.#finishDone}.
   */
  ending: Promise<void> | undefined;
}

/** The result of a write that may be refused because the lease was lost. */
type Fenced<T> = { ok: true; value: T } | { ok: false; error: LeaseLostError | TaskNotFoundError };

const DEFAULTS = {
  leaseMs: 30_000,
  maxAttempts: 1,
  syncWindowMs: 3_600_000,
  syncIntervalMs: 5_000,
  syncPageSize: 500,
  notifyDebounceMs: 20,
  progressThrottleMs: 1_000,
} as const;

function isStopReason(reason: unknown): boolean {
  return reason instanceof SchedulerStoppedError || (reason instanceof HoraeError && reason.code === 'SCHEDULER_STOPPED');
}

/** Rebuilds the error a task stored as `lastError`, for a handle whose task failed on another node. */
function storedError(error: TaskError | null): Error {
  const out = new Error(error?.message ?? 'the task failed on another node');
  if (error?.name !== undefined) out.name = error.name;
  return out;
}

/**
 * The RunAbandoned of a lost claim, without a stack: it only tells the core not to run the task here (the handle
 * waits for sync), no caller ever sees it, and on many nodes every task makes one per losing node, where
 * capturing a stack was the costliest part of a lost claim.
 */
function lostClaim(message: string): RunAbandoned {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new RunAbandoned(message);
  } finally {
    Error.stackTraceLimit = limit;
  }
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function positiveInteger(value: unknown, what: string, min: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new InvalidInputError(`${what} must be an integer ≥ ${min}, got ${String(value)}`);
  }
  return value;
}

/**
 * The storage middleware: mirrors every task of the chain to a {@link Repository} and keeps the node's timers
 * in line with it. Built by {@link singleNodeStorage} or {@link multiNodeStorage}.
 */
/**
 * The abort of one run as storage hands it to the work: aborted by the core's own signal of the run (a cancel, a
 * stop past its deadline), by a lost lease, or by a timeout or stall; the first abort's reason is the run's.
 *
 * Why not a plain AbortController listening on the core's signal: a controller and a listener on the core's signal
 * (which then builds its own controller) cost two AbortSignals, an add and a remove of a listener a run, ~3 µs of
 * CPU and their garbage, for a signal most works never read. The controller is built on the first read of `signal`;
 * until then an abort of storage's is remembered (behind one of the core's that came first), and the core's is read
 * without building its signal ({@link isWorkAborted}).
 */
class RunAbort {
  readonly #outer: WorkContext;
  #controller: AbortController | undefined = undefined;
  #forward: (() => void) | undefined = undefined;
  #aborted = false;
  #reason: unknown = undefined;

  /** @param outer - the context the run received from the core (or the middleware inside storage) */
  constructor(outer: WorkContext) {
    this.#outer = outer;
  }

  /** The signal the work sees: built on the first read, forwarding the core's aborts from then on. */
  get signal(): AbortSignal {
    if (this.#controller !== undefined) return this.#controller.signal;
    const controller = new AbortController();
    this.#controller = controller;
    const outer = this.#outer.signal;
    if (this.#aborted) controller.abort(this.#reason);
    else if (outer.aborted) controller.abort(outer.reason);
    else {
      this.#forward = (): void => controller.abort(outer.reason);
      outer.addEventListener('abort', this.#forward, { once: true });
    }
    return controller.signal;
  }

  /** Aborts the run with `reason`, unless it was aborted already (by storage or the core). */
  abort(reason: unknown): void {
    if (this.#controller !== undefined) {
      this.#controller.abort(reason);
      return;
    }
    if (this.#aborted) return;
    this.#aborted = true;
    // The core's abort came first: its reason stays the run's, as it would have been forwarded first.
    this.#reason = isWorkAborted(this.#outer) ? this.#outer.signal.reason : reason;
  }

  /**
   * Stops forwarding the core's aborts (the run ended).
   * @returns the reason of the first abort, or undefined when the run was not aborted
   */
  end(): unknown {
    const controller = this.#controller;
    if (controller !== undefined) {
      if (this.#forward !== undefined) this.#outer.signal.removeEventListener('abort', this.#forward);
      return controller.signal.aborted ? controller.signal.reason : undefined;
    }
    if (this.#aborted) return this.#reason;
    return isWorkAborted(this.#outer) ? this.#outer.signal.reason : undefined;
  }
}

/**
 * The context storage hands a work: the claimed row's attempt, fencing token and param, the run's signal
 * ({@link RunAbort}), and progress and check-ins, recorded in the repository (throttled) as well as by the core.
 *
 * Why a class: the object literal it replaces built three accessors and four closures a run, for a no-op work that
 * reads none of them. `value`, `progress` and `checkIn` are still functions bound to the run (a work may take them
 * out of its context, as it could before), built on the first read; the signal, the due time and the scheduling
 * context are read through on demand (up front they cost an AbortController, a Date and a rebuilt SchedulerContext).
 */
class StorageWorkContext implements WorkContext {
  readonly taskId: string;
  readonly attempt: number;
  readonly fencingToken: number;
  readonly param: unknown;
  // Set even when undefined (readers fall back to the real clock either way).
  readonly clock: Clock | undefined;
  /** Called on each sign of life (a report whose `completed` moved, a check-in) when the work has a stall timeout. */
  onAlive: (() => void) | undefined = undefined;
  /** Records the run's progress and check-ins: built on the first report only (most works never report). */
  writer: ProgressWriter | undefined = undefined;
  readonly #outer: WorkContext;
  readonly #abort: RunAbort;
  readonly #token: string;
  readonly #repository: Repository;
  readonly #storageClock: Clock;
  readonly #throttleMs: number;
  #lastCompleted: number | undefined = undefined;
  #value: (<T>(key: ValueKey<T>) => T | undefined) | undefined = undefined;
  #progress: ((report: ProgressReport) => void) | undefined = undefined;
  #checkIn: ((message: string) => void) | undefined = undefined;

  /**
   * @param outer - the context the run received from the core
   * @param abort - the run's abort
   * @param claimed - the claimed (started) row
   * @param id - the task's id
   * @param token - the lease token the progress writes carry
   * @param repository - where progress is recorded
   * @param storageClock - storage's clock, which times the progress writes' throttle
   * @param throttleMs - the least time between two progress writes
   */
  constructor(outer: WorkContext, abort: RunAbort, claimed: TaskInfo, id: string, token: string, repository: Repository, storageClock: Clock, throttleMs: number) {
    this.#outer = outer;
    this.#abort = abort;
    this.taskId = id;
    this.attempt = claimed.attempt;
    this.fencingToken = claimed.claims;
    this.param = claimed.param;
    this.clock = outer.clock;
    this.#token = token;
    this.#repository = repository;
    this.#storageClock = storageClock;
    this.#throttleMs = throttleMs;
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  get scheduledAt(): Date {
    return this.#outer.scheduledAt;
  }

  get context(): SchedulerContext {
    return this.#outer.context;
  }

  get value(): <T>(key: ValueKey<T>) => T | undefined {
    return (this.#value ??= <T>(key: ValueKey<T>): T | undefined => this.#outer.value(key));
  }

  get progress(): (report: ProgressReport) => void {
    return (this.#progress ??= (report: ProgressReport): void => {
      // The run's own context validates the report (and throws on a bad one) before anything records it.
      this.#outer.progress(report);
      this.#writer().progress(report);
      if (this.onAlive !== undefined && report.completed !== this.#lastCompleted) {
        this.#lastCompleted = report.completed;
        this.onAlive();
      }
    });
  }

  get checkIn(): (message: string) => void {
    return (this.#checkIn ??= (message: string): void => {
      this.#outer.checkIn(message);
      this.#writer().checkIn(message);
      this.onAlive?.();
    });
  }

  #writer(): ProgressWriter {
    return (this.writer ??= new ProgressWriter(this.#repository, this.#storageClock, this.taskId, this.#token, this.#throttleMs));
  }
}

class DurableStorage implements StorageMiddleware {
  readonly events: TypedEventEmitter<StorageEvents> = new TypedEventEmitter<StorageEvents>();
  readonly nodeId: string;
  readonly middleware: Middleware;
  readonly #repository: Repository;
  readonly #registry: WorkRegistry;
  readonly #options: StorageOptions;
  readonly #leaseMs: number;
  readonly #maxAttempts: number;
  readonly #freeParam: boolean;
  readonly #windowMs: number;
  readonly #entries = new Map<string, LocalTask>();
  readonly #durable: DurableWriter;
  /** Whether the repository is in an outage; reports it, rate-limited. */
  readonly #health: RepositoryHealth;
  /** Bounds the schedule() calls that wait for the repository during an outage. */
  readonly #gate: ScheduleGate;
  readonly #sync: TaskSync;
  /** Built by {@link multiNodeStorage}: other nodes share the repository (they claim, write and cancel too). */
  readonly #multiNode: boolean;
  /**
   * Whether a lost claim reads the row back: on a single node (it loses a claim only to an operator's write), or
   * when nothing would tell it later (no sync loop and no change notices). Otherwise sync reports the outcome.
   */
  readonly #readBackLostClaims: boolean;
  // The clock is the scheduler's once started; a proxy lets helpers built now follow it.
  readonly #clockProxy: Clock = {
    now: () => this.#clock.now(),
    setTimer: (callback: () => void, delayMs: number): ClockTimer => this.#clock.setTimer(callback, delayMs),
  };
  #scheduler: StorageScheduler | undefined;
  /** The first read of `start()` is under way. */
  #starting = false;
  #stopping = false;
  /** Claims the backlog in batches, while the scheduler it was attached to runs (see `claimBacklog`). */
  #backlog: BacklogClaimer | undefined;
  /** Successes whose Done write is still on its way (see #finishDone). */
  #finishing = 0;
  /** Ends the subscription to the scheduler's `scheduler:stopping`. */
  #offStopping: (() => void) | undefined;
  /** Works whose batch-claimed task this node's chain refused: held on timers from then on. */
  readonly #refusedWorks = new Set<string>();

  constructor(repository: Repository, registry: WorkRegistry, options: StorageOptions, multiNode: boolean) {
    this.#repository = repository;
    this.#multiNode = multiNode;
    this.#registry = registry;
    this.#options = options;
    this.nodeId = options.nodeId ?? randomUUID();
    if (typeof this.nodeId !== 'string' || this.nodeId === '') throw new InvalidInputError('nodeId must be a non-empty string');
    this.#leaseMs = positiveInteger(options.leaseMs ?? DEFAULTS.leaseMs, 'leaseMs', 3);
    if (options.claimAhead !== undefined) positiveInteger(options.claimAhead, 'claimAhead', 0);
    this.#maxAttempts = positiveInteger(options.maxAttempts ?? DEFAULTS.maxAttempts, 'maxAttempts', 1);
    this.#freeParam = options.freeParam ?? false;
    const windowMs = positiveInteger(options.syncWindowMs ?? DEFAULTS.syncWindowMs, 'syncWindowMs', 1);
    this.#windowMs = windowMs;
    const intervalMs = positiveInteger(options.syncIntervalMs ?? DEFAULTS.syncIntervalMs, 'syncIntervalMs', 0);
    this.#readBackLostClaims = !multiNode || (intervalMs === 0 && !isChangeNotifier(repository));
    this.#health = new RepositoryHealth({
      clock: this.#clockProxy,
      intervalMs: positiveInteger(options.repositoryErrorIntervalMs ?? DEFAULT_REPOSITORY_ERROR_INTERVAL_MS, 'repositoryErrorIntervalMs', 0),
      report: (event) => this.events.emit('repository:error', event),
      recovered: (event) => this.events.emit('repository:recovered', event),
    });
    this.#durable = new DurableWriter({
      clock: this.#clockProxy,
      ...(options.repositoryBackoff === undefined ? {} : { backoff: options.repositoryBackoff }),
      onError: (report) => this.#health.failed(report),
      onLanded: () => this.#health.landed(),
    });
    this.#gate = new ScheduleGate({
      maxPending: options.maxPendingSchedules ?? DEFAULT_MAX_PENDING_SCHEDULES,
      maxPendingBytes: options.maxPendingScheduleBytes ?? DEFAULT_MAX_PENDING_SCHEDULE_BYTES,
      clock: this.#clockProxy,
      health: this.#health,
    });
    this.#sync = new TaskSync(this.#syncHost(), {
      windowMs,
      intervalMs,
      reclaimIntervalMs: positiveInteger(options.reclaimIntervalMs ?? intervalMs, 'reclaimIntervalMs', 0),
      pageSize: positiveInteger(options.syncPageSize ?? DEFAULTS.syncPageSize, 'syncPageSize', 1),
      maxUnstartedClaims: checkMaxUnstartedClaims(options.maxUnstartedClaims),
      notifyDebounceMs: positiveInteger(options.notifyDebounceMs ?? DEFAULTS.notifyDebounceMs, 'notifyDebounceMs', 0),
    });
    this.middleware = (next: ScheduleHandler): ScheduleHandler => (ctx) => {
      const claim = ctx.value(BacklogClaimKey);
      if (claim !== undefined) return this.#hold(next, ctx, claim.task, claim);
      const restored = ctx.value(RestoredTaskKey);
      return restored === undefined ? this.#insert(next, ctx) : this.#hold(next, ctx, restored);
    };
  }

  get #clock(): Clock {
    return this.#options.clock ?? this.#scheduler?.clock ?? realClock;
  }

  async start(scheduler: StorageScheduler): Promise<SyncReport> {
    if (this.#scheduler !== undefined || this.#starting) throw new HoraeError('INVALID_STATE', 'this storage middleware was already started');
    // One try, before anything is changed: a repository that is down at the start fails the start (the caller may
    // call it again), rather than leaving it waiting with no word to its caller.
    this.#starting = true;
    let cursor: string;
    try {
      cursor = await this.#repository.getCursor();
    } finally {
      this.#starting = false;
    }
    if (this.#scheduler !== undefined) throw new HoraeError('INVALID_STATE', 'this storage middleware was already started');
    this.#scheduler = scheduler;
    this.#stopping = false;
    this.#applyWorkLimits(scheduler);
    if ((this.#options.claimBacklog ?? true) && this.#options.shouldRestore === undefined && scheduler.addGenerator !== undefined) {
      const backlog = this.#newBacklogClaimer(scheduler);
      this.#backlog = backlog;
      backlog.attach((generator, options) => scheduler.addGenerator!(generator, options));
      // A stopping scheduler starts no run: the tasks claimed ahead go back at once, not when its running work ends.
      this.#offStopping = scheduler.events?.on('scheduler:stopping', () => {
        backlog.stop().catch(() => undefined);
      });
    }
    return this.#sync.start(cursor);
  }

  #newBacklogClaimer(scheduler: StorageScheduler): BacklogClaimer {
    return new BacklogClaimer({
      repository: this.#repository,
      durable: this.#durable,
      clock: this.#clockProxy,
      nodeId: this.nodeId,
      leaseMs: this.#leaseMs,
      workIds: () => this.#registry.workIds().filter((workId) => this.#claimsBacklogOf(workId)),
      freeSlots: () => (scheduler.concurrency ?? 1) - (scheduler.running ?? 0),
      claimAhead: this.#options.claimAhead ?? Math.min(BACKLOG_BATCH_MAX, Number.isFinite(scheduler.concurrency) ? (scheduler.concurrency ?? 1) : BACKLOG_BATCH_MAX),
      agingMs: scheduler.agingMs ?? DEFAULT_AGING_MS,
      schedule: (claim) => scheduler.schedule(this.#restoredContext(claim.task, undefined, claim)),
      refused: (claim, error) => {
        if (isStopReason(error)) return;
        // The chain of this node refuses tasks of this work (a middleware before storage threw): a batch claim
        // cannot tell which ones before it claims them, so the work's tasks are held on timers from now on, where
        // a refusal writes nothing and is reported once per row (sync:error).
        this.#refusedWorks.add(claim.task.workId);
      },
      onRepositoryError: (taskId, error, attempt) => this.#reportRenewalError(taskId, error, attempt),
      onClaimError: (error) =>
        this.#health.failed({
          operation: 'claimDue',
          taskId: undefined,
          attempt: 1,
          error: error instanceof RepositoryError ? error : new RepositoryError(`a batch claim of the backlog failed: ${errorMessage(error)}`, { cause: error }),
          retryInMs: undefined,
        }),
    });
  }

  /** A lease renewal failed with an outage (it is tried again until the lease would expire). */
  #reportRenewalError(taskId: string, error: RepositoryError, attempt: number): void {
    this.#health.failed({ operation: 'renewLease', taskId, attempt, error, retryInMs: undefined });
  }

  /** Whether a work's backlog is claimed in batches: known here, and limited neither across nodes nor on this one. */
  #claimsBacklogOf(workId: string): boolean {
    if (!this.#registry.has(workId) || this.#registry.get(workId).options.concurrency !== undefined || this.#refusedWorks.has(workId)) return false;
    const local = this.#scheduler?.workConcurrency?.(workId);
    return local === undefined || local === Number.POSITIVE_INFINITY;
  }

  /** Whether sync hands a task to the backlog claimer rather than holding it on a timer. */
  #takesBacklog(task: TaskInfo): boolean {
    return this.#backlog !== undefined && !this.#stopping && task.scheduledAt.getTime() <= this.#clock.now() && this.#claimsBacklogOf(task.workId);
  }

  sync(): Promise<SyncReport> {
    if (this.#scheduler === undefined) return Promise.reject(new HoraeError('INVALID_STATE', 'call storage.start(scheduler) before sync()'));
    return this.#sync.sync();
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    this.#offStopping?.();
    this.#offStopping = undefined;
    await this.#sync.stop();
    // Kept after it stopped: a claim still in flight when a local task ends is handed back through it.
    await this.#backlog?.stop();
    // The schedule() calls queued for a slot of the gate first: none of them may write after the stop.
    await this.#gate.idle();
    await this.#durable.idle();
  }

  async cancel(taskId: string, reason?: string): Promise<boolean> {
    const entry = this.#entries.get(taskId);
    if (entry !== undefined) entry.cancelRequested = true;
    let result: { task: TaskInfo; cancelled: boolean };
    try {
      result = await this.#durable.run('markAsCancelled', taskId, () => this.#repository.markAsCancelled(taskId, reason === undefined ? {} : { reason }));
    } catch (error) {
      if (entry !== undefined) entry.cancelRequested = false;
      throw error;
    }
    if (result.cancelled) {
      const reporter = await this.#reportsOwnCancel(taskId, entry?.phase === 'running');
      this.events.emit('task:cancelled', { taskId, task: result.task, origin: 'local', reporter });
    }
    if (entry !== undefined && this.#entries.get(taskId) === entry && result.task.state === 'Cancelled') {
      entry.cancelWritten = true;
      const error = new TaskCancelledError(reason);
      entry.outcome = { state: 'cancelled', value: error };
      const inner = entry.handle.inner;
      if (inner === undefined) this.#settle(entry);
      else await inner.cancel(reason);
    }
    return result.cancelled;
  }

  /**
   * Whether this node reports a cancel it wrote (the rules of TaskCancelledEvent): yes, unless the task was running
   * on another node at that moment (its `cancelled` attempt record names that node), which then reports it. One
   * read of the attempt records, only for a cancel of a task not running here on a multi-node storage; when the
   * read fails, this node reports it (a duplicate is better than a lost report).
   */
  async #reportsOwnCancel(taskId: string, runningHere: boolean): Promise<boolean> {
    if (runningHere || !this.#multiNode) return true;
    try {
      const attempts = await this.#repository.listAttempts(taskId);
      const cut = attempts.find((attempt) => attempt.outcome === 'cancelled');
      return cut === undefined || cut.node === this.nodeId;
    } catch {
      return true;
    }
  }

  /**
   * A work's `concurrency` bounds its runs on this node too (a node never needs more local slots than the whole
   * cluster has); a lower node-local limit set on the scheduler stays. Reports the works whose limit the
   * repository cannot enforce across nodes.
   */
  #applyWorkLimits(scheduler: StorageScheduler): void {
    const limited = this.#registry.workIds().filter((workId) => this.#registry.get(workId).options.concurrency !== undefined);
    for (const workId of limited) {
      const concurrency = this.#registry.get(workId).options.concurrency!;
      if (scheduler.setWorkConcurrency !== undefined && (scheduler.workConcurrency?.(workId) ?? Number.POSITIVE_INFINITY) > concurrency) {
        scheduler.setWorkConcurrency(workId, concurrency);
      }
    }
    if (limited.length > 0 && !isWorkLimiter(this.#repository)) this.events.emit('work-limit:node-local', { workIds: limited });
  }

  // ---- schedule time ----

  async #insert(next: ScheduleHandler, ctx: SchedulerContext): Promise<TaskHandle> {
    const workId = ctx.workId;
    if (workId === undefined) {
      throw new InvalidInputError('a durable task needs a workId: register its work in the WorkRegistry and schedule it by workId');
    }
    const registered = this.#registry.get(workId);
    const param = this.#registry.validateParam(workId, ctx.param);
    const id = ctx.taskId ?? randomUUID();
    if (this.#entries.has(id)) throw new InvalidInputError(`a task with the id ${quoteInput(id)} is already scheduled`);
    const task: NewTask & { id: string } = {
      id,
      workId,
      param,
      scheduledAt: ctx.runAt,
      priority: ctx.priority,
      maxAttempts: ctx.value(MaxAttemptsKey) ?? registered.options.maxAttempts ?? this.#maxAttempts,
      uniqueKey: ctx.value(UniqueKeyKey) ?? null,
      // Due at or before the schedule call: "run now"; later: "run at". Occurrences of recurring schedules are
      // inserted by the materializer as 'periodic'.
      kind: ctx.runAt.getTime() <= this.#clock.now() ? 'immediate' : 'scheduled',
    };
    normalizeNewTask(task);
    // A placeholder, so that a sync pass that reads the new row before this call holds it does not schedule it twice.
    const entry = this.#newEntry(id, workId, 'inserting', ctx.runAt, ctx.priority);
    this.#entries.set(id, entry);
    let inserted: TaskInfo;
    try {
      const result = await insertDurably({ repository: this.#repository, durable: this.#durable, gate: this.#gate }, task, ctx.value(ScheduleCallKey));
      if (!result.created) {
        this.#entries.delete(id);
        return await this.#existing(next, ctx, result.task);
      }
      inserted = result.task;
    } catch (error) {
      if (error instanceof ScheduleAbortedError && error.mayHaveBeenWritten) this.#abandon(entry);
      else if (this.#entries.get(id) === entry) this.#entries.delete(id);
      throw error;
    }
    this.events.emit('task:scheduled', { task: inserted, source: 'inserted' });
    if (inserted.scheduledAt.getTime() >= this.#clock.now() + this.#windowMs) {
      // Beyond the window: no local timer; sync arms one when the task enters the window.
      entry.phase = 'remote';
      return entry.handle;
    }
    return this.#hold(next, ctx, inserted);
  }

  /**
   * A schedule call gave up its insert after a try failed without an answer: the row may exist. The placeholder
   * stays, marked cancelled, so that this node neither restores nor runs such a row, until a cancel of the id has
   * landed (or the repository said no task has it); then the placeholder's handle (a later call may have met the
   * row by its uniqueKey) ends cancelled.
   */
  #abandon(entry: LocalTask): void {
    entry.cancelRequested = true;
    void cancelIfWritten({ repository: this.#repository, durable: this.#durable }, entry.taskId).then(() => {
      entry.outcome ??= { state: 'cancelled', value: new TaskCancelledError('the schedule() call of this task was aborted') };
      this.#settle(entry);
    });
  }

  /** A uniqueKey hit: the handle of the live task that holds the key. */
  async #existing(next: ScheduleHandler, ctx: SchedulerContext, task: TaskInfo): Promise<TaskHandle> {
    // Held already (even while its own schedule call is still inserting it): that call arms the timer.
    const held = this.#entries.get(task.id);
    if (held !== undefined) return held.handle;
    this.events.emit('task:scheduled', { task, source: 'existing' });
    if (task.state === 'Initialized' && this.#registry.has(task.workId)) {
      const work = task.workId === ctx.workId ? ctx.work : undefined;
      return this.#hold(next, this.#restoredContext(task, work), task);
    }
    // It runs on another node: a handle that settles when sync sees it end.
    const entry = this.#newEntry(task.id, task.workId, 'remote', task.scheduledAt, task.priority);
    this.#entries.set(task.id, entry);
    return entry.handle;
  }

  /**
   * Holds a stored task on this node: wraps its work and arms a local timer through `next`. The task is
   * Initialized, or, with `claim`, already claimed by this node in a batch of the backlog (its run starts at once
   * and makes no claim of its own).
   */
  async #hold(next: ScheduleHandler, ctx: SchedulerContext, task: TaskInfo, claim?: BacklogClaim): Promise<TaskHandle> {
    let entry = this.#entries.get(task.id);
    if (claim === undefined) {
      if (entry !== undefined && (entry.backlog !== undefined || (entry.phase === 'scheduled' && entry.handle.inner !== undefined))) return entry.handle;
    } else if (entry !== undefined) {
      if (entry.controller !== undefined || entry.backlog !== undefined || (entry.phase === 'inserting' && entry.cancelRequested)) {
        // A run of this node still holds the task (a zombie whose lease was reclaimed, not back yet), a batch claim
        // waits for it already, or it is the row of an abandoned insert, being cancelled (#abandon): this claim is
        // handed back; the task is claimed again once it is free.
        void this.#handBack(undefined, claim);
        return entry.handle;
      }
      if (entry.handle.inner !== undefined) {
        // This node holds the task on a timer (its retry, say), or that timer's run is claiming it right now: that
        // run takes the batch claim (its own claim by id loses to it), so the task keeps one local task.
        entry.backlog = claim;
        return entry.handle;
      }
      // A handle that waits for another node, or an insert of this node under way: the claim's run takes over.
    } else {
      this.events.emit('task:scheduled', { task, source: 'claimed' });
    }
    if (entry === undefined) {
      entry = this.#newEntry(task.id, task.workId, 'scheduled', task.scheduledAt, task.priority);
      this.#entries.set(task.id, entry);
    }
    entry.backlog = claim;
    entry.phase = 'scheduled';
    entry.workId = task.workId;
    entry.scheduledAt = task.scheduledAt.getTime();
    entry.priority = task.priority;
    entry.handle.knownRunAt = task.scheduledAt;
    entry.handle.knownPriority = task.priority;
    const generation = ++entry.generation;
    const registered = this.#registry.get(task.workId);
    // Each `with...` copies the context (and a change of values its map of values): only what differs is set, and
    // the values that differ in one copy, so that a restored or claimed context, built by #restoredContext with the
    // row's id, due time and param, costs one copy of the context and one of its map.
    let inner = ctx.withWork(this.#wrap(entry, generation, ctx.work ?? registered.work, registered));
    if (inner.runAtMs !== task.scheduledAt.getTime()) inner = inner.withRunAt(task.scheduledAt);
    if (inner.priority !== task.priority) inner = inner.withPriority(task.priority);
    const values: [ValueKey<unknown>, unknown][] = [];
    if (inner.value(TaskIdKey) !== task.id) values.push([TaskIdKey, task.id]);
    const param = this.#freeParam ? undefined : task.param;
    if (inner.value(ParamKey) !== param) values.push([ParamKey, param]);
    // The stored row (param included) is not kept with the local timer: the claim reads it again.
    if (inner.value(RestoredTaskKey) !== undefined) values.push([RestoredTaskKey, undefined]);
    if (claim !== undefined) values.push([BacklogClaimKey, undefined]);
    // The call's signal is not kept alive with the local timer.
    if (inner.value(ScheduleCallKey) !== undefined) values.push([ScheduleCallKey, undefined]);
    if (values.length > 0) inner = inner.withValues(values);
    let handle: TaskHandle;
    try {
      handle = await next(inner);
    } catch (error) {
      if (claim !== undefined) void this.#handBack(entry, claim);
      if (this.#entries.get(task.id) === entry && entry.generation === generation) this.#entries.delete(task.id);
      throw error;
    }
    if (entry.generation === generation) {
      entry.handle.inner = handle;
      this.#watch(entry, handle);
    }
    return entry.handle;
  }

  /**
   * Gives a batch claim back to the repository (released, uncounted) unless a run took it: the local task that
   * was to run it ended first (cancelled, the scheduler stopped), or this node could not take it.
   */
  async #handBack(entry: LocalTask | undefined, claim: BacklogClaim): Promise<void> {
    if (entry?.backlog === claim) entry.backlog = undefined;
    // A claim exists only once the claimer does; the claimer hands back after it stopped too.
    await this.#backlog?.handBack(claim).catch(() => undefined);
  }

  #newEntry(taskId: string, workId: string, phase: LocalPhase, runAt: Date, priority: number): LocalTask {
    return {
      taskId,
      workId,
      phase,
      scheduledAt: runAt.getTime(),
      priority,
      handle: new StorageTaskHandle(taskId, runAt, priority, (reason) => this.#cancelFromHandle(taskId, reason)),
      generation: 0,
      controller: undefined,
      cancelRequested: false,
      cancelWritten: false,
      outcome: undefined,
      seen: undefined,
      ending: undefined,
      backlog: undefined,
      keeper: undefined,
    };
  }

  async #cancelFromHandle(taskId: string, reason: string | undefined): Promise<boolean> {
    try {
      return await this.cancel(taskId, reason);
    } catch (error) {
      if (error instanceof TaskNotFoundError) return false;
      throw error;
    }
  }

  /** The context that schedules a stored task through the chain: restored by sync, or claimed with the backlog. */
  #restoredContext(task: TaskInfo, work: WorkFn | undefined, claim?: BacklogClaim): SchedulerContext {
    return SchedulerContext.create(
      {
        runAt: task.scheduledAt,
        workId: task.workId,
        taskId: task.id,
        priority: task.priority,
        // No maxAttempts: a retry middleware keeps its own policy after a restart as before it; the stored
        // maxAttempts rules storage's durable retries.
        work: work ?? this.#registry.get(task.workId).work,
        ...(this.#freeParam ? {} : { param: task.param }),
        ...(task.uniqueKey === null ? {} : { uniqueKey: task.uniqueKey }),
        // Set at creation rather than by withValue, which would copy the map of values once more. A claimed task
        // carries the restore key too: middlewares before storage tell a stored task from a new one by it.
        values: claim === undefined ? [[RestoredTaskKey, task]] : [[RestoredTaskKey, task], [BacklogClaimKey, claim]],
      },
      this.#clock.now(),
    );
  }

  // ---- local handles ----

  #watch(entry: LocalTask, inner: TaskHandle): void {
    inner.result.then(
      (value) => this.#innerSettled(entry, inner, 'done', value),
      (error: unknown) =>
        this.#innerSettled(entry, inner, error instanceof TaskCancelledError || error instanceof RunAbandoned ? 'cancelled' : 'failed', error),
    );
  }

  #innerSettled(entry: LocalTask, inner: TaskHandle, state: 'done' | 'failed' | 'cancelled', value: unknown): void {
    // A replaced timer (rescheduled, or taken over by another node) settles without touching the task.
    if (entry.handle.inner !== inner) return;
    // The local task ended without its run taking the batch claim waiting for it (cancelled, the scheduler
    // stopped): nothing else here would take it.
    if (entry.backlog !== undefined) void this.#handBack(entry, entry.backlog);
    const ending = entry.ending;
    if (ending !== undefined) {
      // The run gave its slot back before its Done write landed: the handle tells what the write decided.
      entry.ending = undefined;
      void ending.then(() => {
        entry.handle.finishing = false;
        this.#innerSettled(entry, inner, state, value);
      });
      return;
    }
    entry.handle.inner = undefined;
    if (entry.outcome === undefined && entry.phase === 'remote') return;
    if (entry.outcome === undefined && value instanceof TaskCancelledError && !entry.cancelWritten && !this.#stopping) {
      // Cancelled through the local handle of the core (not ours): write it, so that no node runs the task.
      entry.cancelWritten = true;
      this.#durable
        .run('markAsCancelled', entry.taskId, () => this.#repository.markAsCancelled(entry.taskId, { reason: value.message }))
        .then(
          async (result) => {
            if (!result.cancelled) return;
            const reporter = await this.#reportsOwnCancel(entry.taskId, false);
            this.events.emit('task:cancelled', { taskId: entry.taskId, task: result.task, origin: 'local', reporter });
          },
          () => undefined,
        );
    }
    entry.outcome ??= { state, value };
    this.#settle(entry);
  }

  #settle(entry: LocalTask): void {
    if (this.#entries.get(entry.taskId) === entry) this.#entries.delete(entry.taskId);
    const outcome = entry.outcome ?? { state: 'cancelled' as const, value: new TaskCancelledError() };
    entry.handle.settle(outcome.state, outcome.value);
  }

  // ---- run time ----

  #wrap(entry: LocalTask, generation: number, work: WorkFn, registered: RegisteredWork): WorkFn {
    return async (wctx: WorkContext) => {
      if (entry.generation !== generation || entry.handle.settled) {
        throw new RunAbandoned('the local timer was replaced; the task runs from its new timer');
      }
      entry.phase = 'running';
      // A batch claim of this node waiting for the task is this run's claim; otherwise the run claims by id.
      const claimed = entry.backlog !== undefined ? await this.#takeBacklogClaim(entry, entry.backlog) : await this.#claim(entry);
      // The keeper of a batch claim, still renewing: the run takes it over, and until then nothing may leave it running.
      const keeper = entry.keeper;
      entry.keeper = undefined;
      let invalid: InvalidInputError | undefined;
      try {
        invalid = this.#revalidate(claimed, registered);
      } catch (error) {
        keeper?.stop();
        throw error;
      }
      if (invalid !== undefined) {
        keeper?.stop();
        return this.#failInvalidParam(entry, claimed, invalid);
      }
      return this.#run(entry, claimed, wctx, work, registered, keeper);
    };
  }

  /**
   * The run of a task claimed with the backlog takes its claim and starts it: `markAsStarted` counts the attempt
   * (a claim ahead spent none) and opens its record. The run waits for that write, so a cancel written by any node
   * before it lands wins (the start is refused) and the work never starts. The lease kept since the batch claim is
   * the run's own.
   */
  async #takeBacklogClaim(entry: LocalTask, claim: BacklogClaim): Promise<TaskInfo> {
    // Taken with its keeper still renewing (the run takes it over); stopped on every way out that runs nothing.
    const taken = claim.settle(true);
    if (entry.backlog === claim) entry.backlog = undefined;
    if (!taken) {
      // Handed back already (the node is stopping): the task is Initialized again, for whoever claims it next.
      entry.phase = 'remote';
      throw lostClaim('the batch claim was handed back before the run started');
    }
    const keeper = claim.keeper;
    if (claim.lost !== undefined) {
      // Lost before the run started (cancelled or reclaimed elsewhere): nothing ran; sync tells how it ends.
      keeper.stop();
      entry.phase = 'remote';
      throw lostClaim(`the batch claim was lost before the run started: ${claim.lost.message}`);
    }
    const id = entry.taskId;
    const token = claim.task.lease?.token ?? '';
    let started: Fenced<TaskInfo>;
    try {
      started = await this.#fenced('markAsStarted', id, () => this.#repository.markAsStarted(id, token));
    } catch (error) {
      keeper.stop();
      throw error;
    }
    if (!started.ok) {
      keeper.stop();
      if (started.error instanceof TaskNotFoundError) this.#deleted(entry, started.error);
      // Cancelled, or reclaimed after the lease ran out, before the run could start: nothing ran here.
      entry.phase = 'remote';
      throw lostClaim(`the batch claim was lost before the run started: ${started.error.message}`);
    }
    entry.keeper = keeper;
    this.events.emit('task:started', { task: started.value });
    return started.value;
  }

  /** The task was deleted before its run could start: its handle ends cancelled, and nothing runs. */
  #deleted(entry: LocalTask, error: TaskNotFoundError): never {
    entry.outcome = { state: 'cancelled', value: new TaskCancelledError('the task was deleted', { cause: error }) };
    throw new RunAbandoned('the task no longer exists', { cause: error });
  }

  /**
   * Checks the claimed task's stored param against its work's validator again: the validator (or the row) may
   * have changed since the task was scheduled. A work without a validator is not checked: its stored param is
   * JSON already, and a run costs no extra walk over it.
   *
   * @returns the validation error, or undefined when the param is still valid
   */
  #revalidate(claimed: TaskInfo, registered: RegisteredWork): InvalidInputError | undefined {
    if (registered.options.validate === undefined) return undefined;
    try {
      this.#registry.validateParam(claimed.workId, claimed.param);
      return undefined;
    } catch (error) {
      if (error instanceof InvalidInputError) return error;
      throw error;
    }
  }

  /**
   * Ends a claimed run whose stored param no longer validates: Failed at once, without a retry (another try
   * would fail the same way), with the InvalidInputError (code `INVALID_INPUT`) as its error.
   */
  async #failInvalidParam(entry: LocalTask, claimed: TaskInfo, error: InvalidInputError): Promise<never> {
    const id = entry.taskId;
    const token = claimed.lease?.token ?? '';
    const failed = await this.#fenced('markAsFailed', id, () => this.#repository.markAsFailed(id, toTaskError(error), token));
    if (!failed.ok) return this.#zombie(entry, failed.error);
    this.events.emit('task:failed', { task: failed.value, error });
    entry.outcome = { state: 'failed', value: error };
    // Unrecoverable: a retry middleware outside this one must not run it again.
    throw new UnrecoverableError(`the stored param no longer passes the validation of ${quoteInput(claimed.workId)}: ${error.message}`, { cause: error });
  }

  /**
   * One claim: within the work's cross-node `concurrency` when it has one and the repository can enforce it.
   * @returns the claimed task, null when lost, or `'limit'` when refused for the limit (nothing was written)
   */
  async #claimOnce(id: string, workId: string, guard: { ifScheduledAt?: Date }): Promise<TaskInfo | null | 'limit'> {
    const options = { owner: this.nodeId, leaseMs: this.#leaseMs, ...guard };
    const maxWorking = this.#registry.has(workId) ? this.#registry.get(workId).options.concurrency : undefined;
    const repository = this.#repository;
    if (maxWorking === undefined || !isWorkLimiter(repository)) return repository.claim(id, options);
    const result = await repository.claimWithinLimit(id, { ...options, maxWorking });
    if (result === null) return null;
    return 'task' in result ? result.task : 'limit';
  }

  /**
   * The work is at its cross-node limit: the task stays Initialized, uncounted, and this node tries again after a
   * short backoff (a quarter of the lease, at most 1 s, with jitter so that waiting nodes do not claim in step).
   * The stored due time is unchanged, so the next claim's due-time guard still matches.
   */
  #deferForLimit(entry: LocalTask): never {
    entry.phase = 'scheduled';
    const maxWorking = this.#registry.get(entry.workId).options.concurrency ?? 0;
    const base = Math.min(this.#leaseMs / 4, 1_000);
    const retryAt = new Date(this.#clock.now() + Math.max(1, Math.round(base / 2 + Math.random() * (base / 2))));
    this.events.emit('task:limited', { taskId: entry.taskId, workId: entry.workId, maxWorking, retryAt });
    throw new RunDeferred(retryAt, `work ${quoteInput(entry.workId)} has ${maxWorking} tasks running across nodes (its concurrency); trying again soon`);
  }

  /** Claims the task; when the claim is lost, settles what this node knows and throws what the core expects. */
  async #claim(entry: LocalTask): Promise<TaskInfo> {
    const id = entry.taskId;
    for (let tries = 0; ; tries++) {
      let claimed: TaskInfo | null | 'limit';
      entry.seen = undefined;
      try {
        // The last try drops the due-time guard: the row was just read Initialized at the due time this node
        // expects, so a mismatch can only be a store that rounds times; never loop on it.
        const guard = tries < 2 ? { ifScheduledAt: new Date(entry.scheduledAt) } : {};
        claimed = await this.#durable.run('claim', id, () => this.#claimOnce(id, entry.workId, guard));
      } catch (error) {
        if (error instanceof TaskNotFoundError) this.#deleted(entry, error);
        entry.phase = 'scheduled';
        if (error instanceof TaskNotDueError) {
          // This node's clock runs ahead of the database's: the timer fired early. Nothing was written; the timer is
          // armed again for when the database says the task is due.
          throw new RunDeferred(new Date(this.#clock.now() + error.dueInMs), error.message);
        }
        throw error;
      }
      if (claimed === 'limit') return this.#deferForLimit(entry);
      // Lost to a batch claim of this very node, made while this claim was under way: that claim is this run's.
      if (claimed === null && entry.backlog !== undefined) return await this.#takeBacklogClaim(entry, entry.backlog);
      if (claimed !== null) {
        entry.seen = undefined;
        this.events.emit('task:started', { task: claimed });
        return claimed;
      }
      // The loser of a claim does not read the row back (on many nodes every task is claimed by each of them): it
      // drops its timer and sync tells it how the task ends. A row that sync read during this claim is used; a
      // single node, or one without a sync loop or change notices, reads the row (see #readBackLostClaims).
      const seen = entry.seen;
      entry.seen = undefined;
      const current = seen ?? (!this.#readBackLostClaims ? undefined : await this.#durable.run('getById', id, () => this.#repository.getById(id)));
      if (current === undefined) {
        entry.phase = 'remote';
        throw lostClaim('another node claimed the task; sync reports how it ends');
      }
      switch (current.state) {
        case 'Initialized': {
          entry.priority = current.priority;
          if (current.scheduledAt.getTime() === entry.scheduledAt && tries < 2) continue;
          if (current.scheduledAt.getTime() === entry.scheduledAt) throw new RunDeferred(new Date(this.#clock.now() + 1000), 'the claim kept failing; trying again soon');
          // Rescheduled elsewhere: keep the handle, run at the new time.
          entry.phase = 'scheduled';
          entry.scheduledAt = current.scheduledAt.getTime();
          entry.handle.knownRunAt = current.scheduledAt;
          throw new RunDeferred(current.scheduledAt, 'the task was rescheduled elsewhere');
        }
        case 'Working':
          // Another node won the claim: it runs the task; this handle settles when sync sees it end.
          entry.phase = 'remote';
          throw lostClaim(`another node (${current.lease?.owner ?? 'unknown'}) runs the task`);
        case 'Done':
          entry.outcome = { state: 'done', value: undefined };
          throw new RunAbandoned('the task already ran elsewhere');
        case 'Failed':
          entry.outcome = { state: 'failed', value: storedError(current.lastError) };
          throw new RunAbandoned('the task already failed elsewhere');
        case 'Cancelled':
          entry.outcome = { state: 'cancelled', value: new TaskCancelledError('the task was cancelled') };
          throw new RunAbandoned('the task was cancelled');
      }
    }
  }

  /** @param taken - the keeper of a batch claim the run took, still renewing its lease: the run takes it over */
  async #run(entry: LocalTask, claimed: TaskInfo, wctx: WorkContext, work: WorkFn, registered: RegisteredWork, taken?: LeaseKeeper): Promise<unknown> {
    const id = entry.taskId;
    const token = claimed.lease?.token ?? '';
    const clock = this.#clock;
    const controller = new RunAbort(wctx);
    entry.controller = controller;
    let leaseLost: LeaseLostError | undefined;
    const onLost = (error: LeaseLostError): void => {
      leaseLost = error;
      this.events.emit('task:lease-lost', { taskId: id, error });
      controller.abort(error);
    };
    const onRepositoryError = (error: RepositoryError, attempt: number): void => this.#reportRenewalError(id, error, attempt);
    const keeper =
      taken ?? new LeaseKeeper({ repository: this.#repository, clock, taskId: id, token, leaseMs: this.#leaseMs, onLost, onRepositoryError });
    const { timeoutMs, stallTimeoutMs } = registered.options;
    // One interruption (timeout or stall) ends the run at once, even when the work ignores its signal.
    let interrupt: ((reason: Error) => void) | undefined;
    let timeout: ClockTimer | undefined;
    let stall: ClockTimer | undefined;
    let finished = false;
    const runCtx = new StorageWorkContext(wctx, controller, claimed, id, token, this.#repository, clock, this.#options.progressThrottleMs ?? DEFAULTS.progressThrottleMs);
    // A sign of life restarts the stall window (the rules of the core's stallTimeout middleware).
    if (stallTimeoutMs !== undefined) {
      runCtx.onAlive = (): void => {
        if (finished) return;
        stall?.clear();
        stall = clock.setTimer(() => interrupt?.(new StalledError(stallTimeoutMs)), stallTimeoutMs);
      };
    }
    let ok = false;
    let value: unknown;
    let error: unknown;
    let reason: unknown;
    // A keeper taken over reports to this run from now on (at once, when the lease was lost since the start).
    if (taken !== undefined) taken.handOver(onLost, onRepositoryError);
    else keeper.start();
    try {
      if (timeoutMs === undefined && stallTimeoutMs === undefined) {
        value = await work(runCtx);
      } else {
        const interrupted = new Promise<never>((_, reject) => {
          interrupt = (reason) => {
            if (finished) return;
            controller.abort(reason);
            reject(reason);
          };
        });
        if (timeoutMs !== undefined) timeout = clock.setTimer(() => interrupt?.(new TimeoutError(timeoutMs)), timeoutMs);
        runCtx.onAlive?.();
        value = await Promise.race([work(runCtx), interrupted]);
      }
      ok = true;
    } catch (caught) {
      error = caught;
    } finally {
      finished = true;
      timeout?.clear();
      stall?.clear();
      keeper.stop();
      // Taken when the run ends, as a forwarded abort would stop being forwarded then.
      reason = controller.end();
      entry.controller = undefined;
    }
    const progress = runCtx.writer;
    if (leaseLost !== undefined) {
      progress?.stop();
      return this.#zombie(entry, leaseLost, true);
    }
    // The last progress and check-in land before the write that ends the run (a Done task shows 8/8, not 7/8).
    if (progress !== undefined) await progress.flush();
    return this.#record(entry, claimed, token, { ok, value, error, reason }, registered);
  }

  /** Writes the outcome of a run and returns or throws what the core expects. */
  async #record(
    entry: LocalTask,
    claimed: TaskInfo,
    token: string,
    run: { ok: boolean; value: unknown; error: unknown; reason: unknown },
    registered: RegisteredWork,
  ): Promise<unknown> {
    const id = entry.taskId;
    if (run.ok) {
      // At most `concurrency` successes are being written at once: a node holds at most twice its concurrency in
      // started Working rows (plus its claims ahead, not started), and a crash re-runs at most that many.
      if (registered.options.concurrency === undefined && this.#finishing < (this.#scheduler?.concurrency ?? Number.POSITIVE_INFINITY)) {
        entry.handle.finishing = true;
        this.#finishing++;
        entry.ending = this.#finishDone(entry, token, run.value).finally(() => {
          this.#finishing--;
        });
        return run.value;
      }
      const done = await this.#fenced('markAsDone', id, () => this.#repository.markAsDone(id, token));
      if (!done.ok) return this.#zombie(entry, done.error);
      this.events.emit('task:succeeded', { task: done.value, result: run.value });
      return run.value;
    }
    if (isStopReason(run.reason)) {
      // A graceful stop cut the run: hand it back, without counting the attempt, for the next start.
      const released = await this.#fenced('release', id, () => this.#repository.release(id, token, { runAt: new Date(this.#clock.now()), refundAttempt: true }));
      if (!released.ok) return this.#zombie(entry, released.error);
      entry.outcome = { state: 'cancelled', value: new RunAbandoned('the scheduler stopped; the task was released for the next start', { cause: run.reason }) };
      throw run.error;
    }
    if (run.reason instanceof TaskCancelledError || entry.cancelRequested || entry.cancelWritten) {
      if (!entry.cancelWritten) {
        entry.cancelWritten = true;
        const cancelled = await this.#fenced('markAsCancelled', id, () => this.#repository.markAsCancelled(id, { token, reason: (run.reason as Error | undefined)?.message ?? 'cancelled' }));
        // This node ran the task when it wrote the cancel: it reports it.
        if (cancelled.ok && cancelled.value.cancelled) this.events.emit('task:cancelled', { taskId: id, task: cancelled.value.task, origin: 'local', reporter: true });
      }
      entry.outcome ??= { state: 'cancelled', value: run.reason instanceof TaskCancelledError ? run.reason : new TaskCancelledError() };
      throw run.error;
    }
    if (run.error instanceof RunDeferred) {
      // An inner middleware (a retry middleware) deferred the run: the repository follows.
      const runAt = run.error.runAt;
      const released = await this.#fenced('release', id, () =>
        this.#repository.release(id, token, { runAt, error: toTaskError(run.error instanceof Error && run.error.cause !== undefined ? run.error.cause : run.error) }),
      );
      if (!released.ok) return this.#zombie(entry, released.error);
      this.#rearm(entry, runAt);
      this.events.emit('task:retried', { task: released.value, error: run.error.cause ?? run.error, runAt });
      throw run.error;
    }
    if (run.error instanceof RunAbandoned) {
      // An inner middleware will not run it here: give it back at once, uncounted, for any node.
      const released = await this.#fenced('release', id, () => this.#repository.release(id, token, { runAt: new Date(this.#clock.now()), refundAttempt: true }));
      if (!released.ok) return this.#zombie(entry, released.error);
      entry.outcome = { state: 'cancelled', value: run.error };
      throw run.error;
    }
    const delay = retryDelay(claimed.attempt, claimed.maxAttempts, run.error, registered.options.retry ?? this.#options.retry);
    if (delay !== null) {
      const runAt = new Date(this.#clock.now() + delay);
      const released = await this.#fenced('release', id, () => this.#repository.release(id, token, { runAt, error: toTaskError(run.error) }));
      if (!released.ok) return this.#zombie(entry, released.error);
      this.#rearm(entry, runAt);
      this.events.emit('task:retried', { task: released.value, error: run.error, runAt });
      throw new RunDeferred(runAt, `attempt ${claimed.attempt} of ${claimed.maxAttempts} failed; retrying`, { cause: run.error });
    }
    const failed = await this.#fenced('markAsFailed', id, () => this.#repository.markAsFailed(id, toTaskError(run.error), token));
    if (!failed.ok) return this.#zombie(entry, failed.error);
    this.events.emit('task:failed', { task: failed.value, error: run.error });
    entry.outcome = { state: 'failed', value: run.error };
    // The task is Failed for good: a retry middleware outside this one must not run it again.
    throw run.error instanceof UnrecoverableError ? run.error : new UnrecoverableError(`the task failed for good: ${errorMessage(run.error)}`, { cause: run.error });
  }

  /**
   * Writes Done for a run that succeeded, after the run has given its slot back to the scheduler.
   *
   * Why: the slot is the work's, not the bookkeeping's. Holding it through the Done round trip halved the runs
   * a node starts per second on a database a round trip away (each of the C slots waited for a claim, then a
   * Done). The task stays Working, under this node's lease, until the write lands; the handle, `task:succeeded`
   * and `storage.stop()` wait for it. At most the scheduler's `concurrency` successes are written this way at once
   * (beyond that a run keeps its slot until its Done lands), so a node holds at most twice its concurrency in
   * Working rows. A work with a cross-node `concurrency` keeps its slot until Done (the next claim is counted
   * against the Working rows, so an early slot would only be refused for the limit).
   * A refused write (the lease was lost) makes the run a zombie as before: its result is discarded and the
   * handle waits for sync to report how the task ends.
   */
  async #finishDone(entry: LocalTask, token: string, value: unknown): Promise<void> {
    const id = entry.taskId;
    try {
      const done = await this.#fenced('markAsDone', id, () => this.#repository.markAsDone(id, token));
      if (done.ok) {
        this.events.emit('task:succeeded', { task: done.value, result: value });
        return;
      }
      this.#zombie(entry, done.error);
    } catch (error) {
      if (error instanceof RunAbandoned) return;
      entry.outcome ??= { state: 'failed', value: error };
    }
  }

  #rearm(entry: LocalTask, runAt: Date): void {
    entry.phase = 'scheduled';
    entry.scheduledAt = runAt.getTime();
    entry.handle.knownRunAt = runAt;
  }

  /** A write that carries the lease token: an outage is retried; a refusal means this node is a zombie. */
  async #fenced<T>(operation: string, taskId: string, call: () => Promise<T>): Promise<Fenced<T>> {
    try {
      return { ok: true, value: await this.#durable.run(operation, taskId, call) };
    } catch (error) {
      if (error instanceof LeaseLostError || error instanceof TaskNotFoundError) return { ok: false, error };
      throw error;
    }
  }

  /**
   * This node's lease was lost: its result is discarded and the task belongs to whoever holds it now.
   * @param reported - true when the lease keeper already emitted `task:lease-lost`
   */
  #zombie(entry: LocalTask, error: LeaseLostError | TaskNotFoundError, reported = false): never {
    const lost = error instanceof LeaseLostError ? error : new LeaseLostError(entry.taskId, `task ${quoteInput(entry.taskId)} was deleted while it ran`);
    // A run cancelled under it was refused for that reason, not because another node took it over.
    if (!reported && !entry.cancelWritten) this.events.emit('task:lease-lost', { taskId: entry.taskId, error: lost });
    entry.phase = 'remote';
    this.#recheck(entry.taskId);
    throw new RunAbandoned('the lease was lost; the result of this run is discarded', { cause: lost });
  }

  /**
   * Reads a task again and arms a timer when it is Initialized: a run whose lease was reclaimed under it (a
   * stalled event loop) is retried here without waiting for the next window reload, because the change that
   * made it Initialized may be behind the sync cursor already.
   */
  #recheck(taskId: string): void {
    this.#durable
      .run('getById', taskId, () => this.#repository.getById(taskId))
      .then(async (task) => {
        const entry = this.#entries.get(taskId);
        if (task.state !== 'Initialized' || (entry !== undefined && entry.phase !== 'remote')) return;
        if (!this.#registry.has(task.workId) || task.scheduledAt.getTime() >= this.#clock.now() + this.#windowMs) return;
        await this.#restore(task);
      })
      .catch(() => undefined);
  }

  // ---- sync ----

  #syncHost(): ConstructorParameters<typeof TaskSync>[0] {
    return {
      repository: this.#repository,
      clock: this.#clockProxy,
      durable: this.#durable,
      nodeId: this.nodeId,
      local: (taskId) => this.#entries.get(taskId),
      observeRunning: (task) => {
        const entry = this.#entries.get(task.id);
        // Only while the claim is under way (no controller yet): a lost claim learns from this row.
        if (entry !== undefined && entry.phase === 'running' && entry.controller === undefined) entry.seen = task;
      },
      knowsWork: (workId) => this.#registry.has(workId),
      shouldRestore: (task) => this.#options.shouldRestore?.(task) ?? true,
      apply: (action, task) => this.#apply(action, task),
      emit: (name, payload) => this.events.emit(name, payload),
    };
  }

  async #apply(action: Exclude<SyncAction, 'ignore' | 'unknown-work'>, task: TaskInfo): Promise<void> {
    const entry = this.#entries.get(task.id);
    switch (action) {
      case 'schedule':
        if (this.#takesBacklog(task)) {
          // Due already: claimed in a batch as slots free up (or by another node first), not held on a timer.
          this.#backlog!.notify(task.scheduledAt.getTime());
          return;
        }
        this.events.emit('task:scheduled', { task, source: 'restored' });
        return this.#restore(task);
      case 'reschedule': {
        if (entry === undefined || entry.phase !== 'scheduled' || entry.handle.inner === undefined) return;
        const old = entry.handle.inner;
        entry.generation++;
        entry.handle.inner = undefined;
        await old.cancel('rescheduled elsewhere');
        return this.#restore(task);
      }
      case 'drop-claimed': {
        if (entry === undefined || entry.phase !== 'scheduled') return;
        const old = entry.handle.inner;
        entry.generation++;
        entry.phase = 'remote';
        entry.handle.inner = undefined;
        await old?.cancel('claimed by another node');
        return;
      }
      case 'drop-ended':
      case 'settle-remote': {
        if (entry === undefined) return;
        entry.outcome ??=
          task.state === 'Done'
            ? { state: 'done', value: undefined }
            : task.state === 'Failed'
              ? { state: 'failed', value: storedError(task.lastError) }
              : { state: 'cancelled', value: new TaskCancelledError('the task was cancelled elsewhere') };
        // Seen by sync, not running here: a single node reports it (no other node could have written it).
        if (task.state === 'Cancelled') this.events.emit('task:cancelled', { taskId: task.id, task, origin: 'sync', reporter: !this.#multiNode });
        entry.generation++;
        const old = entry.handle.inner;
        if (old === undefined) this.#settle(entry);
        else await old.cancel('the task ended elsewhere');
        return;
      }
      case 'abort-run': {
        if (entry === undefined || entry.controller === undefined) return;
        entry.cancelWritten = true;
        entry.outcome = { state: 'cancelled', value: new TaskCancelledError('the task was cancelled on another node') };
        // This node held the task (it runs it): it reports the cancel, whoever wrote it.
        this.events.emit('task:cancelled', { taskId: task.id, task, origin: 'sync', reporter: true });
        entry.controller.abort(entry.outcome.value);
        return;
      }
    }
  }

  async #restore(task: TaskInfo): Promise<void> {
    const scheduler = this.#scheduler;
    if (scheduler === undefined || this.#stopping) return;
    try {
      await scheduler.schedule(this.#restoredContext(task, undefined));
    } catch (error) {
      // A stopped scheduler takes no new tasks: the row stays Initialized for the next start.
      if (!isStopReason(error)) throw error;
    }
  }
}

/**
 * A storage middleware for one process: every task is written to `repository` at schedule time and its state
 * follows the run; after a restart, `start()` restores what was pending.
 *
 * @param repository - where tasks live
 * @param registry - the works this process runs, by workId
 * @param options - leases, retries, sync window and periods
 * @returns the middleware and its controls; install with `scheduler.use(storage.middleware)`, then `await storage.start(scheduler)`
 * @throws InvalidInputError on an invalid option
 *
 * @example
 * ```ts
 * const registry = new WorkRegistry().register('email', sendEmail);
 * const storage = singleNodeStorage(new MemoryRepository(), registry);
 * const scheduler = new Scheduler().use(storage.middleware);
 * await storage.start(scheduler);
 * scheduler.start();
 * await scheduler.schedule({ workId: 'email', param: { to: 'a@b.c' }, delayMs: 60_000 });
 * ```
 */
export function singleNodeStorage(repository: Repository, registry: WorkRegistry, options: StorageOptions = {}): StorageMiddleware {
  return new DurableStorage(repository, registry, options, false);
}

/**
 * A storage middleware for one of many nodes sharing `repository`: each task runs once across them (the claim
 * has exactly one winner), a dead node's tasks are reclaimed when their lease expires, and sync picks up what
 * other nodes insert, reschedule or cancel.
 *
 * @param repository - the shared repository
 * @param registry - the works this node runs, by workId
 * @param options - `nodeId` (unique per node) and `leaseMs` are required
 * @returns the middleware and its controls
 * @throws InvalidInputError when `nodeId` or `leaseMs` is missing or invalid
 */
export function multiNodeStorage(repository: Repository, registry: WorkRegistry, options: MultiNodeStorageOptions): StorageMiddleware {
  if (options === null || typeof options !== 'object') throw new InvalidInputError('multiNodeStorage needs { nodeId, leaseMs }');
  if (typeof options.nodeId !== 'string' || options.nodeId === '') throw new InvalidInputError('multiNodeStorage needs a nodeId, unique per node');
  if (options.leaseMs === undefined) throw new InvalidInputError('multiNodeStorage needs leaseMs');
  return new DurableStorage(repository, registry, options, true);
}
