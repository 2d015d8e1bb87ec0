import { exponentialBackoff, type BackoffFn, type Clock } from '@horae/core';
import { RepositoryError } from '../contract/errors.js';

/** What a durable writer reports each time a repository call fails with an outage. */
export interface RepositoryErrorReport {
  /** The repository method that failed (`'markAsDone'`, `'claim'`, ...). */
  operation: string;
  /** The task concerned, when there is one. */
  taskId: string | undefined;
  /** 1 for the first failure of this call, 2 for the next, and so on. */
  attempt: number;
  /** The RepositoryError (the driver's error is its `cause`). */
  error: RepositoryError;
  /** How long the writer waits before trying again. */
  retryInMs: number;
}

/** Options of a {@link DurableWriter}. */
export interface DurableWriterOptions {
  /** The clock the backoff waits on. */
  clock: Clock;
  /** The delay before try n + 1 after try n failed. @defaultValue {@link DEFAULT_REPOSITORY_BACKOFF} */
  backoff?: BackoffFn;
  /** Called on every failed try. */
  onError?: (report: RepositoryErrorReport) => void;
  /** Called each time a call succeeds (the repository answered): how an outage is seen to end. */
  onLanded?: () => void;
}

/** Options of one {@link DurableWriter.run} call. */
export interface DurableRunOptions {
  /**
   * Ends the call's wait: checked before each try and while waiting between tries, where an abort rejects at once
   * with the signal's reason and no later try is made. A try under way is never cut: the call settles when it
   * ends (with its result when it landed, with the reason when it failed with an outage).
   */
  signal?: AbortSignal | undefined;
}

/** The default backoff of repository retries: 100 ms doubling to at most 10 s, with jitter in [d/2, d]. */
export const DEFAULT_REPOSITORY_BACKOFF: BackoffFn = exponentialBackoff({ baseMs: 100, factor: 2, maxMs: 10_000, jitter: 'equal' });

/**
 * Runs repository calls so that an outage never loses a state write.
 *
 * Rules: a call that fails with a {@link RepositoryError} (the database is down or failed) is tried again
 * with exponential backoff until it lands, and every failure is reported (`onError`; rate-limiting the reports is
 * the listener's business); any other error (LeaseLostError, InvalidStateError, TaskNotFoundError,
 * InvalidInputError) is an answer, not an outage, and is thrown at once. A call given a signal stops trying when
 * it aborts, never in the middle of a try (see {@link DurableRunOptions}). Each success is told to `onLanded`.
 */
export class DurableWriter {
  readonly #clock: Clock;
  readonly #backoff: BackoffFn;
  readonly #onError: ((report: RepositoryErrorReport) => void) | undefined;
  readonly #onLanded: (() => void) | undefined;
  // A count and the waiters of idle(), rather than a set of promises: every task's claim and end go through run(),
  // and tracking each promise cost a set entry, a closure and a derived promise per call.
  #inFlight = 0;
  #idleWaiters: Array<() => void> = [];

  /** @param options - the clock, the backoff and the failure listener */
  constructor(options: DurableWriterOptions) {
    this.#clock = options.clock;
    this.#backoff = options.backoff ?? DEFAULT_REPOSITORY_BACKOFF;
    this.#onError = options.onError;
    this.#onLanded = options.onLanded;
  }

  /** How many calls are under way (tried or waiting to be tried again). */
  get inFlight(): number {
    return this.#inFlight;
  }

  /**
   * Runs `call` until it lands.
   *
   * @param operation - the repository method's name, for reports
   * @param taskId - the task concerned, for reports
   * @param call - the repository call; called again after each outage
   * @param options - a signal that ends the wait between tries
   * @returns what `call` returned
   * @throws whatever `call` throws that is not a RepositoryError
   * @throws the signal's reason when `options.signal` aborted before a try, or while waiting between tries
   */
  run<T>(operation: string, taskId: string | undefined, call: () => Promise<T>, options?: DurableRunOptions): Promise<T> {
    this.#inFlight++;
    return this.#loop(operation, taskId, call, options?.signal);
  }

  /** Settles when every call under way (those started while it waits included) has landed or failed with a non-outage error. */
  idle(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
  }

  #landed(): void {
    if (--this.#inFlight > 0) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  async #loop<T>(operation: string, taskId: string | undefined, call: () => Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    try {
      for (let attempt = 1; ; attempt++) {
        if (signal?.aborted === true) throw signal.reason;
        let value: T;
        try {
          value = await call();
        } catch (error) {
          if (!(error instanceof RepositoryError)) throw error;
          const retryInMs = this.#backoff(attempt, error);
          try {
            this.#onError?.({ operation, taskId, attempt, error, retryInMs });
          } catch {
            // A throwing listener must not turn an outage into a lost write.
          }
          await this.#wait(retryInMs, signal);
          continue;
        }
        try {
          this.#onLanded?.();
        } catch {
          // A throwing listener must not fail a write that landed.
        }
        return value;
      }
    } finally {
      this.#landed();
    }
  }

  /** Waits `delayMs` on the clock; an abort of `signal` ends the wait at once with its reason (the timer cleared). */
  #wait(delayMs: number, signal: AbortSignal | undefined): Promise<void> {
    if (signal === undefined) return new Promise<void>((resolve) => this.#clock.setTimer(resolve, delayMs));
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        timer.clear();
        reject(signal.reason as Error);
      };
      const timer = this.#clock.setTimer(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, delayMs);
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
  }
}
