import type { Clock } from './clock.js';
import { InvalidInputError } from './errors.js';
import { setContextInternals } from './context-internals.js';
import { quoteInput } from './quote-input.js';

/**
 * A typed key for a value carried by a {@link SchedulerContext}. Create one per concept with
 * {@link createKey}; two keys with the same name are still different keys.
 */
export interface ValueKey<T> {
  /** A name for logs and errors. */
  readonly name: string;
  /** Phantom field that carries `T`; never set. */
  readonly __type?: T;
}

/**
 * Creates a typed key for {@link SchedulerContext.withValue} / {@link SchedulerContext.value}.
 *
 * @example
 * ```ts
 * const TenantKey = createKey<string>('tenant');
 * const ctx = SchedulerContext.create({ runAt: new Date(), work }).withValue(TenantKey, 'acme');
 * ctx.value(TenantKey); // 'acme'
 * ```
 */
export function createKey<T>(name: string): ValueKey<T> {
  return Object.freeze({ name });
}

/** The task's id (a uuid with storage; a process-unique id in memory). */
export const TaskIdKey: ValueKey<string> = createKey<string>('taskId');
/** The id under which the work function is registered in a WorkRegistry. */
export const WorkIdKey: ValueKey<string> = createKey<string>('workId');
/** The task's param (JSON with storage). */
export const ParamKey: ValueKey<unknown> = createKey<unknown>('param');
/** While a non-terminal task holds this key, scheduling another with it returns the existing task (storage). */
export const UniqueKeyKey: ValueKey<string> = createKey<string>('uniqueKey');
/** How many runs the task may have in all (read by the retry and storage middlewares). */
export const MaxAttemptsKey: ValueKey<number> = createKey<number>('maxAttempts');
/** A per-run timeout in milliseconds, read by the timeout middleware. */
export const TimeoutMsKey: ValueKey<number> = createKey<number>('timeoutMs');
/**
 * A per-run stall timeout in milliseconds, read by the `stallTimeout` middleware: a run that shows no sign of
 * life (a `ctx.progress()` whose `completed` changed, or a `ctx.checkIn()`) for this long is interrupted.
 */
export const StallTimeoutMsKey: ValueKey<number> = createKey<number>('stallTimeoutMs');

/** Named priorities; numbers work too (higher runs first). */
export const Priority = { low: -10, medium: 0, high: 10 } as const;

/** A priority: a finite number (higher runs first) or one of the names of {@link Priority}. */
export type PriorityInput = number | keyof typeof Priority;

/** Progress a running work reports through {@link WorkContext.progress}. */
export interface ProgressReport {
  /** Units done so far. */
  completed: number;
  /** Units in all. */
  total: number;
}

/** What a work function receives when it runs. */
export interface WorkContext {
  /** Aborted when the run must stop: cancel, timeout, stall, lost lease, or `stop()` past its deadline. */
  readonly signal: AbortSignal;
  /** The time the run was scheduled for. */
  readonly scheduledAt: Date;
  /** The task's id. */
  readonly taskId: string;
  /** 1 for the first run, 2 for the first retry, and so on. */
  readonly attempt: number;
  /** The task's param, as scheduled (with storage: as stored). */
  readonly param: unknown;
  /**
   * With durable storage, the fencing token of the claim this run holds: the task's claim count, which only grows.
   * A downstream system that keeps the highest token it saw for a resource can refuse a write from an older
   * claim (a zombie whose lease was taken over). Undefined without storage.
   */
  readonly fencingToken?: number;
  /** The scheduling context the task was scheduled with. */
  readonly context: SchedulerContext;
  /** Reads a value the context carries. */
  value<T>(key: ValueKey<T>): T | undefined;
  /** Reports progress; storage persists it (throttled) and a stall timeout watches it move. */
  progress(report: ProgressReport): void;
  /** Records a check-in message; storage persists it (throttled). */
  checkIn(message: string): void;
  /**
   * The clock of the scheduler that runs the work, so that wrapping middlewares (retry, timeout) measure time
   * the way the scheduler does. Optional: a WorkContext built elsewhere may leave it out (read it as
   * `ctx.clock ?? realClock`).
   */
  readonly clock?: Clock;
}

