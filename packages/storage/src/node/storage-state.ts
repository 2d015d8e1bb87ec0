import { randomUUID } from 'node:crypto';
import {
  HoraeError,
  InvalidInputError,
  SchedulerContext,
  SchedulerStoppedError,
  TaskCancelledError,
  TypedEventEmitter,
  realClock,
  type Clock,
  type ClockTimer,
  type WorkFn,
} from '@horae/core';
import { BacklogClaimKey, type BacklogClaim, type BacklogClaimer } from './backlog-claimer.js';
import { DurableWriter } from './durable-write.js';
import type { StorageEvents } from './events.js';
import type { LocalTask } from './local-task.js';
import { DEFAULT_REPOSITORY_ERROR_INTERVAL_MS, RepositoryHealth } from './repository-health.js';
import { DEFAULT_MAX_PENDING_SCHEDULES, DEFAULT_MAX_PENDING_SCHEDULE_BYTES, ScheduleGate } from './schedule-gate.js';
import { DEFAULTS, RestoredTaskKey, positiveInteger, type StorageOptions, type StorageScheduler } from './storage-options.js';
import type { RepositoryError } from '../contract/errors.js';
import { isChangeNotifier, type Repository } from '../contract/repository.js';
import type { TaskInfo } from '../contract/task-info.js';
import type { WorkRegistry } from '../works/work-registry.js';

/** Whether a run or a schedule call was cut because the scheduler stopped (a graceful stop, not a failure). */
export function isStopReason(reason: unknown): boolean {
  return reason instanceof SchedulerStoppedError || (reason instanceof HoraeError && reason.code === 'SCHEDULER_STOPPED');
}

/** The message of a thrown value, which need not be an Error. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * What the parts of one storage middleware share: its validated options, the repository and the writers in front
 * of it, its events, the tasks this node holds, and where the scheduler is. `DurableStorage` builds one and
 * hands it to each part (the schedule path, the run path, the local handles, sync); the few operations here are
 * those that more than one part needs.
 *
 * Why one explicit object rather than each part keeping its own: the parts read and write the same map of local
 * tasks and the same lifecycle flags (`scheduler`, `stopping`, `backlog`), and must see each other's changes at once.
 */
export class StorageState {
  /** Typed events: task lifecycle, repository outages, sync passes. */
  readonly events: TypedEventEmitter<StorageEvents> = new TypedEventEmitter<StorageEvents>();
  /** This node's id. */
  readonly nodeId: string;
  /** Where tasks live. */
  readonly repository: Repository;
  /** The works this node runs. */
  readonly registry: WorkRegistry;
  /** The options as given (the validated numbers are below). */
  readonly options: StorageOptions;
  /** How long a claim holds a task. */
  readonly leaseMs: number;
  /** Runs a task may have in all when neither its schedule call nor its work says. */
  readonly maxAttempts: number;
  /** Whether params stay in the repository until the run. */
  readonly freeParam: boolean;
  /** How far ahead tasks are held in memory. */
  readonly windowMs: number;
  /** The period of the sync loop (0: no loop). */
  readonly syncIntervalMs: number;
  /** What this node holds, by task id. */
  readonly entries = new Map<string, LocalTask>();
  /** Runs repository writes through the outage retry. */
  readonly durable: DurableWriter;
  /** Whether the repository is in an outage; reports it, rate-limited. */
  readonly health: RepositoryHealth;
  /** Bounds the schedule() calls that wait for the repository during an outage. */
  readonly gate: ScheduleGate;
  /** Built by `multiNodeStorage`: other nodes share the repository (they claim, write and cancel too). */
  readonly multiNode: boolean;
  /**
   * Whether a lost claim reads the row back: on a single node (it loses a claim only to an operator's write), or
   * when nothing would tell it later (no sync loop and no change notices). Otherwise sync reports the outcome.
   */
  readonly readBackLostClaims: boolean;
  /** The clock is the scheduler's once started; a proxy lets helpers built now follow it. */
  readonly clockProxy: Clock = {
    now: () => this.clock.now(),
    setTimer: (callback: () => void, delayMs: number): ClockTimer => this.clock.setTimer(callback, delayMs),
  };
  /** The scheduler, once `start()` took it. */
  scheduler: StorageScheduler | undefined = undefined;
  /** Set by `stop()`: no task is restored any more. */
  stopping = false;
  /** Claims the backlog in batches, while the scheduler it was attached to runs (see `claimBacklog`). */
  backlog: BacklogClaimer | undefined = undefined;
  /** Successes whose Done write is still on its way (see `RunPath.finishDone`). */
  finishing = 0;
  /** Works whose batch-claimed task this node's chain refused: held on timers from then on. */
  readonly refusedWorks = new Set<string>();

