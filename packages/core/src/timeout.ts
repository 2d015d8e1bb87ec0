/**
 * The timeout middleware: a per-run time limit that holds even when the work ignores its signal.
 */
import { realClock } from './clock.js';
import { TimeoutMsKey, type WorkContext } from './context.js';
import { TimeoutError } from './errors.js';
import { startInterruptible, validateWindowMs } from './interruptible-run.js';
import type { Middleware } from './middleware.js';

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
  if (defaultMs !== undefined) validateWindowMs(defaultMs, 'defaultMs');
  return (next) => (ctx) => {
    const own = ctx.value(TimeoutMsKey);
    const limitMs = own === undefined ? defaultMs : validateWindowMs(own, 'TimeoutMsKey');
    const work = ctx.work;
    if (limitMs === undefined || work === undefined) return next(ctx);
    return next(
      ctx.withWork((run: WorkContext) => {
        // Armed before the work starts, so that a work that throws at once still clears it; the callback runs
        // later, when `interruptible` is set.
        const timer = (run.clock ?? realClock).setTimer(() => interruptible.interrupt(new TimeoutError(limitMs)), limitMs);
        const interruptible = startInterruptible(run, work, {}, () => timer.clear());
        return interruptible.result;
      }),
    );
  };
}
