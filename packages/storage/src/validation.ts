import { DEFAULT_AGING_MS, InvalidInputError } from '@horae/core';
import { ALL_TASK_KINDS, DEFAULT_MAX_UNSTARTED_CLAIMS, type JsonValue, type NewTask, type TaskError, type TaskPatch } from './task-info.js';

/** Longest message kept on a stored error. */
export const MAX_ERROR_MESSAGE_LENGTH = 2_000;
/** Longest stack kept on a stored error. */
export const MAX_ERROR_STACK_LENGTH = 8_000;

/**
 * Checks that `value` is plain JSON, so that it round-trips through any repository unchanged.
 *
 * @remarks Refused: undefined (inside objects and arrays too), functions, symbols, bigints, NaN and
 * ±Infinity, cycles, and objects that are not plain (Date, Map, class instances): a Date would come back as
 * a string, so pass `date.toISOString()` yourself.
 * @throws InvalidInputError naming the path of the first offending value
 */
export function assertJsonValue(value: unknown, what = 'param'): asserts value is JsonValue {
  const seen = new Set<object>();
  const visit = (v: unknown, path: string): void => {
    if (v === null || typeof v === 'string' || typeof v === 'boolean') return;
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw new InvalidInputError(`${path} is ${String(v)}, which JSON cannot hold`);
      return;
    }
    if (typeof v !== 'object') throw new InvalidInputError(`${path} is a ${typeof v}, which JSON cannot hold`);
    if (seen.has(v)) throw new InvalidInputError(`${path} refers back to itself (a cycle); JSON cannot hold it`);
    seen.add(v);
    if (Array.isArray(v)) {
      v.forEach((item, i) => visit(item, `${path}[${i}]`));
    } else {
      const proto = Object.getPrototypeOf(v) as unknown;
      if (proto !== Object.prototype && proto !== null) {
        const name = (v as { constructor?: { name?: string } }).constructor?.name ?? 'object';
        throw new InvalidInputError(`${path} is a ${name}, not plain JSON${name === 'Date' ? ' (pass date.toISOString())' : ''}`);
      }
      for (const [key, item] of Object.entries(v)) visit(item, `${path}.${key}`);
    }
    seen.delete(v);
  };
  visit(value, what);
}

function assertDate(value: unknown, what: string): asserts value is Date {
  if (!(value instanceof Date) || !Number.isFinite(value.getTime())) throw new InvalidInputError(`${what} must be a valid Date, got ${String(value)}`);
}

function assertInteger(value: unknown, what: string, min: number): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) throw new InvalidInputError(`${what} must be an integer ≥ ${min}, got ${String(value)}`);
}

function assertPriority(value: unknown): asserts value is number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new InvalidInputError(`priority must be a finite number, got ${String(value)}`);
}

/** A {@link NewTask} with every default applied. */
export type NormalizedNewTask = Required<Omit<NewTask, 'id'>> & { id: string | undefined };

/**
 * Validates a {@link NewTask} and applies its defaults; every adapter calls it before writing.
 *
 * @throws InvalidInputError on any bad field
 */
export function normalizeNewTask(task: NewTask): NormalizedNewTask {
  if (task === null || typeof task !== 'object') throw new InvalidInputError('a task must be an object');
  if (typeof task.workId !== 'string' || task.workId === '') throw new InvalidInputError('workId must be a non-empty string');
  if (task.id !== undefined && (typeof task.id !== 'string' || task.id === '')) throw new InvalidInputError('id must be a non-empty string');
  assertDate(task.scheduledAt, 'scheduledAt');
  const param = task.param === undefined ? null : task.param;
  assertJsonValue(param);
  const priority = task.priority ?? 0;
  assertPriority(priority);
  const maxAttempts = task.maxAttempts ?? 1;
  assertInteger(maxAttempts, 'maxAttempts', 1);
  const uniqueKey = task.uniqueKey ?? null;
  if (uniqueKey !== null && (typeof uniqueKey !== 'string' || uniqueKey === '')) throw new InvalidInputError('uniqueKey must be a non-empty string or null');
  const scheduleName = task.scheduleName ?? null;
  if (scheduleName !== null && (typeof scheduleName !== 'string' || scheduleName === '')) throw new InvalidInputError('scheduleName must be a non-empty string or null');
  const kind = task.kind ?? (scheduleName === null ? 'scheduled' : 'periodic');
  if (!ALL_TASK_KINDS.includes(kind)) throw new InvalidInputError(`kind must be one of ${ALL_TASK_KINDS.join(', ')}, got ${String(kind)}`);
  return { id: task.id, workId: task.workId, param, scheduledAt: task.scheduledAt, priority, maxAttempts, uniqueKey, kind, scheduleName };
}

