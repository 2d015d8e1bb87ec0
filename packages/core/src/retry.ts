/**
 * Retry policies (how many runs, how long between them) and the in-memory `retry()` middleware. The storage
 * package reuses {@link shouldRetry} and the policy types for its durable retries.
 */
import { realClock } from './clock.js';
import { MaxAttemptsKey, type WorkContext } from './context.js';
import {
  InvalidInputError,
  RunAbandoned,
  RunDeferred,
  SchedulerStoppedError,
  TaskCancelledError,
  UnrecoverableError,
} from './errors.js';
import type { Middleware } from './middleware.js';
import { quoteInput } from './quote-input.js';

/**
 * The delay before the next run, in milliseconds.
 *
 * @param attempt - the attempt that just failed, from 1
 * @param error - what it failed with
 */
export type BackoffFn = (attempt: number, error: unknown) => number;

/** How a failing task is retried. */
export interface RetryPolicy {
  /** How many runs in all, the first included: an integer ≥ 1 (1 means no retry). */
  maxAttempts: number;
  /** The delay before each retry. */
  backoff: BackoffFn;
  /** Whether an error is worth a retry. @defaultValue every error but the never-retried ones (see {@link shouldRetry}) */
  isRetryable?(error: unknown): boolean;
}

/** The jitter of {@link exponentialBackoff}: `full` is random in [0, d], `equal` in [d/2, d], `none` is d. */
export type Jitter = 'full' | 'equal' | 'none';

/** Options of {@link exponentialBackoff}. */
export interface ExponentialBackoffOptions {
  /** The delay before the first retry (before jitter). @defaultValue 1000 */
  baseMs?: number;
  /** The growth between two retries, ≥ 1. @defaultValue 2 */
  factor?: number;
  /** The largest delay (before jitter). @defaultValue 3600000 (one hour) */
  maxMs?: number;
  /** How the delay is randomized so that many failing tasks do not retry in lockstep. @defaultValue 'full' */
  jitter?: Jitter;
  /** A source of randomness in [0, 1), for tests. @defaultValue Math.random */
  random?: () => number;
}

/** The decision of {@link shouldRetry}. */
export type RetryDecision = { retry: true; delayMs: number } | { retry: false };

function assertMs(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new InvalidInputError(`${what} must be a finite number ≥ 0, got ${quoteInput(value)}`);
  }
  return value;
}

/**
 * Exponential backoff: before retry n (after attempt n failed) the delay is d = min(maxMs, baseMs × factor^(n-1)),
 * then jittered.
 *
 * @param options - base, factor, cap, jitter and randomness
 * @returns the backoff function; with jitter `full` it returns a value in [0, d], `equal` in [d/2, d], `none` exactly d
 * @throws {@link InvalidInputError} on a negative or non-finite base or cap, a factor below 1, or an unknown jitter
 *
 * @example
 * ```ts
 * const backoff = exponentialBackoff({ baseMs: 500, jitter: 'none' });
 * backoff(3, new Error('boom')); // 2000
 * ```
 */
export function exponentialBackoff(options: ExponentialBackoffOptions = {}): BackoffFn {
  const baseMs = assertMs(options.baseMs ?? 1000, 'baseMs');
  const maxMs = assertMs(options.maxMs ?? 3_600_000, 'maxMs');
  const factor = options.factor ?? 2;
  if (typeof factor !== 'number' || !Number.isFinite(factor) || factor < 1) {
    throw new InvalidInputError(`factor must be a finite number ≥ 1, got ${quoteInput(factor)}`);
  }
  const jitter = options.jitter ?? 'full';
  if (jitter !== 'full' && jitter !== 'equal' && jitter !== 'none') {
    throw new InvalidInputError(`jitter must be 'full', 'equal' or 'none', got ${quoteInput(jitter)}`);
  }
  const random = options.random ?? Math.random;
  return (attempt) => {
    const n = Math.max(1, Math.floor(attempt));
    // factor^(n-1) overflows to Infinity for large n; min() then caps it at maxMs.
    const delay = Math.min(maxMs, baseMs * factor ** (n - 1));
    if (jitter === 'none') return delay;
    if (jitter === 'equal') return delay / 2 + random() * (delay / 2);
    return random() * delay;
  };
}

