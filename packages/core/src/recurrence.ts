/**
 * The pure date arithmetic behind recurring schedules: when does a cron expression or a fixed interval fire
 * next, which occurrences fall in a window, and the stable key that makes each occurrence a unique task.
 * Nothing here arms a timer or reads a clock, so intervals longer than 2^31-1 ms are plain arithmetic.
 */
import { Cron } from 'croner';
import { InvalidInputError } from './errors.js';
import { quoteInput } from './quote-input.js';

/** The timezone a cron schedule uses when none is given. */
export const DEFAULT_TIMEZONE = 'UTC';

/**
 * How many occurrences {@link Recurrence.countBetween} walks, by default, before it gives up on an exact count
 * of a cron schedule (each step costs tens of microseconds).
 */
export const DEFAULT_COUNT_BUDGET = 1000;

/** The default `limit` of {@link Recurrence.occurrences}. */
export const DEFAULT_OCCURRENCES_LIMIT = 1000;

/** The largest timestamp a `Date` can hold (ECMAScript: ±8.64e15 ms around the epoch). */
const MAX_DATE_MS = 8.64e15;

const DAY_MS = 86_400_000;

/**
 * A schedule driven by a cron expression, evaluated in an IANA timezone.
 *
 * @remarks Accepted syntax is croner's: 5 fields (`minute hour day-of-month month day-of-week`), 6 fields (a leading
 * seconds field), or 7 fields (a trailing year); `L`, `W`, `#` and the `+` AND-modifier where croner allows
 * them; names (`JAN`, `MON`) and nicknames (`@daily`, `@hourly`, ...). Day-of-month and day-of-week combine with
 * OR, as in Vixie cron, unless day-of-week starts with `+`.
 */
export interface CronRecurrenceSpec {
  /** The cron expression, e.g. `'30 2 * * *'` or `'0 0 12 L * *'`. */
  cron: string;
  /**
   * The IANA timezone the expression's wall-clock times are read in, e.g. `'Europe/Berlin'`.
   *
   * @defaultValue `'UTC'` — never the host's zone, so every node computes the same occurrences.
   */
  timezone?: string;
}

/** A schedule that fires every `everyMs` milliseconds, at `anchor + k * everyMs` for every integer k ≥ 0. */
export interface IntervalRecurrenceSpec {
  /** The period in milliseconds: an integer ≥ 1. Periods longer than 2^31-1 ms (24.8 days) are fine. */
  everyMs: number;
  /**
   * The first occurrence; later ones follow every `everyMs`. Occurrences before the anchor do not exist.
   *
   * @defaultValue the Unix epoch, so that occurrences are aligned to multiples of `everyMs` on every node
   */
  anchor?: Date;
}

/** What a {@link Recurrence} is built from: a cron expression or a fixed interval, never both. */
export type RecurrenceSpec = CronRecurrenceSpec | IntervalRecurrenceSpec;

/** The answer of {@link Recurrence.countBetween}. */
export interface OccurrenceCount {
  /** How many occurrences were counted: the exact number, or a lower bound when `exact` is false. */
  count: number;
  /** False when the count stopped at the walk budget before reaching the window's end. */
  exact: boolean;
}

/**
 * What happens when an occurrence of a schedule comes due while the previous occurrence's task still runs.
 *
 * - `'allow'`: the new occurrence starts at once; occurrences may run concurrently.
 * - `'skip'`: the new occurrence is not run at all (it is recorded as skipped); the schedule moves on to the
 *   occurrence after it. At most one occurrence of the schedule runs at any time.
 * - `'wait'`: the new occurrence is queued and starts as soon as the previous one ends; at most one waits, so
 *   a schedule that keeps overrunning collapses further due occurrences into that one waiting run instead of
 *   building a backlog. At most one occurrence of the schedule runs at any time.
 *
 * @remarks The policy is enforced by the scheduler across nodes (the running occurrence is a task in the
 * repository); this module only defines the vocabulary.
 */
export type OverlapPolicy = 'allow' | 'skip' | 'wait';

