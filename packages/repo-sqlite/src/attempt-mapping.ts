/**
 * Between a `horae_task_attempts` row and a {@link TaskAttempt}: times are integer epoch milliseconds, the
 * error and the check-ins are JSON text.
 */
import type { AttemptOutcome, CheckIn, TaskAttempt, TaskError } from '@horae/storage';

/** A row of `horae_task_attempts` as better-sqlite3 returns it. */
export interface AttemptRow {
  task_id: string;
  run: number;
  attempt: number;
  node: string;
  started_at: number;
  ended_at: number | null;
  outcome: AttemptOutcome;
  error: string | null;
  check_ins: string;
}

/** The stored shape of a check-in: `at` in epoch ms. */
interface StoredCheckIn {
  at: number;
  message: string;
}

/**
 * Builds the {@link TaskAttempt} of a row.
 *
 * @param row - a full row of `horae_task_attempts`
 * @returns a fresh TaskAttempt that shares nothing with other results
 */
export function rowToAttempt(row: AttemptRow): TaskAttempt {
  const checkIns = (JSON.parse(row.check_ins) as StoredCheckIn[]).map((stored): CheckIn => ({ at: new Date(stored.at), message: stored.message }));
  return {
    taskId: row.task_id,
    run: row.run,
    attempt: row.attempt,
    node: row.node,
    startedAt: new Date(row.started_at),
    endedAt: row.ended_at === null ? null : new Date(row.ended_at),
    outcome: row.outcome,
    error: row.error === null ? null : (JSON.parse(row.error) as TaskError),
    checkIns,
  };
}
