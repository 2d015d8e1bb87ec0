import type pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { channelOf } from '@horae/repo-postgres';
import { quoteIdent } from '../src/schema.js';
import { buildStatements, type Statements } from '../src/statements.js';
import { createPgFixture, rawClient } from './pg-fixture.js';

type Fixture = Awaited<ReturnType<typeof createPgFixture>>;

const HOUR = 3_600_000;
/** Rows in the state the statistics call rare: enough that walking them all is far from a probe per id. */
const ROWS = 5_000;
/** Ids per grouped statement, as a tick of group commit sends. */
const GROUP = 16;
/** The most rows a scan of tasks may visit for one statement: a probe per id (and claimDue's LIMIT), with room. */
const BOUNDED = 4 * GROUP;

let fixture: Fixture | undefined;
let client: pg.Client | undefined;
afterEach(async () => {
  await client?.end();
  client = undefined;
  await fixture?.dispose();
  fixture = undefined;
});

type Param = string | number | boolean | Date | null | readonly (string | null)[];

/** A parameter as an SQL literal for `EXECUTE` (EXPLAIN takes no bound parameters). */
function literal(db: pg.Client, value: Param): string {
  if (value === null) return 'NULL';
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (value instanceof Date) return db.escapeLiteral(value.toISOString());
  if (Array.isArray(value)) return db.escapeLiteral(`{${value.map((v: string | null) => (v === null ? 'NULL' : `"${v.replace(/["\\]/g, '\\$&')}"`)).join(',')}}`);
  return db.escapeLiteral(value as string);
}

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Actual Rows': number;
  'Actual Loops': number;
  'Rows Removed by Filter'?: number;
  'Rows Removed by Index Recheck'?: number;
  'Parent Relationship'?: string;
  Plans?: PlanNode[];
}

/** The inputs of a node: its children, less the CTEs and sub-plans hung on it (they run apart from it). */
function inputsOf(node: PlanNode): PlanNode[] {
  return (node.Plans ?? []).filter((child) => child['Parent Relationship'] !== 'InitPlan' && child['Parent Relationship'] !== 'SubPlan');
}

/** Whether a scan of tasks feeds `node`. */
function readsTasks(node: PlanNode): boolean {
  return (node['Relation Name'] === 'tasks' && node['Node Type'] !== 'ModifyTable') || inputsOf(node).some(readsTasks);
}

/**
 * The sorts of table rows in a plan (a Sort fed by a scan of tasks, not one of a CTE's few output rows), with the
 * rows each sorted.
 */
function tableSorts(node: PlanNode, into: { sorted: number }[] = []): { sorted: number }[] {
  if ((node['Node Type'] === 'Sort' || node['Node Type'] === 'Incremental Sort') && readsTasks(node)) into.push({ sorted: node['Actual Rows'] });
  for (const child of node.Plans ?? []) tableSorts(child, into);
  return into;
}

/** Every scan of the tasks table in a plan, with the rows it visited (returned or filtered out, over all loops). */
function tasksScans(node: PlanNode, into: { scan: string; visited: number }[] = []): { scan: string; visited: number }[] {
  if (node['Relation Name'] === 'tasks' && node['Node Type'] !== 'ModifyTable') {
    // EXPLAIN reports rows and rows removed per loop.
    const perLoop = node['Actual Rows'] + (node['Rows Removed by Filter'] ?? 0) + (node['Rows Removed by Index Recheck'] ?? 0);
    into.push({ scan: `${node['Node Type']}${node['Index Name'] === undefined ? '' : ` using ${node['Index Name']}`}`, visited: perLoop * node['Actual Loops'] });
  }
  for (const child of node.Plans ?? []) tasksScans(child, into);
  return into;
}

/**
 * Prepares the adapter's exact SQL the way the driver does (no declared types), then runs it under a forced generic
 * plan and a forced custom plan, in a transaction rolled back: the rows the statement returned and every scan of tasks.
 */
async function plans(
  db: pg.Client,
  sql: string,
  params: readonly Param[],
): Promise<{ mode: string; returned: number; scans: { scan: string; visited: number }[]; sorts: { sorted: number }[] }[]> {
  const out = [];
  for (const mode of ['force_generic_plan', 'force_custom_plan']) {
    await db.query(`SET plan_cache_mode = ${mode}`);
    await db.query(`PREPARE probe AS ${sql}`);
    try {
      await db.query('BEGIN');
      const { rows } = await db.query(`EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) EXECUTE probe (${params.map((p) => literal(db, p)).join(', ')})`);
      const root = (rows[0] as { 'QUERY PLAN': [{ Plan: PlanNode }] })['QUERY PLAN'][0].Plan;
      out.push({ mode, returned: root['Actual Rows'], scans: tasksScans(root), sorts: tableSorts(root) });
    } finally {
      await db.query('ROLLBACK');
      await db.query('DEALLOCATE probe');
    }
  }
  await db.query('RESET plan_cache_mode');
  return out;
}

