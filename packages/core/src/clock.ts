/**
 * The source of time for everything Horae schedules. The real clock reads the system; the virtual clock of
 * `@horae/core/testing` is advanced by hand so that tests never sleep.
 */

/** A timer armed on a {@link Clock}. */
export interface ClockTimer {
  /** Disarms the timer; calling it after it fired, or twice, does nothing. */
  clear(): void;
}

/**
 * Time as the scheduler sees it.
 *
 * @remarks `now()` is the wall clock and may jump (an NTP step, a suspended laptop); `setTimer` delays
 * are measured on a monotonic clock, like `setTimeout`. The scheduler relies on both and copes with the
 * wall clock jumping either way.
 */
export interface Clock {
  /** Wall-clock time in milliseconds since the epoch. */
  now(): number;
  /** Calls `callback` once after `delayMs` monotonic milliseconds. `delayMs` is at most 2^31-1. */
  setTimer(callback: () => void, delayMs: number): ClockTimer;
}

/** The largest delay `setTimeout` takes without overflowing to 1 ms. */
export const MAX_TIMER_DELAY_MS = 2 ** 31 - 1;

/**
 * The system clock: `Date.now()`, and `setTimeout` for a delay, `setImmediate` for none.
 *
 * A timer of 0 ms (or less) fires in the check phase of the current event-loop turn, after pending I/O, rather
 * than through `setTimeout(0)`, which Node rounds up to 1 ms: work that is due already (a task scheduled due
 * now, the next turn of a pump) then waits for no timer, while I/O callbacks still run in between.
 */
export class RealClock implements Clock {
  /** {@inheritDoc Clock.now} */
  now(): number {
    return Date.now();
  }

  /** {@inheritDoc Clock.setTimer} */
  setTimer(callback: () => void, delayMs: number): ClockTimer {
    if (!(delayMs > 0)) {
      const immediate = setImmediate(callback);
      return { clear: () => clearImmediate(immediate) };
    }
    const timeout = setTimeout(callback, Math.min(delayMs, MAX_TIMER_DELAY_MS));
    return { clear: () => clearTimeout(timeout) };
  }
}

/** The process-wide real clock, the default of every scheduler. */
export const realClock: Clock = new RealClock();
