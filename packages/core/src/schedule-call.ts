/**
 * The bounds of one `schedule()` call: how long it may wait for a middleware that waits (the storage middleware,
 * while its database is down) before it gives up.
 */
import { createKey, type ValueKey } from './context.js';
import { InvalidInputError, ScheduleAbortedError } from './errors.js';
import { MAX_TIMER_DELAY_MS } from './clock.js';

/**
 * The second argument of `scheduler.schedule()` (and `horae.schedule()`): bounds on the call itself, not on
 * the task's run.
 *
 * Rules:
 * - They bound the wait only: a call that settles at once (the core alone, a healthy database) is not affected,
 *   except that a `signal` already aborted rejects at once with a {@link ScheduleAbortedError} and nothing is
 *   written.
 * - With storage, they are honoured while the call waits for its turn to write (the back-pressure bound of the
 *   storage middleware), before the first write of the task, and while the call waits between two tries of a write
 *   that failed with an outage; a try under way is never cut (a driver call cannot be taken back): the call settles
 *   when it ends, with the handle when it landed.
 * - Once the task is written the call resolves; the signal no longer applies (cancel the task through its handle).
 */
export interface ScheduleCallOptions {
  /** Aborting it ends the call's wait with a {@link ScheduleAbortedError} whose `cause` is the signal's reason. */
  signal?: AbortSignal;
  /**
   * The longest the call waits, in ms on the scheduler's clock, before it rejects with a ScheduleTimeoutError:
   * a number in [0, 2^31-1].
   * @defaultValue none: the call waits as long as the middlewares do (the storage middleware bounds how many
   * calls wait during an outage, not how long)
   */
  timeoutMs?: number;
}

/** What a middleware reads of a call's bounds, from {@link ScheduleCallKey}. */
export interface ScheduleCall {
  /** The call's signal, when it gave one. */
  readonly signal: AbortSignal | undefined;
  /** The call's `timeoutMs`, when it gave one. */
  readonly timeoutMs: number | undefined;
  /** When the call times out, in epoch ms on the scheduler's clock (`now + timeoutMs`), when it gave a timeout. */
  readonly deadline: number | undefined;
}

/**
 * The bounds of the `schedule()` call that built a context, set only when the call gave some. A middleware that
 * waits (the storage middleware during an outage) reads it; one that holds the context after the call settled
 * should drop it, so that the caller's signal is not kept alive with the task.
 */
export const ScheduleCallKey: ValueKey<ScheduleCall> = createKey<ScheduleCall>('scheduleCall');

/**
 * Checks the options of a call and turns them into what {@link ScheduleCallKey} carries.
 *
 * @param options - the call's options, as given
 * @param now - the scheduler clock's time of the call
 * @returns the bounds, or undefined when the call gave none
 * @throws InvalidInputError on a signal that is not an AbortSignal or an invalid `timeoutMs`
 * @throws ScheduleAbortedError when the signal is already aborted (nothing was written)
 */
export function toScheduleCall(options: ScheduleCallOptions | undefined, now: () => number): ScheduleCall | undefined {
  if (options === undefined) return undefined;
  if (options === null || typeof options !== 'object') throw new InvalidInputError('the second argument of schedule() must be { signal?, timeoutMs? }');
  const { signal, timeoutMs } = options;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new InvalidInputError('signal must be an AbortSignal');
  if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || !(timeoutMs >= 0) || timeoutMs > MAX_TIMER_DELAY_MS)) {
    throw new InvalidInputError(`timeoutMs must be a number of ms in [0, 2^31-1], got ${String(timeoutMs)}`);
  }
  if (signal?.aborted === true) throw new ScheduleAbortedError(undefined, false, { cause: signal.reason });
  if (signal === undefined && timeoutMs === undefined) return undefined;
  return { signal, timeoutMs, deadline: timeoutMs === undefined ? undefined : now() + timeoutMs };
}