  /**
   * Validates the options (the sync loop's own are validated by the `TaskSync` builder, after these).
   * @throws InvalidInputError on an invalid option
   */
  constructor(repository: Repository, registry: WorkRegistry, options: StorageOptions, multiNode: boolean) {
    this.repository = repository;
    this.multiNode = multiNode;
    this.registry = registry;
    this.options = options;
    this.nodeId = options.nodeId ?? randomUUID();
    if (typeof this.nodeId !== 'string' || this.nodeId === '') throw new InvalidInputError('nodeId must be a non-empty string');
    this.leaseMs = positiveInteger(options.leaseMs ?? DEFAULTS.leaseMs, 'leaseMs', 3);
    if (options.claimAhead !== undefined) positiveInteger(options.claimAhead, 'claimAhead', 0);
    this.maxAttempts = positiveInteger(options.maxAttempts ?? DEFAULTS.maxAttempts, 'maxAttempts', 1);
    this.freeParam = options.freeParam ?? false;
    this.windowMs = positiveInteger(options.syncWindowMs ?? DEFAULTS.syncWindowMs, 'syncWindowMs', 1);
    const intervalMs = positiveInteger(options.syncIntervalMs ?? DEFAULTS.syncIntervalMs, 'syncIntervalMs', 0);
    this.syncIntervalMs = intervalMs;
    this.readBackLostClaims = !multiNode || (intervalMs === 0 && !isChangeNotifier(repository));
    this.health = new RepositoryHealth({
      clock: this.clockProxy,
      intervalMs: positiveInteger(options.repositoryErrorIntervalMs ?? DEFAULT_REPOSITORY_ERROR_INTERVAL_MS, 'repositoryErrorIntervalMs', 0),
      report: (event) => this.events.emit('repository:error', event),
      recovered: (event) => this.events.emit('repository:recovered', event),
    });
    this.durable = new DurableWriter({
      clock: this.clockProxy,
      ...(options.repositoryBackoff === undefined ? {} : { backoff: options.repositoryBackoff }),
      onError: (report) => this.health.failed(report),
      onLanded: () => this.health.landed(),
    });
    this.gate = new ScheduleGate({
      maxPending: options.maxPendingSchedules ?? DEFAULT_MAX_PENDING_SCHEDULES,
      maxPendingBytes: options.maxPendingScheduleBytes ?? DEFAULT_MAX_PENDING_SCHEDULE_BYTES,
      clock: this.clockProxy,
      health: this.health,
    });
  }

  /** The clock: the option's, else the scheduler's once started, else the real one. */
  get clock(): Clock {
    return this.options.clock ?? this.scheduler?.clock ?? realClock;
  }

  /** Drops a local task and settles its handle with its outcome (cancelled when none was decided). */
  settle(entry: LocalTask): void {
    if (this.entries.get(entry.taskId) === entry) this.entries.delete(entry.taskId);
    const outcome = entry.outcome ?? { state: 'cancelled' as const, value: new TaskCancelledError() };
    entry.handle.settle(outcome.state, outcome.value);
  }

  /**
   * Gives a batch claim back to the repository (released, uncounted) unless a run took it: the local task that
   * was to run it ended first (cancelled, the scheduler stopped), or this node could not take it.
   */
  async handBack(entry: LocalTask | undefined, claim: BacklogClaim): Promise<void> {
    if (entry?.backlog === claim) entry.backlog = undefined;
    // A claim exists only once the claimer does; the claimer hands back after it stopped too.
    await this.backlog?.handBack(claim).catch(() => undefined);
  }

  /** The context that schedules a stored task through the chain: restored by sync, or claimed with the backlog. */
  restoredContext(task: TaskInfo, work: WorkFn | undefined, claim?: BacklogClaim): SchedulerContext {
    return SchedulerContext.create(
      {
        runAt: task.scheduledAt,
        workId: task.workId,
        taskId: task.id,
        priority: task.priority,
        // No maxAttempts: a retry middleware keeps its own policy after a restart as before it; the stored
        // maxAttempts rules storage's durable retries.
        work: work ?? this.registry.get(task.workId).work,
        ...(this.freeParam ? {} : { param: task.param }),
        ...(task.uniqueKey === null ? {} : { uniqueKey: task.uniqueKey }),
        // Set at creation rather than by withValue, which would copy the map of values once more. A claimed task
        // carries the restore key too: middlewares before storage tell a stored task from a new one by it.
        values: claim === undefined ? [[RestoredTaskKey, task]] : [[RestoredTaskKey, task], [BacklogClaimKey, claim]],
      },
      this.clock.now(),
    );
  }

  /** Schedules a stored Initialized task through the whole chain, unless the node is stopping. */
  async restore(task: TaskInfo): Promise<void> {
    const scheduler = this.scheduler;
    if (scheduler === undefined || this.stopping) return;
    try {
      await scheduler.schedule(this.restoredContext(task, undefined));
    } catch (error) {
      // A stopped scheduler takes no new tasks: the row stays Initialized for the next start.
      if (!isStopReason(error)) throw error;
    }
  }

  /** Whether a work's backlog is claimed in batches: known here, and limited neither across nodes nor on this one. */
  claimsBacklogOf(workId: string): boolean {
    if (!this.registry.has(workId) || this.registry.get(workId).options.concurrency !== undefined || this.refusedWorks.has(workId)) return false;
    const local = this.scheduler?.workConcurrency?.(workId);
    return local === undefined || local === Number.POSITIVE_INFINITY;
  }

  /** Whether sync hands a task to the backlog claimer rather than holding it on a timer. */
  takesBacklog(task: TaskInfo): boolean {
    return this.backlog !== undefined && !this.stopping && task.scheduledAt.getTime() <= this.clock.now() && this.claimsBacklogOf(task.workId);
  }

  /** A lease renewal failed with an outage (it is tried again until the lease would expire). */
  reportRenewalError(taskId: string, error: RepositoryError, attempt: number): void {
    this.health.failed({ operation: 'renewLease', taskId, attempt, error, retryInMs: undefined });
  }
}