/** A work function: its resolved value or thrown error settles the task. */
export type WorkFn = (ctx: WorkContext) => unknown;

/** Plain options accepted by `scheduler.schedule()` in place of a {@link SchedulerContext}. */
export interface ScheduleOptions {
  /** When to run: a Date or epoch milliseconds. A time in the past runs at once. Defaults to now. */
  runAt?: Date | number;
  /** Run this many milliseconds from now, instead of `runAt`. */
  delayMs?: number;
  /** The work to run. May be left out when a middleware (storage) supplies it from `workId`. */
  work?: WorkFn;
  /** The id of a registered work (storage). */
  workId?: string;
  /** The param for the work. */
  param?: unknown;
  /** Priority when slots are scarce; higher first. @defaultValue `0` (`'medium'`) */
  priority?: PriorityInput;
  /** A task id to use instead of a generated one. */
  taskId?: string;
  /** While a non-terminal task holds this key, scheduling another returns the existing task (storage). */
  uniqueKey?: string;
  /** How many runs the task may have in all, retries included (retry and storage middlewares). */
  maxAttempts?: number;
  /**
   * The run is interrupted with a StalledError when it shows no sign of life (a `ctx.progress()` whose
   * `completed` changed, or a `ctx.checkIn()`) for this many milliseconds: sets {@link StallTimeoutMsKey}, which
   * the `stallTimeout` middleware reads (without that middleware in the chain it has no effect). A number of ms
   * in (0, 2^31-1].
   */
  stallTimeoutMs?: number;
  /** Further typed values. */
  values?: ReadonlyArray<readonly [ValueKey<unknown>, unknown]>;
}

/** Turns a {@link PriorityInput} into a number, or throws {@link InvalidInputError}. */
export function normalizePriority(priority: PriorityInput | undefined): number {
  if (priority === undefined) return 0;
  if (typeof priority === 'string') {
    const named = Priority[priority];
    if (named === undefined) throw new InvalidInputError(`unknown priority name ${quoteInput(priority)}; use low, medium, high or a number`);
    return named;
  }
  if (typeof priority !== 'number' || !Number.isFinite(priority)) {
    throw new InvalidInputError(`priority must be a finite number or low / medium / high, got ${quoteInput(priority)}`);
  }
  return priority;
}

/** Turns a Date or epoch milliseconds into a valid Date, or throws {@link InvalidInputError}. */
export function toValidDate(value: Date | number, what = 'runAt'): Date {
  return new Date(toValidTime(value, what));
}

/**
 * Turns a Date or epoch milliseconds into valid whole epoch milliseconds (truncated, as a Date does), or throws
 * {@link InvalidInputError}.
 *
 * @param value - a Date or epoch milliseconds
 * @param what - the name of the field, for the error message
 * @returns epoch milliseconds within the range a Date can hold
 * @throws {@link InvalidInputError} when `value` is not a valid Date, not a number, not finite, or out of a Date's range
 */
export function toValidTime(value: Date | number, what = 'runAt'): number {
  const time = value instanceof Date ? value.getTime() : typeof value === 'number' ? value : Number.NaN;
  // ±8.64e15 ms is the range of a Date; beyond it new Date() is Invalid Date.
  if (!Number.isFinite(time) || Math.abs(time) > 8.64e15) {
    throw new InvalidInputError(`${what} must be a valid Date or epoch milliseconds, got ${quoteInput(value)}`);
  }
  // Whole milliseconds, truncated as a Date does, so that the time a task is queued at is its runAt Date.
  return Math.trunc(time);
}

