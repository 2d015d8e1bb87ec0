/**
 * A {@link WorkContext} derived from a run's own: the same task, param and clock, another signal, and optional
 * hooks on `progress()` / `checkIn()`. The wrapping middlewares (timeout, stallTimeout) hand it to the work they
 * wrap.
 *
 * @internal
 * @packageDocumentation
 */
import type { ProgressReport, WorkContext } from './context.js';

/** Hooks of a derived context, called before the call is passed on to the run's own context. @internal */
export interface DerivedWorkContextHooks {
  /** Called with each progress report. */
  onProgress?(report: ProgressReport): void;
  /** Called with each check-in message. */
  onCheckIn?(message: string): void;
}

/**
 * Derives a WorkContext whose signal is `signal`; everything else is read from `run` (lazily, so that it stays
 * current), and `progress` / `checkIn` go to `run` after the hooks saw them.
 *
 * @param run - the context of the run
 * @param signal - the signal the work should see
 * @param hooks - optional observers of progress and check-ins
 * @returns the derived context
 * @internal
 */
export function deriveWorkContext(run: WorkContext, signal: AbortSignal, hooks: DerivedWorkContextHooks = {}): WorkContext {
  return {
    signal,
    get scheduledAt() {
      return run.scheduledAt;
    },
    get taskId() {
      return run.taskId;
    },
    attempt: run.attempt,
    get param() {
      return run.param;
    },
    get context() {
      return run.context;
    },
    clock: run.clock,
    value: (key) => run.value(key),
    progress: (report) => {
      // The run validates the report (and throws on a bad one) before the hook may count it as a sign of life.
      run.progress(report);
      hooks.onProgress?.(report);
    },
    checkIn: (message) => {
      run.checkIn(message);
      hooks.onCheckIn?.(message);
    },
  };
}