/** Every {@link OverlapPolicy}, for validation and documentation. */
export const OVERLAP_POLICIES: readonly OverlapPolicy[] = ['allow', 'skip', 'wait'];

/**
 * Checks that a value is an {@link OverlapPolicy}.
 *
 * @param value - the value to check, e.g. a field of a persisted schedule
 * @returns the value, typed
 * @throws InvalidInputError when it is not one of `'allow'`, `'skip'`, `'wait'`
 *
 * @example
 * ```ts
 * const overlap = validateOverlapPolicy(input.overlap ?? 'skip');
 * ```
 */
export function validateOverlapPolicy(value: unknown): OverlapPolicy {
  if (typeof value === 'string' && (OVERLAP_POLICIES as readonly string[]).includes(value)) return value as OverlapPolicy;
  throw new InvalidInputError(`overlap must be one of ${OVERLAP_POLICIES.map((p) => `'${p}'`).join(', ')}; got ${describe(value)}`);
}

/**
 * Checks that an IANA timezone name is known to this runtime's `Intl`.
 *
 * @param timezone - a zone name such as `'America/New_York'`
 * @returns the name as given (not canonicalized, so a persisted schedule keeps what its author wrote)
 * @throws InvalidInputError when the name is not a non-empty string or `Intl.DateTimeFormat` rejects it
 *
 * @example
 * ```ts
 * validateTimezone('Europe/Berlin'); // 'Europe/Berlin'
 * validateTimezone('Mars/Olympus');  // throws InvalidInputError
 * ```
 */
export function validateTimezone(timezone: unknown): string {
  if (typeof timezone !== 'string' || timezone === '') {
    throw new InvalidInputError(`timezone must be a non-empty IANA zone name such as 'Europe/Berlin'; got ${describe(timezone)}`);
  }
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: timezone });
  } catch (error) {
    throw new InvalidInputError(`unknown timezone ${quoteInput(timezone)}: use an IANA zone name such as 'Europe/Berlin'`, { cause: error });
  }
  return timezone;
}

/**
 * The stable uniqueKey of the task that materializes one occurrence of a schedule: every node computes the same
 * key for the same (schedule, occurrence time), so the repository's uniqueKey rule lets only one of them create
 * the task.
 *
 * @param scheduleName - the schedule's unique name (any non-empty string; it may contain `:`)
 * @param occurrence - the occurrence time, as returned by {@link Recurrence.next}
 * @returns `schedule:<name>:<ISO 8601 UTC time with milliseconds>`, e.g. `schedule:nightly:2026-03-08T07:30:00.000Z`.
 *   Distinct (name, time) pairs always give distinct keys: the time part has a fixed length for years 0–9999.
 * @throws InvalidInputError when the name is empty or not a string, or the occurrence is not a valid Date in
 *   years 0–9999
 *
 * @example
 * ```ts
 * occurrenceKey('nightly-report', new Date('2026-03-08T07:30:00Z'));
 * // 'schedule:nightly-report:2026-03-08T07:30:00.000Z'
 * ```
 */
export function occurrenceKey(scheduleName: string, occurrence: Date): string {
  if (typeof scheduleName !== 'string' || scheduleName === '') {
    throw new InvalidInputError(`a schedule name must be a non-empty string; got ${describe(scheduleName)}`);
  }
  const ms = toMs(occurrence, 'occurrence');
  const year = new Date(ms).getUTCFullYear();
  // toISOString() has 24 characters only for years 0–9999; outside them it grows a sign and two digits,
  // and the key would stop being unambiguous.
  if (year < 0 || year > 9999) throw new InvalidInputError(`an occurrence must fall in years 0–9999; got ${new Date(ms).toISOString()}`);
  return `schedule:${scheduleName}:${new Date(ms).toISOString()}`;
}

/** The arithmetic a recurrence kind provides; both kinds answer every question with bounded work. */
interface Strategy {
  next(afterMs: number): number | null;
  /** The most recent `count` occurrences in (fromMs, toMs], oldest first. */
  latest(fromMs: number, toMs: number, count: number): number[];
  count(fromMs: number, toMs: number, budget: number): OccurrenceCount;
}

