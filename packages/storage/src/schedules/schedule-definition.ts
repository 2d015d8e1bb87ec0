/**
 * Validation and comparison of schedule definitions, shared by every `ScheduleStore` implementation so
 * that all adapters accept, refuse and compare definitions the same way.
 */
import {
  DEFAULT_MAX_CATCH_UP,
  InvalidInputError,
  Recurrence,
  validateCatchUpPolicy,
  validateOverlapPolicy,
  type CatchUpPolicy,
  type OverlapPolicy,
  quoteInput,
} from '@horae/core';
import type { NormalizedScheduleDefinition, ScheduleAdvance, ScheduleDefinition, StoredScheduleSpec } from './schedule-store.js';
import type { JsonValue } from '../contract/task-info.js';
import { MAX_SCHEDULE_NAME_LENGTH, MAX_TASK_ID_LENGTH, MAX_WORK_ID_LENGTH, assertJsonValue, assertKey, type WriteLimits } from '../contract/validation.js';

/** The catch-up policy of a schedule that does not say. */
export const DEFAULT_SCHEDULE_CATCH_UP: CatchUpPolicy = 'once';

/** The overlap policy of a schedule that does not say: at most one occurrence runs at a time. */
export const DEFAULT_SCHEDULE_OVERLAP: OverlapPolicy = 'skip';

/**
 * Checks a schedule name.
 *
 * @param name - the value to check
 * @returns the name, typed
 * @throws InvalidInputError unless a non-empty string of at most {@link MAX_SCHEDULE_NAME_LENGTH} characters
 */
export function validateScheduleName(name: unknown): string {
  assertKey(name, 'a schedule name', MAX_SCHEDULE_NAME_LENGTH);
  return name;
}

/**
 * Validates a {@link ScheduleDefinition} and fills in its defaults; every `ScheduleStore` calls it before
 * writing. The spec is checked by building its `Recurrence`, so a malformed cron expression, an unknown
 * timezone or a cron expression that never fires is refused here.
 *
 * @param definition - the definition to check
 * @param limits - the store's bounds (the param is bounded by `maxParamBytes`; the name and the workId by the
 * fixed key limits)
 * @returns the normalized definition (a copy: the param is cloned)
 * @throws InvalidInputError naming the first bad field
 *
 * @example
 * ```ts
 * normalizeScheduleDefinition({ name: 'nightly', spec: { cron: '30 2 * * *' }, workId: 'report' });
 * // { name: 'nightly', spec: { cron: '30 2 * * *', timezone: 'UTC' }, param: null, catchUp: 'once', ... }
 * ```
 */
export function normalizeScheduleDefinition(definition: ScheduleDefinition, limits: WriteLimits = {}): NormalizedScheduleDefinition {
  if (definition === null || typeof definition !== 'object') throw new InvalidInputError('a schedule definition must be an object');
  const name = validateScheduleName(definition.name);
  assertKey(definition.workId, `the workId of schedule "${name}"`, MAX_WORK_ID_LENGTH);
  const spec = normalizeScheduleSpec(definition.spec);
  const param = definition.param === undefined ? null : definition.param;
  assertJsonValue(param, 'param', limits.maxParamBytes);
  const priority = definition.priority ?? 0;
  if (typeof priority !== 'number' || !Number.isFinite(priority)) throw new InvalidInputError(`priority must be a finite number, got ${quoteInput(priority)}`);
  const maxAttempts = definition.maxAttempts ?? 1;
  if (typeof maxAttempts !== 'number' || !Number.isSafeInteger(maxAttempts) || maxAttempts < 1) {
    throw new InvalidInputError(`maxAttempts must be an integer ≥ 1, got ${quoteInput(maxAttempts)}`);
  }
  const maxCatchUp = definition.maxCatchUp ?? DEFAULT_MAX_CATCH_UP;
  if (typeof maxCatchUp !== 'number' || !Number.isSafeInteger(maxCatchUp) || maxCatchUp < 1) {
    throw new InvalidInputError(`maxCatchUp must be an integer ≥ 1, got ${quoteInput(maxCatchUp)}`);
  }
  return {
    name,
    spec,
    workId: definition.workId,
    param: structuredClone(param),
    priority,
    maxAttempts,
    catchUp: validateCatchUpPolicy(definition.catchUp ?? DEFAULT_SCHEDULE_CATCH_UP),
    maxCatchUp,
    overlap: validateOverlapPolicy(definition.overlap ?? DEFAULT_SCHEDULE_OVERLAP),
  };
}

/**
 * Validates a spec and fills in its defaults (`timezone: 'UTC'`, `anchor: epoch`).
 *
 * @param spec - `{ cron, timezone? }` or `{ everyMs, anchor? }`
 * @returns the spec as stored
 * @throws InvalidInputError when the spec is not one the recurrence engine accepts
 */
