/**
 * Between a `horae_tasks` row and a {@link TaskInfo}: times are integer epoch milliseconds, JSON fields
 * are TEXT.
 */
import type { JsonValue, TaskError, TaskInfo, TaskKind, TaskProgress, TaskState } from '@horae/storage';

/** A row of `horae_tasks` as better-sqlite3 returns it. */
export interface TaskRow {
  id: string;
  work_id: string;
  param: string;
  scheduled_at: number;
  state: TaskState;
  priority: number;
  attempt: number;
  max_attempts: number;
  lease_owner: string | null;
  lease_until: number | null;
  lease_token: string | null;
  last_error: string | null;
  unique_key: string | null;
  progress: string | null;
  created_at: number;
  updated_at: number;
  change_seq: number;
  kind: TaskKind;
  schedule_name: string | null;
  /** Runs recorded in `horae_task_attempts`: the `run` of the latest attempt. */
  runs: number;
  /** Claims in all (the fencing token): only grows. */
  claims: number;
  /** Claims in a row whose lease expired before their run started. */
  unstarted_claims: number;
  /** 1 when the run of the current claim has started, else 0; meaningful while Working (see schema version 6). */
  lease_started: number;
}

/** Every column of a {@link TaskRow}, in the order {@link tupleToRow} reads them. */
export const TASK_ROW_COLUMNS = [
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
  'created_at',
  'updated_at',
  'change_seq',
  'kind',
  'schedule_name',
  'runs',
  'claims',
  'unstarted_claims',
  'lease_started',
] as const satisfies readonly (keyof TaskRow)[];

/**
 * Builds a {@link TaskRow} from the values of a raw row selected with {@link TASK_ROW_COLUMNS}, in that order.
 *
 * @param values - the column values, as better-sqlite3 returns a raw row
 * @returns a fresh row object
 */
export function tupleToRow(values: readonly unknown[]): TaskRow {
  return {
    id: values[0] as string,
    work_id: values[1] as string,
    param: values[2] as string,
    scheduled_at: values[3] as number,
    state: values[4] as TaskState,
    priority: values[5] as number,
    attempt: values[6] as number,
    max_attempts: values[7] as number,
    lease_owner: values[8] as string | null,
    lease_until: values[9] as number | null,
    lease_token: values[10] as string | null,
    last_error: values[11] as string | null,
    unique_key: values[12] as string | null,
    progress: values[13] as string | null,
    created_at: values[14] as number,
    updated_at: values[15] as number,
    change_seq: values[16] as number,
    kind: values[17] as TaskKind,
    schedule_name: values[18] as string | null,
    runs: values[19] as number,
    claims: values[20] as number,
    unstarted_claims: values[21] as number,
    lease_started: values[22] as number,
  };
}

/** The stored shape of a progress report: `at` in epoch ms. */
interface StoredProgress {
  completed: number;
  total: number;
  message?: string;
  at: number;
}

/**
 * Builds the {@link TaskInfo} of a row.
 *
 * @param row - a full row of `horae_tasks`
 * @returns a fresh TaskInfo that shares nothing with other results
 */
export function rowToTask(row: TaskRow): TaskInfo {
  const lease =
    row.state === 'Working' && row.lease_owner !== null && row.lease_until !== null && row.lease_token !== null
      ? { owner: row.lease_owner, until: new Date(row.lease_until), token: row.lease_token, started: row.lease_started === 1 }
      : null;
  return {
    id: row.id,
    workId: row.work_id,
    param: JSON.parse(row.param) as JsonValue,
    scheduledAt: new Date(row.scheduled_at),
    state: row.state,
    priority: row.priority,
    attempt: row.attempt,
    claims: row.claims,
    unstartedClaims: row.unstarted_claims,
    maxAttempts: row.max_attempts,
    lease,
    lastError: row.last_error === null ? null : (JSON.parse(row.last_error) as TaskError),
    uniqueKey: row.unique_key,
    progress: row.progress === null ? null : parseProgress(row.progress),
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
    kind: row.kind,
    scheduleName: row.schedule_name,
  };
}

function parseProgress(text: string): TaskProgress {
  const stored = JSON.parse(text) as StoredProgress;
  const progress: TaskProgress = { completed: stored.completed, total: stored.total, at: new Date(stored.at) };
  if (stored.message !== undefined) progress.message = stored.message;
  return progress;
}

/**
 * Serializes a progress report for the `progress` column.
 *
 * @param progress - what the run reported
 * @param at - when, in epoch ms (database clock)
 */
export function progressToText(progress: Omit<TaskProgress, 'at'>, at: number): string {
  const stored: StoredProgress = { completed: progress.completed, total: progress.total, at };
  if (progress.message !== undefined) stored.message = progress.message;
  return JSON.stringify(stored);
}
