import { HoraeError, type Middleware, type ScheduleHandler, type TypedEventEmitter } from '@horae/core';
import { BACKLOG_BATCH_MAX, BacklogClaimKey, BacklogClaimer } from './backlog-claimer.js';
import type { StorageEvents, SyncReport } from './events.js';
import { LocalHandles } from './local-handles.js';
import { RunPath } from './run-path.js';
import { SchedulePath } from './schedule-path.js';
import { DEFAULTS, RestoredTaskKey, positiveInteger, type StorageMiddleware, type StorageOptions, type StorageScheduler } from './storage-options.js';
import { StorageState, errorMessage, isStopReason } from './storage-state.js';
import { TaskSync } from './sync.js';
import { storageSyncHost } from './sync-host.js';
import { RepositoryError } from '../contract/errors.js';
import { isWorkLimiter, type Repository } from '../contract/repository.js';
import { DEFAULT_AGING_MS, checkMaxUnstartedClaims } from '../contract/validation.js';
import type { WorkRegistry } from '../works/work-registry.js';

/**
 * The storage middleware: mirrors every task of the chain to a {@link Repository} and keeps the node's timers
 * in line with it. Built by `singleNodeStorage` or `multiNodeStorage`.
 *
 * It is the composition root of the parts that share one {@link StorageState}: the schedule path
 * ({@link SchedulePath}: insert, uniqueKey hits, holding stored tasks), the run path ({@link RunPath}: claim,
 * start, run, end, release, lost leases), the local handles ({@link LocalHandles}: handles and cancels) and sync
 * ({@link TaskSync} through `storageSyncHost`); it owns the lifecycle (start, stop) and the backlog claimer.
 */
export class DurableStorage implements StorageMiddleware {
  /** {@inheritDoc StorageMiddleware.events} */
  readonly events: TypedEventEmitter<StorageEvents>;
  /** {@inheritDoc StorageMiddleware.nodeId} */
  readonly nodeId: string;
  /** {@inheritDoc StorageMiddleware.middleware} */
  readonly middleware: Middleware;
  readonly #state: StorageState;
  readonly #handles: LocalHandles;
  readonly #syncLoop: TaskSync;
  /** The first read of `start()` is under way. */
  #starting = false;
  /** Ends the subscription to the scheduler's `scheduler:stopping`. */
  #offStopping: (() => void) | undefined;