export function normalizeScheduleSpec(spec: unknown): StoredScheduleSpec {
  if (spec === null || typeof spec !== 'object') throw new InvalidInputError('a schedule spec must be { cron, timezone? } or { everyMs, anchor? }');
  // The recurrence engine is the one judge of a spec; its normalized spec is what gets stored.
  const recurrence = new Recurrence(spec as ConstructorParameters<typeof Recurrence>[0]);
  const normalized = recurrence.spec;
  return 'cron' in normalized ? { cron: normalized.cron, timezone: normalized.timezone } : { everyMs: normalized.everyMs, anchor: new Date(normalized.anchor.getTime()) };
}

/**
 * The recurrence of a stored spec.
 *
 * @param spec - a stored spec
 * @returns its `Recurrence`, which computes the occurrences
 * @throws InvalidInputError when the spec is not valid
 */
export function scheduleRecurrence(spec: StoredScheduleSpec): Recurrence {
  return new Recurrence(spec);
}

/**
 * The first occurrence of `spec` strictly after `after`: the `nextRunAt` of a new, resumed or re-specified
 * schedule.
 *
 * @param spec - a stored spec
 * @param after - the instant to look past (the database's now, or the last occurrence if later)
 * @returns the occurrence, or null when the spec has none after `after`
 * @throws InvalidInputError when the spec is not valid
 */
export function firstRunAfter(spec: StoredScheduleSpec, after: Date): Date | null {
  return scheduleRecurrence(spec).next(after);
}

/**
 * True when two stored specs are the same rule (same fields, same values).
 *
 * @param a - a stored spec
 * @param b - another
 * @returns whether an upsert from `a` to `b` leaves `nextRunAt` alone
 */
export function sameScheduleSpec(a: StoredScheduleSpec, b: StoredScheduleSpec): boolean {
  if ('cron' in a) return 'cron' in b && a.cron === b.cron && a.timezone === b.timezone;
  return 'everyMs' in b && a.everyMs === b.everyMs && a.anchor.getTime() === b.anchor.getTime();
}

/**
 * True when a stored schedule already has this normalized definition, so that an upsert must write nothing.
 * Params are compared as JSON values, ignoring object key order (a database may reorder keys).
 *
 * @param stored - the stored schedule (any object with the definition's fields)
 * @param next - the normalized definition being upserted
 * @returns whether the two are equal
 */
export function sameScheduleDefinition(stored: NormalizedScheduleDefinition, next: NormalizedScheduleDefinition): boolean {
  return (
    stored.name === next.name &&
    sameScheduleSpec(stored.spec, next.spec) &&
    stored.workId === next.workId &&
    jsonEqual(stored.param, next.param) &&
    stored.priority === next.priority &&
    stored.maxAttempts === next.maxAttempts &&
    stored.catchUp === next.catchUp &&
    stored.maxCatchUp === next.maxCatchUp &&
    stored.overlap === next.overlap
  );
}

/**
 * Deep equality of two JSON values, object keys in any order.
 *
 * @param a - a JSON value
 * @param b - another
 * @returns whether they are equal
 */
export function jsonEqual(a: JsonValue, b: JsonValue): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((item, i) => jsonEqual(item, b[i]!));
  }
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((key) => Object.prototype.hasOwnProperty.call(b, key) && jsonEqual(a[key]!, b[key]!));
}

function assertDateOrNull(value: unknown, what: string): void {
  if (value === null) return;
  if (!(value instanceof Date) || !Number.isFinite(value.getTime())) throw new InvalidInputError(`${what} must be a valid Date or null, got ${value instanceof Date ? 'an invalid Date' : typeof value}`);
}

/**
 * Validates the argument of `advanceSchedule`; every schedule store calls it before writing.
 *
 * @throws InvalidInputError on a missing or malformed field
 */
export function validateScheduleAdvance(advance: ScheduleAdvance): void {
  if (advance === null || typeof advance !== 'object') throw new InvalidInputError('advanceSchedule takes { version, lastOccurrenceAt, lastTaskId, nextRunAt }');
  if (typeof advance.version !== 'number' || !Number.isSafeInteger(advance.version) || advance.version < 1) {
    throw new InvalidInputError(`version must be an integer ≥ 1, got ${quoteInput(advance.version)}`);
  }
  assertDateOrNull(advance.lastOccurrenceAt, 'lastOccurrenceAt');
  assertDateOrNull(advance.nextRunAt, 'nextRunAt');
  if (advance.lastTaskId !== null) assertKey(advance.lastTaskId, 'lastTaskId', MAX_TASK_ID_LENGTH);
}