const EMPTY_VALUES: ReadonlyMap<ValueKey<unknown>, unknown> = new Map();

/**
 * The immutable description of one scheduling request as it travels down the middleware chain. Each
 * `with*` method returns a new context; middlewares read the values earlier ones set.
 */
export class SchedulerContext {
  /** The work to run, once known. */
  readonly work: WorkFn | undefined;
  /** Priority when slots are scarce; higher first. */
  readonly priority: number;
  // runAt is kept as epoch ms and turned into a Date only when read: a Date costs ~110 bytes and the
  // scheduler's hot path never needs one.
  readonly #runAtMs: number;
  #runAtDate: Date | undefined;
  readonly #values: ReadonlyMap<ValueKey<unknown>, unknown>;

  static {
    setContextInternals<SchedulerContext, ReadonlyMap<ValueKey<unknown>, unknown>, WorkFn>({
      values: (ctx) => ctx.#values,
      restore: (runAtMs, work, priority, values) => new SchedulerContext(runAtMs, work, priority, values),
    });
  }

  private constructor(runAtMs: number, work: WorkFn | undefined, priority: number, values: ReadonlyMap<ValueKey<unknown>, unknown>) {
    this.#runAtMs = runAtMs;
    this.#runAtDate = undefined;
    this.work = work;
    this.priority = priority;
    this.#values = values;
  }

