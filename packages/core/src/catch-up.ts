/**
 * What a recurring schedule does about the occurrences it missed while no node was running it. Pure: the caller
 * passes `now` and the last occurrence it materialized, and gets back the occurrence times to materialize.
 */
import { InvalidInputError } from './errors.js';
import { Recurrence } from './recurrence.js';

/**
 * What to do with the occurrences of a schedule that fell due while nothing ran it (downtime, every node down):
 *
 * - `'skip'`: run none of them; the schedule resumes with its next future occurrence.
 * - `'once'`: one run for the whole downtime: the latest missed occurrence, now, the older ones skipped; or, when an
 *   occurrence is on time anyway (see `graceMs`), that one alone, every missed one skipped.
 * - `'all'`: run every missed occurrence now, oldest first, bounded by `maxCatchUp` (the most recent ones are kept).
 */
export type CatchUpPolicy = 'skip' | 'once' | 'all';

/** Every {@link CatchUpPolicy}, for validation and documentation. */
export const CATCH_UP_POLICIES: readonly CatchUpPolicy[] = ['skip', 'once', 'all'];

/** The default bound on the occurrences one catch-up materializes. */
export const DEFAULT_MAX_CATCH_UP = 100;

/**
 * Checks that a value is a {@link CatchUpPolicy}.
 *
 * @param value - the value to check, e.g. a field of a persisted schedule
 * @returns the value, typed
 * @throws InvalidInputError when it is not one of `'skip'`, `'once'`, `'all'`
 *
 * @example
 * ```ts
 * const catchUp = validateCatchUpPolicy(input.catchUp ?? 'once');
 * ```
 */
export function validateCatchUpPolicy(value: unknown): CatchUpPolicy {
  if (typeof value === 'string' && (CATCH_UP_POLICIES as readonly string[]).includes(value)) return value as CatchUpPolicy;
  throw new InvalidInputError(`catchUp must be one of ${CATCH_UP_POLICIES.map((p) => `'${p}'`).join(', ')}; got ${typeof value === 'string' ? `'${value}'` : String(value)}`);
}

/** The input of {@link catchUpOccurrences}. */
export interface CatchUpOptions {
  /** The schedule's rule. */
  recurrence: Recurrence;
  /**
   * The instant up to which the schedule's occurrences were dealt with: its last occurrence (run or skipped) or, for
   * a schedule that never had one, the instant it was created, so that the occurrences that came due since then and
   * ran nowhere count as missed, as any others (a schedule created at 09:00:30 to run every minute, with no node
   * running from 09:00:40 to 09:10:40, missed 09:01 … 09:10). Null when there is no such instant: nothing is missed.
   * A persisted schedule always has one: `@horae/storage`'s materializer passes the instant just before its
   * `nextRunAt`.
   */
  lastOccurrence: Date | null;
  /** The current time, as the scheduler's clock reads it. */
  now: Date;
  /** What to do with the missed occurrences. */
  policy: CatchUpPolicy;
  /**
   * The most occurrences one catch-up returns, in total: an integer ≥ 1. The most recent ones are kept.
   *
   * @defaultValue 100
   */
  maxCatchUp?: number;
  /**
   * How late an occurrence may be and still count as on time rather than missed: an occurrence in
   * [now - graceMs, now] is always returned, whatever the policy (a restart of a few seconds should not make a
   * `'skip'` schedule lose the run it was about to make). An integer ≥ 0.
   *
   * @defaultValue 0 — only an occurrence exactly at `now` is on time
   */
  graceMs?: number;
}

/** The answer of {@link catchUpOccurrences}. */
export interface CatchUpResult {
  /**
   * The occurrence times to materialize now, oldest first, without duplicates: the missed ones the policy keeps
   * and the on-time ones, at most `maxCatchUp` in all. Each becomes a task keyed by `occurrenceKey`.
   */
  occurrences: Date[];
  /**
   * How many occurrences were missed: those after `lastOccurrence` and before `now - graceMs`. Exact, or a lower
   * bound when `countExact` is false.
   */
  missed: number;
  /** False when `missed` (and so `dropped`) is a lower bound: a cron schedule with more than ~1000 missed. */
  countExact: boolean;
  /**
   * Missed occurrences the policy chose not to run: all of them for `'skip'`; for `'once'`, all but the latest, or all
   * of them when an occurrence is on time.
   */
  skipped: number;
  /**
   * Occurrences the policy would run but `maxCatchUp` cut, the oldest ones (only `'all'`, or on-time ones beyond
   * the bound). A lower bound when `countExact` is false.
   */
  dropped: number;
  /**
   * The first occurrence after both `now` and `lastOccurrence`, to schedule normally; null when the recurrence
   * has no more.
   */
  next: Date | null;
}

