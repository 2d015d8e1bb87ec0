/**
 * The timeout middleware: a per-run time limit that holds even when the work ignores its signal.
 */
import { MAX_TIMER_DELAY_MS, realClock } from './clock.js';
import { TimeoutMsKey, type WorkContext } from './context.js';
import { deriveWorkContext } from './derived-work-context.js';
import { InvalidInputError, TimeoutError } from './errors.js';
import type { Middleware } from './middleware.js';

function validateTimeout(value: unknown, what: string): number {
  if (typeof value !== 'number' || !(value > 0) || value > MAX_TIMER_DELAY_MS) {
    throw new InvalidInputError(`${what} must be a number of ms in (0, 2^31-1], got ${String(value)}`);
  }
  return value;
}

/**
 * A middleware that limits each run to `TimeoutMsKey` of the task's context, or `defaultMs`. On expiry the
 * work's signal aborts with a {@link TimeoutError} and the run fails with that error at once, even if the work
 * ignores its signal (its promise is raced against the limit; a work that goes on regardless is left behind).
 *
 * @remarks Works in any position of the chain: the work receives a signal that aborts on the timeout and on
 * anything that aborts the run's own signal (cancel, stop). Tasks with neither TimeoutMsKey nor a default are not
 * limited. The limit is measured on the run's `ctx.clock`.
 * @param defaultMs - the limit for tasks that carry no TimeoutMsKey
 * @returns the middleware
 * @throws {@link InvalidInputError} when `defaultMs` (or, at schedule time, a TimeoutMsKey) is not in (0, 2^31-1]
 *
 * @example
 * ```ts
 * scheduler.use(timeout(30_000));
 * await scheduler.schedule({ work, values: [[TimeoutMsKey, 5_000]] }); // this one gets 5 s
 * ```
 */
export function timeout(defaultMs?: number): Middleware {
  if (defaultMs !== undefined) validateTimeout(defaultMs, 'defaultMs');
  return (next) => (ctx) => {
    const own = ctx.value(TimeoutMsKey);
    const limitMs = own === undefined ? defaultMs : validateTimeout(own, 'TimeoutMsKey');
    const work = ctx.work;
    if (limitMs === undefined || work === undefined) return next(ctx);
    return next(
      ctx.withWork((run: WorkContext) => {
        const parent = run.signal;
        const controller = new AbortController();
        const onParentAbort = (): void => controller.abort(parent.reason);
        if (parent.aborted) controller.abort(parent.reason);
        else parent.addEventListener('abort', onParentAbort, { once: true });
        return new Promise<unknown>((resolve, reject) => {
          const timer = (run.clock ?? realClock).setTimer(() => {
            const error = new TimeoutError(limitMs);
            controller.abort(error);
            reject(error);
          }, limitMs);
          const cleanUp = (): void => {
            timer.clear();
            parent.removeEventListener('abort', onParentAbort);
          };
          let result: unknown;
          try {
            result = work(deriveWorkContext(run, controller.signal));
          } catch (error) {
            cleanUp();
            // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the work's own error, as thrown
            reject(error);
            return;
          }
          void Promise.resolve(result).then(
            (value) => {
              cleanUp();
              resolve(value);
            },
            (error: unknown) => {
              cleanUp();
              // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the work's own error, as thrown
              reject(error);
            },
          );
        });
      }),
    );
  };
}
