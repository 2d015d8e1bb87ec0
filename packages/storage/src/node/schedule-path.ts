import { randomUUID } from 'node:crypto';
import {
  InvalidInputError,
  MaxAttemptsKey,
  ParamKey,
  ScheduleAbortedError,
  ScheduleCallKey,
  TaskCancelledError,
  TaskIdKey,
  UniqueKeyKey,
  quoteInput,
  type ScheduleHandler,
  type SchedulerContext,
  type TaskHandle,
  type ValueKey,
} from '@horae/core';
import { BacklogClaimKey, type BacklogClaim } from './backlog-claimer.js';
import { cancelIfWritten, insertDurably } from './durable-insert.js';
import type { LocalHandles } from './local-handles.js';
import type { LocalTask } from './local-task.js';
import type { RunPath } from './run-path.js';
import { RestoredTaskKey } from './storage-options.js';
import type { StorageState } from './storage-state.js';
import type { NewTask, TaskInfo } from '../contract/task-info.js';
import { normalizeNewTask } from '../contract/validation.js';

/**
 * The schedule time of the storage middleware: a new task is validated and inserted before the chain arms its
 * local timer (a uniqueKey that a live task holds gives that task's handle instead); a stored task (restored by
 * sync, met by its uniqueKey, or claimed with the backlog) is held without a second insert. Either way the work the
 * chain receives is the run path's ({@link RunPath.wrap}).
 */
export class SchedulePath {
  readonly #state: StorageState;
  readonly #handles: LocalHandles;
  readonly #run: RunPath;

  /**
   * @param state - what the parts of this storage middleware share
   * @param handles - builds the local tasks and follows their timers
   * @param run - wraps the work of each held task
   */
  constructor(state: StorageState, handles: LocalHandles, run: RunPath) {
    this.#state = state;
    this.#handles = handles;
    this.#run = run;
  }

