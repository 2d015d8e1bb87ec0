/**
 * Every error Horae throws is a {@link HoraeError} with a stable `code`; callers branch on the code
 * (or on a subclass with `instanceof` where one exists) and find the underlying failure in `cause`.
 */

/** The codes a {@link HoraeError} can carry. Stable across versions: match on them, not on messages. */
export type HoraeErrorCode =
  | 'INVALID_INPUT'
  | 'SCHEDULER_STOPPED'
  | 'TIMEOUT'
  | 'STALLED'
  | 'CANCELLED'
  | 'NOT_RETRYABLE'
  | 'RUN_DEFERRED'
  | 'RUN_ABANDONED'
  | 'TASK_NOT_FOUND'
  | 'SCHEDULE_NOT_FOUND'
  | 'LEASE_LOST'
  | 'INVALID_STATE'
  | 'NOT_DUE'
  | 'POISON_TASK'
  | 'UNKNOWN_WORK'
  | 'DUPLICATE_KEY'
  | 'REPOSITORY_UNAVAILABLE'
  | 'SCHEMA_VERSION'
  | 'DATABASE_FILE_REPLACED'
  | 'HOOK_DELIVERY_FAILED'
  | 'SCHEDULE_ABORTED'
  | 'SCHEDULE_TIMEOUT'
  | 'BACKPRESSURE'
  /**
   * A package an adapter loads at import (its database driver, a peer dependency such as `pg` or `mongodb`)
   * is not installed. The message names the package and the command that installs it.
   */
  | 'MISSING_DEPENDENCY';

/** Options shared by every Horae error constructor. */
export interface HoraeErrorOptions {
  /** The underlying error (a driver error, the work's own error). */
  cause?: unknown;
}

/**
 * Base class of every error Horae throws.
 *
 * @remarks Adapters translate their driver's errors into a HoraeError and keep the original as `cause`.
 */
export class HoraeError extends Error {
  /** Stable machine-readable code. */
  readonly code: HoraeErrorCode;

  /**
   * @param code - the stable code callers match on
   * @param message - a sentence a person can act on
   * @param options - `cause`: the underlying error
   */
  constructor(code: HoraeErrorCode, message: string, options?: HoraeErrorOptions) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
  }
}

/** Bad input: an invalid date, a missing work function, a param that is not JSON or fails validation. Nothing was written. */
export class InvalidInputError extends HoraeError {
  /** @param message - what was wrong with the input, and where */
  constructor(message: string, options?: HoraeErrorOptions) {
    super('INVALID_INPUT', message, options);
  }
}

/** Thrown by `schedule()` once `stop()` has been called. Nothing was scheduled. */
export class SchedulerStoppedError extends HoraeError {
  /** @param message - defaults to a sentence saying the scheduler is stopped */
  constructor(message = 'the scheduler is stopped; it takes no new tasks') {
    super('SCHEDULER_STOPPED', message);
  }
}

/** A run exceeded its timeout: its signal was aborted with this error and the run failed with it. */
export class TimeoutError extends HoraeError {
  /** @param timeoutMs - the limit that was exceeded */
  constructor(readonly timeoutMs: number) {
    super('TIMEOUT', `the run exceeded its timeout of ${timeoutMs} ms`);
  }
}

/** A run whose progress did not move within its stall timeout: its signal was aborted with this error. */
export class StalledError extends HoraeError {
  /** @param stallTimeoutMs - the window within which progress had to move */
  constructor(readonly stallTimeoutMs: number) {
    super('STALLED', `the run made no progress within ${stallTimeoutMs} ms`);
  }
}

/** The task was cancelled: a cancelled task's `handle.result` rejects with this, and a running one's signal aborts with it. */
export class TaskCancelledError extends HoraeError {
  /** @param reason - why it was cancelled */
  constructor(reason = 'the task was cancelled', options?: HoraeErrorOptions) {
    super('CANCELLED', reason, options);
  }
}

