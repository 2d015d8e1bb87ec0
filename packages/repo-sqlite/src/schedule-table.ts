/**
 * The ScheduleStore half of SqliteRepository: recurring schedules as rows of `horae_schedules`. Every method
 * here runs synchronously inside one `BEGIN IMMEDIATE` transaction of the write queue (or as one read), so its
 * read-then-write is exact across connections and processes, as MemoryScheduleTable's is within one process.
 */
import { quoteInput } from '@horae/core';
import type { CatchUpPolicy, OverlapPolicy } from '@horae/core';
import {
  RepositoryError,
  ScheduleNotFoundError,
  firstRunAfter,
  sameScheduleDefinition,
  sameScheduleSpec,
  type JsonValue,
  type NormalizedScheduleDefinition,
  type Schedule,
  type ScheduleAdvance,
  type StoredScheduleSpec,
  type UpsertScheduleResult,
} from '@horae/storage';
import type { WriteContext } from './group-commit.js';
import type { Statements } from './statements.js';

/** A row of `horae_schedules`. */
interface ScheduleRow {
  name: string;
  spec: string;
  work_id: string;
  param: string;
  priority: number;
  max_attempts: number;
  catch_up: CatchUpPolicy;
  max_catch_up: number;
  overlap: OverlapPolicy;
  paused: number;
  last_occurrence_at: number | null;
  last_task_id: string | null;
  next_run_at: number | null;
  created_at: number;
  updated_at: number;
  version: number;
}

type StoredSpecText = { cron: string; timezone: string } | { everyMs: number; anchor: number };

function specToText(spec: StoredScheduleSpec): string {
  const stored: StoredSpecText = 'cron' in spec ? { cron: spec.cron, timezone: spec.timezone } : { everyMs: spec.everyMs, anchor: spec.anchor.getTime() };
  return JSON.stringify(stored);
}

function specFromText(text: string): StoredScheduleSpec {
  const stored = JSON.parse(text) as StoredSpecText;
  return 'cron' in stored ? { cron: stored.cron, timezone: stored.timezone } : { everyMs: stored.everyMs, anchor: new Date(stored.anchor) };
}

const toMs = (date: Date | null): number | null => (date === null ? null : date.getTime());
const toDate = (ms: number | null): Date | null => (ms === null ? null : new Date(ms));

/** Builds the {@link Schedule} of a row: a fresh object that shares nothing with other results. */
function rowToSchedule(row: ScheduleRow): Schedule {
  return {
    name: row.name,
    spec: specFromText(row.spec),
    workId: row.work_id,
    param: JSON.parse(row.param) as JsonValue,
    priority: row.priority,
    maxAttempts: row.max_attempts,
    catchUp: row.catch_up,
    maxCatchUp: row.max_catch_up,
    overlap: row.overlap,
    paused: row.paused === 1,
    lastOccurrenceAt: toDate(row.last_occurrence_at),
    lastTaskId: row.last_task_id,
    nextRunAt: toDate(row.next_run_at),
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
    version: row.version,
  };
}

function scheduleToRow(schedule: Schedule): ScheduleRow {
  return {
    name: schedule.name,
    spec: specToText(schedule.spec),
    work_id: schedule.workId,
    param: JSON.stringify(schedule.param),
    priority: schedule.priority,
    max_attempts: schedule.maxAttempts,
    catch_up: schedule.catchUp,
    max_catch_up: schedule.maxCatchUp,
    overlap: schedule.overlap,
    paused: schedule.paused ? 1 : 0,
    last_occurrence_at: toMs(schedule.lastOccurrenceAt),
    last_task_id: schedule.lastTaskId,
    next_run_at: toMs(schedule.nextRunAt),
    created_at: schedule.createdAt.getTime(),
    updated_at: schedule.updatedAt.getTime(),
    version: schedule.version,
  };
}

/**
 * The operations of the ScheduleStore capability on prepared statements. Inputs are validated by the caller
 * before the operation is queued; the methods that write take the transaction's {@link WriteContext}.
 */
export class SqliteScheduleTable {
  readonly #statements: Statements;

  /** @param statements - the prepared statements of the repository */
  constructor(statements: Statements) {
    this.#statements = statements;
  }