/**
 * One recurrence rule, cron or interval, answering "when next?" and "which occurrences fall in this window?".
 * Immutable and pure: it reads no clock and arms no timer; every method is deterministic in its arguments, so
 * two nodes given the same spec compute the same occurrences, to the millisecond.
 *
 * @remarks DST, for a cron spec in a zone that observes it (pinned by this package's tests). For one-hour shifts
 * these are the instants croner 10's own timezone mode computes (its README says gap times are "skipped"; it in
 * fact shifts them forward, as here); Horae maps wall-clock times to instants itself, so the rules also hold for
 * 30-minute (Australia/Lord_Howe) and 2-hour (Antarctica/Troll) shifts:
 * - a wall-clock time that does not exist on the spring-forward day (02:30 in New York on 2026-03-08) fires
 *   once, shifted forward by the gap: at 03:30 local daylight time (07:30Z);
 * - a wall-clock time that occurs twice on the fall-back day (01:30 in New York on 2026-11-01) fires once, at
 *   its first occurrence (01:30 daylight time, 05:30Z); nothing fires during the repeated hour's second pass;
 * - two wall-clock times that land on one instant fire once, so an hourly job has 23 occurrences on the
 *   spring-forward day and 24 on the fall-back day, never two at one instant. Use `everyMs` for "every 60 real
 *   minutes" (24, 23 or 25 runs a local day);
 * - `next(after)` from any instant returns the first later occurrence of exactly this list, also when `after`
 *   lies inside the repeated hour or just after the gap.
 *
 * @example
 * ```ts
 * const nightly = new Recurrence({ cron: '30 2 * * *', timezone: 'America/New_York' });
 * nightly.next(new Date('2026-03-07T12:00:00Z')); // 2026-03-08T07:30:00.000Z (03:30 EDT: 02:30 does not exist)
 *
 * const every40Days = new Recurrence({ everyMs: 40 * 86_400_000, anchor: new Date('2026-01-01T00:00:00Z') });
 * every40Days.occurrences(new Date('2026-01-01T00:00:00Z'), new Date('2026-12-31T00:00:00Z'), 10).length; // 9
 * ```
 */
export class Recurrence {
  /** `'cron'` or `'interval'`, after the spec that built it. */
  readonly kind: 'cron' | 'interval';
  /** The validated spec, with defaults filled in (`timezone` for cron, `anchor` for an interval). */
  readonly spec: Readonly<{ cron: string; timezone: string }> | Readonly<{ everyMs: number; anchor: Date }>;
  readonly #strategy: Strategy;

  /**
   * @param spec - `{ cron, timezone? }` or `{ everyMs, anchor? }`
   * @throws InvalidInputError (code `INVALID_INPUT`) when the spec has both or neither of `cron` and `everyMs`, a
   *   field of the wrong kind, a malformed cron expression (croner's error is the `cause`), a cron expression
   *   that matches no date at all (`0 0 30 2 *`), an unknown timezone, an `everyMs` that is not an integer ≥ 1,
   *   or an invalid `anchor`
   */
  constructor(spec: RecurrenceSpec) {
    if (spec === null || typeof spec !== 'object') throw new InvalidInputError(`a recurrence spec must be an object; got ${describe(spec)}`);
    const hasCron = 'cron' in spec && spec.cron !== undefined;
    const hasEvery = 'everyMs' in spec && spec.everyMs !== undefined;
    if (hasCron === hasEvery) throw new InvalidInputError('a recurrence spec needs exactly one of `cron` and `everyMs`');
    if (hasCron) {
      const { cron, timezone } = spec as CronRecurrenceSpec & { anchor?: unknown };
      if ('anchor' in spec && spec.anchor !== undefined) throw new InvalidInputError('`anchor` applies to `everyMs` only, not to `cron`');
      const zone = timezone === undefined ? DEFAULT_TIMEZONE : validateTimezone(timezone);
      this.kind = 'cron';
      this.spec = Object.freeze({ cron, timezone: zone });
      this.#strategy = new CronStrategy(cron, zone);
    } else {
      const { everyMs, anchor } = spec as IntervalRecurrenceSpec & { timezone?: unknown };
      if ('timezone' in spec && spec.timezone !== undefined) throw new InvalidInputError('`timezone` applies to `cron` only, not to `everyMs`');
      if (typeof everyMs !== 'number' || !Number.isSafeInteger(everyMs) || everyMs < 1) {
        throw new InvalidInputError(`everyMs must be an integer number of milliseconds ≥ 1; got ${describe(everyMs)}`);
      }
      const anchorMs = anchor === undefined ? 0 : toMs(anchor, 'anchor');
      this.kind = 'interval';
      this.spec = Object.freeze({ everyMs, anchor: new Date(anchorMs) });
      this.#strategy = new IntervalStrategy(everyMs, anchorMs);
    }
  }

