/**
 * Recurring schedules are rows too (DESIGN semantic 6): the contract of the optional {@link ScheduleStore}
 * capability a repository implements to persist them, and the error it throws for an unknown name.
 */
import { HoraeError, quoteInput, type CatchUpPolicy, type OverlapPolicy } from '@horae/core';
import type { Repository } from '../contract/repository.js';
import type { JsonValue } from '../contract/task-info.js';

/**
 * When a schedule fires, as its author writes it: a cron expression in an IANA timezone, or a fixed interval.
 *
 * @remarks Cron syntax is croner's (5, 6 or 7 fields, `L`, `W`, `#`, names, nicknames); see `Recurrence` of
 * `@horae/core` for the DST rules. An interval fires at `anchor + k * everyMs` (k ≥ 0), so every node computes
 * the same occurrences; periods longer than 24.8 days are plain arithmetic.
 */
export type ScheduleSpec =
  | {
      /** The cron expression, e.g. `'30 2 * * *'`. */
      cron: string;
      /** The IANA zone its wall-clock times are read in. @defaultValue `'UTC'` */
      timezone?: string;
    }
  | {
      /** The period in milliseconds, an integer ≥ 1. */
      everyMs: number;
      /** The first occurrence; later ones follow every `everyMs`. @defaultValue the Unix epoch */
      anchor?: Date;
    };

/** A {@link ScheduleSpec} as stored: every default filled in, so that two nodes compare equal specs equal. */
export type StoredScheduleSpec = { cron: string; timezone: string } | { everyMs: number; anchor: Date };

/** What `upsertSchedule` takes: the part of a schedule its author defines. */
export interface ScheduleDefinition {
  /** The schedule's unique name: a non-empty string of at most 200 characters. It names the occurrences' uniqueKeys. */
  name: string;
  /** When it fires. */
  spec: ScheduleSpec;
  /** The registered work each occurrence runs. */
  workId: string;
  /** The param of every occurrence's task (JSON). @defaultValue null */
  param?: JsonValue;
  /** The priority of every occurrence's task. @defaultValue 0 */
  priority?: number;
  /** The maxAttempts of every occurrence's task. @defaultValue 1 */
  maxAttempts?: number;
  /** What to do with occurrences missed while no node ran the schedule. @defaultValue `'once'` */
  catchUp?: CatchUpPolicy;
  /** The most occurrences one catch-up materializes: an integer ≥ 1. @defaultValue 100 */
  maxCatchUp?: number;
  /** Whether an occurrence starts while the previous one's task is not finished. @defaultValue `'skip'` */
  overlap?: OverlapPolicy;
}

/** A {@link ScheduleDefinition} with every default filled in, as a store persists it. */
export interface NormalizedScheduleDefinition {
  /** The unique name. */
  name: string;
  /** The spec, defaults filled in. */
  spec: StoredScheduleSpec;
  /** The work each occurrence runs. */
  workId: string;
  /** The param (JSON). */
  param: JsonValue;
  /** The tasks' priority. */
  priority: number;
  /** The tasks' maxAttempts. */
  maxAttempts: number;
  /** The catch-up policy. */
  catchUp: CatchUpPolicy;
  /** The bound of one catch-up. */
  maxCatchUp: number;
  /** The overlap policy. */
  overlap: OverlapPolicy;
}

/** A persisted schedule: its definition, and where its materialization stands. */
export interface Schedule extends NormalizedScheduleDefinition {
  /** A paused schedule materializes nothing until it is resumed. */
  paused: boolean;
  /**
   * The latest occurrence the schedule has dealt with, materialized or deliberately not run (skipped by the
   * catch-up or overlap policy); null until the first. Never moves back.
   */
  lastOccurrenceAt: Date | null;
  /** The id of the task of the latest materialized occurrence: the "previous run" the overlap policy looks at. */
  lastTaskId: string | null;
  /**
   * When the next occurrence is due: the earliest time not dealt with yet (normally an occurrence of the spec; an
   * earlier time after a pull-forward). Null when the spec has no more occurrences.
   */
  nextRunAt: Date | null;
  /** When it was first upserted (database clock). */
  createdAt: Date;
  /** When it last changed (database clock). */
  updatedAt: Date;
  /** Starts at 1 and grows by one at every change: the compare-and-set token of {@link ScheduleStore.advanceSchedule}. */
  version: number;
}

/** The answer of {@link ScheduleStore.upsertSchedule}. */
export interface UpsertScheduleResult {
  /** The schedule as stored after the call. */
  schedule: Schedule;
  /** True when this call inserted the row. */
  created: boolean;
  /** True when this call wrote anything (a creation, or a changed definition). */
  changed: boolean;
}

/** What {@link ScheduleStore.advanceSchedule} writes, and the version it expects. */
export interface ScheduleAdvance {
  /** The version the caller read; the write happens only if it is still the stored one. */
  version: number;
  /** The new `lastOccurrenceAt`. */
  lastOccurrenceAt: Date | null;
  /** The new `lastTaskId`. */
  lastTaskId: string | null;
  /** The new `nextRunAt`. */
  nextRunAt: Date | null;
}

/** Filters of {@link ScheduleStore.listSchedules}. */
export interface ListSchedulesOptions {
  /** Only schedules that are not paused and have a `nextRunAt` at or before this time. */
  dueBy?: Date;
}