/**
 * Decides which occurrences of a recurring schedule to materialize after downtime. Pure and bounded: its work
 * depends on `maxCatchUp`, not on the length of the downtime (arithmetic for `everyMs`; for cron a walk of at
 * most ~1000 steps to count, and about `maxCatchUp` steps to find the latest occurrences).
 *
 * Rules:
 * - nothing is missed when `lastOccurrence` is null or not before `now`; otherwise the occurrences after it are, whether
 *   or not the schedule ever ran one (see {@link CatchUpOptions.lastOccurrence});
 * - the returned occurrences are all in (lastOccurrence, now], ascending, at most `maxCatchUp`, and each one is an
 *   occurrence of `recurrence` exactly as `recurrence.next` computes it, so the uniqueKeys match on every node;
 * - `missed = skipped + dropped + (missed ones returned)`, when `countExact`.
 *
 * @param options - see {@link CatchUpOptions}
 * @returns the occurrences to materialize now and the counts to report
 * @throws InvalidInputError when `recurrence` is not a Recurrence, a date is invalid, the policy is unknown, or
 *   `maxCatchUp` / `graceMs` is out of range
 *
 * @example
 * ```ts
 * const hourly = new Recurrence({ cron: '0 * * * *' });
 * const result = catchUpOccurrences({
 *   recurrence: hourly,
 *   lastOccurrence: new Date('2026-01-01T10:00:00Z'),
 *   now: new Date('2026-01-01T13:30:00Z'),
 *   policy: 'once',
 * });
 * // result.occurrences: [2026-01-01T13:00:00Z]; result.missed: 3; result.skipped: 2
 * // result.next: 2026-01-01T14:00:00Z
 * ```
 */
export function catchUpOccurrences(options: CatchUpOptions): CatchUpResult {
  if (options === null || typeof options !== 'object') throw new InvalidInputError('catchUpOccurrences takes an options object');
  const { recurrence, lastOccurrence, now, policy } = options;
  const maxCatchUp = options.maxCatchUp ?? DEFAULT_MAX_CATCH_UP;
  const graceMs = options.graceMs ?? 0;
  if (!(recurrence instanceof Recurrence)) throw new InvalidInputError('recurrence must be a Recurrence');
  const nowMs = dateMs(now, 'now');
  const lastMs = lastOccurrence === null ? null : dateMs(lastOccurrence, 'lastOccurrence');
  validateCatchUpPolicy(policy);
  if (typeof maxCatchUp !== 'number' || !Number.isSafeInteger(maxCatchUp) || maxCatchUp < 1) {
    throw new InvalidInputError(`maxCatchUp must be an integer ≥ 1; got ${String(maxCatchUp)}`);
  }
  if (typeof graceMs !== 'number' || !Number.isSafeInteger(graceMs) || graceMs < 0) {
    throw new InvalidInputError(`graceMs must be an integer ≥ 0; got ${String(graceMs)}`);
  }

  const next = recurrence.next(new Date(lastMs === null ? nowMs : Math.max(nowMs, lastMs)));
  if (lastMs === null || lastMs >= nowMs) {
    return { occurrences: [], missed: 0, countExact: true, skipped: 0, dropped: 0, next };
  }

  // (lastMs, boundary] is missed, (boundary, nowMs] is on time. Times are whole milliseconds, so
  // "t ≥ now - graceMs" is "t > now - graceMs - 1".
  const boundary = Math.max(lastMs, nowMs - graceMs - 1);
  const last = new Date(lastMs);
  const cut = new Date(boundary);
  const onTimeCount = recurrence.countBetween(cut, now);
  const onTime = recurrence.latest(cut, now, maxCatchUp);
  const missedCount = recurrence.countBetween(last, cut);
  const missed = missedCount.count;

  // 'once' is one run for the downtime: an on-time occurrence runs anyway, so it is that one when there is one.
  const wanted = policy === 'skip' ? 0 : policy === 'once' ? (onTime.length > 0 ? 0 : Math.min(1, missed)) : missed;
  const room = maxCatchUp - onTime.length;
  const caughtUp = recurrence.latest(last, cut, Math.min(wanted, room));
  return {
    occurrences: [...caughtUp, ...onTime],
    missed,
    countExact: missedCount.exact && onTimeCount.exact,
    skipped: missed - wanted,
    dropped: wanted - caughtUp.length + Math.max(0, onTimeCount.count - onTime.length),
    next,
  };
}

function dateMs(value: unknown, name: string): number {
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) throw new InvalidInputError(`${name} must be a valid Date`);
  return value.getTime();
}
