import { InvalidInputError } from '@horae/core';
import { InvalidStateError, LeaseLostError, TaskNotDueError, TaskNotFoundError } from '../../contract/errors.js';
import type { TaskInfo } from '../../contract/task-info.js';
import type { ModelState, ModelTask } from './model-task.js';
import { canonical, compareTask } from './model-task.js';
import type { Observed } from './operation-runner.js';

/**
 * What the reference model says of one observed call: it agrees, and the store is now `state` (the tasks in
 * `changed` were written), or it disagrees, and why.
 */
export type Verdict = { readonly ok: true; readonly state: ModelState; readonly changed: readonly string[] } | { readonly ok: false; readonly reason: string };

/** The errors the contract names for a refusal, by code. */
const ERROR_CLASSES = {
  TASK_NOT_FOUND: TaskNotFoundError,
  LEASE_LOST: LeaseLostError,
  INVALID_STATE: InvalidStateError,
  NOT_DUE: TaskNotDueError,
  INVALID_INPUT: InvalidInputError,
} as const;

/** A refusal the contract names. */
export type RefusalCode = keyof typeof ERROR_CLASSES;

/** A disagreement. */
export function fail(reason: string): Verdict {
  return { ok: false, reason };
}

/** Agreement: the store is `state`, `changed` were written. */
export function agree(state: ModelState, changed: readonly string[] = []): Verdict {
  return { ok: true, state, changed };
}

/** A short text of what a call settled to. */
export function describeObserved(observed: Observed): string {
  if (observed.ok) return `the value ${canonical(observed.value)}`;
  const error = observed.error;
  if (error instanceof Error) return `${error.name}${'code' in error ? ` (${String(error.code)})` : ''}: ${error.message}`;
  return `the non-error ${String(error)}`;
}

/** The call must have thrown one of `codes`, as its named class; nothing changed. */
export function refused(state: ModelState, observed: Observed, codes: readonly RefusalCode[], what: string): Verdict {
  const expected = codes.map((code) => ERROR_CLASSES[code].name).join(' or ');
  if (!observed.ok && codes.some((code) => observed.error instanceof ERROR_CLASSES[code] && (observed.error as { code?: string }).code === code)) return agree(state);
  return fail(`${what}: expected ${expected}, got ${describeObserved(observed)}`);
}

/** The call must have returned a task; returns it, or a verdict saying it did not. */
export function taskValue(observed: Observed, what: string): TaskInfo | Verdict {
  if (!observed.ok) return fail(`${what}: expected a task, got ${describeObserved(observed)}`);
  const value = observed.value as TaskInfo | null | undefined;
  if (value === null || typeof value !== 'object' || typeof value.id !== 'string') return fail(`${what}: expected a task, got ${describeObserved(observed)}`);
  return value;
}

/** True when `value` is a verdict (a failure to extract a value), not the value. */
export function isVerdict(value: unknown): value is Verdict {
  return typeof value === 'object' && value !== null && 'ok' in value && typeof value.ok === 'boolean' && !('id' in value);
}

/** The store with one task replaced. */
export function withTask(state: ModelState, task: ModelTask): ModelState {
  return { ...state, tasks: state.tasks.map((candidate) => (candidate.id === task.id ? task : candidate)) };
}

/** `actual` must be the model's `next` (bounded values pinned); the store then holds it. */
export function returnsTask(state: ModelState, next: ModelTask, actual: TaskInfo, what: string, changed = true): Verdict {
  const compared = compareTask(next, actual);
  if (!compared.ok) return fail(`${what}: ${compared.mismatches.join('; ')}`);
  return agree(withTask(state, compared.model), changed ? [next.id] : []);
}

/** The call must have returned `next` as a task. */
export function expectTask(state: ModelState, observed: Observed, next: ModelTask, what: string, changed = true): Verdict {
  const actual = taskValue(observed, what);
  return isVerdict(actual) ? actual : returnsTask(state, next, actual, what, changed);
}