  /**
   * The first occurrence strictly after `after`.
   *
   * @param after - the instant to look past; an occurrence exactly at `after` is not returned
   * @returns the next occurrence, or null when there is none (a cron expression whose last year has passed, or
   *   beyond the largest Date)
   * @throws InvalidInputError when `after` is not a valid Date
   *
   * @example
   * ```ts
   * new Recurrence({ cron: '0 * * * *' }).next(new Date('2026-01-01T10:00:00Z')); // 2026-01-01T11:00:00.000Z
   * ```
   */
  next(after: Date): Date | null {
    const ms = this.#strategy.next(toMs(after, 'after'));
    return ms === null ? null : new Date(ms);
  }

  /**
   * Every occurrence in the window (from, to], oldest first, up to `limit` of them (the earliest ones).
   *
   * @param from - the window's start, excluded
   * @param to - the window's end, included
   * @param limit - the most occurrences to return: an integer ≥ 0
   * @defaultValue limit: 1000
   * @returns the occurrences, ascending and without duplicates; empty when `to` is not after `from`
   * @throws InvalidInputError when a date is invalid or `limit` is not an integer ≥ 0
   *
   * @example
   * ```ts
   * const hourly = new Recurrence({ cron: '0 * * * *', timezone: 'America/New_York' });
   * // the spring-forward day in New York has 23 hours, so 23 hourly occurrences
   * hourly.occurrences(new Date('2026-03-08T04:59:59Z'), new Date('2026-03-09T03:59:59Z'), 100).length; // 23
   * ```
   */
  occurrences(from: Date, to: Date, limit: number = DEFAULT_OCCURRENCES_LIMIT): Date[] {
    const fromMs = toMs(from, 'from');
    const toMsValue = toMs(to, 'to');
    validateCount(limit, 'limit');
    const out: Date[] = [];
    let cursor = fromMs;
    while (out.length < limit) {
      const next = this.#strategy.next(cursor);
      if (next === null || next > toMsValue) break;
      out.push(new Date(next));
      cursor = next;
    }
    return out;
  }

  /**
   * The most recent `count` occurrences in the window (from, to], oldest first — what a catch-up after a long
   * downtime needs. The work is bounded by `count`, not by the window: arithmetic for an interval, a walk of
   * about `count` steps back from `to` for cron.
   *
   * @param from - the window's start, excluded
   * @param to - the window's end, included
   * @param count - how many of the latest occurrences to return: an integer ≥ 0
   * @returns at most `count` occurrences, ascending; fewer when the window holds fewer
   * @throws InvalidInputError when a date is invalid or `count` is not an integer ≥ 0
   *
   * @example
   * ```ts
   * const everySecond = new Recurrence({ everyMs: 1000 });
   * // a year of occurrences, but only the last three are computed
   * everySecond.latest(new Date('2025-01-01T00:00:00Z'), new Date('2026-01-01T00:00:00Z'), 3);
   * // [2025-12-31T23:59:58Z, 2025-12-31T23:59:59Z, 2026-01-01T00:00:00Z]
   * ```
   */
  latest(from: Date, to: Date, count: number): Date[] {
    const fromMs = toMs(from, 'from');
    const toMsValue = toMs(to, 'to');
    validateCount(count, 'count');
    if (count === 0 || toMsValue <= fromMs) return [];
    return this.#strategy.latest(fromMs, toMsValue, count).map((ms) => new Date(ms));
  }

