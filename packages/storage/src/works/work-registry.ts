import { HoraeError, InvalidInputError, MAX_TIMER_DELAY_MS, quoteInput, type Middleware, type WorkContext, type WorkFn } from '@horae/core';
import type { StandardSchemaV1 } from '@standard-schema/spec';
import { isParamValidator, runParamValidator, type ParamValidator } from './param-validator.js';
import type { JsonValue } from '../contract/task-info.js';
import { assertJsonValue } from '../contract/validation.js';
import type { StorageRetryOption } from './retry.js';

/** No work is registered under this workId on this node. Nothing was written. */
export class UnknownWorkError extends HoraeError {
  /** @param workId - the id that was looked up */
  constructor(readonly workId: string) {
    super('UNKNOWN_WORK', `no work is registered under the workId ${quoteInput(workId)}; register it with registry.register() on this node`);
  }
}

/** What a typed work receives: a {@link WorkContext} whose `param` has its schema's output type. */
export type TypedWorkContext<P> = Omit<WorkContext, 'param'> & {
  /** The task's param, as its validator returned it at schedule time (with storage: as stored). */
  readonly param: P;
};

/** A work function whose `ctx.param` is typed. */
export type TypedWorkFn<P> = (ctx: TypedWorkContext<P>) => unknown;

/** Per-work defaults, given to {@link WorkRegistry.register}. */
export interface WorkOptions<P = unknown, I = P> {
  /**
   * Validates the param at schedule time (and again when a run is claimed): a Standard Schema (Zod, Valibot,
   * ArkType, …), a function that returns the param or throws, or an object with `parse()`. A refusal throws
   * {@link ParamValidationError} with the issues, and nothing is written.
   */
  validate?: ParamValidator<P, I>;
  /** How many runs a task of this work may have in all, when the schedule call does not say. @defaultValue the storage option `maxAttempts` (1) */
  maxAttempts?: number;
  /** How a failed run of this work is retried. @defaultValue the storage option `retry` */
  retry?: StorageRetryOption;
  /**
   * A per-run timeout in milliseconds: the run's signal aborts with a TimeoutError and the run fails with it.
   * @defaultValue none
   */
  timeoutMs?: number;
  /**
   * A per-run stall timeout in milliseconds: a run that shows no sign of life for this long is interrupted, its
   * signal aborts with a StalledError and the run fails with it, so the retry policy applies (StalledError is
   * retryable). A sign of life is a `ctx.progress()` whose `completed` differs from the last one of this run (the
   * first always counts) or any `ctx.checkIn()`; each restarts the window, which starts with the run.
   *
   * @remarks The storage middleware applies it on whichever node runs the task (it comes from the registered
   * work, not from the stored row), also after a restart. A `stallTimeout` middleware in the chain (the facade's
   * `stallTimeoutMs` option, or a task's own `stallTimeoutMs`) watches the run independently: the shorter window
   * interrupts first.
   * @defaultValue none
   */
  stallTimeoutMs?: number;
  /**
   * The most tasks of this work that run at once. With a storage middleware on a repository that is a
   * WorkLimiter (SQLite, PostgreSQL, memory), the limit holds across every node sharing the repository: a claim
   * beyond it is refused atomically and the task waits, Initialized, without spending an attempt. On a repository
   * that is not one (MongoDB), it holds per node only. The storage middleware also applies it as the node-local
   * limit of the scheduler (`setWorkConcurrency`) when the scheduler has no lower one.
   * @defaultValue no limit
   */
  concurrency?: number;
}

/** A registered work and its defaults. */
export interface RegisteredWork<P = unknown> {
  /** The id it is registered under. */
  readonly workId: string;
  /** The work function. */
  readonly work: WorkFn;
  /** Its defaults. */
  readonly options: Readonly<WorkOptions<P>>;
}

/**
 * Maps workIds to work functions, so that a task read back from a repository (after a restart, or inserted
 * by another node) finds the code that runs it.
 *
 * Rules: scheduling by workId validates the param first; an invalid param, a param that is not JSON, or a
 * workId that is not registered throws and writes nothing.
 *
 * @example
 * ```ts
 * const registry = new WorkRegistry();
 * registry.register('send-email', async (ctx) => sendEmail(ctx.param.to), {
 *   validate: z.object({ to: z.email() }), // ctx.param is { to: string }
 *   maxAttempts: 5,
 * });
 * ```
 */
export class WorkRegistry {
  readonly #works = new Map<string, RegisteredWork>();

