import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '@horae/repo-sqlite';
import { STATEMENT_SQL, type StatementName } from '../src/statements.js';

/** The tables whose reads must go through an index. */
const TABLES = /\bSCAN horae_(tasks|schedules|task_attempts)\b/;

/** Statements that touch no table of tasks. */
const NOT_QUERIES = new Set<StatementName>(['begin', 'commit', 'rollback', 'savepoint', 'releaseSavepoint', 'rollbackToSavepoint', 'readChangeSeq', 'writeChangeSeq']);

/** Every named parameter any statement takes, bound to a value of its type (the planner ignores the values). */
const PARAMS = {
  id: 'x', below: 1e300, uniqueKey: 'k', workId: 'w', param: '{}', scheduledAt: 0, priority: 0, maxAttempts: 1, now: 0, seq: 1, owner: 'o', until: 0,
  newToken: 't', token: 't', ifScheduledAt: null, limit: 10, workIds: '["w"]', runAt: 0, lastError: null, refund: 0, progress: null,
  after: 0, afterAt: 0, afterId: '', state: 'Initialized', before: 0, kind: 'scheduled', scheduleName: null,
  run: 1, attempt: 1, knownSeq: 1, exclude: '[]', outcome: 'succeeded', error: null, message: 'm', maxCheckIns: 50,
  name: 'n', spec: '{}', work_id: 'w', max_attempts: 1, catch_up: 'once', max_catch_up: 1, overlap: 'skip', paused: 0,
  last_occurrence_at: null, last_task_id: null, next_run_at: null, created_at: 0, updated_at: 0, version: 1, expectedVersion: 1, dueBy: 0,
};

/** Statements whose plan is allowed to visit every row, and why. */
const FULL_SCANS_ALLOWED: Partial<Record<StatementName, string>> = {
  countByState: 'counting every state reads every row; it walks the smallest covering index, not the table',
  scheduleListAll: 'listing every schedule reads every row, in name order through the primary key',
};

/** Partial indexes (the rows of one state): walking one in order is the plan, not a scan of every row. */
const PARTIAL_INDEXES = ['horae_tasks_claim', 'horae_tasks_due', 'horae_tasks_lease', 'horae_tasks_ended', 'horae_schedules_due'];

let db: Database.Database;
beforeAll(() => {
  db = new Database(':memory:');
  migrate(db);
});
afterAll(() => db.close());

const planOf = (sql: string): string[] => (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(PARAMS) as { detail: string }[]).map((row) => row.detail);

describe('query plans', () => {
  const names = (Object.keys(STATEMENT_SQL) as StatementName[]).filter((name) => !NOT_QUERIES.has(name));

  it.each(names)('%s reads its table through an index, never a full table scan', (name) => {
    const plan = planOf(STATEMENT_SQL[name]);
    const tableScans = plan.filter((step) => TABLES.test(step) && !/USING (COVERING )?INDEX/.test(step));
    expect(tableScans, plan.join('\n')).toEqual([]);
    if (FULL_SCANS_ALLOWED[name] === undefined) {
      const indexScans = plan.filter((step) => TABLES.test(step) && !PARTIAL_INDEXES.some((index) => step.includes(`INDEX ${index}`)));
      expect(indexScans, plan.join('\n')).toEqual([]);
    }
  });

  it.each(['selectDue', 'selectDueOfWorks', 'selectExpired', 'changesSince', 'listAll', 'listByState', 'listByWork', 'listDue', 'scheduleListAll', 'scheduleListDue'] as const)(
    '%s reads rows in index order, without sorting them',
    (name) => {
      const plan = planOf(STATEMENT_SQL[name]);
      expect(plan.filter((step) => step.includes('TEMP B-TREE')), plan.join('\n')).toEqual([]);
    },
  );

  it.each(['listAttempts', 'openAttempt', 'closeAttempt', 'addCheckIn'] as const)('%s finds attempts by the primary key (task_id, run)', (name) => {
    const plan = planOf(STATEMENT_SQL[name]).join('\n');
    if (name === 'openAttempt') expect(plan).not.toMatch(/SCAN/);
    else expect(plan).toMatch(/SEARCH horae_task_attempts USING PRIMARY KEY \(task_id=\?/);
    if (name === 'listAttempts') expect(plan).not.toMatch(/TEMP B-TREE/);
  });

  it('deleteTerminalBefore finds the attempts to delete through the ended index and the primary key', () => {
    const plan = planOf(STATEMENT_SQL.deleteAttemptsOfTerminalBefore).join('\n');
    expect(plan).toMatch(/horae_task_attempts USING PRIMARY KEY \(task_id=\?\)/);
    expect(plan).toMatch(/horae_tasks_ended/);
  });

  it('claimDue reads a range of the partial claim index', () => {
    expect(planOf(STATEMENT_SQL.selectDue).join('\n')).toMatch(/SEARCH horae_tasks USING INDEX horae_tasks_claim \(priority=\? AND scheduled_at<\?\)/);
    expect(planOf(STATEMENT_SQL.topPriorityBelow).join('\n')).toMatch(/SEARCH horae_tasks USING COVERING INDEX horae_tasks_claim \(priority<\?\)/);
  });
});
