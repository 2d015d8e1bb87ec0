import { beforeAll, describe, expect, it } from 'vitest';
import { buildPackages } from '../multi-node/proof.js';
import { tempDir, undoAfterEach } from '../multi-node/cleanups.js';
import { CHAOS_WORK, commonFigures, runScenario } from './scenario.js';
import { postgresObserver } from '../multi-node/observers.js';

// Issue 10, chaos: three nodes on one PostgreSQL database (the shared server: nothing here stops it), one with its
// clock 2 s fast and one 2 s slow (a preload shifts their `Date`), drain 180 tasks due 2.5-5.5 s after their insert,
// with random failures
// and retries (whose due times the skewed nodes compute). The five invariants are checked from the run logs, the rows
// and the history; "not before due" is judged on the real clock, the database's. SQLite has no clock of its own (each
// process's is its database clock: docs/adapter-sqlite.md), so skew is a PostgreSQL scenario.
//
// The fast node's timers fire 2 s early, while it is idle (nothing is due before 2.5 s): the database refuses those
// claims. The slow node's timers fire 2 s late, so it wins tasks only when the others are busy: the load (60 tasks a
// second against 3 nodes of 2 slots and 150-250 ms runs, 30 a second) keeps a queue for longer than 2 s.

const SCENARIO = { tasks: 180, dueNow: 0, firstDueMs: 2500, spreadMs: 3000, faultAfterEnded: 0, drainTimeoutMs: 60_000 } as const;
const WORK = { ...CHAOS_WORK, concurrency: 2, minRunMs: 150, maxRunMs: 250 };
const SKEWS = [0, 2000, -2000] as const;
const FAST = 1;

undoAfterEach();

beforeAll(() => buildPackages(), 120_000);

describe('clocks skewed ±2 s', () => {
  it('PostgreSQL, three nodes (0, +2 s, -2 s): nothing runs before it is due by the database clock, the fast node is refused and waits, the invariants hold', async () => {
    const dir = tempDir('horae-chaos-skew-');
    const { observer, database } = await postgresObserver();
    const result = await runScenario({
      ...SCENARIO,
      database,
      observer,
      dir,
      nodes: SKEWS.map((skewMs) => ({ skewMs })),
      work: WORK,
      // The skew is on from the start: no fault to inject mid-drain.
      fault: () => Promise.resolve({ marks: {} }),
    });
    const startedBy = result.stats.map((s) => s.started ?? 0);
    console.info(`[chaos clock skew postgres] ${JSON.stringify({ ...commonFigures(result), startedBy, notDue: result.stats.map((s) => s.notDue) })}`);

    expect(result.workerErrors).toEqual([]);
    expect(result.report.violations.slice(0, 20)).toEqual([]);
    // The fast node's timers fired early and the database refused those claims (the path under test was taken).
    expect(result.stats[FAST]!.notDue).toBeGreaterThan(0);
    // Every node ran some.
    for (const started of startedBy) expect(started).toBeGreaterThan(0);
  }, 120_000);
});
