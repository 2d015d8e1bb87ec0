import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildPackages, runProof, WORK, type ProofResult } from './proof.js';
import { tempDir, undoAfterEach } from './cleanups.js';
import { runFails } from './run-log.js';
import { postgresObserver, sqliteObserver } from './observers.js';

// The multi-node proof of issue 4, with real processes: three workers share one SQLite file, then one
// PostgreSQL database; 5,000 tasks scheduled from all three, some due now and some over the next 4 s, ~10% of
// runs fail and are retried (maxAttempts 3, 50 ms backoff), 1% always fail; the middle worker is killed with
// SIGKILL while it runs tasks. See run-log.ts for the rules checked against the workers' logs.

const TASKS = 5000;

undoAfterEach();

beforeAll(() => buildPackages(), 120_000);

/** The assertions shared by both databases. */
function expectProofHolds(result: ProofResult): void {
  const { tasks, counts, check, killed } = result;
  // Nothing lost: every task is a row, and every row ended.
  expect(result.workerErrors).toEqual([]);
  expect(tasks).toHaveLength(TASKS);
  expect(new Set(tasks.map((t) => t.id)).size).toBe(TASKS);
  expect(counts).toMatchObject({ Initialized: 0, Working: 0, Cancelled: 0 });
  expect(counts.Done + counts.Failed).toBe(TASKS);
  // Every row, and its execution history (one record per attempt), agrees with the log: exactly-once per
  // attempt, retries, Failed exactly as the work decided.
  expect(check.problems.slice(0, 20)).toEqual([]);
  expect(result.historyRecords).toBe(tasks.reduce((sum, t) => sum + t.attempt, 0));
  // The always-failing tasks (n % 100 === 42) ended Failed after maxAttempts runs.
  const alwaysFail = tasks.filter((t) => (t.param as { alwaysFail: boolean }).alwaysFail);
  expect(alwaysFail).toHaveLength(TASKS / 100);
  for (const task of alwaysFail) expect(task).toMatchObject({ state: 'Failed', attempt: WORK.maxAttempts });
  // Tasks whose random failures exhaust every attempt (decided by the hash alone) ended Failed; there are some.
  const exhausted = tasks.filter((t) => !(t.param as { alwaysFail: boolean }).alwaysFail && [1, 2, 3].every((a) => runFails(t.id, a, false, WORK.failPercent)));
  expect(exhausted.length).toBeGreaterThan(0);
  for (const task of exhausted) expect(task).toMatchObject({ state: 'Failed', attempt: WORK.maxAttempts });
  // Random failures were retried: some tasks needed more than one attempt and still ended Done.
  expect(tasks.filter((t) => t.state === 'Done' && t.attempt > 1).length).toBeGreaterThan(TASKS / 50);
  // The kill cut running work, and those tasks ran again on a surviving worker with one more attempt.
  expect(killed.openRuns).toBeGreaterThanOrEqual(1);
  expect(check.outcomes.cut).toBe(killed.openRuns);
  expect(check.takenOver).toBeGreaterThanOrEqual(1);
  // The kill can interrupt at most the started runs the victim held: its concurrency in runs (cut, or started in the
  // database before the work logged its start), plus at most as many successes whose Done write had not landed (a run
  // gives its slot back before its Done lands). Its claims ahead, never started, cost no attempt and are not counted.
  expect(check.outcomes.cut + check.outcomes['ok-lost'] + check.outcomes['claimed-lost']).toBeLessThanOrEqual(2 * result.concurrency);
  // Leases were never lost on a survivor: nothing else ran twice.
  for (const stats of result.survivorStats) expect(stats).toMatchObject({ leaseLost: 0, syncErrors: 0 });
}

function summary(result: ProofResult): string {
  const { check, timings, killed } = result;
  return JSON.stringify({ states: check.states, runs: check.runs, outcomes: check.outcomes, takenOver: check.takenOver, killed, timings, survivors: result.survivorStats });
}

describe('multi-node proof: three real processes, one killed with SIGKILL', () => {
  it('SQLite: three workers on one file run 5,000 tasks; each ends as its work decided, none lost, none run twice but the killed worker\'s', async () => {
    const dir = tempDir('horae-multi-node-');
    const dbPath = join(dir, 'horae.db');
    const { observer, database } = sqliteObserver(dbPath);
    const result = await runProof({ database, observer, dir, tasks: TASKS });
    console.info(`[multi-node sqlite] ${summary(result)}`);
    expectProofHolds(result);
  }, 150_000);

  it('PostgreSQL: three workers on one database (own schema) run 5,000 tasks with the same guarantees', async () => {
    const dir = tempDir('horae-multi-node-');
    const { observer, database } = await postgresObserver();
    const result = await runProof({ database, observer, dir, tasks: TASKS });
    console.info(`[multi-node postgres] ${summary(result)}`);
    expectProofHolds(result);
  }, 150_000);
});
