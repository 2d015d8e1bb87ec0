/**
 * What the timeout and stall-timeout middlewares share: a run of the work under a signal of its own, raced
 * against an interruption that fails the run at once even when the work ignores its signal.
 *
 * @internal
 * @packageDocumentation
 */
import { MAX_TIMER_DELAY_MS } from './clock.js';
import type { WorkContext, WorkFn } from './context.js';
import { deriveWorkContext, type DerivedWorkContextHooks } from './derived-work-context.js';
import { InvalidInputError } from './errors.js';
import { quoteInput } from './quote-input.js';

/**
 * Checks a time window given in ms (a timeout, a stall window).
 *
 * @param value - the value to check
 * @param what - its name, for the error message
 * @returns the value
 * @throws {@link InvalidInputError} unless a number in (0, 2^31-1]
 * @internal
 */
export function validateWindowMs(value: unknown, what: string): number {
  if (typeof value !== 'number' || !(value > 0) || value > MAX_TIMER_DELAY_MS) {
    throw new InvalidInputError(`${what} must be a number of ms in (0, 2^31-1], got ${quoteInput(value)}`);
  }
  return value;
}

/** A run started by {@link startInterruptible}. @internal */
export interface InterruptibleRun {
  /** Settles with the work's value or error, or with the error given to `interrupt`, whichever comes first. */
  readonly result: Promise<unknown>;
  /** Aborts the work's signal with `error` and rejects `result` with it, unless the run already settled. */
  interrupt(error: Error): void;
}

/**
 * Starts `work` with a context derived from `run` whose signal aborts on `interrupt` and on anything that aborts
 * the run's own signal (cancel, stop). `onSettled` runs once, when `result` settles, whichever way.
 *
 * @param run - the context of the run
 * @param work - the wrapped work
 * @param hooks - observers of the work's progress and check-ins
 * @param onSettled - clean-up (clear timers) when the run settles
 * @returns the run
 * @internal
 */
export function startInterruptible(run: WorkContext, work: WorkFn, hooks: DerivedWorkContextHooks, onSettled: () => void): InterruptibleRun {
  const parent = run.signal;
  const controller = new AbortController();
  const onParentAbort = (): void => controller.abort(parent.reason);
  if (parent.aborted) controller.abort(parent.reason);
  else parent.addEventListener('abort', onParentAbort, { once: true });

  let settled = false;
  let settle: { resolve: (value: unknown) => void; reject: (error: unknown) => void } | undefined;
  const result = new Promise<unknown>((resolve, reject) => {
    settle = { resolve, reject };
  });
  const finish = (outcome: () => void): void => {
    if (settled) return;
    settled = true;
    parent.removeEventListener('abort', onParentAbort);
    onSettled();
    outcome();
  };
  const interrupt = (error: Error): void =>
    finish(() => {
      controller.abort(error);
      settle!.reject(error);
    });

  let returned: unknown;
  try {
    returned = work(deriveWorkContext(run, controller.signal, hooks));
  } catch (error) {
    finish(() => settle!.reject(error));
    return { result, interrupt };
  }
  void Promise.resolve(returned).then(
    (value) => finish(() => settle!.resolve(value)),
    (error: unknown) => finish(() => settle!.reject(error)),
  );
  return { result, interrupt };
}
