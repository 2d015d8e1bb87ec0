import { RunAbandoned, TaskCancelledError, type TaskHandle } from '@horae/core';
import { newLocalTask, type LocalTask } from './local-task.js';
import type { StorageState } from './storage-state.js';
import type { LocalPhase } from './sync.js';
import { TaskNotFoundError } from '../contract/errors.js';
import type { TaskInfo } from '../contract/task-info.js';

/**
 * The local handles of the storage middleware: the handle it returns for each task stays the same while the task
 * moves between local timers and nodes, and settles once, when the task ends for good. This part builds the local
 * tasks with their handles, follows the core's handle of each local timer, and carries out cancels (from a handle,
 * or `storage.cancel`), which are written before anything local is touched.
 */
export class LocalHandles {
  readonly #state: StorageState;

  /** @param state - what the parts of this storage middleware share */
  constructor(state: StorageState) {
    this.#state = state;
  }

  /** A new local task whose handle's `cancel()` is this storage's durable cancel. */
  newEntry(taskId: string, workId: string, phase: LocalPhase, runAt: Date, priority: number): LocalTask {
    return newLocalTask(taskId, workId, phase, runAt, priority, (reason) => this.#cancelFromHandle(taskId, reason));
  }

  async #cancelFromHandle(taskId: string, reason: string | undefined): Promise<boolean> {
    try {
      return await this.cancel(taskId, reason);
    } catch (error) {
      if (error instanceof TaskNotFoundError) return false;
      throw error;
    }
  }

  /** `storage.cancel()`: the rules are those of `StorageMiddleware.cancel`. */
  async cancel(taskId: string, reason?: string): Promise<boolean> {
    const entry = this.#state.entries.get(taskId);
    if (entry !== undefined) entry.cancelRequested = true;
    let result: { task: TaskInfo; cancelled: boolean };
    try {
      result = await this.#state.durable.run('markAsCancelled', taskId, () => this.#state.repository.markAsCancelled(taskId, reason === undefined ? {} : { reason }));
    } catch (error) {
      if (entry !== undefined) entry.cancelRequested = false;
      throw error;
    }
    if (result.cancelled) {
      const reporter = await this.#reportsOwnCancel(taskId, entry?.phase === 'running');
      this.#state.events.emit('task:cancelled', { taskId, task: result.task, origin: 'local', reporter });
    }
    if (entry !== undefined && this.#state.entries.get(taskId) === entry && result.task.state === 'Cancelled') {
      entry.cancelWritten = true;
      const error = new TaskCancelledError(reason);
      entry.outcome = { state: 'cancelled', value: error };
      const inner = entry.handle.inner;
      if (inner === undefined) this.#state.settle(entry);
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
    if (runningHere || !this.#state.multiNode) return true;
    try {
      const attempts = await this.#state.repository.listAttempts(taskId);
      const cut = attempts.find((attempt) => attempt.outcome === 'cancelled');
      return cut === undefined || cut.node === this.#state.nodeId;
    } catch {
      return true;
    }
  }

  /** Follows the core's handle of a local timer: the local task ends with it, unless the timer was replaced. */
  watch(entry: LocalTask, inner: TaskHandle): void {
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
    if (entry.backlog !== undefined) void this.#state.handBack(entry, entry.backlog);
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
    if (entry.outcome === undefined && value instanceof TaskCancelledError && !entry.cancelWritten && !this.#state.stopping) {
      // Cancelled through the local handle of the core (not ours): write it, so that no node runs the task.
      entry.cancelWritten = true;
      this.#state.durable
        .run('markAsCancelled', entry.taskId, () => this.#state.repository.markAsCancelled(entry.taskId, { reason: value.message }))
        .then(
          async (result) => {
            if (!result.cancelled) return;
            const reporter = await this.#reportsOwnCancel(entry.taskId, false);
            this.#state.events.emit('task:cancelled', { taskId: entry.taskId, task: result.task, origin: 'local', reporter });
          },
          () => undefined,
        );
    }
    entry.outcome ??= { state, value };
    this.#state.settle(entry);
  }
}
