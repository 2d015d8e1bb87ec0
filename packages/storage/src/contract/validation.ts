import { DEFAULT_AGING_MS, InvalidInputError, quoteInput } from '@horae/core';
import { ALL_TASK_KINDS, DEFAULT_MAX_UNSTARTED_CLAIMS, type JsonValue, type NewTask, type TaskError, type TaskPatch } from './task-info.js';

/** Longest message kept on a stored error. */
export const MAX_ERROR_MESSAGE_LENGTH = 2_000;
/** Longest stack kept on a stored error. */
export const MAX_ERROR_STACK_LENGTH = 8_000;
/** Longest `name`, and longest `code`, kept on a stored error. */
export const MAX_ERROR_NAME_LENGTH = 200;

/**
 * The longest task id accepted. Like every key limit here, it counts UTF-16 code units (JavaScript's
 * `string.length`); a code unit takes at most 3 bytes of UTF-8, so a key of the maximum length takes at most 765
 * bytes in any database: within PostgreSQL's btree row limit (about 2,700 bytes) together with the other columns of
 * any index that holds it, and within the 1,024-byte index key limit of MongoDB servers before 4.2.
 */
export const MAX_TASK_ID_LENGTH = 255;
/** The longest workId accepted, in UTF-16 code units (see {@link MAX_TASK_ID_LENGTH}). */
export const MAX_WORK_ID_LENGTH = 255;
/**
 * The longest uniqueKey accepted, in UTF-16 code units (see {@link MAX_TASK_ID_LENGTH}). An occurrence of a
 * recurring schedule has the key `schedule:<name>:<ISO time>`, at most 234 characters under
 * {@link MAX_SCHEDULE_NAME_LENGTH}.
 */
export const MAX_UNIQUE_KEY_LENGTH = 255;
/** The longest node id (the `owner` of a claim, written on the lease and the attempt) accepted, in UTF-16 code units. */
export const MAX_NODE_ID_LENGTH = 255;
/** The longest schedule name accepted, in UTF-16 code units. */
export const MAX_SCHEDULE_NAME_LENGTH = 200;

/**
 * The default bound of a task's (or a schedule's) param: 1 MiB of its JSON text, counted in UTF-8 bytes as
 * `Buffer.byteLength(JSON.stringify(param))` would count them. Each repository takes a `maxParamBytes` option to
 * change it. Large data belongs elsewhere (a file, an object store), with its reference in the param.
 */
export const DEFAULT_MAX_PARAM_BYTES = 1_048_576;

/** The bounds a repository applies to what it writes, beyond the fixed key limits. */
export interface WriteLimits {
  /**
   * The most bytes of UTF-8 JSON a param may take.
   *
   * @defaultValue no bound: an adapter always passes its own (by default {@link DEFAULT_MAX_PARAM_BYTES})
   */
  maxParamBytes?: number;
}

/**
 * Checks a key: a non-empty string of at most `maxLength` UTF-16 code units.
 *
 * @param value - the value to check
 * @param field - its name, for the message (`'workId'`, `'uniqueKey'`)
 * @param maxLength - its limit, one of the `MAX_*_LENGTH` constants
 * @throws InvalidInputError naming the field and the limit, quoting at most a short prefix of the value
 */
export function assertKey(value: unknown, field: string, maxLength: number): asserts value is string {
  if (typeof value !== 'string' || value === '') throw new InvalidInputError(`${field} must be a non-empty string, got ${quoteInput(value)}`);
  if (value.length > maxLength) {
    throw new InvalidInputError(`${field} is ${value.length} characters long, over its limit of ${maxLength}: ${quoteInput(value)}`);
  }
}

/**
 * Checks the owner (node id) of a claim: a non-empty string of at most {@link MAX_NODE_ID_LENGTH} characters.
 *
 * @throws InvalidInputError otherwise
 */
export function validateOwner(owner: unknown): asserts owner is string {
  assertKey(owner, 'owner', MAX_NODE_ID_LENGTH);
}

/**
 * The `maxParamBytes` option of a repository: left out, {@link DEFAULT_MAX_PARAM_BYTES}.
 *
 * @returns the bound
 * @throws InvalidInputError unless an integer ≥ 4 (the size of `null`, the param of a task that has none)
 */
export function checkMaxParamBytes(value: number | undefined): number {
  if (value === undefined) return DEFAULT_MAX_PARAM_BYTES;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 4) {
    throw new InvalidInputError(`maxParamBytes must be an integer ≥ 4 (bytes of JSON), got ${quoteInput(value)}`);
  }
  return value;
}

/**
 * Checks that `value` is plain JSON, so that it round-trips through any repository unchanged, and that its JSON
 * text takes at most `maxBytes` bytes of UTF-8.
 *
 * @remarks Refused: undefined (inside objects and arrays too), functions, symbols, bigints, NaN and
 * ±Infinity, cycles, and objects that are not plain (Date, Map, class instances): a Date would come back as
 * a string, so pass `date.toISOString()` yourself. The size is counted as the walk goes, exactly as
 * `Buffer.byteLength(JSON.stringify(value))` would count it, and the walk stops as soon as it passes `maxBytes`:
 * refusing a 50 MB param costs a walk over its first `maxBytes`, not over 50 MB, and nothing is serialized.
 * @param value - the value to check
 * @param what - its name, for the messages
 * @param maxBytes - the most bytes its JSON text may take (Infinity: no bound)
 * @throws InvalidInputError naming the path of the first offending value, or the bound that was passed
 */