  /** When the task should run (a fresh copy each read is not guaranteed: do not mutate it). */
  get runAt(): Date {
    return (this.#runAtDate ??= new Date(this.#runAtMs));
  }

  /** When the task should run, in epoch milliseconds (cheaper than {@link SchedulerContext.runAt}). */
  get runAtMs(): number {
    return this.#runAtMs;
  }

  /** Every value the context carries, as `[key, value]` pairs (for adapters that persist or copy them). */
  entries(): IterableIterator<[ValueKey<unknown>, unknown]> {
    return this.#values.entries();
  }

  /**
   * Builds a context from plain options, validating them.
   *
   * @param options - the plain options
   * @param now - the current time, used for `delayMs` and a missing `runAt`
   * @throws {@link InvalidInputError} on an invalid date, delay, priority, work, id, key, maxAttempts or stallTimeoutMs
   */
  static create(options: ScheduleOptions, now: number = Date.now()): SchedulerContext {
    if (options === null || typeof options !== 'object') throw new InvalidInputError('schedule() takes a SchedulerContext or an options object');
    let runAtMs: number;
    if (options.delayMs !== undefined) {
      if (options.runAt !== undefined) throw new InvalidInputError('give either runAt or delayMs, not both');
      if (typeof options.delayMs !== 'number' || !Number.isFinite(options.delayMs) || options.delayMs < 0) {
        throw new InvalidInputError(`delayMs must be a finite number ≥ 0, got ${quoteInput(options.delayMs)}`);
      }
      runAtMs = toValidTime(now + options.delayMs, 'delayMs');
    } else {
      runAtMs = toValidTime(options.runAt === undefined ? now : options.runAt);
    }
    if (options.work !== undefined && typeof options.work !== 'function') throw new InvalidInputError('work must be a function');
    const priority = normalizePriority(options.priority);
    // The common case carries no values: share one empty map instead of allocating one per task.
    if (
      options.values === undefined &&
      options.taskId === undefined &&
      options.workId === undefined &&
      options.param === undefined &&
      options.uniqueKey === undefined &&
      options.maxAttempts === undefined &&
      options.stallTimeoutMs === undefined
    ) {
      return new SchedulerContext(runAtMs, options.work, priority, EMPTY_VALUES);
    }
    const values = new Map<ValueKey<unknown>, unknown>(options.values ?? []);
    if (options.taskId !== undefined) {
      if (typeof options.taskId !== 'string' || options.taskId === '') throw new InvalidInputError('taskId must be a non-empty string');
      values.set(TaskIdKey, options.taskId);
    }
    if (options.workId !== undefined) {
      if (typeof options.workId !== 'string' || options.workId === '') throw new InvalidInputError('workId must be a non-empty string');
      values.set(WorkIdKey, options.workId);
    }
    if (options.param !== undefined) values.set(ParamKey, options.param);
    if (options.uniqueKey !== undefined) {
      if (typeof options.uniqueKey !== 'string' || options.uniqueKey === '') throw new InvalidInputError('uniqueKey must be a non-empty string');
      values.set(UniqueKeyKey, options.uniqueKey);
    }
    if (options.maxAttempts !== undefined) {
      if (!Number.isSafeInteger(options.maxAttempts) || options.maxAttempts < 1) throw new InvalidInputError(`maxAttempts must be an integer ≥ 1, got ${quoteInput(options.maxAttempts)}`);
      values.set(MaxAttemptsKey, options.maxAttempts);
    }
    if (options.stallTimeoutMs !== undefined) {
      const ms = options.stallTimeoutMs;
      if (typeof ms !== 'number' || !(ms > 0) || ms > 2 ** 31 - 1) throw new InvalidInputError(`stallTimeoutMs must be a number of ms in (0, 2^31-1], got ${quoteInput(ms)}`);
      values.set(StallTimeoutMsKey, ms);
    }
    return new SchedulerContext(runAtMs, options.work, priority, values.size === 0 ? EMPTY_VALUES : values);
  }

  /** Reads a value, or `undefined` when the context does not carry it. */
  value<T>(key: ValueKey<T>): T | undefined {
    return this.#values.get(key) as T | undefined;
  }

  /** The task id, when one was set. */
  get taskId(): string | undefined {
    return this.value(TaskIdKey);
  }

  /** The work id, when one was set. */
  get workId(): string | undefined {
    return this.value(WorkIdKey);
  }

  /** The param, when one was set. */
  get param(): unknown {
    return this.value(ParamKey);
  }

  /** A copy that runs at `runAt`. @throws {@link InvalidInputError} on an invalid date */
  withRunAt(runAt: Date | number): SchedulerContext {
    return new SchedulerContext(toValidTime(runAt), this.work, this.priority, this.#values);
  }

  /** A copy that runs `work` (middlewares wrap the previous work here). */
  withWork(work: WorkFn): SchedulerContext {
    if (typeof work !== 'function') throw new InvalidInputError('work must be a function');
    return new SchedulerContext(this.#runAtMs, work, this.priority, this.#values);
  }

  /** A copy with another priority. @throws {@link InvalidInputError} on an invalid priority */
  withPriority(priority: PriorityInput): SchedulerContext {
    return new SchedulerContext(this.#runAtMs, this.work, normalizePriority(priority), this.#values);
  }

  /** A copy that carries `value` under `key`. */
  withValue<T>(key: ValueKey<T>, value: T): SchedulerContext {
    const values = new Map(this.#values);
    values.set(key, value);
    return new SchedulerContext(this.#runAtMs, this.work, this.priority, values);
  }

  /**
   * A copy that carries each value under its key, later pairs winning: one copy of the map of values for all of
   * them, where a chain of {@link SchedulerContext.withValue} copies it once a call (a middleware that sets several
   * values on each task pays that per task).
   *
   * @param entries - `[key, value]` pairs
   *
   * @example
   * ```ts
   * const TenantKey = createKey<string>('tenant');
   * const ctx = SchedulerContext.create({ runAt: new Date() }).withValues([[TenantKey, 'acme'], [TaskIdKey, 'a']]);
   * ctx.value(TenantKey); // 'acme'
   * ```
   */
  withValues(entries: Iterable<readonly [ValueKey<unknown>, unknown]>): SchedulerContext {
    const values = new Map(this.#values);
    for (const [key, value] of entries) values.set(key, value);
    return new SchedulerContext(this.#runAtMs, this.work, this.priority, values);
  }
}
