/**
 * Turns the due occurrences of persisted schedules into tasks, exactly once across nodes, without a transaction
 * spanning the schedules and the tasks.
 */
import { InvalidInputError, catchUpOccurrences, occurrenceKey, realClock, type Clock, type Recurrence } from '@horae/core';
import { TaskNotFoundError } from '../contract/errors.js';
import { occurrenceTaskId } from './occurrence-task-id.js';
import type { Repository } from '../contract/repository.js';
import { scheduleRecurrence } from './schedule-definition.js';
import { isScheduleStore, type Schedule, type ScheduleStore } from './schedule-store.js';
import { isTerminal, type NewTask, type TaskInfo } from '../contract/task-info.js';

/** Options of {@link ScheduleMaterializer}. */
export interface ScheduleMaterializerOptions {
  /** Where the schedules and their tasks live. */
  repository: Repository & ScheduleStore;
  /**
   * The clock `tick()` reads "now" from (the scheduler's clock).
   *
   * @defaultValue `realClock`
   */
  clock?: Clock;
  /**
   * How far ahead of their due time the occurrences of an `overlap: 'allow'` schedule are materialized, so that
   * their tasks are in the repository (and in the sync window of every node) before they are due, and start on
   * time rather than at the next tick. Schedules with `'skip'` or `'wait'` are materialized only once due,
   * because whether their previous run has finished can only be known then. An integer ≥ 0.
   *
   * @defaultValue 60000 (one minute)
   */
  lookaheadMs?: number;
  /**
   * How late an occurrence may be found by a tick and still count as on time rather than missed, whatever the
   * catch-up policy: at least the period of the loop that calls `tick()`, so that a `catchUp: 'skip'` schedule
   * does not lose the run a slightly late tick was about to make. An integer ≥ 0.
   *
   * @defaultValue 60000 (one minute)
   */
  graceMs?: number;
}

/** What one tick did to one schedule. */
export interface ScheduleTickOutcome {
  /** The schedule's name. */
  name: string;
  /** The occurrences materialized (by this node or, concurrently, by another), oldest first. */
  occurrences: Date[];
  /** The tasks this call inserted (an occurrence already materialized elsewhere is not among them). */
  created: TaskInfo[];
  /** Occurrences deliberately not run: missed ones the catch-up policy skipped or dropped, overlapping ones skipped. */
  skipped: number;
  /** True when `overlap: 'wait'` held the due occurrence back because the previous run has not finished. */
  waiting: boolean;
  /** True when this node's advance of the schedule won (false: another node advanced it first, or nothing was due). */
  advanced: boolean;
  /** What failed, when this schedule could not be materialized this tick; it is retried at the next tick. */
  error: unknown;
}

/** What one {@link ScheduleMaterializer.tick} did. */
export interface ScheduleTickResult {
  /** One outcome per due schedule, in the order they were due. */
  outcomes: ScheduleTickOutcome[];
  /** Tasks this call inserted, over all schedules. */
  created: number;
}

/** The default of {@link ScheduleMaterializerOptions.lookaheadMs}. */
export const DEFAULT_SCHEDULE_LOOKAHEAD_MS = 60_000;
/** The default of {@link ScheduleMaterializerOptions.graceMs}. */
export const DEFAULT_SCHEDULE_GRACE_MS = 60_000;