  /**
   * @param multiNode - built by `multiNodeStorage`: other nodes share the repository
   * @throws InvalidInputError on an invalid option
   */
  constructor(repository: Repository, registry: WorkRegistry, options: StorageOptions, multiNode: boolean) {
    const state = new StorageState(repository, registry, options, multiNode);
    this.#state = state;
    this.events = state.events;
    this.nodeId = state.nodeId;
    const intervalMs = state.syncIntervalMs;
    this.#syncLoop = new TaskSync(storageSyncHost(state), {
      windowMs: state.windowMs,
      intervalMs,
      reclaimIntervalMs: positiveInteger(options.reclaimIntervalMs ?? intervalMs, 'reclaimIntervalMs', 0),
      pageSize: positiveInteger(options.syncPageSize ?? DEFAULTS.syncPageSize, 'syncPageSize', 1),
      maxUnstartedClaims: checkMaxUnstartedClaims(options.maxUnstartedClaims),
      notifyDebounceMs: positiveInteger(options.notifyDebounceMs ?? DEFAULTS.notifyDebounceMs, 'notifyDebounceMs', 0),
    });
    const handles = new LocalHandles(state);
    this.#handles = handles;
    const schedule = new SchedulePath(state, handles, new RunPath(state));
    this.middleware = (next: ScheduleHandler): ScheduleHandler => (ctx) => {
      const claim = ctx.value(BacklogClaimKey);
      if (claim !== undefined) return schedule.hold(next, ctx, claim.task, claim);
      const restored = ctx.value(RestoredTaskKey);
      return restored === undefined ? schedule.insert(next, ctx) : schedule.hold(next, ctx, restored);
    };
  }

  /** {@inheritDoc StorageMiddleware.start} */
  async start(scheduler: StorageScheduler): Promise<SyncReport> {
    const state = this.#state;
    if (state.scheduler !== undefined || this.#starting) throw new HoraeError('INVALID_STATE', 'this storage middleware was already started');
    // One try, before anything is changed: a repository that is down at the start fails the start (the caller may
    // call it again), rather than leaving it waiting with no word to its caller.
    this.#starting = true;
    let cursor: string;
    try {
      cursor = await state.repository.getCursor();
    } finally {
      this.#starting = false;
    }
    if (state.scheduler !== undefined) throw new HoraeError('INVALID_STATE', 'this storage middleware was already started');
    state.scheduler = scheduler;
    state.stopping = false;
    this.#applyWorkLimits(scheduler);
    if ((state.options.claimBacklog ?? true) && state.options.shouldRestore === undefined && scheduler.addGenerator !== undefined) {
      const backlog = this.#newBacklogClaimer(scheduler);
      state.backlog = backlog;
      backlog.attach((generator, options) => scheduler.addGenerator!(generator, options));
      // A stopping scheduler starts no run: the tasks claimed ahead go back at once, not when its running work ends.
      this.#offStopping = scheduler.events?.on('scheduler:stopping', () => {
        backlog.stop().catch(() => undefined);
      });
    }
    return this.#syncLoop.start(cursor);
  }

  /** The backlog claimer of `scheduler`: claims due tasks in batches as its run slots free up. */
  #newBacklogClaimer(scheduler: StorageScheduler): BacklogClaimer {
    const state = this.#state;
    return new BacklogClaimer({
      repository: state.repository,
      durable: state.durable,
      clock: state.clockProxy,
      nodeId: state.nodeId,
      leaseMs: state.leaseMs,
      workIds: () => state.registry.workIds().filter((workId) => state.claimsBacklogOf(workId)),
      freeSlots: () => (scheduler.concurrency ?? 1) - (scheduler.running ?? 0),
      claimAhead: state.options.claimAhead ?? Math.min(BACKLOG_BATCH_MAX, Number.isFinite(scheduler.concurrency) ? (scheduler.concurrency ?? 1) : BACKLOG_BATCH_MAX),
      agingMs: scheduler.agingMs ?? DEFAULT_AGING_MS,
      schedule: (claim) => scheduler.schedule(state.restoredContext(claim.task, undefined, claim)),
      refused: (claim, error) => {
        if (isStopReason(error)) return;
        // The chain of this node refuses tasks of this work (a middleware before storage threw): a batch claim
        // cannot tell which ones before it claims them, so the work's tasks are held on timers from now on, where
        // a refusal writes nothing and is reported once per row (sync:error).
        state.refusedWorks.add(claim.task.workId);
      },
      onRepositoryError: (taskId, error, attempt) => state.reportRenewalError(taskId, error, attempt),
      onClaimError: (error) =>
        state.health.failed({
          operation: 'claimDue',
          taskId: undefined,
          attempt: 1,
          error: error instanceof RepositoryError ? error : new RepositoryError(`a batch claim of the backlog failed: ${errorMessage(error)}`, { cause: error }),
          retryInMs: undefined,
        }),
    });
  }

  /** {@inheritDoc StorageMiddleware.sync} */
  sync(): Promise<SyncReport> {
    const state = this.#state;
    if (state.scheduler === undefined) return Promise.reject(new HoraeError('INVALID_STATE', 'call storage.start(scheduler) before sync()'));
    return this.#syncLoop.sync();
  }

  /** {@inheritDoc StorageMiddleware.stop} */
  async stop(): Promise<void> {
    const state = this.#state;
    state.stopping = true;
    this.#offStopping?.();
    this.#offStopping = undefined;
    await this.#syncLoop.stop();
    // Kept after it stopped: a claim still in flight when a local task ends is handed back through it.
    await state.backlog?.stop();
    // The schedule() calls queued for a slot of the gate first: none of them may write after the stop.
    await state.gate.idle();
    await state.durable.idle();
  }

  /** {@inheritDoc StorageMiddleware.cancel} */
  cancel(taskId: string, reason?: string): Promise<boolean> {
    return this.#handles.cancel(taskId, reason);
  }

  /**
   * A work's `concurrency` bounds its runs on this node too (a node never needs more local slots than the whole
   * cluster has); a lower node-local limit set on the scheduler stays. Reports the works whose limit the
   * repository cannot enforce across nodes.
   */
  #applyWorkLimits(scheduler: StorageScheduler): void {
    const state = this.#state;
    const limited = state.registry.workIds().filter((workId) => state.registry.get(workId).options.concurrency !== undefined);
    for (const workId of limited) {
      const concurrency = state.registry.get(workId).options.concurrency!;
      if (scheduler.setWorkConcurrency !== undefined && (scheduler.workConcurrency?.(workId) ?? Number.POSITIVE_INFINITY) > concurrency) {
        scheduler.setWorkConcurrency(workId, concurrency);
      }
    }
    if (limited.length > 0 && !isWorkLimiter(state.repository)) state.events.emit('work-limit:node-local', { workIds: limited });
  }
}