/** Validates a {@link TaskPatch}. @throws InvalidInputError on any bad field */
export function validatePatch(patch: TaskPatch): void {
  if (patch === null || typeof patch !== 'object') throw new InvalidInputError('a patch must be an object');
  if (patch.scheduledAt !== undefined) assertDate(patch.scheduledAt, 'scheduledAt');
  if (patch.param !== undefined) assertJsonValue(patch.param);
  if (patch.priority !== undefined) assertPriority(patch.priority);
}

/** Validates a lease duration. @throws InvalidInputError unless an integer ≥ 0 */
export function validateLeaseMs(leaseMs: unknown): asserts leaseMs is number {
  assertInteger(leaseMs, 'leaseMs', 0);
}

/** Validates a page size. @throws InvalidInputError unless an integer ≥ 1 */
export function validateLimit(limit: unknown): asserts limit is number {
  assertInteger(limit, 'limit', 1);
}

/** Turns anything thrown into a bounded {@link TaskError} for storage. */
export function toTaskError(error: unknown): TaskError {
  if (error instanceof Error) {
    const out: TaskError = { message: error.message.slice(0, MAX_ERROR_MESSAGE_LENGTH), name: error.name };
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string' || typeof code === 'number') out.code = String(code);
    if (error.stack !== undefined) out.stack = error.stack.slice(0, MAX_ERROR_STACK_LENGTH);
    return out;
  }
  return { message: String(error).slice(0, MAX_ERROR_MESSAGE_LENGTH) };
}

// The default aging of the claim order (`ClaimDueOptions.agingMs`) is the core Dispatcher's, so both order alike.
export { DEFAULT_AGING_MS } from '@horae/core';

/**
 * The `agingMs` of a claim of due tasks: left out, {@link DEFAULT_AGING_MS}; otherwise a number > 0, or Infinity
 * (priority alone). Only a left-out value takes the default: null is bad input.
 *
 * @returns agingMs, or its default
 * @throws InvalidInputError on anything else (null, NaN, 0, a negative number, a string)
 */
export function checkAgingMs(agingMs: number | undefined): number {
  if (agingMs === undefined) return DEFAULT_AGING_MS;
  if (typeof agingMs !== 'number' || Number.isNaN(agingMs) || agingMs <= 0) {
    throw new InvalidInputError(`agingMs must be a number > 0 (or Infinity for priority alone), got ${String(agingMs)}`);
  }
  return agingMs;
}

/**
 * The `maxUnstartedClaims` of `reclaimExpired`: left out, {@link DEFAULT_MAX_UNSTARTED_CLAIMS}; otherwise an
 * integer from 1 to 2^31 − 1 (null is bad input).
 *
 * @returns maxUnstartedClaims, or its default
 * @throws InvalidInputError on anything else
 */
export function checkMaxUnstartedClaims(value: number | undefined): number {
  if (value === undefined) return DEFAULT_MAX_UNSTARTED_CLAIMS;
  // At most 2^31 − 1: the counter is a 32-bit integer column on SQL databases, and a value no column can hold would
  // fail every reclaim as a database error rather than as bad input.
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > 2_147_483_647) {
    throw new InvalidInputError(`maxUnstartedClaims must be an integer from 1 to 2147483647, got ${String(value)}`);
  }
  return value;
}
