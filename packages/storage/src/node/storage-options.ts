import { InvalidInputError, createKey, type BackoffFn, type Clock, type GeneratorHandle, type GeneratorOptions, type Middleware, type SchedulerContext, type TaskGenerator, type TaskHandle, type TypedEventEmitter, type ValueKey } from '@horae/core';
import type { StorageEvents, SyncReport } from './events.js';
import type { TaskInfo } from '../contract/task-info.js';
import type { StorageRetryOption } from '../works/retry.js';

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

/** The defaults of the options that {@link StorageOptions} documents with a number. */
export const DEFAULTS = {
  leaseMs: 30_000,
  maxAttempts: 1,
  syncWindowMs: 3_600_000,
  syncIntervalMs: 5_000,
  syncPageSize: 500,
  notifyDebounceMs: 20,
  progressThrottleMs: 1_000,
} as const;

/**
 * Checks an integer option.
 * @returns `value`, when it is a safe integer ≥ `min`
 * @throws InvalidInputError naming the option `what` otherwise
 */
export function positiveInteger(value: unknown, what: string, min: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new InvalidInputError(`${what} must be an integer ≥ ${min}, got ${String(value)}`);
  }
  return value;
}