  /**
   * How many occurrences fall in the window (from, to]. Exact for an interval, whatever the window (arithmetic);
   * for cron, exact when the window holds at most `budget` occurrences, otherwise a lower bound.
   *
   * @param from - the window's start, excluded
   * @param to - the window's end, included
   * @param budget - for cron, the most occurrences to walk before giving up on exactness: an integer ≥ 0
   * @defaultValue budget: 1000
   * @returns the count, and whether it is exact
   * @throws InvalidInputError when a date is invalid or `budget` is not an integer ≥ 0
   *
   * @example
   * ```ts
   * new Recurrence({ everyMs: 60_000 }).countBetween(new Date(0), new Date('2026-01-01T00:00:00Z'));
   * // { count: 29_453_760, exact: true }
   * ```
   */
  countBetween(from: Date, to: Date, budget: number = DEFAULT_COUNT_BUDGET): OccurrenceCount {
    const fromMs = toMs(from, 'from');
    const toMsValue = toMs(to, 'to');
    validateCount(budget, 'budget');
    if (toMsValue <= fromMs) return { count: 0, exact: true };
    return this.#strategy.count(fromMs, toMsValue, budget);
  }
}

/** Occurrences at anchor + k·every, k ≥ 0: everything is integer arithmetic, however far apart the dates. */
class IntervalStrategy implements Strategy {
  readonly #every: number;
  readonly #anchor: number;

  constructor(every: number, anchor: number) {
    this.#every = every;
    this.#anchor = anchor;
  }

