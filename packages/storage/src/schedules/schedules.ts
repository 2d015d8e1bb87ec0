/**
 * The user-facing API of recurring schedules: `schedules.upsert({ name, cron | everyMs, ... })`, pause,
 * resume, remove, run soon, get, list — over a repository that implements {@link ScheduleStore}.
 */
import { HoraeError, InvalidInputError, type CatchUpPolicy, type OverlapPolicy, quoteInput } from '@horae/core';
import type { Repository } from '../contract/repository.js';
import { normalizeScheduleDefinition } from './schedule-definition.js';
import { DEFAULT_MAX_PARAM_BYTES, assertParamSize } from '../contract/validation.js';
import { isScheduleStore, type Schedule, type ScheduleDefinition, type ScheduleStore, type UpsertScheduleResult } from './schedule-store.js';
import type { JsonValue } from '../contract/task-info.js';
import type { WorkRegistry } from '../works/work-registry.js';

/** What {@link Schedules.upsert} takes: a schedule's definition, with `cron` or `everyMs` at the top level. */
export interface ScheduleInput {
  /** The schedule's unique name: re-upserting the same name updates that schedule. */
  name: string;
  /** A cron expression (croner syntax: 5, 6 or 7 fields, `L`, `W`, `#`). Exactly one of `cron` and `everyMs`. */
  cron?: string;
  /** The IANA timezone of `cron`. @defaultValue `'UTC'` */
  timezone?: string;
  /** A fixed period in milliseconds (an integer ≥ 1; longer than 24.8 days is fine). Exactly one of `cron` and `everyMs`. */
  everyMs?: number;
  /** The first occurrence of an `everyMs` schedule. @defaultValue the Unix epoch (occurrences at multiples of `everyMs`) */
  anchor?: Date;
  /** The registered work each occurrence runs. */
  workId: string;
  /** The param of each occurrence's task (JSON; validated by the work's validator when a registry is given). @defaultValue null */
  param?: unknown;
  /** The priority of each occurrence's task. @defaultValue 0 */
  priority?: number;
  /** The maxAttempts of each occurrence's task. @defaultValue the registered work's maxAttempts, else 1 */
  maxAttempts?: number;
  /** What to do with occurrences missed while no node ran. @defaultValue `'once'` */
  catchUp?: CatchUpPolicy;
  /** The most occurrences one catch-up runs. @defaultValue 100 */
  maxCatchUp?: number;
  /** Whether an occurrence starts while the previous one still runs. @defaultValue `'skip'` */
  overlap?: OverlapPolicy;
}

/** Options of {@link Schedules}. */
export interface SchedulesOptions {
  /** The repository the schedules are persisted in. */
  repository: Repository & ScheduleStore;
  /**
   * When given, `upsert` refuses a workId this registry does not know and validates the param with the work's
   * own validator.
   *
   * @defaultValue none: any non-empty workId and any JSON param are accepted
   */
  registry?: WorkRegistry;
}

/**
 * Recurring schedules, persisted: each occurrence becomes a task (see `ScheduleMaterializer`).
 *
 * Rules: `upsert` is idempotent (re-registering an unchanged schedule at every start writes nothing) and
 * updates a changed one; bad input (both or neither of `cron` and `everyMs`, a malformed cron expression, an
 * unknown timezone, an unknown workId when a registry is given, a param that is not JSON or fails the work's
 * validation) throws InvalidInputError and writes nothing; an unknown name throws ScheduleNotFoundError.
 *
 * ### Examples
 * ```ts
 * const schedules = new Schedules({ repository, registry });
 * await schedules.upsert({ name: 'nightly-report', cron: '30 2 * * *', timezone: 'Europe/Berlin', workId: 'report' });
 * await schedules.runSoon('nightly-report', 60_000); // within a minute, then on its cron again
 * await schedules.pause('nightly-report');
 * ```
 */
export class Schedules {
  readonly #repository: Repository & ScheduleStore;
  readonly #registry: WorkRegistry | undefined;

  /**
   * @param options - the repository (a ScheduleStore) and an optional registry
   * @throws InvalidInputError when the repository does not implement ScheduleStore
   */
  constructor(options: SchedulesOptions) {
    if (options === null || typeof options !== 'object' || options.repository === undefined || !isScheduleStore(options.repository)) {
      throw new InvalidInputError('this repository does not persist schedules: it does not implement ScheduleStore');
    }
    this.#repository = options.repository;
    this.#registry = options.registry;
  }

