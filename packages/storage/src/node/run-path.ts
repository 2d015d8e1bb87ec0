import {
  InvalidInputError,
  RunAbandoned,
  RunDeferred,
  StalledError,
  TaskCancelledError,
  TimeoutError,
  UnrecoverableError,
  quoteInput,
  type ClockTimer,
  type WorkContext,
  type WorkFn,
} from '@horae/core';
import { fenced } from './fenced-write.js';
import { LeaseKeeper } from './lease-keeper.js';
import type { LocalTask } from './local-task.js';
import { RunAbort } from './run-abort.js';
import { claimForRun, takeBacklogClaim } from './run-claim.js';
import { DEFAULTS } from './storage-options.js';
import { errorMessage, isStopReason, type StorageState } from './storage-state.js';
import { StorageWorkContext } from './storage-work-context.js';
import { LeaseLostError, type RepositoryError, type TaskNotFoundError } from '../contract/errors.js';
import type { TaskInfo } from '../contract/task-info.js';
import { toTaskError } from '../contract/validation.js';
import { retryDelay } from '../works/retry.js';
import type { RegisteredWork } from '../works/work-registry.js';

/**
 * The run time of the storage middleware: the work function it hands the core for each held task claims the task
 * (`run-claim.ts`), runs the work under a renewed lease with storage's context ({@link StorageWorkContext}), and
 * writes how the run ended (Done, a retry, Failed, released, cancelled), fenced by the lease token; a run whose
 * lease was lost is a zombie whose result is discarded.
 */
export class RunPath {
  readonly #state: StorageState;

  /** @param state - what the parts of this storage middleware share */
  constructor(state: StorageState) {
    this.#state = state;
  }