  /**
   * Registers `work` under `workId`.
   *
   * @param workId - a stable id: it is stored with every task, so renaming it orphans stored tasks
   * @param work - the function that runs the task
   * @param options - the param validator and per-work defaults
   * @returns this registry, for chaining
   * @throws InvalidInputError when the workId is empty or already registered, or an option is invalid
   */
  register<S extends StandardSchemaV1>(workId: string, work: TypedWorkFn<StandardSchemaV1.InferOutput<S>>, options: WorkOptions<StandardSchemaV1.InferOutput<S>, StandardSchemaV1.InferInput<S>> & { validate: S }): this;
  register<P = unknown, I = P>(workId: string, work: TypedWorkFn<P>, options?: WorkOptions<P, I>): this;
  register(workId: string, work: TypedWorkFn<unknown>, options: WorkOptions = {}): this {
    if (typeof workId !== 'string' || workId === '') throw new InvalidInputError('workId must be a non-empty string');
    if (typeof work !== 'function') throw new InvalidInputError(`the work registered under ${quoteInput(workId)} must be a function`);
    if (this.#works.has(workId)) throw new InvalidInputError(`a work is already registered under ${quoteInput(workId)}`);
    const { validate, maxAttempts, timeoutMs, stallTimeoutMs, concurrency } = options;
    if (validate !== undefined && !isParamValidator(validate)) {
      throw new InvalidInputError(`the validator of ${quoteInput(workId)} must be a Standard Schema (Zod, Valibot, ArkType, …), a function, or have a parse() method`);
    }
    if (maxAttempts !== undefined && (!Number.isSafeInteger(maxAttempts) || maxAttempts < 1)) {
      throw new InvalidInputError(`maxAttempts of ${quoteInput(workId)} must be an integer ≥ 1, got ${String(maxAttempts)}`);
    }
    if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0)) {
      throw new InvalidInputError(`timeoutMs of ${quoteInput(workId)} must be a number > 0, got ${String(timeoutMs)}`);
    }
    if (stallTimeoutMs !== undefined && (typeof stallTimeoutMs !== 'number' || !(stallTimeoutMs > 0) || stallTimeoutMs > MAX_TIMER_DELAY_MS)) {
      throw new InvalidInputError(`stallTimeoutMs of ${quoteInput(workId)} must be a number of ms in (0, 2^31-1], got ${String(stallTimeoutMs)}`);
    }
    if (concurrency !== undefined && (typeof concurrency !== 'number' || !Number.isSafeInteger(concurrency) || concurrency < 1)) {
      throw new InvalidInputError(`concurrency of ${quoteInput(workId)} must be an integer ≥ 1, got ${String(concurrency)}`);
    }
    // Stored untyped: the param reaching the work is the one its validator returned (or, without one, whatever JSON
    // was scheduled), which is what TypedWorkFn<P> promised.
    this.#works.set(workId, { workId, work: work, options: { ...options } });
    return this;
  }

  /**
   * A middleware that gives a context naming a registered workId, and carrying no work, its registered work,
   * so that the middlewares after it (logging, timeout, retry) wrap the real work. Install it first.
   *
   * @returns the middleware; a context with a work, without a workId, or with an unknown workId passes unchanged
   *
   * @example
   * ```ts
   * scheduler.use(registry.middleware(), logging(), storage.middleware);
   * ```
   */
  middleware(): Middleware {
    return (next) => (ctx) => {
      if (ctx.work !== undefined || ctx.workId === undefined) return next(ctx);
      const found = this.#works.get(ctx.workId);
      return next(found === undefined ? ctx : ctx.withWork(found.work));
    };
  }

  /** True when a work is registered under `workId`. */
  has(workId: string): boolean {
    return this.#works.has(workId);
  }

  /**
   * Returns the registered work.
   *
   * @throws {@link UnknownWorkError} when nothing is registered under `workId`
   */
  get(workId: string): RegisteredWork {
    const found = this.#works.get(workId);
    if (found === undefined) throw new UnknownWorkError(workId);
    return found;
  }

  /** The registered workIds, in registration order. */
  workIds(): string[] {
    return [...this.#works.keys()];
  }

  /**
   * Validates a param for `workId`: the work's own validator first, then that the result is JSON.
   *
   * @returns the param to store (as the validator returned it; `null` for a missing param)
   * @throws {@link UnknownWorkError} when nothing is registered under `workId`
   * @throws ParamValidationError (an InvalidInputError) when the validator refuses the param: its `issues`, and a
   * thrown error as the `cause`
   * @throws InvalidInputError when the param is not JSON, or a Standard Schema validates asynchronously
   */
  validateParam(workId: string, param: unknown): JsonValue {
    const { options } = this.get(workId);
    let value = options.validate === undefined ? param : runParamValidator(workId, options.validate, param);
    if (value === undefined) value = null;
    assertJsonValue(value);
    return value;
  }
}