/** A fixture whose tasks table autovacuum leaves alone, so its statistics stay the ones the test took. */
async function setUp(): Promise<{ sql: Statements; db: pg.Client; tasks: string; repo: Fixture['repository'] }> {
  fixture = await createPgFixture();
  client = await rawClient();
  const s = quoteIdent(fixture.schema);
  await client.query(`ALTER TABLE ${s}.tasks SET (autovacuum_enabled = false)`);
  return { sql: buildStatements(s, channelOf(fixture.schema)), db: client, tasks: `${s}.tasks`, repo: fixture.repository };
}

/** Inserts `n` due tasks `<prefix>00001…` in `state`, straight into the table (the adapter's inserts may ANALYZE). */
async function insertRaw(db: pg.Client, tasks: string, prefix: string, n: number, state: string): Promise<void> {
  await db.query(
    `INSERT INTO ${tasks} (id, work_id, param, scheduled_at, state, created_at, updated_at)
     SELECT $1::text || lpad(g::text, 5, '0'), 'w', '{}', now() - interval '1 minute', $2, now(), now() FROM generate_series(1, $3::int) g`,
    [prefix, state, n],
  );
}

/**
 * Asserts every plan of a claim ahead walked `index` in claim order: it returned `returned` rows, visited at most
 * {@link BOUNDED} rows, and sorted no rows of the table (only, above it all, the few it claimed).
 */
function expectIndexWalk(name: string, found: Awaited<ReturnType<typeof plans>>, index: string, returned: number): void {
  expectBounded(name, found, returned);
  for (const plan of found) {
    expect(plan.scans.map((scan) => scan.scan), `${name} (${plan.mode}) scans`).toContain(`Index Scan using ${index}`);
    expect(plan.sorts, `${name} (${plan.mode}) sorts no table rows`).toEqual([]);
  }
}

/** Asserts every plan returned `returned` rows and no scan of tasks visited more than {@link BOUNDED} rows. */
function expectBounded(name: string, found: Awaited<ReturnType<typeof plans>>, returned: number): void {
  for (const plan of found) {
    expect(plan.returned, `${name} (${plan.mode}) returned`).toBe(returned);
    expect(plan.scans.length, `${name} (${plan.mode}) scans tasks`).toBeGreaterThan(0);
    expect(plan.scans.filter((scan) => scan.visited > BOUNDED), `${name} (${plan.mode}) visits at most ${BOUNDED} rows per scan`).toEqual([]);
  }
}