  /**
   * Creates the schedule, or updates the stored one with this definition.
   *
   * @param input - the definition
   * @returns the stored schedule; `created` and `changed` say what this call did
   * @throws InvalidInputError on bad input; nothing is written
   */
  async upsert(input: ScheduleInput): Promise<UpsertScheduleResult> {
    const limits = { maxParamBytes: this.#repository.maxParamBytes ?? DEFAULT_MAX_PARAM_BYTES };
    // The param as given is bounded first, before the work's validator reads it (see assertParamSize).
    if (input !== null && typeof input === 'object') assertParamSize(input.param, limits.maxParamBytes);
    const definition = this.#toDefinition(input);
    // Validate everything here, so that an invalid schedule never reaches the database.
    normalizeScheduleDefinition(definition, limits);
    return this.#repository.upsertSchedule(definition);
  }

  /**
   * Pauses a schedule: no occurrence is materialized until it is resumed. Tasks already materialized run.
   *
   * @param name - the schedule's name
   * @returns the schedule, paused
   * @throws ScheduleNotFoundError when no schedule has the name
   */
  pause(name: string): Promise<Schedule> {
    return this.#repository.setSchedulePaused(name, true);
  }

  /**
   * Resumes a paused schedule from its next occurrence after now: what fell due while paused is not caught up.
   *
   * @param name - the schedule's name
   * @returns the schedule, resumed, with its new `nextRunAt`
   * @throws ScheduleNotFoundError when no schedule has the name
   */
  resume(name: string): Promise<Schedule> {
    return this.#repository.setSchedulePaused(name, false);
  }

  /**
   * Deletes a schedule. Tasks already materialized from it are left alone (cancel them by id if needed).
   *
   * @param name - the schedule's name
   * @throws ScheduleNotFoundError when no schedule has the name
   */
  remove(name: string): Promise<void> {
    return this.#repository.removeSchedule(name);
  }

  /**
   * Makes the schedule's next run happen within `withinMs` (an extra run when it is not an occurrence of its
   * spec); its regular occurrences follow. Never delays a run that is already sooner.
   *
   * @param name - the schedule's name
   * @param withinMs - an integer ≥ 0; 0 (the default) runs it at the next tick of a materializer
   * @returns the schedule with its new `nextRunAt`
   * @throws InvalidInputError when `withinMs` is not an integer ≥ 0
   * @throws ScheduleNotFoundError when no schedule has the name
   */
  runSoon(name: string, withinMs = 0): Promise<Schedule> {
    return this.#repository.pullScheduleForward(name, withinMs);
  }

  /**
   * Reads one schedule.
   *
   * @param name - the schedule's name
   * @returns the stored schedule
   * @throws ScheduleNotFoundError when no schedule has the name
   */
  get(name: string): Promise<Schedule> {
    return this.#repository.getSchedule(name);
  }

  /**
   * Lists the schedules.
   *
   * @returns every schedule, ordered by name
   */
  list(): Promise<Schedule[]> {
    return this.#repository.listSchedules();
  }

  #toDefinition(input: ScheduleInput): ScheduleDefinition {
    if (input === null || typeof input !== 'object') throw new InvalidInputError('upsert takes a schedule definition object');
    const hasCron = input.cron !== undefined;
    const hasEvery = input.everyMs !== undefined;
    if (hasCron === hasEvery) throw new InvalidInputError(`schedule ${quoteInput(input.name)} needs exactly one of \`cron\` and \`everyMs\``);
    const spec: ScheduleDefinition['spec'] = hasCron
      ? { cron: input.cron!, ...(input.timezone === undefined ? {} : { timezone: input.timezone }) }
      : { everyMs: input.everyMs!, ...(input.anchor === undefined ? {} : { anchor: input.anchor }) };
    if (hasEvery && input.timezone !== undefined) throw new InvalidInputError('`timezone` applies to `cron` only, not to `everyMs`');
    if (hasCron && input.anchor !== undefined) throw new InvalidInputError('`anchor` applies to `everyMs` only, not to `cron`');
    let param = (input.param ?? null) as JsonValue;
    let maxAttempts = input.maxAttempts;
    const registry = this.#registry;
    if (registry !== undefined) {
      if (typeof input.workId !== 'string' || !registry.has(input.workId)) {
        throw new InvalidInputError(`no work is registered under the workId ${quoteInput(input.workId)}; register it before scheduling it`);
      }
      try {
        param = registry.validateParam(input.workId, input.param);
      } catch (error) {
        if (error instanceof InvalidInputError) throw error;
        throw new InvalidInputError(`the param of schedule ${quoteInput(input.name)} was refused: ${error instanceof HoraeError ? error.message : String(error)}`, { cause: error });
      }
      maxAttempts ??= registry.get(input.workId).options.maxAttempts;
    }
    const definition: ScheduleDefinition = { name: input.name, spec, workId: input.workId, param };
    if (input.priority !== undefined) definition.priority = input.priority;
    if (maxAttempts !== undefined) definition.maxAttempts = maxAttempts;
    if (input.catchUp !== undefined) definition.catchUp = input.catchUp;
    if (input.maxCatchUp !== undefined) definition.maxCatchUp = input.maxCatchUp;
    if (input.overlap !== undefined) definition.overlap = input.overlap;
    return definition;
  }
}
