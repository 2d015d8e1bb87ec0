/**
 * The scheduler's per-task object, which is also the {@link TaskHandle} that `schedule()` returns. It is kept
 * small because one exists per pending task; what only a watched task needs (its result promise, progress,
 * custom id, outcome) lives in a {@link TaskExtras} created on demand.
 *
 * @internal
 * @packageDocumentation
 */
import type { ProgressReport, ValueKey, WorkFn } from './context.js';
import { TaskCancelledError } from './errors.js';
import type { TaskHandle, TaskRunState } from './middleware.js';
import type { RunContext, RunHost } from './run-context.js';

/** Queued in the TimerQueue. @internal */
export const QUEUED = 0;
/** Due, waiting in the Dispatcher for a slot. @internal */
export const WAITING = 1;
/** Its work is running. @internal */
export const RUNNING = 2;
/** Ended: the work succeeded. @internal */
export const DONE = 3;
/** Ended: the work failed. @internal */
export const FAILED = 4;
/** Ended: cancelled or abandoned. @internal */
export const CANCELLED = 5;

const STATE_NAMES: readonly TaskRunState[] = ['scheduled', 'scheduled', 'running', 'done', 'failed', 'cancelled'];

const RESOLVED_TRUE = Promise.resolve(true);
const RESOLVED_FALSE = Promise.resolve(false);
const noop = (): void => {};

/** What a Task asks of its scheduler. @internal */
export interface TaskHost {
  /** The task's id (generated ids are derived from its slot and seq, not stored). */
  idOf(task: Task): string;
  /** The task's current runAt, epoch ms. */
  runAtOf(task: Task): number;
  /** Cancels the task; true when this call cancelled it. */
  cancel(task: Task, reason: string | undefined): boolean;
}

/** The rarely needed part of a task, allocated on first need. @internal */
export class TaskExtras {
  /** A custom id (given, from TaskIdKey, or from the idGenerator option). */
  id: string | undefined = undefined;
  /** The last progress reported. */
  progress: ProgressReport | undefined = undefined;
  /** The result promise, once somebody read `handle.result`. */
  promise: Promise<unknown> | undefined = undefined;
  /** Settles `promise` while the task has not ended. */
  resolve: ((value: unknown) => void) | undefined = undefined;
  /** Settles `promise` while the task has not ended. */
  reject: ((error: unknown) => void) | undefined = undefined;
  /** Once ended: the value (done), the error (failed, cancelled), or the cancel reason while `lazyCancel`. */
  outcome: unknown = undefined;
  /** Cancelled before it ran: `outcome` holds the reason; the error is built when first needed. */
  lazyCancel = false;
  /** A generated task's slot reservation, released when its first run starts (see GeneratorPool). */
  reservation: { release(): void } | undefined = undefined;
}

// `bits` packs the status (low 3 bits) and the attempt (the rest) into one small integer: one field less per
// pending task.
const STATUS_MASK = 7;

/**
 * A scheduled task and its handle.
 *
 * Memory rules (one of these exists per pending task, the bench budget is ~150 bytes a task in all): nine fields,
 * all small integers or pointers to objects that exist anyway; the scheduler (`host`) is on a per-scheduler
 * prototype, not in a field; ending a task stores nothing but small integers in it (no allocation), unless the
 * outcome is a value or someone watches the task, so that a finished task does not drag young objects into
 * the old generation.
 *
 * @internal
 */
export class Task implements TaskHandle {
  /** The scheduler; set on the prototype of a per-scheduler subclass (see the Scheduler constructor). Its runs reach it through here too. */
  declare readonly host: TaskHost & RunHost;
  /** Status (QUEUED … CANCELLED) and attempt, packed. */
  bits: number;
  /**
   * While the task is not in the TimerQueue (due, running, ended): its runAt, relative to the scheduler's base
   * time, so that it is a small integer and not a boxed double. While queued, the queue holds the runAt.
   */
  runAtRel: number | undefined = undefined;
  /** The run in progress, while its work awaits a promise (a run executing synchronously is found on the scheduler instead, see Scheduler #run). */
  run: RunContext | undefined = undefined;
  /** The rarely needed part. */
  x: TaskExtras | undefined = undefined;

  /**
   * @param slot - the dense id of the task in the scheduler's tables and the TimerQueue
   * @param seq - its insertion order (part of a generated id)
   * @param priority - its priority
   * @param work - the work to run (dropped once the task ends)
   * @param values - the values of the context it was scheduled with
   */
  constructor(
    readonly slot: number,
    readonly seq: number,
    readonly priority: number,
    public work: WorkFn | undefined,
    readonly values: ReadonlyMap<ValueKey<unknown>, unknown>,
  ) {
    this.bits = QUEUED | (1 << 3);
  }

  /** One of QUEUED … CANCELLED. */
  get status(): number {
    return this.bits & STATUS_MASK;
  }

  set status(status: number) {
    this.bits = (this.bits & ~STATUS_MASK) | status;
  }

  /** The attempt of the next (or current) run, from 1. */
  get attempt(): number {
    return this.bits >>> 3;
  }

  set attempt(attempt: number) {
    this.bits = (attempt << 3) | (this.bits & STATUS_MASK);
  }

  /** {@inheritDoc TaskHandle.taskId} */
  get taskId(): string {
    return this.host.idOf(this);
  }

  /** {@inheritDoc TaskHandle.runAt} */
  get runAt(): Date {
    return new Date(this.host.runAtOf(this));
  }

  /** {@inheritDoc TaskHandle.state} */
  get state(): TaskRunState {
    return STATE_NAMES[this.status]!;
  }

  /** {@inheritDoc TaskHandle.progress} */
  get progress(): ProgressReport | undefined {
    return this.x?.progress;
  }

  /** Whether the task has ended (done, failed or cancelled). */
  get ended(): boolean {
    return this.status >= DONE;
  }

  /** {@inheritDoc TaskHandle.result} */
  get result(): Promise<unknown> {
    const existing = this.x?.promise;
    if (existing !== undefined) return existing;
    const status = this.status;
    let promise: Promise<unknown>;
    if (status === DONE) {
      promise = Promise.resolve(this.x?.outcome);
    } else if (status >= FAILED) {
      // error() first: it tells a lazily cancelled task by its extras not existing yet.
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the work's own error, as thrown
      promise = Promise.reject(this.error());
    } else {
      const x = (this.x ??= new TaskExtras());
      promise = new Promise<unknown>((resolve, reject) => {
        x.resolve = resolve;
        x.reject = reject;
      });
    }
    // The promise is created for a reader; if the reader drops it, its rejection is still not "unhandled".
    void promise.catch(noop);
    (this.x ??= new TaskExtras()).promise = promise;
    return promise;
  }

  /** {@inheritDoc TaskHandle.cancel} */
  cancel(reason?: string): Promise<boolean> {
    return this.host.cancel(this, reason) ? RESOLVED_TRUE : RESOLVED_FALSE;
  }

  /** The error of a failed or cancelled task (built now for a task cancelled before it ran). */
  error(): unknown {
    const x = this.x;
    if (this.status === CANCELLED && (x === undefined || x.lazyCancel)) {
      const reason = x?.outcome;
      const extras = (this.x ??= new TaskExtras());
      extras.lazyCancel = false;
      extras.outcome = new TaskCancelledError(typeof reason === 'string' ? reason : undefined);
    }
    return this.x?.outcome;
  }
}
