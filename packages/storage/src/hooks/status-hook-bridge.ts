/**
 * The bridge from the storage middleware's events to status hooks: each state change a node makes becomes one
 * `onTransition({ taskId, workId, from, to, attempt, time, error })` call. See docs/status-hooks.md for the table.
 */
import type { TypedEventEmitter } from '@horae/core';
import type { StorageEvents } from '../node/events.js';
import type { StatusChange } from './status-hooks.js';
import type { TaskInfo, TaskState } from '../contract/task-info.js';

/** Anything that takes state changes: the `statusHooks(...)` result, or your own `{ onTransition }`. */
export interface StatusHookTarget {
  /** Called once per state change; should return at once. A throw is caught and reported, never propagated. */
  onTransition(change: StatusChange): void;
}

/** Options of {@link StatusHookBridge}. */
export interface StatusHookBridgeOptions {
  /**
   * How many tasks' last known states are remembered (for the `from` of a cancel). The oldest is forgotten
   * first; a forgotten task's cancel is reported with `from: null`.
   *
   * @defaultValue 10000
   */
  maxTracked?: number;
  /** Called when a hook's `onTransition` throws; the other hooks are still called. @defaultValue none */
  onHookError?: (error: unknown, change: StatusChange) => void;
}

/**
 * Maps storage events to status changes and hands them to every hook.
 *
 * Rules:
 * - `task:scheduled` with source `inserted`: `null → Initialized`; `existing` and `restored` are not
 *   changes (the task was stored already) and report nothing.
 * - `task:started`: `Initialized → Working`; `task:succeeded`: `Working → Done`; `task:retried`:
 *   `Working → Initialized` with the run's error; `task:failed`: `Working → Failed` with the run's error
 *   (`Initialized → Failed` when this node last saw the task Initialized, i.e. it never ran here).
 * - `task:reclaimed` (this node reclaimed an expired lease): `Working → Initialized`, or `Working → Failed` when
 *   the task's attempts were spent; exactly one node reclaims each expired lease, so it is reported once.
 * - `task:cancelled`: `→ Cancelled`, `from` the last state this node saw the task in, else `null`; only on the
 *   node the event names as `reporter` (the node that wrote it; the node that ran the task when it was written
 *   elsewhere; a single node for a cancel written outside it), so each cancel is reported once.
 * - A hook that throws never stops the others, never reaches the storage middleware, and never changes a
 *   task: the transition was written before its event is emitted.
 */
export class StatusHookBridge {
  readonly #events: TypedEventEmitter<StorageEvents>;
  readonly #hooks: readonly StatusHookTarget[];
  readonly #maxTracked: number;
  readonly #onHookError: ((error: unknown, change: StatusChange) => void) | undefined;
  /** Last known state per task, in least-recently-updated order (Map keeps insertion order). */
  readonly #states = new Map<string, TaskState>();
  #unsubscribe: Array<() => void> = [];

  /**
   * @param events - the storage middleware's events
   * @param hooks - the hooks to call, in order
   * @param options - memory bound and error reporting
   */
  constructor(events: TypedEventEmitter<StorageEvents>, hooks: readonly StatusHookTarget[], options: StatusHookBridgeOptions = {}) {
    this.#events = events;
    this.#hooks = hooks;
    this.#maxTracked = options.maxTracked ?? 10_000;
    this.#onHookError = options.onHookError;
  }

  /** How many tasks' states are remembered. */
  get tracked(): number {
    return this.#states.size;
  }

  /** Subscribes to the storage events. Calling it twice does nothing. */
  start(): void {
    if (this.#unsubscribe.length > 0 || this.#hooks.length === 0) return;
    const events = this.#events;
    this.#unsubscribe = [
      events.on('task:scheduled', ({ task, source }) => {
        if (source === 'inserted') this.created(task);
        else if (!this.#states.has(task.id)) this.#remember(task.id, 'Initialized');
      }),
      events.on('task:started', ({ task }) => this.#report(task, 'Initialized', 'Working', undefined)),
      events.on('task:succeeded', ({ task }) => this.#report(task, 'Working', 'Done', undefined)),
      events.on('task:retried', ({ task, error }) => this.#report(task, 'Working', 'Initialized', error)),
      events.on('task:failed', ({ task, error }) => this.#report(task, this.#states.get(task.id) === 'Initialized' ? 'Initialized' : 'Working', 'Failed', error)),
      events.on('task:reclaimed', ({ task }) => this.#report(task, 'Working', task.state, task.state === 'Failed' ? task.lastError ?? undefined : undefined)),
      events.on('task:cancelled', ({ taskId, task, reporter }) => {
        if (reporter) this.#cancelled(taskId, task);
        else this.#states.delete(taskId);
      }),
    ];
  }

  /** Unsubscribes and forgets the remembered states. */
  stop(): void {
    for (const off of this.#unsubscribe.splice(0)) off();
    this.#states.clear();
  }

  /**
   * Reports a task created outside the storage middleware's schedule path (an occurrence of a recurring
   * schedule materialized by this node): `null → Initialized`.
   *
   * @param task - the task as inserted
   */
  created(task: TaskInfo): void {
    this.#report(task, null, 'Initialized', undefined);
  }

  #cancelled(taskId: string, task: TaskInfo | undefined): void {
    const from = this.#states.get(taskId) ?? null;
    this.#states.delete(taskId);
    this.#notify({
      taskId,
      workId: task?.workId ?? '',
      from,
      to: 'Cancelled',
      attempt: task?.attempt ?? 0,
      ...(task === undefined ? {} : { time: task.updatedAt }),
    });
  }

  #report(task: TaskInfo, from: TaskState | null, to: TaskState, error: unknown): void {
    if (to === 'Done' || to === 'Failed') this.#states.delete(task.id);
    else this.#remember(task.id, to);
    const change: StatusChange = { taskId: task.id, workId: task.workId, from, to, attempt: task.attempt, time: task.updatedAt };
    if (error !== undefined) change.error = error;
    this.#notify(change);
  }

  #remember(taskId: string, state: TaskState): void {
    this.#states.delete(taskId);
    this.#states.set(taskId, state);
    if (this.#states.size > this.#maxTracked) {
      const oldest = this.#states.keys().next();
      if (oldest.done !== true) this.#states.delete(oldest.value);
    }
  }

  #notify(change: StatusChange): void {
    for (const hook of this.#hooks) {
      try {
        hook.onTransition(change);
      } catch (error) {
        try {
          this.#onHookError?.(error, change);
        } catch {
          // A broken error reporter must not reach the storage middleware either.
        }
      }
    }
  }
}
