import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildPackages, poll, readLog, type ProofDatabase } from '../multi-node/proof.js';
import { tempDir, undoAfterEach } from '../multi-node/cleanups.js';
import type { RunLine } from '../multi-node/run-log.js';
import { CHAOS_WORK, commonFigures, runScenario, type ChaosObserver } from './scenario.js';
import { postgresObserver, sqliteObserver } from '../multi-node/observers.js';

// Issue 10, chaos: SIGKILL of one of three nodes, on one SQLite file and on one PostgreSQL database, while it holds
// running work. The victim is told to hold its runs first (they then never end on their own), so the kill always cuts
// at least two of them; the survivors take them over once their leases expire. The five invariants are checked from
// the run logs, the rows and the history.

const SCENARIO = { tasks: 600, dueNow: 150, spreadMs: 6000, faultAfterEnded: 150, drainTimeoutMs: 60_000 } as const;
/** How late after the kill a cut run may start again: its lease (renewed until the kill), a sync interval, and load. */
const TAKEOVER_BOUND_MS = CHAOS_WORK.leaseMs + CHAOS_WORK.syncIntervalMs + 2000;
const VICTIM = 1;

undoAfterEach();

beforeAll(() => buildPackages(), 120_000);

/** Runs started and not ended in one log. */
function openRuns(lines: readonly RunLine[]): RunLine[] {
  const open = new Map<string, RunLine>();
  for (const line of lines) {
    const key = `${line.taskId}#${line.attempt}`;
    if (line.kind === 'start') open.set(key, line);
    else open.delete(key);
  }
  return [...open.values()];
}

/** Kills the middle node while it holds runs; checks the takeover of every cut run and the invariants. */
async function killScenario(database: ProofDatabase, observer: ChaosObserver, dir: string, label: string): Promise<void> {
  const result = await runScenario({
    ...SCENARIO,
    database,
    observer,
    dir,
    nodes: [{}, {}, {}],
    work: CHAOS_WORK,
    fault: async ({ workers, logPaths }) => {
      const victim = workers[VICTIM]!;
      victim.send({ type: 'hold' });
      await poll(() => (openRuns(readLog(logPaths[VICTIM]!, true)).length >= 2 ? true : undefined), 'the victim to hold two runs', 30_000, 10);
      const exited = new Promise<void>((resolve) => victim.child.once('exit', () => resolve()));
      victim.child.kill('SIGKILL');
      const killed = Date.now();
      await exited;
      return { killedPids: [victim.child.pid!], marks: { killed } };
    },
  });
  const killed = result.marks.killed!;
  const victimPid = result.killedPids[0]!;
  const cut = openRuns(result.lines.filter((line) => line.pid === victimPid));
  // A run cut at its last attempt has no next one: the task ends Failed (the invariants check that).
  const retried = cut.filter((run) => run.attempt < CHAOS_WORK.maxAttempts);
  const takeovers = retried.map((run) => {
    const next = result.lines.find((line) => line.kind === 'start' && line.taskId === run.taskId && line.attempt === run.attempt + 1);
    return next?.at === undefined || next.pid === victimPid ? Number.NaN : next.at - killed;
  });
  const figures = {
    ...commonFigures(result),
    cut: cut.length,
    takeoverAfterKillMs: { min: Math.min(...takeovers), max: Math.max(...takeovers) },
    drainAfterKillMs: result.marks.drained! - killed,
  };
  console.info(`[chaos sigkill ${label}] ${JSON.stringify(figures)}`);

  expect(result.workerErrors).toEqual([]);
  expect(result.report.violations.slice(0, 20)).toEqual([]);
  // The kill cut running work, and every cut run started again on a survivor, as the next attempt, within the bound.
  expect(cut.length).toBeGreaterThanOrEqual(2);
  expect(takeovers.every((ms) => Number.isFinite(ms))).toBe(true);
  expect(Math.max(...takeovers)).toBeLessThanOrEqual(TAKEOVER_BOUND_MS);
  expect(result.report.counts.rerunAfterExpiry).toBeGreaterThanOrEqual(retried.length);
  for (const stats of result.stats) expect(stats).toMatchObject({ leaseLost: 0, syncErrors: 0 });
}

describe('SIGKILL of a node mid-drain', () => {
  it('SQLite, three nodes: the cut runs start again on a survivor after their leases expired, within a lease and a sync of the kill; the invariants hold', async () => {
    const dir = tempDir('horae-chaos-kill-');
    const dbPath = join(dir, 'horae.db');
    const { observer, database } = sqliteObserver(dbPath);
    await killScenario(database, observer, dir, 'sqlite');
  }, 120_000);

  it('PostgreSQL (the shared server, its own schema), three nodes: the same', async () => {
    const dir = tempDir('horae-chaos-kill-');
    const { observer, database } = await postgresObserver();
    await killScenario(database, observer, dir, 'postgres');
  }, 120_000);
});
