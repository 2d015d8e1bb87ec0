/**
 * Checks of the arguments the Repository contract leaves to each adapter (ids, tokens, owners, dates),
 * beyond the shared validators of `@horae/storage`. A value that is not a string never reaches a filter,
 * where an object such as `{ $ne: null }` would be read as an operator.
 */
import { InvalidInputError, quoteInput } from '@horae/core';
import { ALL_TASK_STATES, MAX_ERROR_MESSAGE_LENGTH } from '@horae/storage';
import type { TaskError, TaskProgress, TaskState } from '@horae/storage';

/**
 * @param value - the value to check
 * @param what - its name, for the message
 * @throws InvalidInputError unless `value` is a non-empty string
 */
export function assertNonEmptyString(value: unknown, what: string): asserts value is string {
  if (typeof value !== 'string' || value === '') throw new InvalidInputError(`${what} must be a non-empty string, got ${quoteInput(value)}`);
}

/** @throws InvalidInputError unless `value` is a valid Date */
export function assertValidDate(value: unknown, what: string): asserts value is Date {
  if (!(value instanceof Date) || !Number.isFinite(value.getTime())) throw new InvalidInputError(`${what} must be a valid Date, got ${quoteInput(value)}`);
}

/** @throws InvalidInputError unless `value` is one of the five states */
export function assertTaskState(value: unknown): asserts value is TaskState {
  if (!ALL_TASK_STATES.includes(value as TaskState)) throw new InvalidInputError(`state must be one of ${ALL_TASK_STATES.join(', ')}, got ${quoteInput(value)}`);
}

/** @throws InvalidInputError unless `value` is a TaskError (an object with a string message) */
export function assertTaskError(value: unknown): asserts value is TaskError {
  if (typeof value !== 'object' || value === null || typeof (value as TaskError).message !== 'string') {
    throw new InvalidInputError('an error to store must be an object with a string message');
  }
}

/**
 * @throws InvalidInputError unless `value` holds finite `completed` and `total` and an optional string message
 */
export function assertProgress(value: unknown): asserts value is Omit<TaskProgress, 'at'> {
  const p = value as Partial<TaskProgress> | null;
  if (typeof p !== 'object' || p === null) throw new InvalidInputError('progress must be an object');
  if (typeof p.completed !== 'number' || !Number.isFinite(p.completed)) throw new InvalidInputError(`progress.completed must be a finite number, got ${quoteInput(p.completed)}`);
  if (typeof p.total !== 'number' || !Number.isFinite(p.total)) throw new InvalidInputError(`progress.total must be a finite number, got ${quoteInput(p.total)}`);
  if (p.message !== undefined && typeof p.message !== 'string') throw new InvalidInputError('progress.message must be a string');
}

/** Cuts a progress message to the stored length. */
export function boundMessage(message: string | undefined): string | undefined {
  return message === undefined ? undefined : message.slice(0, MAX_ERROR_MESSAGE_LENGTH);
}

