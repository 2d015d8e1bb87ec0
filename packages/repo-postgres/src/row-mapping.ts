/**
 * Rows of the tasks table ↔ {@link TaskInfo}, rows of task_attempts → {@link TaskAttempt}.
 */
import type { AttemptOutcome, CheckIn, JsonValue, TaskAttempt, TaskError, TaskInfo, TaskKind, TaskProgress, TaskState } from '@horae/storage';

/** The columns every query that returns tasks selects, in order. */
const COLUMNS = [
  'id',
  'work_id',
  'param',
  'scheduled_at',
  'state',
  'priority',
  'attempt',
  'max_attempts',
  'lease_owner',
  'lease_until',
  'lease_token',
  'last_error',
  'unique_key',
  'progress',
  'progress_at',
  'created_at',
  'updated_at',
  'kind',
  'schedule_name',
  'claims',
  'unstarted_claims',
  'lease_started',
] as const;

/**
 * The column list of a task, for SELECT and RETURNING.
 *
 * @param alias - a table alias to qualify the columns with (needed where an UPDATE joins another relation)
 */
export function taskColumns(alias?: string): string {
  return alias === undefined ? COLUMNS.join(', ') : COLUMNS.map((c) => `${alias}.${c}`).join(', ');
}

/** The columns of a task that hold a time: {@link taskOutput} reads them back as milliseconds since the epoch. */
const TIME_COLUMNS: ReadonlySet<string> = new Set(['scheduled_at', 'lease_until', 'progress_at', 'created_at', 'updated_at']);

/**
 * A time column as milliseconds since the epoch, exact, truncated to the millisecond as the driver's parse of
 * the text form did. Why not the text form: the driver parses each `timestamptz` text with a regular expression
 * and calendar arithmetic (a few percent of a drain's Node CPU), while a `float8` is one `parseFloat`; the
 * server formats either at about the same cost.
 *
 * Between 1900 and 2040 the stored microseconds are within ±2⁵¹ of the epoch, so `date_part('epoch')` (their
 * quotient by 10⁶ as a double) scaled back is within 0.25 µs of them and rounds to them exactly; `floor(µs / 1000)`
 * is then exact too. Outside that window the double would drift, so the exact (slower) numeric `extract` is used.
 */
function epochMs(column: string): string {
  return (
    `CASE WHEN ${column} >= '1900-01-01 00:00:00+00' AND ${column} < '2040-01-01 00:00:00+00' ` +
    `THEN floor(round(date_part('epoch', ${column}) * 1000000) / 1000) ELSE floor(extract(epoch FROM ${column}) * 1000)::float8 END`
  );
}

/**
 * The column list of a task as returned to the adapter: {@link taskColumns}, with the times as milliseconds
 * since the epoch (`float8`) under the same names. For the outermost SELECT or RETURNING only: a CTE that
 * later parts of its statement read keeps the raw columns.
 *
 * @param alias - a table alias to qualify the columns with
 */
export function taskOutput(alias?: string): string {
  const q = alias === undefined ? '' : `${alias}.`;
  return COLUMNS.map((c) => (TIME_COLUMNS.has(c) ? `${epochMs(q + c)} AS ${c}` : q + c)).join(', ');
}

/** A time as {@link taskOutput} returns it (a number), or as the driver parses a `timestamptz` (a Date). */
function asDate(value: unknown): Date {
  return value instanceof Date ? value : new Date(value as number | string);
}

/** Builds a {@link TaskInfo} from a row selected with {@link taskOutput} (or {@link taskColumns}). */
export function rowToTask(row: Record<string, unknown>): TaskInfo {
  const state = row.state as TaskState;
  const progress = row.progress as Omit<TaskProgress, 'at'> | null;
  return {
    id: row.id as string,
    workId: row.work_id as string,
    param: row.param as JsonValue,
    scheduledAt: asDate(row.scheduled_at),
    state,
    priority: Number(row.priority),
    attempt: Number(row.attempt),
    claims: Number(row.claims),
    unstartedClaims: Number(row.unstarted_claims),
    maxAttempts: Number(row.max_attempts),
    lease:
      state === 'Working' && row.lease_token !== null && row.lease_token !== undefined
        ? { owner: row.lease_owner as string, until: asDate(row.lease_until), token: row.lease_token as string, started: row.lease_started === true }
        : null,
    lastError: (row.last_error as TaskError | null) ?? null,
    uniqueKey: (row.unique_key as string | null) ?? null,
    progress: progress === null || progress === undefined ? null : { ...progress, at: asDate(row.progress_at) },
    createdAt: asDate(row.created_at),
    updatedAt: asDate(row.updated_at),
    kind: row.kind as TaskKind,
    scheduleName: (row.schedule_name as string | null) ?? null,
  };
}

/** The columns of task_attempts that {@link rowToAttempt} reads, for SELECT. */
export const ATTEMPT_COLUMNS = 'task_id, run, attempt, node, started_at, ended_at, outcome, error, check_ins';

/** A check-in as stored in the `check_ins` jsonb array: `at` in milliseconds since the epoch. */
interface StoredCheckIn {
  at: number;
  message: string;
}

/** Builds a {@link TaskAttempt} from a row selected with {@link ATTEMPT_COLUMNS}. */
export function rowToAttempt(row: Record<string, unknown>): TaskAttempt {
  const checkIns = (row.check_ins as StoredCheckIn[] | null) ?? [];
  return {
    taskId: row.task_id as string,
    run: Number(row.run),
    attempt: Number(row.attempt),
    node: row.node as string,
    startedAt: asDate(row.started_at),
    endedAt: row.ended_at === null || row.ended_at === undefined ? null : asDate(row.ended_at),
    outcome: row.outcome as AttemptOutcome,
    error: (row.error as TaskError | null) ?? null,
    checkIns: checkIns.map((c): CheckIn => ({ at: new Date(Number(c.at)), message: c.message })),
  };
}