/**
 * Materializes the due occurrences of every schedule of a repository into tasks. It arms no timer: the
 * storage middleware's sync loop (or a test, on a virtual clock) calls {@link ScheduleMaterializer.tick}
 * periodically. Intervals longer than 24.8 days are plain date arithmetic here.
 *
 * How one occurrence becomes exactly one task across nodes, without a transaction across two tables:
 * 1. Each occurrence's task has the uniqueKey `occurrenceKey(name, at)` and a deterministic id,
 *    `occurrenceTaskId(name, at)` (a name-based UUID). Two nodes that materialize one occurrence insert the same
 *    id: the second insert fails on the primary key (the repository's "id taken" InvalidInputError, which this
 *    class checks by reading the id back) and counts as "already materialized". The id protects even after the
 *    first task finished, when its uniqueKey is free again.
 * 2. The tasks are inserted first, then the schedule is advanced with `advanceSchedule`, a compare-and-set on
 *    the schedule's version: of the nodes advancing one schedule exactly one wins. A node that dies between the
 *    two steps leaves the schedule behind; the next tick (on any node) computes the same occurrences, re-inserts
 *    the same ids (no-ops) and advances. Nothing is lost, nothing is doubled.
 * 3. A node whose clock is ahead may decide differently about a missed occurrence (skip vs. run) than the one
 *    that wins the advance; the occurrence then runs at most once, never twice.
 *
 * Rules of one tick, for each schedule that is not paused and whose `nextRunAt` is due (for `overlap: 'allow'`,
 * within `lookaheadMs`):
 * - a `nextRunAt` that is not an occurrence of the spec (a pull-forward) materializes one extra run at that time;
 * - otherwise the catch-up policy (`catchUpOccurrences` of `@horae/core`, with `graceMs`) picks the due
 *   occurrences to run: `'skip'` runs none of those missed by more than `graceMs`, `'once'` one (the on-time one if
 *   there is one, else the latest missed), `'all'` all of them up to `maxCatchUp`. They count from `nextRunAt`, the
 *   earliest time not dealt with yet: for a schedule that never materialized an occurrence, its first occurrence
 *   after its creation (or its last resume or change of spec), so such a schedule catches up the occurrences a
 *   downtime made it miss as any other does;
 * - `overlap: 'allow'` materializes all of them at once (and the occurrences within `lookaheadMs`);
 * - `overlap: 'skip'`: while the previous occurrence's task (`lastTaskId`) is not terminal, no occurrence is
 *   materialized and every due one is recorded as skipped; once it is terminal, only the latest picked occurrence
 *   is materialized (at most one runs at a time, so a catch-up `'all'` behaves as `'once'`);
 * - `overlap: 'wait'`: while the previous occurrence's task is not terminal, nothing is materialized and the
 *   schedule stays due; once it is terminal, the latest due occurrence is materialized at once (the occurrences
 *   that came due while it waited collapse into that one run; a previous task that ended before the schedule
 *   fell due leaves the catch-up policy in charge, as for `'skip'`).
 *
 * ### Examples
 * ```ts
 * const materializer = new ScheduleMaterializer({ repository, clock });
 * const { created } = await materializer.tick(); // call it from the sync loop
 * ```
 */
export class ScheduleMaterializer {
  readonly #repository: Repository & ScheduleStore;
  readonly #clock: Clock;
  readonly #lookaheadMs: number;
  readonly #graceMs: number;
  /** Parsed recurrences, by schedule name, reused while the spec stays the same. */
  readonly #recurrences = new Map<string, { key: string; recurrence: Recurrence }>();
  #running: Promise<ScheduleTickResult> | null = null;

  /**
   * @param options - the repository, the clock, the lookahead and the grace
   * @throws InvalidInputError when the repository is not a ScheduleStore, or `lookaheadMs` or `graceMs` is not an integer ≥ 0
   */
  constructor(options: ScheduleMaterializerOptions) {
    if (options === null || typeof options !== 'object' || options.repository === undefined || !isScheduleStore(options.repository)) {
      throw new InvalidInputError('ScheduleMaterializer takes { repository } where the repository implements ScheduleStore');
    }
    this.#repository = options.repository;
    this.#clock = options.clock ?? realClock;
    this.#lookaheadMs = nonNegativeInteger(options.lookaheadMs ?? DEFAULT_SCHEDULE_LOOKAHEAD_MS, 'lookaheadMs');
    this.#graceMs = nonNegativeInteger(options.graceMs ?? DEFAULT_SCHEDULE_GRACE_MS, 'graceMs');
  }

