/**
 * The stall timeout middleware: interrupts a run that shows no sign of life for too long (Boundary's interrupt
 * threshold, Harbor's check-in).
 */
import { realClock, type ClockTimer } from './clock.js';
import { StallTimeoutMsKey, type ProgressReport, type WorkContext } from './context.js';
import { StalledError } from './errors.js';
import { startInterruptible, validateWindowMs } from './interruptible-run.js';
import type { Middleware } from './middleware.js';

/**
 * A middleware that interrupts a run which shows no sign of life within `StallTimeoutMsKey` of the task's
 * context (the `stallTimeoutMs` schedule option), or `defaultMs`.
 *
 * Rules:
 * - A sign of life is a `ctx.progress()` whose `completed` differs from the last one reported in this run (the
 *   first report always counts), OR any `ctx.checkIn()`. Either restarts the window; a progress report that
 *   repeats the same `completed` does not (a loop that reports "still 40 %" is stalled).
 * - The window starts when the run starts. When it passes without a sign of life, the work's signal aborts with
 *   a {@link StalledError} and the run fails with that error at once, even if the work ignores its signal (its
 *   promise is raced against the window; a work that goes on regardless is left behind).
 * - StalledError is retryable (unlike UnrecoverableError): the retry policy decides. A middleware registered
 *   later wraps the work from outside, so register `stallTimeout` BEFORE the in-memory `retry()` (or a storage
 *   middleware) for them to see the StalledError: `scheduler.use(stallTimeout(60_000), retry(policy))`. Registered
 *   after them, it rejects around them and the run fails with the StalledError unretried (they only see what the
 *   work does once its signal aborts).
 * - Tasks with neither StallTimeoutMsKey nor a default are not watched. Time is measured on the run's `ctx.clock`.
 *
 * @remarks Works in any position of the chain: the work receives a signal that aborts on the stall and on
 * anything that aborts the run's own signal (cancel, stop, timeout), and its `progress` / `checkIn` calls are seen
 * wherever the middleware sits, because every wrapping context passes them on.
 * @param defaultMs - the window for tasks that carry no StallTimeoutMsKey
 * @returns the middleware
 * @throws {@link InvalidInputError} when `defaultMs` (or, at schedule time, a StallTimeoutMsKey) is not in (0, 2^31-1]
 *
 * @example
 * ```ts
 * scheduler.use(stallTimeout(60_000), retry({ maxAttempts: 3, backoff: fixedBackoff(1000) }));
 * await scheduler.schedule({
 *   stallTimeoutMs: 5_000,
 *   work: async (ctx) => {
 *     for (let i = 0; i < 100; i++) {
 *       await step(i, ctx.signal);
 *       ctx.progress({ completed: i + 1, total: 100 }); // each step must take less than 5 s
 *     }
 *   },
 * });
 * ```
 */
export function stallTimeout(defaultMs?: number): Middleware {
  if (defaultMs !== undefined) validateWindowMs(defaultMs, 'defaultMs');
  return (next) => (ctx) => {
    const own = ctx.value(StallTimeoutMsKey);
    const windowMs = own === undefined ? defaultMs : validateWindowMs(own, 'StallTimeoutMsKey');
    const work = ctx.work;
    if (windowMs === undefined || work === undefined) return next(ctx);
    return next(ctx.withWork((run: WorkContext) => watch(run, work, windowMs)));
  };
}

// Runs `work` under the stall window.
function watch(run: WorkContext, work: (ctx: WorkContext) => unknown, windowMs: number): Promise<unknown> {
  const clock = run.clock ?? realClock;
  let timer: ClockTimer | undefined;
  let settled = false;
  let lastCompleted: number | undefined;
  // Re-arming on each sign of life keeps the window on the clock's monotonic timers (a wall-clock jump
  // neither stalls a healthy run nor hides a stalled one).
  const alive = (): void => {
    if (settled) return;
    timer?.clear();
    // The callback runs later, when `interruptible` is set.
    timer = clock.setTimer(() => interruptible.interrupt(new StalledError(windowMs)), windowMs);
  };
  alive(); // The window starts when the run starts.
  const interruptible = startInterruptible(
    run,
    work,
    {
      onProgress: (report: ProgressReport) => {
        if (report.completed === lastCompleted) return;
        lastCompleted = report.completed;
        alive();
      },
      onCheckIn: alive,
    },
    () => {
      settled = true;
      timer?.clear();
    },
  );
  return interruptible.result;
}
