import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '@horae/repo-sqlite';
import { AGED_KEY, STATEMENT_SQL, type StatementName } from '../src/statements.js';

/** The tables whose reads must go through an index. */
const TABLES = /\bSCAN horae_(tasks|schedules|task_attempts)\b/;

/** Statements that touch no table of tasks. */
const NOT_QUERIES = new Set<StatementName>(['begin', 'commit', 'rollback', 'savepoint', 'releaseSavepoint', 'rollbackToSavepoint', 'readChangeSeq', 'writeChangeSeq']);

/** Every named parameter any statement takes, bound to a value of its type (the planner ignores the values). */
const PARAMS = {
  id: 'x', below: 1e300, uniqueKey: 'k', workId: 'w', param: '{}', scheduledAt: 0, priority: 0, maxAttempts: 1, now: 0, seq: 1, owner: 'o', until: 0,
  newToken: 't', token: 't', ifScheduledAt: null, limit: 10, workIds: '["w"]', runAt: 0, lastError: null, refund: 0, progress: null,
  after: 0, afterAt: 0, afterId: '', state: 'Initialized', before: 0, kind: 'scheduled', scheduleName: null,
  run: 1, attempt: 1, knownSeq: 1, unstartedClaims: 0, exclude: '[]', outcome: 'succeeded', error: null, message: 'm', maxCheckIns: 50,
  name: 'n', spec: '{}', work_id: 'w', max_attempts: 1, catch_up: 'once', max_catch_up: 1, overlap: 'skip', paused: 0,
  last_occurrence_at: null, last_task_id: null, next_run_at: null, created_at: 0, updated_at: 0, version: 1, expectedVersion: 1, dueBy: 0,
};

/** Statements whose plan is allowed to visit every row, and why. */
const FULL_SCANS_ALLOWED: Partial<Record<StatementName, string>> = {
  countByState: 'counting every state reads every row; it walks the smallest covering index, not the table',
  scheduleListAll: 'listing every schedule reads every row, in name order through the primary key',
};

/** Partial indexes (the rows of one state): walking one in order is the plan, not a scan of every row. */
const PARTIAL_INDEXES = ['horae_tasks_claim', 'horae_tasks_aged', 'horae_tasks_due', 'horae_tasks_lease', 'horae_tasks_ended', 'horae_schedules_due'];

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

  it.each(['selectDue', 'selectDueFiltered', 'selectDueAged', 'selectDueAgedFiltered', 'selectExpired', 'changesSince', 'listAll', 'listByState', 'listByWork', 'listDue', 'scheduleListAll', 'scheduleListDue'] as const)(
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

  it('claimDue of another agingMs reads a range of the partial claim index per priority level', () => {
    for (const name of ['selectDue', 'selectDueFiltered'] as const) {
      expect(planOf(STATEMENT_SQL[name]).join('\n')).toMatch(/SEARCH horae_tasks USING INDEX horae_tasks_claim \(priority=\? AND scheduled_at<\?\)/);
    }
    expect(planOf(STATEMENT_SQL.topPriorityBelow).join('\n')).toMatch(/SEARCH horae_tasks USING COVERING INDEX horae_tasks_claim \(priority<\?\)/);
    expect(planOf(STATEMENT_SQL.earliestDue).join('\n')).toMatch(/SEARCH horae_tasks USING COVERING INDEX horae_tasks_due/);
  });

  it('claimDue of the default agingMs walks the aged index in claim order: no sort, whatever the filters', () => {
    // The walk starts at the top of the aged key and stops after @limit due rows (LIMIT), so it reads the claimed rows
    // and the rows not due yet ranked above them, never the whole table, and sorts nothing.
    for (const name of ['selectDueAged', 'selectDueAgedFiltered'] as const) {
      const plan = planOf(STATEMENT_SQL[name]);
      expect(plan.filter((step) => /horae_tasks\b/.test(step)), plan.join('\n')).toEqual(['SCAN horae_tasks USING INDEX horae_tasks_aged']);
      expect(plan.filter((step) => step.includes('TEMP B-TREE')), plan.join('\n')).toEqual([]);
    }
  });

  it('the aged index holds the expression of the aged statements, so a changed key cannot silently lose it', () => {
    const index = db.prepare(`SELECT sql FROM sqlite_master WHERE name = 'horae_tasks_aged'`).get() as { sql: string };
    expect(index.sql).toContain(`(${AGED_KEY} DESC, scheduled_at, created_at, id)`);
    expect(STATEMENT_SQL.selectDueAged).toContain(`ORDER BY ${AGED_KEY} DESC`);
    // Any other text of the key, even one of equal value, no longer matches the index: SQLite then reads the whole due
    // range and sorts it, which the no-sort test above catches.
    const reworded = planOf(STATEMENT_SQL.selectDueAged.replace(`ORDER BY ${AGED_KEY}`, 'ORDER BY 10000 * priority - scheduled_at'));
    expect(reworded.some((step) => step.includes('TEMP B-TREE')), reworded.join('\n')).toBe(true);
  });
});