/**
 * A constant delay between retries.
 *
 * @param ms - the delay
 * @returns the backoff function
 * @throws {@link InvalidInputError} when `ms` is negative or not finite
 */
export function fixedBackoff(ms: number): BackoffFn {
  const delay = assertMs(ms, 'fixedBackoff ms');
  return () => delay;
}

/**
 * Checks a retry policy.
 *
 * @param policy - the policy
 * @returns the same policy
 * @throws {@link InvalidInputError} when maxAttempts is not an integer ≥ 1, backoff is not a function, or isRetryable is not a function
 */
export function validateRetryPolicy(policy: RetryPolicy): RetryPolicy {
  if (policy === null || typeof policy !== 'object') throw new InvalidInputError('a retry policy must be an object');
  if (!Number.isSafeInteger(policy.maxAttempts) || policy.maxAttempts < 1) {
    throw new InvalidInputError(`maxAttempts must be an integer ≥ 1, got ${quoteInput(policy.maxAttempts)}`);
  }
  if (typeof policy.backoff !== 'function') throw new InvalidInputError('backoff must be a function (attempt, error) => ms');
  if (policy.isRetryable !== undefined && typeof policy.isRetryable !== 'function') throw new InvalidInputError('isRetryable must be a function');
  return policy;
}

/**
 * Decides whether a failed run is retried, and after how long.
 *
 * Rules: UnrecoverableError, TaskCancelledError, SchedulerStoppedError, RunDeferred and RunAbandoned are never
 * retried; nor is an error `isRetryable` refuses; nor a run whose attempt is ≥ maxAttempts. Otherwise the delay
 * is `backoff(attempt, error)`.
 *
 * @param policy - the policy
 * @param attempt - the attempt that just failed, from 1
 * @param error - what it failed with
 * @param maxAttempts - overrides `policy.maxAttempts` (e.g. a task's own MaxAttemptsKey)
 * @returns `{ retry: true, delayMs }` or `{ retry: false }`
 * @throws {@link InvalidInputError} when the backoff returns a negative or non-finite delay
 */
export function shouldRetry(policy: RetryPolicy, attempt: number, error: unknown, maxAttempts = policy.maxAttempts): RetryDecision {
  if (
    error instanceof UnrecoverableError ||
    error instanceof TaskCancelledError ||
    error instanceof SchedulerStoppedError ||
    error instanceof RunDeferred ||
    error instanceof RunAbandoned
  ) {
    return { retry: false };
  }
  if (attempt >= maxAttempts) return { retry: false };
  if (policy.isRetryable !== undefined && !policy.isRetryable(error)) return { retry: false };
  return { retry: true, delayMs: assertMs(policy.backoff(attempt, error), 'the backoff delay') };
}

/**
 * The in-memory retry middleware: wraps the work; when a run fails with a retryable error and attempts are
 * left, the run is deferred (`RunDeferred`) to `now + backoff`, and the next run's `attempt` is one higher.
 *
 * @remarks A task's own maxAttempts (the `maxAttempts` schedule option, MaxAttemptsKey) overrides the policy's.
 * Time is read from the run's `ctx.clock` (the scheduler's clock). A run whose signal was aborted by a cancel or
 * a stop is never retried. With a storage middleware, prefer its durable retries.
 * @param policy - the retry policy
 * @returns the middleware
 * @throws {@link InvalidInputError} on an invalid policy
 *
 * @example
 * ```ts
 * scheduler.use(retry({ maxAttempts: 5, backoff: exponentialBackoff({ baseMs: 1000 }) }));
 * ```
 */
export function retry(policy: RetryPolicy): Middleware {
  validateRetryPolicy(policy);
  return (next) => (ctx) => {
    const work = ctx.work;
    if (work === undefined) return next(ctx);
    const maxAttempts = ctx.value(MaxAttemptsKey) ?? policy.maxAttempts;
    return next(
      ctx.withWork(async (run: WorkContext) => {
        try {
          return await work(run);
        } catch (error) {
          if (run.signal.aborted && (run.signal.reason instanceof TaskCancelledError || run.signal.reason instanceof SchedulerStoppedError)) throw error;
          const decision = shouldRetry(policy, run.attempt, error, maxAttempts);
          if (!decision.retry) throw error;
          const now = (run.clock ?? realClock).now();
          throw new RunDeferred(new Date(now + decision.delayMs), `retry after: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
        }
      }),
    );
  };
}
