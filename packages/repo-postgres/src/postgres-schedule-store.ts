/**
 * The {@link ScheduleStore} half of {@link PostgresRepository}: recurring schedules as rows of `schedules`.
 * Every change is a compare-and-set on `version`, so concurrent writers on any number of nodes never lose one
 * another's writes; "now" is the database's clock.
 */
import { InvalidInputError, quoteInput } from '@horae/core';
import {
  RepositoryError,
  ScheduleNotFoundError,
  firstRunAfter,
  normalizeScheduleDefinition,
  sameScheduleDefinition,
  sameScheduleSpec,
  validateScheduleAdvance,
  validateScheduleName,
  type JsonValue,
  type ListSchedulesOptions,
  type NormalizedScheduleDefinition,
  type Schedule,
  type ScheduleAdvance,
  type ScheduleDefinition,
  type StoredScheduleSpec,
  type UpsertScheduleResult,
  type WriteLimits,
} from '@horae/storage';
import type { PgQueryResult } from './pg-types.js';

/** Runs one statement (the repository's retrying, error-translating runner). */
export type RunStatement = (action: string, text: string, values: unknown[]) => Promise<PgQueryResult>;

/** How many times a compare-and-set that lost a race is computed again before giving up. */
const MAX_CAS_ROUNDS = 20;

/** The statement's start on the database's clock, at millisecond precision. */
const NOW = `date_trunc('milliseconds', statement_timestamp())`;

const COLUMNS = `name, spec, work_id, param, priority, max_attempts, catch_up, max_catch_up, overlap, paused,
  last_occurrence_at, last_task_id, next_run_at, created_at, updated_at, version`;

/** A stored spec as JSON: an interval's anchor as epoch milliseconds. */
function specToJson(spec: StoredScheduleSpec): string {
  return JSON.stringify('cron' in spec ? { cron: spec.cron, timezone: spec.timezone } : { everyMs: spec.everyMs, anchor: spec.anchor.getTime() });
}

/**
 * A definition's values in the order the `insert` ($2..$9) and `redefine` ($3..$10) statements bind them: spec,
 * work_id, param, priority, max_attempts, catch_up, max_catch_up, overlap.
 */
function definitionValues(next: NormalizedScheduleDefinition): unknown[] {
  return [specToJson(next.spec), next.workId, JSON.stringify(next.param), next.priority, next.maxAttempts, next.catchUp, next.maxCatchUp, next.overlap];
}

function specFromJson(value: unknown): StoredScheduleSpec {
  const spec = value as { cron?: string; timezone?: string; everyMs?: number; anchor?: number };
  return spec.cron !== undefined ? { cron: spec.cron, timezone: spec.timezone ?? 'UTC' } : { everyMs: Number(spec.everyMs), anchor: new Date(Number(spec.anchor)) };
}

function asDateOrNull(value: unknown): Date | null {
  return value === null || value === undefined ? null : value instanceof Date ? value : new Date(value as string);
}

/** Builds a {@link Schedule} from a row. */
function rowToSchedule(row: Record<string, unknown>): Schedule {
  return {
    name: row.name as string,
    spec: specFromJson(row.spec),
    workId: row.work_id as string,
    param: row.param as JsonValue,
    priority: Number(row.priority),
    maxAttempts: Number(row.max_attempts),
    catchUp: row.catch_up as Schedule['catchUp'],
    maxCatchUp: Number(row.max_catch_up),
    overlap: row.overlap as Schedule['overlap'],
    paused: row.paused === true,
    lastOccurrenceAt: asDateOrNull(row.last_occurrence_at),
    lastTaskId: (row.last_task_id as string | null) ?? null,
    nextRunAt: asDateOrNull(row.next_run_at),
    createdAt: asDateOrNull(row.created_at)!,
    updatedAt: asDateOrNull(row.updated_at)!,
    version: Number(row.version),
  };
}

function assertDate(value: unknown, what: string): asserts value is Date {
  if (!(value instanceof Date) || !Number.isFinite(value.getTime())) throw new InvalidInputError(`${what} must be a valid Date, got ${quoteInput(value)}`);
}

/** The later of the database's now and the last occurrence dealt with: where a recomputed nextRunAt starts. */
function startAfter(now: Date, lastOccurrenceAt: Date | null): Date {
  return lastOccurrenceAt !== null && lastOccurrenceAt.getTime() > now.getTime() ? lastOccurrenceAt : now;
}

/**
 * Schedules in one PostgreSQL schema.
 *
 * Rule: every write is conditional on the version read (or, for a new name, on the name being free), so of
 * concurrent writers exactly one wins each version; a loser reads again and recomputes.
 */
