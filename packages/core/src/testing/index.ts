/**
 * `@horae/core/testing`: helpers for tests of code that schedules: a clock moved by hand, and a way to await
 * the next event instead of sleeping.
 *
 * @packageDocumentation
 */
import type { TypedEventEmitter } from '../events.js';

export { VirtualClock, type VirtualClockOptions } from './virtual-clock.js';

/**
 * Waits for the next emit of an event.
 *
 * @param emitter - a scheduler's (or storage's) events
 * @param name - the event
 * @returns the payload of the next emit
 *
 * @example
 * ```ts
 * const done = nextEvent(scheduler.events, 'task:success');
 * await clock.advance(1000);
 * (await done).taskId;
 * ```
 */
export function nextEvent<M extends Record<string, unknown>, K extends keyof M>(emitter: TypedEventEmitter<M>, name: K): Promise<M[K]> {
  return emitter.once(name);
}
