/**
 * Event triggers (DMS): what `scheduler.emit(eventName, payload)` starts. The registry lives here; the scheduler
 * turns each registration into one `schedule()` call per emit.
 */
import { SchedulerContext, type ScheduleOptions } from './context.js';
import { InvalidInputError } from './errors.js';
import { quoteInput } from './quote-input.js';

/**
 * The param of an {@link EventTriggerSpec}: a value (anything but a function), or a function that maps the
 * event's payload (and name) to the task's param.
 */
export type EventTriggerParam<P> = ((payload: P, eventName: string) => unknown) | string | number | boolean | null | object;

/**
 * What an event starts: the options of a `schedule()` call, made once per emit of the event. `param` is either
 * a value, or a function that maps the event's payload to the task's param.
 *
 * @remarks A spec with a fixed `taskId` can only have one live task at a time (a second emit is refused with
 * DUPLICATE_KEY while the first task lives); give a `uniqueKey` instead to have storage return the live task.
 * `runAt` is taken as given at each emit (a time in the past runs at once); `delayMs` counts from the emit.
 */
export interface EventTriggerSpec<P = unknown> extends Omit<ScheduleOptions, 'param'> {
  /**
   * The task's param: a value, or a function of the event's payload (and the event's name) that returns it. The
   * function runs at each emit; what it throws makes that emit reject.
   */
  param?: EventTriggerParam<P>;
}

/**
 * Checks an event name.
 *
 * @param eventName - the name
 * @returns the name
 * @throws {@link InvalidInputError} when it is not a non-empty string
 */
export function validateEventName(eventName: string): string {
  if (typeof eventName !== 'string' || eventName === '') throw new InvalidInputError('an event name must be a non-empty string');
  return eventName;
}

/**
 * Checks a spec once, at registration, so that a bad one is refused there rather than at every emit: the options
 * must build a valid context (dates, delay, priority, ids, keys) and name a work (`work` or `workId`).
 *
 * @param spec - the spec
 * @returns a frozen copy of the spec (later changes to the caller's object do not change the registration)
 * @throws {@link InvalidInputError} on an invalid spec
 */
export function validateEventTriggerSpec<P>(spec: EventTriggerSpec<P>): Readonly<EventTriggerSpec<P>> {
  if (spec === null || typeof spec !== 'object') throw new InvalidInputError('an event trigger spec must be an options object');
  if (spec.work === undefined && spec.workId === undefined) {
    throw new InvalidInputError('an event trigger spec needs `work` or `workId`');
  }
  const { param: _param, ...rest } = spec;
  // The param is left out: a function param is a mapper, not a value, and a value is checked (JSON) by storage.
  SchedulerContext.create(rest, 0);
  return Object.freeze({ ...spec });
}

/**
 * The schedule options of one registration for one emit.
 *
 * @param spec - a registered (validated) spec
 * @param payload - the event's payload
 * @param eventName - the event's name
 * @returns the options for `schedule()`
 * @throws whatever a param mapper throws, wrapped in an {@link InvalidInputError} (the mapper's error is its `cause`)
 */
export function eventTaskOptions<P>(spec: Readonly<EventTriggerSpec<P>>, payload: P, eventName: string): ScheduleOptions {
  const { param, ...rest } = spec;
  if (typeof param !== 'function') return param === undefined ? rest : { ...rest, param };
  let mapped: unknown;
  try {
    mapped = (param as (payload: P, eventName: string) => unknown)(payload, eventName);
  } catch (error) {
    throw new InvalidInputError(`the param mapper of an event trigger on ${quoteInput(eventName)} threw: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  return mapped === undefined ? rest : { ...rest, param: mapped };
}

/**
 * The registrations of one scheduler, by event name, in registration order.
 *
 * Rules: a registration added or removed during an emit takes effect from the next emit; unsubscribing twice
 * does nothing.
 */
export class EventTriggers {
  // Arrays are replaced, never mutated, so that an emit in progress iterates a stable snapshot.
  readonly #byName = new Map<string, ReadonlyArray<Readonly<EventTriggerSpec<never>>>>();

  /**
   * Registers a spec on an event.
   *
   * @param eventName - the event
   * @param spec - what it starts
   * @returns a function that removes this registration
   * @throws {@link InvalidInputError} on an invalid name or spec
   */
  add<P>(eventName: string, spec: EventTriggerSpec<P>): () => void {
    validateEventName(eventName);
    const entry = validateEventTriggerSpec(spec) as Readonly<EventTriggerSpec<never>>;
    this.#byName.set(eventName, [...(this.#byName.get(eventName) ?? []), entry]);
    return () => {
      const current = this.#byName.get(eventName);
      if (current === undefined) return;
      const index = current.indexOf(entry);
      if (index < 0) return;
      const next = [...current.slice(0, index), ...current.slice(index + 1)];
      if (next.length === 0) this.#byName.delete(eventName);
      else this.#byName.set(eventName, next);
    };
  }

  /**
   * @param eventName - the event
   * @returns its registrations, in registration order (empty for an unknown event)
   */
  specs(eventName: string): ReadonlyArray<Readonly<EventTriggerSpec<unknown>>> {
    return this.#byName.get(eventName) ?? [];
  }

  /** The names of the events that have at least one registration. */
  names(): string[] {
    return [...this.#byName.keys()];
  }
}