describe('PostgresRepository statements reach their rows by primary key in generic and custom plans', () => {
  it(`with ${ROWS} Working rows that the statistics (taken before the claims) call rare: Done, renew, release, fail, cancel, progress, the write of reclaim`, async () => {
    const { sql, db, tasks, repo } = await setUp();
    await insertRaw(db, tasks, 'a', ROWS + GROUP, 'Initialized');
    // What the adapter's own ANALYZE after a bulk insert sees: not one Working row, so every partial index on
    // Working looks empty to the planner until the next VACUUM or ANALYZE.
    await db.query(`ANALYZE ${tasks}`);
    const working: { id: string; token: string }[] = [];
    for (let i = 0; i < ROWS / 1_000; i++) {
      for (const task of await repo.claimDue({ owner: 'node-a', leaseMs: HOUR, limit: 1_000 })) working.push({ id: task.id, token: task.lease!.token });
    }
    expect(working).toHaveLength(ROWS);
    // The rest with a lease already expired, for reclaim: claims ahead that never started.
    expect(await repo.claimDue({ owner: 'node-b', leaseMs: 0, limit: GROUP })).toHaveLength(GROUP);
    expect((await repo.countByState()).Working).toBe(ROWS + GROUP);

    const group = Array.from({ length: GROUP }, (_, i) => working[i * Math.floor(ROWS / GROUP)]!);
    const one = working[ROWS - 1]!;
    // Starts, while every claim is still ahead (each plan runs in a transaction rolled back).
    expectBounded('startMany', await plans(db, sql.startMany, [group.map((t) => t.id), group.map((t) => t.token)]), GROUP);
    expectBounded('start', await plans(db, sql.start, [one.id, one.token]), 1);
    await Promise.all(working.map((task) => repo.markAsStarted(task.id, task.token)));
    const error = JSON.stringify({ message: 'boom' });
    expectBounded('doneMany', await plans(db, sql.doneMany, [group.map((t) => t.id), group.map((t) => t.token)]), GROUP);
    expectBounded('failMany', await plans(db, sql.failMany, [group.map((t) => t.id), group.map((t) => t.token), group.map(() => error)]), GROUP);
    expectBounded('getMany', await plans(db, sql.getMany, [group.map((t) => t.id)]), GROUP);
    expectBounded('done', await plans(db, sql.done, [one.id, one.token]), 1);
    expectBounded('renew', await plans(db, sql.renew, [one.id, one.token, HOUR]), 1);
    expectBounded('release', await plans(db, sql.release, [one.id, one.token, new Date(), error, false]), 1);
    expectBounded('failWorking', await plans(db, sql.failWorking, [one.id, error, one.token]), 1);
    expectBounded('cancelWorking', await plans(db, sql.cancelWorking, [one.id, one.token]), 1);
    expectBounded('cancel', await plans(db, sql.cancel, [one.id]), 1);
    expectBounded('progress', await plans(db, sql.progress, [one.id, one.token, '{"done": 1}', 'half way', 10]), 1);
    // reclaim: the write goes by primary key. Choosing the expired rows walks a partial index on Working by design
    // (tasks_lease, from the oldest lease); with these statistics the generic plan may walk tasks_working_work
    // instead, once per reclaim pass, not per task: that choice is not asserted here.
    for (const plan of await plans(db, sql.reclaim, [100, 3, 'PoisonTaskError', 'POISON_TASK', 'claimed ', ' times'])) {
      expect(plan.returned, `reclaim (${plan.mode}) returned`).toBe(GROUP);
      const writes = plan.scans.filter((scan) => scan.scan.endsWith('tasks_pkey'));
      expect(writes, `reclaim (${plan.mode}) writes by primary key`).toHaveLength(1);
      expect(writes[0]!.visited, `reclaim (${plan.mode}) write visits`).toBeLessThanOrEqual(BOUNDED);
    }
  });

  it(`with ${ROWS} Initialized rows that the statistics (taken before the inserts) call rare: claims by id, claimDue, fail, update`, async () => {
    const { sql, db, tasks } = await setUp();
    await insertRaw(db, tasks, 'd', ROWS, 'Done');
    await db.query(`ANALYZE ${tasks}`);
    await insertRaw(db, tasks, 'b', ROWS, 'Initialized');

    const ids = Array.from({ length: GROUP }, (_, i) => `b${String(1 + i * Math.floor(ROWS / GROUP)).padStart(5, '0')}`);
    const one = 'b05000';
    expectBounded('claimMany', await plans(db, sql.claimMany, [ids, 'node-a', HOUR, ids.map(() => null)]), GROUP);
    expectBounded('claim', await plans(db, sql.claim, [one, 'node-a', HOUR, null]), 1);
    expectBounded('claimRefusal', await plans(db, sql.claimRefusal, [one, null]), 1);
    expectIndexWalk('claimDueAged', await plans(db, sql.claimDueAged, ['node-a', HOUR, GROUP, null]), 'tasks_aged', GROUP);
    expectIndexWalk('claimDueAged of works', await plans(db, sql.claimDueAged, ['node-a', HOUR, GROUP, ['w']]), 'tasks_aged', GROUP);
    expectIndexWalk('claimDueByPriority', await plans(db, sql.claimDueByPriority, ['node-a', HOUR, GROUP, null]), 'tasks_claim', GROUP);
    expectIndexWalk('selectDueLimitedAged', await plans(db, sql.selectDueLimitedAged, [null, [], GROUP]), 'tasks_aged', GROUP);
    expectBounded('claimIds', await plans(db, sql.claimIds, ['node-a', HOUR, ids]), GROUP);
    expectBounded('failInitialized', await plans(db, sql.failInitialized, [one, JSON.stringify({ message: 'boom' })]), 1);
    expectBounded('update', await plans(db, sql.update, [one, null, false, null, 5]), 1);
    expectBounded('cancel', await plans(db, sql.cancel, [one]), 1);
  });

  it(`claimDue at the default agingMs walks tasks_aged with fresh statistics too; another agingMs sorts the due rows`, async () => {
    const { sql, db, tasks } = await setUp();
    await insertRaw(db, tasks, 'b', ROWS, 'Initialized');
    // Spread the priorities and due times, so that the aged order is neither the id's nor the due time's.
    await db.query(`UPDATE ${tasks} SET priority = (hashtext(id) % 7), scheduled_at = now() - (hashtext(id || 'x') % 600000) * interval '1 millisecond' - interval '10 minutes'`);
    await db.query(`ANALYZE ${tasks}`);
    expectIndexWalk('claimDueAged', await plans(db, sql.claimDueAged, ['node-a', HOUR, GROUP, null]), 'tasks_aged', GROUP);
    expectIndexWalk('claimDueByPriority', await plans(db, sql.claimDueByPriority, ['node-a', HOUR, GROUP, null]), 'tasks_claim', GROUP);
    // The documented cost of an agingMs no index holds: every due row read, and the first GROUP kept by a sort.
    for (const plan of await plans(db, sql.claimDueAgedBy, ['node-a', HOUR, GROUP, null, 60_000])) {
      expect(plan.returned, `claimDueAgedBy (${plan.mode}) returned`).toBe(GROUP);
      expect(plan.sorts.map((sort) => sort.sorted), `claimDueAgedBy (${plan.mode}) sorts`).toEqual([GROUP]);
    }
  });
});