  /**
   * Materializes every due occurrence of every due schedule, as described on the class.
   *
   * Rules: a failure on one schedule is reported in its outcome and does not stop the others (the next tick
   * retries it); calls made while a tick runs share that tick's result, so one materializer never races itself.
   *
   * @returns what was done, schedule by schedule
   * @throws RepositoryError when the due schedules cannot be listed
   */
  tick(): Promise<ScheduleTickResult> {
    if (this.#running !== null) return this.#running;
    const running = this.#tick().finally(() => {
      this.#running = null;
    });
    this.#running = running;
    return running;
  }

  async #tick(): Promise<ScheduleTickResult> {
    const now = this.#clock.now();
    const due = await this.#repository.listSchedules({ dueBy: new Date(now + this.#lookaheadMs) });
    const outcomes: ScheduleTickOutcome[] = [];
    for (const schedule of due) {
      const outcome = emptyOutcome(schedule.name);
      try {
        await this.#materialize(schedule, now, outcome);
      } catch (error) {
        outcome.error = error;
      }
      if (outcome.error !== undefined || outcome.occurrences.length > 0 || outcome.skipped > 0 || outcome.waiting || outcome.advanced) outcomes.push(outcome);
    }
    return { outcomes, created: outcomes.reduce((sum, o) => sum + o.created.length, 0) };
  }

  async #materialize(schedule: Schedule, now: number, outcome: ScheduleTickOutcome): Promise<void> {
    if (schedule.paused || schedule.nextRunAt === null) return;
    const next = schedule.nextRunAt.getTime();
    const horizon = schedule.overlap === 'allow' ? now + this.#lookaheadMs : now;
    if (next > horizon) return;
    const recurrence = this.#recurrenceOf(schedule);
    // Everything from nextRunAt on is not dealt with yet; `base` is the instant just before it: the last occurrence
    // dealt with, or, for a schedule that never had one, its creation (its first nextRunAt is the first occurrence
    // after it). Catch-up counts the missed occurrences from there in both cases, as cron-like schedulers do.
    const base = new Date(next - 1);
    const pulledForward = recurrence.next(base)?.getTime() !== next;

    let picked: Date[];
    /** The latest due time dealt with by this tick (run or skipped), or null when nothing was due yet. */
    let latestDue: number | null;
    if (pulledForward) {
      picked = [new Date(next)];
      latestDue = next;
    } else if (next <= now) {
      const result = catchUpOccurrences({ recurrence, lastOccurrence: base, now: new Date(now), policy: schedule.catchUp, maxCatchUp: schedule.maxCatchUp, graceMs: this.#graceMs });
      picked = result.occurrences;
      outcome.skipped += result.skipped + result.dropped;
      latestDue = recurrence.latest(base, new Date(now), 1)[0]?.getTime() ?? null;
    } else {
      picked = [];
      latestDue = null;
    }

    let toInsert: Date[];
    if (schedule.overlap === 'allow') {
      const aheadFrom = Math.max(next - 1, now, latestDue ?? Number.NEGATIVE_INFINITY);
      const ahead = pulledForward ? [] : recurrence.occurrences(new Date(aheadFrom), new Date(horizon), schedule.maxCatchUp);
      toInsert = [...picked, ...ahead];
    } else {
      const previous = await this.#previousRun(schedule);
      if (previous !== null && !isTerminal(previous.state)) {
        if (schedule.overlap === 'wait') {
          outcome.waiting = true;
          outcome.skipped = 0;
          return;
        }
        outcome.skipped += picked.length;
        toInsert = [];
      } else if (schedule.overlap === 'wait' && !pulledForward && previous !== null && previous.updatedAt.getTime() > next && latestDue !== null) {
        // It waited for the previous run: the occurrences that fell due meanwhile collapse into the latest one.
        const dueCount = recurrence.countBetween(base, new Date(now)).count;
        outcome.skipped = Math.max(0, dueCount - 1);
        toInsert = [new Date(latestDue)];
      } else {
        const latest = picked[picked.length - 1];
        outcome.skipped += Math.max(0, picked.length - 1);
        toInsert = latest === undefined ? [] : [latest];
      }
    }

    outcome.created = await this.#insertOccurrences(schedule, toInsert);
    outcome.occurrences = toInsert;

    const handled = Math.max(latestDue ?? Number.NEGATIVE_INFINITY, ...toInsert.map((d) => d.getTime()));
    if (handled === Number.NEGATIVE_INFINITY) return;
    const lastOccurrenceAt = Math.max(handled, schedule.lastOccurrenceAt?.getTime() ?? Number.NEGATIVE_INFINITY);
    const lastInserted = toInsert[toInsert.length - 1];
    const advanced = await this.#repository.advanceSchedule(schedule.name, {
      version: schedule.version,
      lastOccurrenceAt: new Date(lastOccurrenceAt),
      lastTaskId: lastInserted === undefined ? schedule.lastTaskId : occurrenceTaskId(schedule.name, lastInserted),
      nextRunAt: recurrence.next(new Date(lastOccurrenceAt)),
    });
    outcome.advanced = advanced !== null;
  }

  /** The task of the latest materialized occurrence, or null when there is none (or retention deleted it). */
  async #previousRun(schedule: Schedule): Promise<TaskInfo | null> {
    if (schedule.lastTaskId === null) return null;
    try {
      return await this.#repository.getById(schedule.lastTaskId);
    } catch (error) {
      if (error instanceof TaskNotFoundError) return null;
      throw error;
    }
  }

  /**
   * Inserts one task per occurrence under its deterministic id, in one write when possible.
   *
   * @returns the tasks this call created
   */
  async #insertOccurrences(schedule: Schedule, occurrences: readonly Date[]): Promise<TaskInfo[]> {
    if (occurrences.length === 0) return [];
    const tasks: NewTask[] = occurrences.map((at) => ({
      id: occurrenceTaskId(schedule.name, at),
      uniqueKey: occurrenceKey(schedule.name, at),
      workId: schedule.workId,
      param: schedule.param,
      priority: schedule.priority,
      maxAttempts: schedule.maxAttempts,
      scheduledAt: at,
      // The occurrence links to its schedule: the history of a recurring job is found by its name.
      kind: 'periodic',
      scheduleName: schedule.name,
    }));
    try {
      const results = await this.#repository.insertMany(tasks);
      return results.filter((r) => r.created).map((r) => r.task);
    } catch (error) {
      // One taken id refuses the whole batch: fall back to one insert per task, where a taken id means
      // "another node (or an earlier tick) materialized this occurrence already".
      if (!(error instanceof InvalidInputError)) throw error;
    }
    const created: TaskInfo[] = [];
    for (const task of tasks) {
      try {
        const result = await this.#repository.insert(task);
        if (result.created) created.push(result.task);
      } catch (error) {
        if (!(error instanceof InvalidInputError) || !(await this.#exists(task.id!))) throw error;
      }
    }
    return created;
  }

  async #exists(id: string): Promise<boolean> {
    try {
      await this.#repository.getById(id);
      return true;
    } catch (error) {
      if (error instanceof TaskNotFoundError) return false;
      throw error;
    }
  }

  #recurrenceOf(schedule: Schedule): Recurrence {
    const key = JSON.stringify(schedule.spec);
    const cached = this.#recurrences.get(schedule.name);
    if (cached !== undefined && cached.key === key) return cached.recurrence;
    const recurrence = scheduleRecurrence(schedule.spec);
    this.#recurrences.set(schedule.name, { key, recurrence });
    return recurrence;
  }
}

function emptyOutcome(name: string): ScheduleTickOutcome {
  return { name, occurrences: [], created: [], skipped: 0, waiting: false, advanced: false, error: undefined };
}

function nonNegativeInteger(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw new InvalidInputError(`${what} must be an integer ≥ 0, got ${String(value)}`);
  return value;
}