export function assertJsonValue(value: unknown, what = 'param', maxBytes = Number.POSITIVE_INFINITY): asserts value is JsonValue {
  new JsonWalk(what, maxBytes).visit(value);
}

/** The types of the values JSON.stringify leaves out of an object. */
const SKIPPED_IN_OBJECTS: ReadonlySet<string> = new Set(['undefined', 'function', 'symbol']);

/** `s`, or its first `max` characters and an ellipsis. */
function cut(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}

/**
 * Checks only the size of a param as given, before anything else reads it: the JSON text of `value` must take at most
 * `maxBytes` bytes of UTF-8. What JSON cannot hold (undefined, functions, a Date, class instances, cycles) counts
 * nothing and is not entered, so the count is a lower bound of any JSON made of `value`; the JSON check itself comes
 * later, after the work's validator (which may turn such values into JSON).
 *
 * Rule: the walk stops as soon as the count passes `maxBytes`, so a 50 MB param costs a walk over its first
 * `maxBytes`, and it is never serialized.
 *
 * @param value - the param as given
 * @param maxBytes - the bound, in bytes of UTF-8 JSON
 * @param what - its name, for the message
 * @throws InvalidInputError when its JSON would take more than `maxBytes`
 */
export function assertParamSize(value: unknown, maxBytes: number, what = 'param'): void {
  new JsonWalk(what, maxBytes, true).visit(value);
}

/**
 * One walk of {@link assertJsonValue} (strict: anything JSON cannot hold is refused) or {@link assertParamSize}
 * (lenient: it counts nothing). The path is kept as a stack and only joined for a message.
 */
class JsonWalk {
  readonly #what: string;
  readonly #maxBytes: number;
  readonly #lenient: boolean;
  // Without a bound nothing is counted: an unbounded check reads no string.
  readonly #counting: boolean;
  readonly #seen = new Set<object>();
  readonly #path: (string | number)[] = [];
  #bytes = 0;

  constructor(what: string, maxBytes: number, lenient = false) {
    this.#what = what;
    this.#maxBytes = maxBytes;
    this.#lenient = lenient;
    this.#counting = Number.isFinite(maxBytes);
  }

