import { HoraeError, InvalidInputError, quoteInput, type HoraeErrorOptions } from '@horae/core';

/** No task has this id. */
export class TaskNotFoundError extends HoraeError {
  /** @param taskId - the id that was looked up */
  constructor(readonly taskId: string) {
    super('TASK_NOT_FOUND', `no task has the id ${quoteInput(taskId)}`);
  }
}

/**
 * A write carried a lease token that no longer holds the task: its lease expired and was reclaimed, or
 * the task ended elsewhere. The writer is a zombie; its result is discarded (fencing).
 */
export class LeaseLostError extends HoraeError {
  /** @param taskId - the task whose lease was lost */
  constructor(readonly taskId: string, message = `the lease on task ${quoteInput(taskId)} is no longer held by this token`) {
    super('LEASE_LOST', message);
  }
}

/**
 * The LeaseLostError of a `markAsStarted` whose claim ahead outlived its lease: no other node may have reclaimed the
 * task yet, but any may at any moment, so the run must not start.
 *
 * @param taskId - the task
 * @returns the error every adapter throws for it
 */
export function leaseExpiredBeforeStart(taskId: string): LeaseLostError {
  return new LeaseLostError(taskId, `the lease on task ${quoteInput(taskId)} expired before its run started`);
}

/** The transition is not allowed from the task's current state (for example, any change to a terminal task). */
export class InvalidStateError extends HoraeError {
  /**
   * @param taskId - the task
   * @param state - its current state
   * @param action - what was attempted
   */
  constructor(readonly taskId: string, readonly state: string, action: string) {
    super('INVALID_STATE', `cannot ${action} task ${quoteInput(taskId)}: it is ${state}`);
  }
}

/**
 * A claim by id of a task that is not due yet by the database's clock (a node whose clock runs ahead fired its
 * timer early). Nothing was written; `dueInMs` says how long until it is due, by the database's clock.
 */
export class TaskNotDueError extends HoraeError {
  /**
   * @param taskId - the task
   * @param dueInMs - milliseconds until it is due, by the database's clock (> 0)
   */
  constructor(readonly taskId: string, readonly dueInMs: number) {
    super('NOT_DUE', `task ${quoteInput(taskId)} is not due for another ${dueInMs} ms by the database's clock`);
  }
}

/**
 * The database cannot be reached or failed in a way that a later try may get past: a connection refused or
 * dropped, a timeout, a lock held too long, a full disk, a server shutting down. The original driver error is the
 * `cause`.
 *
 * Rule: this is the one error class the storage layer's durable writer tries again (with backoff, until the write
 * lands). An adapter raises it only for failures that a retry can cure, or that an operator can cure while the
 * write waits; a refusal that no retry can cure is a {@link ValueRefusedError} (or another InvalidInputError).
 */
export class RepositoryError extends HoraeError {
  /** @param message - what failed */
  constructor(message: string, options?: HoraeErrorOptions) {
    super('REPOSITORY_UNAVAILABLE', message, options);
  }
}

/**
 * The database refused a value it can never store: a key over an index's size limit (PostgreSQL SQLSTATE class 54,
 * "index row size exceeds maximum"), a string it cannot hold (class 22: a NUL character, an invalid encoding), a
 * value over its size limit (SQLite `SQLITE_TOOBIG`, MongoDB's 16 MiB document limit), a type it refuses
 * (`SQLITE_MISMATCH`), a constraint it enforces (class 23). The statement failed, so nothing was written, and
 * trying the same call again fails the same way: it is never retried.
 *
 * It is an {@link InvalidInputError} (code `INVALID_INPUT`), so every caller that treats bad input as an answer
 * rather than an outage does the same with it; `driverCode` says what the database answered. Horae's own checks
 * (the key and param limits of `validation.ts`) refuse most such values before any write with a plain
 * InvalidInputError; this class is for what only the database knows (an index an operator added, a limit of the
 * server's build).
 *
 * Which is which: {@link RepositoryError} is an outage (retried until the write lands); ValueRefusedError, like
 * any InvalidInputError, is an answer (thrown to the caller at once).
 */
export class ValueRefusedError extends InvalidInputError {
  /**
   * @param message - what was refused, and why (quoting at most a short prefix of any input)
   * @param driverCode - the database's code for the refusal: a PostgreSQL SQLSTATE (`'54000'`), an SQLite result
   * code (`'SQLITE_TOOBIG'`), a MongoDB server code (`'17280'`)
   * @param options - `cause`: the driver's error
   */
  constructor(
    message: string,
    readonly driverCode: string,
    options?: HoraeErrorOptions,
  ) {
    super(message, options);
  }
}

/** The stored schema is newer than this version of the adapter understands. */
export class SchemaVersionError extends HoraeError {
  /**
   * @param found - the version stored in the database
   * @param supported - the newest version this adapter knows
   */
  constructor(readonly found: number, readonly supported: number) {
    super('SCHEMA_VERSION', `the database holds Horae schema version ${found}, newer than the ${supported} this version understands; upgrade Horae`);
  }
}