  /**
   * A new task: validated, inserted (through the schedule gate, retried through an outage), then held here unless
   * it is due beyond the sync window. Nothing is written when the input is invalid.
   * @throws InvalidInputError on a missing workId, an unknown work, an invalid param or a taken task id
   */
  async insert(next: ScheduleHandler, ctx: SchedulerContext): Promise<TaskHandle> {
    const workId = ctx.workId;
    if (workId === undefined) {
      throw new InvalidInputError('a durable task needs a workId: register its work in the WorkRegistry and schedule it by workId');
    }
    const registered = this.#state.registry.get(workId);
    const param = this.#state.registry.validateParam(workId, ctx.param);
    const id = ctx.taskId ?? randomUUID();
    if (this.#state.entries.has(id)) throw new InvalidInputError(`a task with the id ${quoteInput(id)} is already scheduled`);
    const task: NewTask & { id: string } = {
      id,
      workId,
      param,
      scheduledAt: ctx.runAt,
      priority: ctx.priority,
      maxAttempts: ctx.value(MaxAttemptsKey) ?? registered.options.maxAttempts ?? this.#state.maxAttempts,
      uniqueKey: ctx.value(UniqueKeyKey) ?? null,
      // Due at or before the schedule call: "run now"; later: "run at". Occurrences of recurring schedules are
      // inserted by the materializer as 'periodic'.
      kind: ctx.runAt.getTime() <= this.#state.clock.now() ? 'immediate' : 'scheduled',
    };
    normalizeNewTask(task);
    // A placeholder, so that a sync pass that reads the new row before this call holds it does not schedule it twice.
    const entry = this.#handles.newEntry(id, workId, 'inserting', ctx.runAt, ctx.priority);
    this.#state.entries.set(id, entry);
    let inserted: TaskInfo;
    try {
      const result = await insertDurably({ repository: this.#state.repository, durable: this.#state.durable, gate: this.#state.gate }, task, ctx.value(ScheduleCallKey));
      if (!result.created) {
        this.#state.entries.delete(id);
        return await this.#existing(next, ctx, result.task);
      }
      inserted = result.task;
    } catch (error) {
      if (error instanceof ScheduleAbortedError && error.mayHaveBeenWritten) this.#abandon(entry);
      else if (this.#state.entries.get(id) === entry) this.#state.entries.delete(id);
      throw error;
    }
    this.#state.events.emit('task:scheduled', { task: inserted, source: 'inserted' });
    if (inserted.scheduledAt.getTime() >= this.#state.clock.now() + this.#state.windowMs) {
      // Beyond the window: no local timer; sync arms one when the task enters the window.
      entry.phase = 'remote';
      return entry.handle;
    }
    return this.hold(next, ctx, inserted);
  }

  /**
   * A schedule call gave up its insert after a try failed without an answer: the row may exist. The placeholder
   * stays, marked cancelled, so that this node neither restores nor runs such a row, until a cancel of the id has
   * landed (or the repository said no task has it); then the placeholder's handle (a later call may have met the
   * row by its uniqueKey) ends cancelled.
   */
  #abandon(entry: LocalTask): void {
    entry.cancelRequested = true;
    void cancelIfWritten({ repository: this.#state.repository, durable: this.#state.durable }, entry.taskId).then(() => {
      entry.outcome ??= { state: 'cancelled', value: new TaskCancelledError('the schedule() call of this task was aborted') };
      this.#state.settle(entry);
    });
  }

  /** A uniqueKey hit: the handle of the live task that holds the key. */
  async #existing(next: ScheduleHandler, ctx: SchedulerContext, task: TaskInfo): Promise<TaskHandle> {
    // Held already (even while its own schedule call is still inserting it): that call arms the timer.
    const held = this.#state.entries.get(task.id);
    if (held !== undefined) return held.handle;
    this.#state.events.emit('task:scheduled', { task, source: 'existing' });
    if (task.state === 'Initialized' && this.#state.registry.has(task.workId)) {
      const work = task.workId === ctx.workId ? ctx.work : undefined;
      return this.hold(next, this.#state.restoredContext(task, work), task);
    }
    // It runs on another node: a handle that settles when sync sees it end.
    const entry = this.#handles.newEntry(task.id, task.workId, 'remote', task.scheduledAt, task.priority);
    this.#state.entries.set(task.id, entry);
    return entry.handle;
  }

  /**
   * Holds a stored task on this node: wraps its work and arms a local timer through `next`. The task is
   * Initialized, or, with `claim`, already claimed by this node in a batch of the backlog (its run starts at once
   * and makes no claim of its own).
   */
  async hold(next: ScheduleHandler, ctx: SchedulerContext, task: TaskInfo, claim?: BacklogClaim): Promise<TaskHandle> {
    let entry = this.#state.entries.get(task.id);
    if (claim === undefined) {
      if (entry !== undefined && (entry.backlog !== undefined || (entry.phase === 'scheduled' && entry.handle.inner !== undefined))) return entry.handle;
    } else if (entry !== undefined) {
      if (entry.controller !== undefined || entry.backlog !== undefined || (entry.phase === 'inserting' && entry.cancelRequested)) {
        // A run of this node still holds the task (a zombie whose lease was reclaimed, not back yet), a batch claim
        // waits for it already, or it is the row of an abandoned insert, being cancelled (#abandon): this claim is
        // handed back; the task is claimed again once it is free.
        void this.#state.handBack(undefined, claim);
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
      this.#state.events.emit('task:scheduled', { task, source: 'claimed' });
    }
    if (entry === undefined) {
      entry = this.#handles.newEntry(task.id, task.workId, 'scheduled', task.scheduledAt, task.priority);
      this.#state.entries.set(task.id, entry);
    }
    entry.backlog = claim;
    entry.phase = 'scheduled';
    entry.workId = task.workId;
    entry.scheduledAt = task.scheduledAt.getTime();
    entry.priority = task.priority;
    entry.handle.knownRunAt = task.scheduledAt;
    entry.handle.knownPriority = task.priority;
    const generation = ++entry.generation;
    const registered = this.#state.registry.get(task.workId);
    // Each `with...` copies the context (and a change of values its map of values): only what differs is set, and
    // the values that differ in one copy, so that a restored or claimed context, built by restoredContext with the
    // row's id, due time and param, costs one copy of the context and one of its map.
    let inner = ctx.withWork(this.#run.wrap(entry, generation, ctx.work ?? registered.work, registered));
    if (inner.runAtMs !== task.scheduledAt.getTime()) inner = inner.withRunAt(task.scheduledAt);
    if (inner.priority !== task.priority) inner = inner.withPriority(task.priority);
    const values: [ValueKey<unknown>, unknown][] = [];
    if (inner.value(TaskIdKey) !== task.id) values.push([TaskIdKey, task.id]);
    const param = this.#state.freeParam ? undefined : task.param;
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
      if (claim !== undefined) void this.#state.handBack(entry, claim);
      if (this.#state.entries.get(task.id) === entry && entry.generation === generation) this.#state.entries.delete(task.id);
      throw error;
    }
    if (entry.generation === generation) {
      entry.handle.inner = handle;
      this.#handles.watch(entry, handle);
    }
    return entry.handle;
  }
}
