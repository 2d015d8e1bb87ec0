/**
 * Checks of the inputs that `@horae/storage`'s validation helpers do not cover (ids, tokens, errors and
 * progress reports handed to one method), run before anything is queued for writing.
 */
import { InvalidInputError, quoteInput } from '@horae/core';
import { MAX_ERROR_MESSAGE_LENGTH, MAX_ERROR_STACK_LENGTH, MAX_ERROR_NAME_LENGTH, toTaskError, type TaskError, type TaskProgress } from '@horae/storage';

/** @throws InvalidInputError unless `value` is a non-empty string */
export function assertNonEmptyString(value: unknown, what: string): asserts value is string {
  if (typeof value !== 'string' || value === '') throw new InvalidInputError(`${what} must be a non-empty string, got ${quoteInput(value)}`);
}

/** @throws InvalidInputError unless `value` is a Date holding a valid time */
export function assertValidDate(value: unknown, what: string): asserts value is Date {
  if (!(value instanceof Date) || !Number.isFinite(value.getTime())) throw new InvalidInputError(`${what} must be a valid Date, got ${quoteInput(value)}`);
}

/**
 * Bounds a {@link TaskError} for storage: an Error instance goes through `toTaskError`; a plain TaskError
 * keeps its fields, cut to the lengths every repository keeps.
 *
 * @throws InvalidInputError when `error` has no string `message`
 */
export function normalizeTaskError(error: unknown): TaskError {
  if (error instanceof Error) return toTaskError(error);
  if (error === null || typeof error !== 'object' || typeof (error as TaskError).message !== 'string') {
    throw new InvalidInputError('an error to record must be an object with a string message');
  }
  const given = error as TaskError;
  const out: TaskError = { message: given.message.slice(0, MAX_ERROR_MESSAGE_LENGTH) };
  if (typeof given.name === 'string') out.name = given.name.slice(0, MAX_ERROR_NAME_LENGTH);
  if (typeof given.code === 'string') out.code = given.code.slice(0, MAX_ERROR_NAME_LENGTH);
  if (typeof given.stack === 'string') out.stack = given.stack.slice(0, MAX_ERROR_STACK_LENGTH);
  return out;
}

/** @throws InvalidInputError unless `progress` has finite `completed` and `total`, and a string `message` if any */
export function assertProgress(progress: unknown): asserts progress is Omit<TaskProgress, 'at'> {
  if (progress === null || typeof progress !== 'object') throw new InvalidInputError('progress must be an object');
  const { completed, total, message } = progress as Partial<TaskProgress>;
  if (typeof completed !== 'number' || !Number.isFinite(completed)) throw new InvalidInputError(`progress.completed must be a finite number, got ${quoteInput(completed)}`);
  if (typeof total !== 'number' || !Number.isFinite(total)) throw new InvalidInputError(`progress.total must be a finite number, got ${quoteInput(total)}`);
  if (message !== undefined && typeof message !== 'string') throw new InvalidInputError('progress.message must be a string when given');
}