export class PostgresScheduleTable {
  readonly #run: RunStatement;
  readonly #sql: ReturnType<typeof buildScheduleStatements>;
  readonly #limits: WriteLimits;

  /**
   * @param schema - the quoted schema name
   * @param run - runs one statement
   * @param limits - the repository's bounds (`maxParamBytes`)
   */
  constructor(schema: string, run: RunStatement, limits: WriteLimits) {
    this.#run = run;
    this.#limits = limits;
    this.#sql = buildScheduleStatements(schema);
  }

  /** {@inheritDoc @horae/storage!index.ScheduleStore#upsertSchedule} */
  async upsert(definition: ScheduleDefinition): Promise<UpsertScheduleResult> {
    const next = normalizeScheduleDefinition(definition, this.#limits);
    for (let round = 0; round < MAX_CAS_ROUNDS; round++) {
      const { now, stored } = await this.#read(next.name);
      if (stored === null) {
        const { rows } = await this.#run('create a schedule', this.#sql.insert, [next.name, ...definitionValues(next), firstRunAfter(next.spec, now)]);
        if (rows[0] !== undefined) return { schedule: rowToSchedule(rows[0]), created: true, changed: true };
        continue; // Another node created it first: compare with what it wrote.
      }
      if (sameScheduleDefinition(stored, next)) return { schedule: stored, created: false, changed: false };
      const nextRunAt = sameScheduleSpec(stored.spec, next.spec) ? stored.nextRunAt : firstRunAfter(next.spec, startAfter(now, stored.lastOccurrenceAt));
      const { rows } = await this.#run('update a schedule', this.#sql.redefine, [next.name, stored.version, ...definitionValues(next), nextRunAt]);
      if (rows[0] !== undefined) return { schedule: rowToSchedule(rows[0]), created: false, changed: true };
    }
    throw new RepositoryError(`schedule ${quoteInput(next.name)} kept changing under this upsert; try again`);
  }

  /** {@inheritDoc @horae/storage!index.ScheduleStore#getSchedule} */
  async get(name: string): Promise<Schedule> {
    validateScheduleName(name);
    const { stored } = await this.#read(name);
    if (stored === null) throw new ScheduleNotFoundError(name);
    return stored;
  }

  /** {@inheritDoc @horae/storage!index.ScheduleStore#listSchedules} */
  async list(options: ListSchedulesOptions = {}): Promise<Schedule[]> {
    if (options === null || typeof options !== 'object') throw new InvalidInputError('listSchedules takes an options object');
    if (options.dueBy === undefined) return (await this.#run('list schedules', this.#sql.list, [])).rows.map(rowToSchedule);
    assertDate(options.dueBy, 'dueBy');
    return (await this.#run('list due schedules', this.#sql.listDue, [options.dueBy])).rows.map(rowToSchedule);
  }

  /** {@inheritDoc @horae/storage!index.ScheduleStore#setSchedulePaused} */
  async setPaused(name: string, paused: boolean): Promise<Schedule> {
    validateScheduleName(name);
    if (typeof paused !== 'boolean') throw new InvalidInputError(`paused must be a boolean, got ${quoteInput(paused)}`);
    for (let round = 0; round < MAX_CAS_ROUNDS; round++) {
      const { now, stored } = await this.#read(name);
      if (stored === null) throw new ScheduleNotFoundError(name);
      if (stored.paused === paused) return stored;
      // Resuming starts after now: what fell due while paused is not caught up.
      const nextRunAt = paused ? stored.nextRunAt : firstRunAfter(stored.spec, startAfter(now, stored.lastOccurrenceAt));
      const { rows } = await this.#run('pause or resume a schedule', this.#sql.setPaused, [name, stored.version, paused, nextRunAt]);
      if (rows[0] !== undefined) return rowToSchedule(rows[0]);
    }
    throw new RepositoryError(`schedule ${quoteInput(name)} kept changing under this call; try again`);
  }

  /** {@inheritDoc @horae/storage!index.ScheduleStore#removeSchedule} */
  async remove(name: string): Promise<void> {
    validateScheduleName(name);
    const { rows } = await this.#run('remove a schedule', this.#sql.remove, [name]);
    if (rows.length === 0) throw new ScheduleNotFoundError(name);
  }

  /** {@inheritDoc @horae/storage!index.ScheduleStore#pullScheduleForward} */
  async pullForward(name: string, withinMs: number): Promise<Schedule> {
    validateScheduleName(name);
    if (typeof withinMs !== 'number' || !Number.isSafeInteger(withinMs) || withinMs < 0) {
      throw new InvalidInputError(`withinMs must be an integer ≥ 0, got ${quoteInput(withinMs)}`);
    }
    const { rows } = await this.#run('pull a schedule forward', this.#sql.pullForward, [name, withinMs]);
    if (rows[0] !== undefined) return rowToSchedule(rows[0]);
    return this.get(name); // Already within the bound (nothing written), or ScheduleNotFoundError.
  }

  /** {@inheritDoc @horae/storage!index.ScheduleStore#advanceSchedule} */
  async advance(name: string, advance: ScheduleAdvance): Promise<Schedule | null> {
    validateScheduleName(name);
    validateScheduleAdvance(advance);
    const { rows } = await this.#run('advance a schedule', this.#sql.advance, [name, advance.version, advance.lastOccurrenceAt, advance.lastTaskId, advance.nextRunAt]);
    if (rows[0] !== undefined) return rowToSchedule(rows[0]);
    await this.get(name); // ScheduleNotFoundError when it is gone; else the version had moved on.
    return null;
  }

  /** The database's now, and the stored schedule (null when none has the name), in one round trip. */
  async #read(name: string): Promise<{ now: Date; stored: Schedule | null }> {
    const { rows } = await this.#run('read a schedule', this.#sql.read, [name]);
    const row = rows[0]!;
    return { now: row.db_now as Date, stored: row.name === null ? null : rowToSchedule(row) };
  }
}

/** The SQL of the schedule table of one schema. */
function buildScheduleStatements(s: string) {
  const t = `${s}.schedules`;
  // Every change: a new version, updatedAt from the database's clock (never before createdAt).
  const CHANGED = `version = version + 1, updated_at = greatest(${NOW}, created_at)`;
  return {
    /** $1: name. One row always: the database's now, and the schedule's columns (null when there is none). */
    read: `SELECT ${NOW} AS db_now, s.* FROM (SELECT 1) AS one LEFT JOIN ${t} s ON s.name = $1`,
    /** $1..$9: the definition, $10: nextRunAt. Inserts nothing when the name is taken. */
    insert: `
      INSERT INTO ${t} (name, spec, work_id, param, priority, max_attempts, catch_up, max_catch_up, overlap, next_run_at, created_at, updated_at, version)
      VALUES ($1, $2::jsonb, $3, $4::json, $5, $6, $7, $8, $9, $10::timestamptz, ${NOW}, ${NOW}, 1)
      ON CONFLICT (name) DO NOTHING
      RETURNING ${COLUMNS}`,
    /** $1: name, $2: version read, $3..$10: the definition, $11: nextRunAt. */
    redefine: `
      UPDATE ${t} SET spec = $3::jsonb, work_id = $4, param = $5::json, priority = $6, max_attempts = $7, catch_up = $8,
        max_catch_up = $9, overlap = $10, next_run_at = $11::timestamptz, ${CHANGED}
      WHERE name = $1 AND version = $2
      RETURNING ${COLUMNS}`,
    list: `SELECT ${COLUMNS} FROM ${t} ORDER BY name`,
    /** $1: dueBy. */
    listDue: `SELECT ${COLUMNS} FROM ${t} WHERE NOT paused AND next_run_at IS NOT NULL AND next_run_at <= $1::timestamptz ORDER BY next_run_at, name`,
    /** $1: name, $2: version read, $3: paused, $4: nextRunAt. */
    setPaused: `
      UPDATE ${t} SET paused = $3, next_run_at = $4::timestamptz, ${CHANGED}
      WHERE name = $1 AND version = $2
      RETURNING ${COLUMNS}`,
    /** $1: name. */
    remove: `DELETE FROM ${t} WHERE name = $1 RETURNING name`,
    /** $1: name, $2: withinMs. Writes only when it moves nextRunAt earlier. */
    pullForward: `
      UPDATE ${t} SET next_run_at = ${NOW} + $2::float8 * interval '1 millisecond', ${CHANGED}
      WHERE name = $1 AND (next_run_at IS NULL OR next_run_at > ${NOW} + $2::float8 * interval '1 millisecond')
      RETURNING ${COLUMNS}`,
    /** $1: name, $2: version, $3: lastOccurrenceAt, $4: lastTaskId, $5: nextRunAt. */
    advance: `
      UPDATE ${t} SET last_occurrence_at = $3::timestamptz, last_task_id = $4, next_run_at = $5::timestamptz, ${CHANGED}
      WHERE name = $1 AND version = $2
      RETURNING ${COLUMNS}`,
  };
}