  /**
   * The work function the core runs for a held task: it claims the task (or takes the batch claim waiting for it),
   * checks the stored param again, and runs the work. A run of a replaced local timer stops before it claims.
   * @param generation - the local task's generation when this timer was armed
   * @param work - the work to run (the schedule call's, else the registered one)
   */
  wrap(entry: LocalTask, generation: number, work: WorkFn, registered: RegisteredWork): WorkFn {
    return async (wctx: WorkContext) => {
      if (entry.generation !== generation || entry.handle.settled) {
        throw new RunAbandoned('the local timer was replaced; the task runs from its new timer');
      }
      entry.phase = 'running';
      // A batch claim of this node waiting for the task is this run's claim; otherwise the run claims by id.
      const claimed = entry.backlog !== undefined ? await takeBacklogClaim(this.#state, entry, entry.backlog) : await claimForRun(this.#state, entry);
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
   * Checks the claimed task's stored param against its work's validator again: the validator (or the row) may
   * have changed since the task was scheduled. A work without a validator is not checked: its stored param is
   * JSON already, and a run costs no extra walk over it.
   *
   * @returns the validation error, or undefined when the param is still valid
   */
  #revalidate(claimed: TaskInfo, registered: RegisteredWork): InvalidInputError | undefined {
    if (registered.options.validate === undefined) return undefined;
    try {
      this.#state.registry.validateParam(claimed.workId, claimed.param);
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
    const failed = await fenced(this.#state.durable, 'markAsFailed', id, () => this.#state.repository.markAsFailed(id, toTaskError(error), token));
    if (!failed.ok) return this.#zombie(entry, failed.error);
    this.#state.events.emit('task:failed', { task: failed.value, error });
    entry.outcome = { state: 'failed', value: error };
    // Unrecoverable: a retry middleware outside this one must not run it again.
    throw new UnrecoverableError(`the stored param no longer passes the validation of ${quoteInput(claimed.workId)}: ${error.message}`, { cause: error });
  }

  /** @param taken - the keeper of a batch claim the run took, still renewing its lease: the run takes it over */
  async #run(entry: LocalTask, claimed: TaskInfo, wctx: WorkContext, work: WorkFn, registered: RegisteredWork, taken?: LeaseKeeper): Promise<unknown> {
    const id = entry.taskId;
    const token = claimed.lease?.token ?? '';
    const clock = this.#state.clock;
    const controller = new RunAbort(wctx);
    entry.controller = controller;
    let leaseLost: LeaseLostError | undefined;
    const onLost = (error: LeaseLostError): void => {
      leaseLost = error;
      this.#state.events.emit('task:lease-lost', { taskId: id, error });
      controller.abort(error);
    };
    const onRepositoryError = (error: RepositoryError, attempt: number): void => this.#state.reportRenewalError(id, error, attempt);
    const keeper =
      taken ?? new LeaseKeeper({ repository: this.#state.repository, clock, taskId: id, token, leaseMs: this.#state.leaseMs, onLost, onRepositoryError });
    const { timeoutMs, stallTimeoutMs } = registered.options;
    // One interruption (timeout or stall) ends the run at once, even when the work ignores its signal.
    let interrupt: ((reason: Error) => void) | undefined;
    let timeout: ClockTimer | undefined;
    let stall: ClockTimer | undefined;
    let finished = false;
    const runCtx = new StorageWorkContext(wctx, controller, claimed, id, token, this.#state.repository, clock, this.#state.options.progressThrottleMs ?? DEFAULTS.progressThrottleMs);
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
      if (registered.options.concurrency === undefined && this.#state.finishing < (this.#state.scheduler?.concurrency ?? Number.POSITIVE_INFINITY)) {
        entry.handle.finishing = true;
        this.#state.finishing++;
        entry.ending = this.#finishDone(entry, token, run.value).finally(() => {
          this.#state.finishing--;
        });
        return run.value;
      }
      const done = await fenced(this.#state.durable, 'markAsDone', id, () => this.#state.repository.markAsDone(id, token));
      if (!done.ok) return this.#zombie(entry, done.error);
      this.#state.events.emit('task:succeeded', { task: done.value, result: run.value });
      return run.value;
    }
    if (isStopReason(run.reason)) {
      // A graceful stop cut the run: hand it back, without counting the attempt, for the next start.
      const released = await fenced(this.#state.durable, 'release', id, () => this.#state.repository.release(id, token, { runAt: new Date(this.#state.clock.now()), refundAttempt: true }));
      if (!released.ok) return this.#zombie(entry, released.error);
      entry.outcome = { state: 'cancelled', value: new RunAbandoned('the scheduler stopped; the task was released for the next start', { cause: run.reason }) };
      throw run.error;
    }
    if (run.reason instanceof TaskCancelledError || entry.cancelRequested || entry.cancelWritten) {
      if (!entry.cancelWritten) {
        entry.cancelWritten = true;
        const cancelled = await fenced(this.#state.durable, 'markAsCancelled', id, () => this.#state.repository.markAsCancelled(id, { token, reason: (run.reason as Error | undefined)?.message ?? 'cancelled' }));
        // This node ran the task when it wrote the cancel: it reports it.
        if (cancelled.ok && cancelled.value.cancelled) this.#state.events.emit('task:cancelled', { taskId: id, task: cancelled.value.task, origin: 'local', reporter: true });
      }
      entry.outcome ??= { state: 'cancelled', value: run.reason instanceof TaskCancelledError ? run.reason : new TaskCancelledError() };
      throw run.error;
    }
    if (run.error instanceof RunDeferred) {
      // An inner middleware (a retry middleware) deferred the run: the repository follows.
      const runAt = run.error.runAt;
      const released = await fenced(this.#state.durable, 'release', id, () =>
        this.#state.repository.release(id, token, { runAt, error: toTaskError(run.error instanceof Error && run.error.cause !== undefined ? run.error.cause : run.error) }),
      );
      if (!released.ok) return this.#zombie(entry, released.error);
      this.#rearm(entry, runAt);
      this.#state.events.emit('task:retried', { task: released.value, error: run.error.cause ?? run.error, runAt });
      throw run.error;
    }
    if (run.error instanceof RunAbandoned) {
      // An inner middleware will not run it here: give it back at once, uncounted, for any node.
      const released = await fenced(this.#state.durable, 'release', id, () => this.#state.repository.release(id, token, { runAt: new Date(this.#state.clock.now()), refundAttempt: true }));
      if (!released.ok) return this.#zombie(entry, released.error);
      entry.outcome = { state: 'cancelled', value: run.error };
      throw run.error;
    }
    const delay = retryDelay(claimed.attempt, claimed.maxAttempts, run.error, registered.options.retry ?? this.#state.options.retry);
    if (delay !== null) {
      const runAt = new Date(this.#state.clock.now() + delay);
      const released = await fenced(this.#state.durable, 'release', id, () => this.#state.repository.release(id, token, { runAt, error: toTaskError(run.error) }));
      if (!released.ok) return this.#zombie(entry, released.error);
      this.#rearm(entry, runAt);
      this.#state.events.emit('task:retried', { task: released.value, error: run.error, runAt });
      throw new RunDeferred(runAt, `attempt ${claimed.attempt} of ${claimed.maxAttempts} failed; retrying`, { cause: run.error });
    }
    const failed = await fenced(this.#state.durable, 'markAsFailed', id, () => this.#state.repository.markAsFailed(id, toTaskError(run.error), token));
    if (!failed.ok) return this.#zombie(entry, failed.error);
    this.#state.events.emit('task:failed', { task: failed.value, error: run.error });
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
      const done = await fenced(this.#state.durable, 'markAsDone', id, () => this.#state.repository.markAsDone(id, token));
      if (done.ok) {
        this.#state.events.emit('task:succeeded', { task: done.value, result: value });
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

  /**
   * This node's lease was lost: its result is discarded and the task belongs to whoever holds it now.
   * @param reported - true when the lease keeper already emitted `task:lease-lost`
   */
  #zombie(entry: LocalTask, error: LeaseLostError | TaskNotFoundError, reported = false): never {
    const lost = error instanceof LeaseLostError ? error : new LeaseLostError(entry.taskId, `task ${quoteInput(entry.taskId)} was deleted while it ran`);
    // A run cancelled under it was refused for that reason, not because another node took it over.
    if (!reported && !entry.cancelWritten) this.#state.events.emit('task:lease-lost', { taskId: entry.taskId, error: lost });
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
    this.#state.durable
      .run('getById', taskId, () => this.#state.repository.getById(taskId))
      .then(async (task) => {
        const entry = this.#state.entries.get(taskId);
        if (task.state !== 'Initialized' || (entry !== undefined && entry.phase !== 'remote')) return;
        if (!this.#state.registry.has(task.workId) || task.scheduledAt.getTime() >= this.#state.clock.now() + this.#state.windowMs) return;
        await this.#state.restore(task);
      })
      .catch(() => undefined);
  }
}