  /** The index of the first occurrence strictly after `ms`. */
  #firstIndexAfter(ms: number): number {
    return ms < this.#anchor ? 0 : Math.floor((ms - this.#anchor) / this.#every) + 1;
  }

  /** The index of the last occurrence at or before `ms`, or -1 when none is. */
  #lastIndexAtOrBefore(ms: number): number {
    return ms < this.#anchor ? -1 : Math.floor((ms - this.#anchor) / this.#every);
  }

  #at(index: number): number | null {
    const ms = this.#anchor + index * this.#every;
    return ms > MAX_DATE_MS ? null : ms;
  }

  next(afterMs: number): number | null {
    return this.#at(this.#firstIndexAfter(afterMs));
  }

  latest(fromMs: number, toMs: number, count: number): number[] {
    const first = this.#firstIndexAfter(fromMs);
    const last = this.#lastIndexAtOrBefore(toMs);
    const out: number[] = [];
    for (let index = Math.max(first, last - count + 1); index <= last; index++) {
      const ms = this.#at(index);
      if (ms !== null) out.push(ms);
    }
    return out;
  }

  count(fromMs: number, toMs: number): OccurrenceCount {
    return { count: Math.max(0, this.#lastIndexAtOrBefore(toMs) - this.#firstIndexAfter(fromMs) + 1), exact: true };
  }
}

/**
 * Occurrences of a cron expression in a timezone. croner matches the expression against wall-clock times (it
 * runs at a fixed UTC offset of 0, where every wall-clock time exists exactly once); this class maps each matching
 * wall-clock time to its instant in the zone, with one rule for DST everywhere:
 * - a wall-clock time with one instant: that instant;
 * - one that occurs twice (fall-back overlap): its first instant only;
 * - one that does not exist (spring-forward gap): shifted forward by the gap's length (02:30 → 03:30).
 * Several wall-clock times that land on one instant give one occurrence. `next` is the smallest such instant
 * after its argument, so asking from any instant agrees with walking the occurrences one by one.
 *
 * @remarks croner's own timezone mode was not used: asked from the second pass of an overlap it answers a past
 * instant (forever), and asked from just after a gap it skips the shifted occurrence; it also costs ~15 times
 * more per call.
 */
class CronStrategy implements Strategy {
  /** The expression matched against wall-clock times written as UTC instants. */
  readonly #wall: Cron;
  /** Null for UTC and its aliases, whose offset is always 0. */
  readonly #zone: Intl.DateTimeFormat | null;

  constructor(expression: unknown, timezone: string) {
    if (typeof expression !== 'string' || expression.trim() === '') {
      throw new InvalidInputError(`cron must be a non-empty cron expression such as '30 2 * * *'; got ${describe(expression)}`);
    }
    const zone = new Intl.DateTimeFormat('en-US', {
      timeZone: timezone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
      era: 'short',
    });
    this.#zone = zone.resolvedOptions().timeZone === 'UTC' ? null : zone;
    try {
      // paused and without a callback: croner arms no timer; only its pattern matching is used.
      this.#wall = new Cron(expression, { utcOffset: 0, paused: true });
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new InvalidInputError(`malformed cron expression ${quoteInput(expression)}: ${reason}`, { cause: error });
    }
    // A pattern such as `0 0 30 2 *` parses but can never fire; a schedule built on it would silently never run.
    if (this.#nextWall(0) === null) throw new InvalidInputError(`the cron expression ${quoteInput(expression)} matches no date at all`);
  }

  next(afterMs: number): number | null {
    if (this.#zone === null) return this.#nextWall(afterMs);
    const before = this.#offset(afterMs - DAY_MS);
    const after = this.#offset(afterMs + DAY_MS);
    if (before === after) {
      // No offset change within a day either side: the first matching wall-clock time after `after`'s own is next.
      const wall = this.#nextWall(afterMs + before);
      if (wall === null) return null;
      const instant = this.#instantOf(wall);
      // A match days away may lie past a DST change: look again from just before it, where the change is near.
      if (instant - afterMs > DAY_MS) return this.next(instant - DAY_MS / 2);
      return instant;
    }
    // One offset change at `change`: wall-clock times before `split` map with the offset before it (the overlap
    // to its first pass, the gap shifted forward), the ones from `split` on with the offset after it. Each side is
    // monotonic, so the first match after `afterMs` on each side are the only candidates.
    const change = this.#findChange(afterMs - DAY_MS, afterMs + DAY_MS, before);
    const split = after > before ? change + after : change + before;
    let best: number | null = null;
    const early = this.#nextWall(afterMs + before);
    if (early !== null && early < split) best = this.#instantOf(early);
    const late = this.#nextWall(Math.max(afterMs + after, split - 1));
    if (late !== null) {
      const instant = this.#instantOf(late);
      if (instant > afterMs && (best === null || instant < best)) best = instant;
    }
    return best;
  }

  /** The first whole second in (lo, hi] whose offset differs from `offsetAtLo`, by bisection. */
  #findChange(lo: number, hi: number, offsetAtLo: number): number {
    let low = Math.floor(lo / 1000) * 1000;
    let high = Math.ceil(hi / 1000) * 1000;
    while (high - low > 1000) {
      const mid = low + Math.floor((high - low) / 2000) * 1000;
      if (this.#offset(mid) === offsetAtLo) low = mid;
      else high = mid;
    }
    return high;
  }

  latest(fromMs: number, toMs: number, count: number): number[] {
    // croner's previousRuns finds a wall-clock time about `count` matches before `to`; the occurrences themselves
    // always come from the forward walk (`next`), so they are exactly what `occurrences` returns.
    const minOffset = this.#zone === null ? 0 : Math.min(this.#offset(toMs - DAY_MS), this.#offset(toMs + DAY_MS));
    let seed = count + 1;
    let found: number[] = [];
    for (let round = 0; round < 8; round++) {
      const previous = this.#wall.previousRuns(seed, new Date(toMs + minOffset + 1));
      const oldest = previous.length === 0 ? Number.NEGATIVE_INFINITY : Math.min(...previous.map((d) => d.getTime()));
      const start = previous.length < seed ? fromMs : Math.max(fromMs, this.#instantOf(oldest) - 1);
      const walk = this.#walk(start, toMs, count, seed * 4 + 16);
      found = walk.kept;
      if (walk.complete && (found.length >= count || start === fromMs)) return found;
      seed *= 2;
    }
    return found;
  }

  count(fromMs: number, toMs: number, budget: number): OccurrenceCount {
    let count = 0;
    let cursor = fromMs;
    while (count < budget) {
      const next = this.next(cursor);
      if (next === null || next > toMs) return { count, exact: true };
      count++;
      cursor = next;
    }
    const beyond = this.next(cursor);
    return { count, exact: beyond === null || beyond > toMs };
  }

  /** The first matching wall-clock time strictly after `wallMs` (both written as UTC instants), or null. */
  #nextWall(wallMs: number): number | null {
    if (wallMs >= MAX_DATE_MS) return null;
    const next = this.#wall.nextRun(new Date(Math.max(wallMs, -MAX_DATE_MS)));
    return next === null || next.getTime() > MAX_DATE_MS ? null : next.getTime();
  }

  /** The instant of a wall-clock time in the zone, by the DST rules of this class. */
  #instantOf(wallMs: number): number {
    if (this.#zone === null) return wallMs;
    // Real zones change offset at most once within two days, so the offsets a day either side are the two
    // candidates (the approach of Temporal's GetPossibleInstantsFor).
    const before = this.#offset(wallMs - DAY_MS);
    const after = this.#offset(wallMs + DAY_MS);
    if (before === after) return wallMs - before;
    const early = wallMs - before;
    const late = wallMs - after;
    const earlyValid = this.#offset(early) === before;
    const lateValid = this.#offset(late) === after;
    if (earlyValid && lateValid) return Math.min(early, late); // overlap: the first pass
    if (earlyValid) return early;
    if (lateValid) return late;
    return wallMs - before; // gap: the offset before the change moves the time forward by the gap's length
  }

  /** The zone's UTC offset at `ms`, in milliseconds, read through Intl (whole seconds, as the zone data has). */
  #offset(ms: number): number {
    if (this.#zone === null) return 0;
    const second = Math.floor(Math.min(Math.max(ms, -MAX_DATE_MS), MAX_DATE_MS) / 1000) * 1000;
    let year = 0;
    let month = 0;
    let day = 0;
    let hour = 0;
    let minute = 0;
    let sec = 0;
    let bc = false;
    for (const part of this.#zone.formatToParts(new Date(second))) {
      if (part.type === 'year') year = Number(part.value);
      else if (part.type === 'month') month = Number(part.value);
      else if (part.type === 'day') day = Number(part.value);
      else if (part.type === 'hour') hour = Number(part.value);
      else if (part.type === 'minute') minute = Number(part.value);
      else if (part.type === 'second') sec = Number(part.value);
      else if (part.type === 'era') bc = part.value.startsWith('B');
    }
    const wall = new Date(0);
    wall.setUTCFullYear(bc ? 1 - year : year, month - 1, day);
    wall.setUTCHours(hour, minute, sec, 0);
    return wall.getTime() - second;
  }

  /** Walks forward from `fromMs` to `toMs` (at most `maxSteps`), keeping the last `keep` occurrences. */
  #walk(fromMs: number, toMs: number, keep: number, maxSteps: number): { kept: number[]; complete: boolean } {
    const kept: number[] = [];
    let cursor = fromMs;
    for (let step = 0; step < maxSteps; step++) {
      const next = this.next(cursor);
      if (next === null || next > toMs) return { kept, complete: true };
      kept.push(next);
      if (kept.length > keep) kept.shift();
      cursor = next;
    }
    return { kept, complete: false };
  }
}

/** Reads a Date argument's milliseconds, refusing anything but a valid Date. */
function toMs(value: unknown, name: string): number {
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) throw new InvalidInputError(`${name} must be a valid Date; got ${describe(value)}`);
  return value.getTime();
}

function validateCount(value: unknown, name: string): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidInputError(`${name} must be an integer ≥ 0; got ${describe(value)}`);
  }
}

/** A short, safe rendering of a bad input for an error message. */
function describe(value: unknown): string {
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? 'an invalid Date' : value.toISOString();
  if (typeof value === 'string') return `'${value.length > 80 ? `${value.slice(0, 80)}…` : value}'`;
  if (value === null || value === undefined || typeof value === 'number' || typeof value === 'boolean') return String(value);
  return typeof value;
}