  /** {@inheritDoc @horae/storage!index.ScheduleStore#upsertSchedule} */
  upsert(tx: WriteContext, next: NormalizedScheduleDefinition): UpsertScheduleResult {
    const row = this.#statements.scheduleGet.get({ name: next.name }) as ScheduleRow | undefined;
    if (row === undefined) {
      const schedule: Schedule = {
        ...next,
        paused: false,
        lastOccurrenceAt: null,
        lastTaskId: null,
        nextRunAt: firstRunAfter(next.spec, new Date(tx.now)),
        createdAt: new Date(tx.now),
        updatedAt: new Date(tx.now),
        version: 1,
      };
      this.#statements.scheduleInsert.run(scheduleToRow(schedule));
      return { schedule: rowToSchedule(scheduleToRow(schedule)), created: true, changed: true };
    }
    const stored = rowToSchedule(row);
    if (sameScheduleDefinition(stored, next)) return { schedule: stored, created: false, changed: false };
    const after = Math.max(tx.now, stored.lastOccurrenceAt?.getTime() ?? tx.now);
    const nextRunAt = sameScheduleSpec(stored.spec, next.spec) ? stored.nextRunAt : firstRunAfter(next.spec, new Date(after));
    return { schedule: this.#write(tx, stored, { ...stored, ...next, nextRunAt }), created: false, changed: true };
  }

  /** {@inheritDoc @horae/storage!index.ScheduleStore#getSchedule} */
  get(name: string): Schedule {
    return rowToSchedule(this.#require(name));
  }

  /** {@inheritDoc @horae/storage!index.ScheduleStore#listSchedules} */
  list(dueBy: Date | undefined): Schedule[] {
    const rows = (dueBy === undefined ? this.#statements.scheduleListAll.all() : this.#statements.scheduleListDue.all({ dueBy: dueBy.getTime() })) as ScheduleRow[];
    return rows.map(rowToSchedule);
  }

  /** {@inheritDoc @horae/storage!index.ScheduleStore#setSchedulePaused} */
  setPaused(tx: WriteContext, name: string, paused: boolean): Schedule {
    const stored = rowToSchedule(this.#require(name));
    if (stored.paused === paused) return stored;
    if (paused) return this.#write(tx, stored, { ...stored, paused });
    const after = Math.max(tx.now, stored.lastOccurrenceAt?.getTime() ?? tx.now);
    return this.#write(tx, stored, { ...stored, paused, nextRunAt: firstRunAfter(stored.spec, new Date(after)) });
  }

  /** {@inheritDoc @horae/storage!index.ScheduleStore#removeSchedule} */
  remove(name: string): void {
    if (this.#statements.scheduleDelete.run({ name }).changes === 0) throw new ScheduleNotFoundError(name);
  }

  /** {@inheritDoc @horae/storage!index.ScheduleStore#pullScheduleForward} */
  pullForward(tx: WriteContext, name: string, withinMs: number): Schedule {
    const stored = rowToSchedule(this.#require(name));
    const bound = tx.now + withinMs;
    if (stored.nextRunAt !== null && stored.nextRunAt.getTime() <= bound) return stored;
    return this.#write(tx, stored, { ...stored, nextRunAt: new Date(bound) });
  }

  /** {@inheritDoc @horae/storage!index.ScheduleStore#advanceSchedule} */
  advance(tx: WriteContext, name: string, advance: ScheduleAdvance): Schedule | null {
    const stored = rowToSchedule(this.#require(name));
    if (stored.version !== advance.version) return null;
    return this.#write(tx, stored, {
      ...stored,
      lastOccurrenceAt: advance.lastOccurrenceAt === null ? null : new Date(advance.lastOccurrenceAt.getTime()),
      lastTaskId: advance.lastTaskId,
      nextRunAt: advance.nextRunAt === null ? null : new Date(advance.nextRunAt.getTime()),
    });
  }

  #require(name: string): ScheduleRow {
    const row = this.#statements.scheduleGet.get({ name }) as ScheduleRow | undefined;
    if (row === undefined) throw new ScheduleNotFoundError(name);
    return row;
  }

  /** Stores a change as a compare-and-set on the version read: a new version, updatedAt never before createdAt. */
  #write(tx: WriteContext, stored: Schedule, next: Schedule): Schedule {
    const written: Schedule = { ...next, updatedAt: new Date(Math.max(tx.now, stored.createdAt.getTime())), version: stored.version + 1 };
    const row = scheduleToRow(written);
    const { changes } = this.#statements.scheduleUpdate.run({ ...row, expectedVersion: stored.version });
    // Unreachable under the transaction's write lock; a guard, not a code path.
    if (changes !== 1) throw new RepositoryError(`schedule ${quoteInput(stored.name)} changed during its own transaction`);
    return rowToSchedule(row);
  }
}
