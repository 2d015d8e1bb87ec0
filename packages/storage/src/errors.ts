import { HoraeError, type HoraeErrorOptions } from '@horae/core';

/** No task has this id. */
export class TaskNotFoundError extends HoraeError {
  /** @param taskId - the id that was looked up */
  constructor(readonly taskId: string) {
    super('TASK_NOT_FOUND', `no task has the id "${taskId}"`);
  }
}

/**
 * A write carried a lease token that no longer holds the task: its lease expired and was reclaimed, or
 * the task ended elsewhere. The writer is a zombie; its result is discarded (fencing).
 */
export class LeaseLostError extends HoraeError {
  /** @param taskId - the task whose lease was lost */
  constructor(readonly taskId: string, message = `the lease on task "${taskId}" is no longer held by this token`) {
    super('LEASE_LOST', message);
  }
}

/** The transition is not allowed from the task's current state (for example, any change to a terminal task). */
export class InvalidStateError extends HoraeError {
  /**
   * @param taskId - the task
   * @param state - its current state
   * @param action - what was attempted
   */
  constructor(readonly taskId: string, readonly state: string, action: string) {
    super('INVALID_STATE', `cannot ${action} task "${taskId}": it is ${state}`);
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
    super('NOT_DUE', `task "${taskId}" is not due for another ${dueInMs} ms by the database's clock`);
  }
}

/** The database cannot be reached or failed; the original driver error is the `cause`. */
export class RepositoryError extends HoraeError {
  /** @param message - what failed */
  constructor(message: string, options?: HoraeErrorOptions) {
    super('REPOSITORY_UNAVAILABLE', message, options);
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