  visit(v: unknown): void {
    if (v === null) return this.#add(4);
    if (typeof v === 'string') return this.#addString(v);
    if (typeof v === 'boolean') return this.#add(v ? 4 : 5);
    if (typeof v === 'number') {
      if (!Number.isFinite(v) && this.#lenient) return;
      if (!Number.isFinite(v)) throw new InvalidInputError(`${this.#where()} is ${String(v)}, which JSON cannot hold`);
      return this.#add(JSON.stringify(v).length);
    }
    if (typeof v !== 'object' && this.#lenient) return;
    if (typeof v !== 'object') throw new InvalidInputError(`${this.#where()} is a ${typeof v}, which JSON cannot hold`);
    if (this.#seen.has(v) && this.#lenient) return;
    if (this.#seen.has(v)) throw new InvalidInputError(`${this.#where()} refers back to itself (a cycle); JSON cannot hold it`);
    this.#seen.add(v);
    if (Array.isArray(v)) {
      // [ ] and a comma between items.
      this.#add(v.length === 0 ? 2 : v.length + 1);
      for (let i = 0; i < v.length; i++) {
        this.#path.push(i);
        this.visit(v[i]);
        this.#path.pop();
      }
    } else {
      const proto = Object.getPrototypeOf(v) as unknown;
      if (proto !== Object.prototype && proto !== null) {
        if (this.#lenient) return void this.#seen.delete(v);
        const name = (v as { constructor?: { name?: string } }).constructor?.name ?? 'object';
        throw new InvalidInputError(`${this.#where()} is a ${cut(name, 64)}, not plain JSON${name === 'Date' ? ' (pass date.toISOString())' : ''}`);
      }
      const record = v as Record<string, unknown>;
      let keys = Object.keys(record);
      // JSON leaves out the entries it cannot hold; a lenient count leaves them out too, to stay a lower bound.
      if (this.#lenient) keys = keys.filter((key) => !SKIPPED_IN_OBJECTS.has(typeof record[key]));
      // { } and a comma between entries; each entry adds its key, a colon and its value.
      this.#add(keys.length === 0 ? 2 : keys.length + 1);
      for (const key of keys) {
        this.#addString(key);
        this.#add(1);
        this.#path.push(key);
        this.visit(record[key]);
        this.#path.pop();
      }
    }
    this.#seen.delete(v);
  }

  #addString(s: string): void {
    if (!this.#counting) return;
    // Every code unit takes at least one byte: a string longer than what is left is refused without being read.
    if (s.length + 2 > this.#maxBytes - this.#bytes) return this.#add(s.length + 2);
    this.#add(Buffer.byteLength(JSON.stringify(s)));
  }

  #add(bytes: number): void {
    if (!this.#counting) return;
    this.#bytes += bytes;
    if (this.#bytes > this.#maxBytes) {
      throw new InvalidInputError(
        `${this.#what} takes more than ${this.#maxBytes} bytes of JSON (its limit); keep large data elsewhere and pass a reference to it`,
      );
    }
  }

  /** The path of the value being visited, as `param.items[3].name` (each key cut to a short prefix). */
  #where(): string {
    let out = this.#what;
    for (const part of this.#path) out += typeof part === 'number' ? `[${part}]` : `.${cut(part, 32)}`;
    return cut(out, 200);
  }
}

function assertDate(value: unknown, what: string): asserts value is Date {
  if (!(value instanceof Date) || !Number.isFinite(value.getTime())) throw new InvalidInputError(`${what} must be a valid Date, got ${quoteInput(value)}`);
}

function assertInteger(value: unknown, what: string, min: number): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) throw new InvalidInputError(`${what} must be an integer ≥ ${min}, got ${quoteInput(value)}`);
}

function assertPriority(value: unknown): asserts value is number {
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new InvalidInputError(`priority must be a finite number, got ${quoteInput(value)}`);
}

/** A {@link NewTask} with every default applied. */
export type NormalizedNewTask = Required<Omit<NewTask, 'id'>> & { id: string | undefined };

/**
 * Validates a {@link NewTask} and applies its defaults; every adapter calls it before writing.
 *
 * Rules: the keys are bounded (`id` ≤ {@link MAX_TASK_ID_LENGTH}, `workId` ≤ {@link MAX_WORK_ID_LENGTH},
 * `uniqueKey` ≤ {@link MAX_UNIQUE_KEY_LENGTH}, `scheduleName` ≤ {@link MAX_SCHEDULE_NAME_LENGTH} characters), and so
 * is the param when `limits.maxParamBytes` is given (adapters give theirs).
 *
 * @param task - the task to check
 * @param limits - the repository's bounds
 * @throws InvalidInputError on any bad field, naming it (and the limit it passed)
 */
export function normalizeNewTask(task: NewTask, limits: WriteLimits = {}): NormalizedNewTask {
  if (task === null || typeof task !== 'object') throw new InvalidInputError('a task must be an object');
  assertKey(task.workId, 'workId', MAX_WORK_ID_LENGTH);
  if (task.id !== undefined) assertKey(task.id, 'id', MAX_TASK_ID_LENGTH);
  const uniqueKey = task.uniqueKey ?? null;
  if (uniqueKey !== null) assertKey(uniqueKey, 'uniqueKey', MAX_UNIQUE_KEY_LENGTH);
  const scheduleName = task.scheduleName ?? null;
  if (scheduleName !== null) assertKey(scheduleName, 'scheduleName', MAX_SCHEDULE_NAME_LENGTH);
  assertDate(task.scheduledAt, 'scheduledAt');
  const param = task.param === undefined ? null : task.param;
  assertJsonValue(param, 'param', limits.maxParamBytes);
  const priority = task.priority ?? 0;
  assertPriority(priority);
  const maxAttempts = task.maxAttempts ?? 1;
  assertInteger(maxAttempts, 'maxAttempts', 1);
  const kind = task.kind ?? (scheduleName === null ? 'scheduled' : 'periodic');
  if (!ALL_TASK_KINDS.includes(kind)) throw new InvalidInputError(`kind must be one of ${ALL_TASK_KINDS.join(', ')}, got ${quoteInput(kind)}`);
  return { id: task.id, workId: task.workId, param, scheduledAt: task.scheduledAt, priority, maxAttempts, uniqueKey, kind, scheduleName };
}

/**
 * Validates a {@link TaskPatch}.
 *
 * @param patch - the patch to check
 * @param limits - the repository's bounds (a new param is bounded by `maxParamBytes`)
 * @throws InvalidInputError on any bad field
 */
export function validatePatch(patch: TaskPatch, limits: WriteLimits = {}): void {
  if (patch === null || typeof patch !== 'object') throw new InvalidInputError('a patch must be an object');
  if (patch.scheduledAt !== undefined) assertDate(patch.scheduledAt, 'scheduledAt');
  if (patch.param !== undefined) assertJsonValue(patch.param, 'param', limits.maxParamBytes);
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
    const out: TaskError = { message: error.message.slice(0, MAX_ERROR_MESSAGE_LENGTH), name: error.name.slice(0, MAX_ERROR_NAME_LENGTH) };
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string' || typeof code === 'number') out.code = String(code).slice(0, MAX_ERROR_NAME_LENGTH);
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
    throw new InvalidInputError(`agingMs must be a number > 0 (or Infinity for priority alone), got ${quoteInput(agingMs)}`);
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
    throw new InvalidInputError(`maxUnstartedClaims must be an integer from 1 to 2147483647, got ${quoteInput(value)}`);
  }
  return value;
}