/**
 * An optional capability of a {@link Repository}: it persists recurring schedules. Detect it with
 * {@link isScheduleStore}; the conformance suite of `@horae/storage/testing` checks its rules on every
 * repository that has it.
 *
 * Times the store sets (createdAt, updatedAt, and the "now" that `upsertSchedule`, `setSchedulePaused` and
 * `pullScheduleForward` compute from) come from the database's clock where it has one. Bad input throws
 * InvalidInputError with nothing written; an unknown name throws {@link ScheduleNotFoundError}. Every method
 * returns copies: mutating a returned schedule changes nothing stored.
 *
 * Exactly-once materialization does not need a transaction across schedules and tasks: the materializer
 * inserts each occurrence's task under a deterministic id first, then advances the schedule with
 * `advanceSchedule`; see `ScheduleMaterializer`.
 */
export interface ScheduleStore {
  /**
   * Creates a schedule, or brings a stored one up to date with `definition`.
   *
   * Rules: a new name is inserted with version 1, not paused, `lastOccurrenceAt` null and `nextRunAt` the first
   * occurrence after now. Upserting a definition equal to the stored one (defaults filled in, JSON compared by
   * value) writes nothing: `changed` is false and version and updatedAt stay. A different definition replaces the
   * stored one and increments version; only when the spec changed is `nextRunAt` recomputed, as the first
   * occurrence after the later of now and `lastOccurrenceAt` (a new rule does not catch up on the old one's
   * backlog). `paused`, `lastOccurrenceAt` and `lastTaskId` are never changed by an upsert. Of concurrent upserts of
   * one new name exactly one returns `created: true`, and one row exists afterwards.
   *
   * @param definition - the schedule's definition
   * @returns the stored schedule and what this call did
   * @throws InvalidInputError on a bad definition (malformed cron, unknown timezone, param not JSON, ...); nothing is written
   */
  upsertSchedule(definition: ScheduleDefinition): Promise<UpsertScheduleResult>;

  /**
   * Reads one schedule.
   *
   * @throws {@link ScheduleNotFoundError} when no schedule has the name
   */
  getSchedule(name: string): Promise<Schedule>;

  /**
   * Lists schedules ordered by name, or, with `dueBy`, the schedules that are not paused and are due by then,
   * ordered by `nextRunAt`, then name.
   */
  listSchedules(options?: ListSchedulesOptions): Promise<Schedule[]>;

  /**
   * Pauses or resumes a schedule.
   *
   * Rules: a schedule already in the wanted state is returned unchanged. Resuming recomputes `nextRunAt` as the
   * first occurrence after the later of now and `lastOccurrenceAt`: what fell due while paused is not caught up.
   *
   * @throws {@link ScheduleNotFoundError} when no schedule has the name
   */
  setSchedulePaused(name: string, paused: boolean): Promise<Schedule>;

  /**
   * Deletes a schedule. Tasks already materialized from it are left alone.
   *
   * Rule: of concurrent removes of one schedule exactly one succeeds; the others throw ScheduleNotFoundError.
   *
   * @throws {@link ScheduleNotFoundError} when no schedule has the name
   */
  removeSchedule(name: string): Promise<void>;

  /**
   * Makes the next run happen within `withinMs` (HashiCorp Boundary's UpdateJobNextRunInAtLeast):
   * `nextRunAt = min(nextRunAt, now + withinMs)`, or `now + withinMs` when the spec has no more occurrences.
   *
   * Rule: it only ever moves `nextRunAt` earlier; when it is already within the bound nothing is written.
   *
   * @param withinMs - an integer ≥ 0
   * @throws InvalidInputError when `withinMs` is not an integer ≥ 0
   * @throws {@link ScheduleNotFoundError} when no schedule has the name
   */
  pullScheduleForward(name: string, withinMs: number): Promise<Schedule>;

  /**
   * Records that the occurrences up to `lastOccurrenceAt` are dealt with: a compare-and-set on `version`.
   *
   * Rule: the write happens only while the stored version equals `advance.version`, and then increments it: of
   * concurrent advances from one version, on any number of clients, exactly one returns the schedule; the others
   * return null and write nothing.
   *
   * @returns the schedule after the write, or null when its version had moved on
   * @throws InvalidInputError on a bad date or version
   * @throws {@link ScheduleNotFoundError} when no schedule has the name
   */
  advanceSchedule(name: string, advance: ScheduleAdvance): Promise<Schedule | null>;
}

/**
 * True when `repository` implements {@link ScheduleStore}: it has all seven of its methods.
 *
 * @param repository - any repository
 * @returns whether schedules can be persisted in it
 */
export function isScheduleStore(repository: Repository): repository is Repository & ScheduleStore {
  const candidate = repository as Partial<ScheduleStore>;
  return (
    typeof candidate.upsertSchedule === 'function' &&
    typeof candidate.getSchedule === 'function' &&
    typeof candidate.listSchedules === 'function' &&
    typeof candidate.setSchedulePaused === 'function' &&
    typeof candidate.removeSchedule === 'function' &&
    typeof candidate.pullScheduleForward === 'function' &&
    typeof candidate.advanceSchedule === 'function'
  );
}

/** No schedule has this name. Nothing was written. */
export class ScheduleNotFoundError extends HoraeError {
  /** @param scheduleName - the name that was looked up */
  constructor(readonly scheduleName: string) {
    super('SCHEDULE_NOT_FOUND', `no schedule is named ${quoteInput(scheduleName)}`);
  }
}
