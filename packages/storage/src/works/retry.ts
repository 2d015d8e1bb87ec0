import { exponentialBackoff, shouldRetry, type BackoffFn, type RetryPolicy } from '@horae/core';

/**
 * How the storage middlewares retry a failed run: a backoff function of (attempt, error) returning the delay in
 * ms, or the core's retry policy fields (`backoff`, `isRetryable`; `maxAttempts` here is only a default, the
 * task's own maxAttempts wins).
 */
export type StorageRetryOption = BackoffFn | Partial<RetryPolicy>;

/** The default backoff of durable retries: exponential from 1 s, doubling, at most 5 min, with jitter in [d/2, d]. */
export const DEFAULT_RETRY_BACKOFF: BackoffFn = exponentialBackoff({ baseMs: 1000, factor: 2, maxMs: 300_000, jitter: 'equal' });

/**
 * Decides whether a failed run is retried and after how long, with the core's {@link shouldRetry}.
 *
 * Rules: an UnrecoverableError (and a cancel, a stop, a deferral or an abandon) is never retried; a run whose
 * `attempt` reached `maxAttempts` is not retried; an error `isRetryable` refuses is not retried; a backoff that
 * throws or returns a bad delay counts as "do not retry" rather than leaving the task stuck.
 *
 * @param attempt - the attempt that just failed, from 1
 * @param maxAttempts - the runs the task may have in all
 * @param error - the run's error
 * @param option - a backoff function or policy fields; the default backoff when left out
 * @returns the delay in ms before the next run, or null when the failure is final
 */
export function retryDelay(attempt: number, maxAttempts: number, error: unknown, option: StorageRetryOption | undefined): number | null {
  const policy: RetryPolicy =
    typeof option === 'function'
      ? { maxAttempts, backoff: option }
      : { maxAttempts, backoff: option?.backoff ?? DEFAULT_RETRY_BACKOFF, ...(option?.isRetryable === undefined ? {} : { isRetryable: option.isRetryable }) };
  try {
    const decision = shouldRetry(policy, attempt, error, maxAttempts);
    return decision.retry ? decision.delayMs : null;
  } catch {
    return null;
  }
}