/**
 * Thrown by a work function to say "do not retry": the task fails at once, whatever attempts are left.
 *
 * @example
 * ```ts
 * if (!user) throw new UnrecoverableError('the user was deleted');
 * ```
 */
export class UnrecoverableError extends HoraeError {
  /** @param message - why retrying cannot help */
  constructor(message: string, options?: HoraeErrorOptions) {
    super('NOT_RETRYABLE', message, options);
  }
}

/**
 * Thrown by a middleware's wrapped work to hand the run back to the core: the task is queued again at
 * `runAt` (its handle returns to `scheduled`, `handle.result` stays pending). The retry middleware and the
 * storage middlewares use it for retries and for runs released at a graceful stop.
 */
export class RunDeferred extends HoraeError {
  /**
   * @param runAt - when the task should run next
   * @param reason - why (an error message for a retry, "stopping" for a release)
   */
  constructor(
    readonly runAt: Date,
    reason = 'the run was deferred',
    options?: HoraeErrorOptions,
  ) {
    super('RUN_DEFERRED', reason, options);
  }
}

/**
 * Thrown by a middleware's wrapped work to drop the task on this node without running it, for example
 * when another node won the claim. The local handle ends `cancelled` and its result rejects with this error.
 */
export class RunAbandoned extends HoraeError {
  /** @param reason - why this node will not run the task */
  constructor(reason: string, options?: HoraeErrorOptions) {
    super('RUN_ABANDONED', reason, options);
  }
}

/**
 * A `schedule()` call was ended by its `signal` before its task was known to be written (see
 * `ScheduleCallOptions`). Its `cause` is the signal's reason.
 *
 * Rules: the call was never written, and no later try writes it (`mayHaveBeenWritten` false), when it was aborted
 * before its first try; once a try failed with an outage, that try may have landed all the same (a commit whose
 * reply was lost), so `mayHaveBeenWritten` is true, and the storage middleware writes a cancel for `taskId`,
 * retried until it lands, so that such a row never runs.
 */
export class ScheduleAbortedError extends HoraeError {
  /**
   * @param taskId - the id the task had (or would have had), when one was chosen
   * @param mayHaveBeenWritten - whether a try was made whose outcome is unknown
   * @param options - `cause`: the signal's reason
   * @param message - what happened
   * @param code - `SCHEDULE_ABORTED`, or `SCHEDULE_TIMEOUT` for {@link ScheduleTimeoutError}
   */
  constructor(
    readonly taskId: string | undefined,
    readonly mayHaveBeenWritten: boolean,
    options?: HoraeErrorOptions,
    message = `schedule() was aborted by its signal${mayHaveBeenWritten ? '; a try failed without an answer, so the task is being cancelled in case it was written' : '; nothing was written'}`,
    code: 'SCHEDULE_ABORTED' | 'SCHEDULE_TIMEOUT' = 'SCHEDULE_ABORTED',
  ) {
    super(code, message, options);
  }
}

/** A `schedule()` call did not settle within its `timeoutMs`; otherwise the rules of {@link ScheduleAbortedError}. */
export class ScheduleTimeoutError extends ScheduleAbortedError {
  /**
   * @param timeoutMs - the call's limit
   * @param taskId - the id the task had (or would have had), when one was chosen
   * @param mayHaveBeenWritten - whether a try was made whose outcome is unknown
   */
  constructor(
    readonly timeoutMs: number,
    taskId: string | undefined,
    mayHaveBeenWritten: boolean,
  ) {
    super(
      taskId,
      mayHaveBeenWritten,
      undefined,
      `schedule() did not settle within its timeout of ${timeoutMs} ms${mayHaveBeenWritten ? '; a try failed without an answer, so the task is being cancelled in case it was written' : '; nothing was written'}`,
      'SCHEDULE_TIMEOUT',
    );
  }
}
