/**
 * The schedules of one in-memory "database": the {@link ScheduleStore} half of MemoryRepository, shared by all
 * the peers opened on one store.
 */
import { InvalidInputError, type Clock, quoteInput } from '@horae/core';
import { firstRunAfter, normalizeScheduleDefinition, sameScheduleDefinition, sameScheduleSpec, validateScheduleAdvance, validateScheduleName } from '../schedules/schedule-definition.js';
import { ScheduleNotFoundError, type ListSchedulesOptions, type Schedule, type ScheduleAdvance, type ScheduleDefinition, type UpsertScheduleResult } from '../schedules/schedule-store.js';

/**
 * A table of schedules held in memory. Every method is synchronous and does its checks and its write in one
 * step, so a caller that runs each call in one turn of the event loop (as MemoryRepository does) gets the
 * compare-and-set rules of {@link ScheduleStore} exactly.
 *
 * Rule: schedules go in and come out as deep copies.
 *
 * ### Examples
 * ```ts
 * const table = new MemoryScheduleTable(realClock);
 * table.upsert({ name: 'nightly', spec: { cron: '30 2 * * *' }, workId: 'report' });
 * ```
 */
export class MemoryScheduleTable {
  readonly #schedules = new Map<string, Schedule>();
  readonly #clock: Clock;

  /** @param clock - the "database clock" that createdAt, updatedAt and "now" are read from */
  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** {@inheritDoc ScheduleStore.upsertSchedule} */
  upsert(definition: ScheduleDefinition): UpsertScheduleResult {
    const next = normalizeScheduleDefinition(definition);
    const now = this.#clock.now();
    const stored = this.#schedules.get(next.name);
    if (stored === undefined) {
      const schedule: Schedule = {
        ...next,
        paused: false,
        lastOccurrenceAt: null,
        lastTaskId: null,
        nextRunAt: firstRunAfter(next.spec, new Date(now)),
        createdAt: new Date(now),
        updatedAt: new Date(now),
        version: 1,
      };
      this.#schedules.set(schedule.name, schedule);
      return { schedule: copy(schedule), created: true, changed: true };
    }
    if (sameScheduleDefinition(stored, next)) return { schedule: copy(stored), created: false, changed: false };
    const nextRunAt = sameScheduleSpec(stored.spec, next.spec) ? stored.nextRunAt : firstRunAfter(next.spec, new Date(Math.max(now, stored.lastOccurrenceAt?.getTime() ?? now)));
    const updated = this.#write({ ...stored, ...next, nextRunAt });
    return { schedule: copy(updated), created: false, changed: true };
  }

  /** {@inheritDoc ScheduleStore.getSchedule} */
  get(name: string): Schedule {
    return copy(this.#get(name));
  }

  /** {@inheritDoc ScheduleStore.listSchedules} */
  list(options: ListSchedulesOptions = {}): Schedule[] {
    if (options === null || typeof options !== 'object') throw new InvalidInputError('listSchedules takes an options object');
    const all = [...this.#schedules.values()];
    if (options.dueBy === undefined) return all.sort((a, b) => compareText(a.name, b.name)).map(copy);
    assertDate(options.dueBy, 'dueBy');
    const dueBy = options.dueBy.getTime();
    return all
      .filter((s) => !s.paused && s.nextRunAt !== null && s.nextRunAt.getTime() <= dueBy)
      .sort((a, b) => a.nextRunAt!.getTime() - b.nextRunAt!.getTime() || compareText(a.name, b.name))
      .map(copy);
  }

  /** {@inheritDoc ScheduleStore.setSchedulePaused} */
  setPaused(name: string, paused: boolean): Schedule {
    if (typeof paused !== 'boolean') throw new InvalidInputError(`paused must be a boolean, got ${quoteInput(paused)}`);
    const stored = this.#get(name);
    if (stored.paused === paused) return copy(stored);
    if (paused) return copy(this.#write({ ...stored, paused }));
    const now = this.#clock.now();
    const after = Math.max(now, stored.lastOccurrenceAt?.getTime() ?? now);
    return copy(this.#write({ ...stored, paused, nextRunAt: firstRunAfter(stored.spec, new Date(after)) }));
  }

  /** {@inheritDoc ScheduleStore.removeSchedule} */
  remove(name: string): void {
    this.#get(name);
    this.#schedules.delete(name);
  }

  /** {@inheritDoc ScheduleStore.pullScheduleForward} */
  pullForward(name: string, withinMs: number): Schedule {
    if (typeof withinMs !== 'number' || !Number.isSafeInteger(withinMs) || withinMs < 0) {
      throw new InvalidInputError(`withinMs must be an integer ≥ 0, got ${quoteInput(withinMs)}`);
    }
    const stored = this.#get(name);
    const bound = this.#clock.now() + withinMs;
    if (stored.nextRunAt !== null && stored.nextRunAt.getTime() <= bound) return copy(stored);
    return copy(this.#write({ ...stored, nextRunAt: new Date(bound) }));
  }

  /** {@inheritDoc ScheduleStore.advanceSchedule} */
  advance(name: string, advance: ScheduleAdvance): Schedule | null {
    validateScheduleAdvance(advance);
    const stored = this.#get(name);
    if (stored.version !== advance.version) return null;
    return copy(
      this.#write({
        ...stored,
        lastOccurrenceAt: advance.lastOccurrenceAt === null ? null : new Date(advance.lastOccurrenceAt.getTime()),
        lastTaskId: advance.lastTaskId,
        nextRunAt: advance.nextRunAt === null ? null : new Date(advance.nextRunAt.getTime()),
      }),
    );
  }

  #get(name: string): Schedule {
    validateScheduleName(name);
    const stored = this.#schedules.get(name);
    if (stored === undefined) throw new ScheduleNotFoundError(name);
    return stored;
  }

  /** Stores a change: a new version, updatedAt from the clock (never before createdAt). */
  #write(schedule: Schedule): Schedule {
    const updatedAt = Math.max(this.#clock.now(), schedule.createdAt.getTime());
    const stored: Schedule = structuredClone({ ...schedule, updatedAt: new Date(updatedAt), version: schedule.version + 1 });
    this.#schedules.set(stored.name, stored);
    return stored;
  }
}

/** A deep copy, so that no caller holds a reference into the table. */
function copy(schedule: Schedule): Schedule {
  return structuredClone(schedule);
}

function assertDate(value: unknown, what: string): asserts value is Date {
  if (!(value instanceof Date) || !Number.isFinite(value.getTime())) throw new InvalidInputError(`${what} must be a valid Date, got ${quoteInput(value)}`);
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
