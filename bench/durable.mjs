// Benchmark of durable execution: the full storage middleware (claim, run a no-op, mark Done) on a real
// repository, against the raw database doing the same writes without Horae, in one run.
//
// Usage: npx tsc -b && node bench/durable.mjs [sqlite|postgres|memory] [N=20000] [C=16]
// Prints ONE JSON line. PostgreSQL: HORAE_PG_URL (default postgres://postgres@127.0.0.1:5432/test); each
// phase uses its own schema and drops it. SQLite: files in a fresh temp directory, removed at the end.
//
// Phases (each on a fresh database, so that none pays for another's rows):
//   insert        N tasks due now, repository.insertMany in batches of 1,000              → insert_per_s
//   drain 1 node  one Scheduler({ concurrency: C }) + multiNodeStorage: restore, claim,
//                 no-op, markAsDone, until every task is Done                              → drain_per_s
//   drain 3 nodes the same with three nodes; separate processes for sqlite/postgres (each
//                 opens its own connection, as real nodes do), in-process for memory       → drain_per_s_3_nodes
//   latency       2,000 tasks due 1-3 s ahead, stored first and restored by one node;
//                 start − runAt in the work                                                → p99_start_latency_ms
//                 the same, the node scheduling them itself (inserts compete with runs)   → p99_start_latency_scheduled_ms
//   batch claims  the adapter alone: claimDue(256) ahead, then markAsStarted and markAsDone
//                 of each, until drained                                                   → adapter_batch_claim_per_s
//   baseline      the raw driver: per task the same claim UPDATE and Done UPDATE the
//                 adapter runs, C concurrent loops, the adapter's batching style           → baseline_drain_per_s
import { randomUUID } from 'node:crypto';
import {
  CLAIM_BACKLOG,
  SYNC_COMMIT,
  cleanup,
  drainOneNode,
  drainThreeNodes,
  insertAll,
  newDatabase,
  openRepository,
  pkg,
  round,
  startLatency,
} from './lib/horae-drain.mjs';

const BATCH_CLAIM = 256;

// ---- raw baseline ---------------------------------------------------------------------------------

/**
 * SQLite without Horae: the adapter's own SQL (its internal STATEMENT_SQL, so the baseline follows its schema):
 * per task the claim UPDATE … RETURNING (and the attempt-history INSERT when the adapter writes one), then the
 * Done UPDATE … RETURNING (and the history UPDATE), bumping the change counter like the adapter; C concurrent
 * loops, and the writes issued in one tick share one BEGIN IMMEDIATE transaction (the adapter's group commit,
 * without the adapter).
 */
async function baselineSqlite(spec, ids, concurrency) {
  const { default: Database } = await import('better-sqlite3');
  const { STATEMENT_SQL: sql } = await import(new URL('../packages/repo-sqlite/dist/statements.js', import.meta.url).href);
  const db = new Database(spec.path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
  const claim = db.prepare(sql.claim);
  const done = db.prepare(sql.markAsDone);
  const openAttempt = sql.openAttempt === undefined ? undefined : db.prepare(sql.openAttempt);
  const closeAttempt = sql.closeAttempt === undefined ? undefined : db.prepare(sql.closeAttempt);
  const readSeq = db.prepare(sql.readChangeSeq);
  const writeSeq = db.prepare(sql.writeChangeSeq);
  const begin = db.prepare(sql.begin);
  const commit = db.prepare(sql.commit);
  let queue = [];
  let armed = false;
  let seq = 0;
  const tx = { now: 0, nextSeq: () => ++seq };
  const flush = () => {
    armed = false;
    const batch = queue;
    queue = [];
    begin.run();
    seq = readSeq.get().value;
    const first = seq;
    tx.now = Date.now();
    const results = batch.map((op) => op.run(tx));
    if (seq !== first) writeSeq.run({ seq });
    commit.run();
    batch.forEach((op, i) => op.resolve(results[i]));
  };
  const write = (run) =>
    new Promise((resolve) => {
      queue.push({ run, resolve });
      if (!armed) {
        armed = true;
        setImmediate(flush);
      }
    });
  const ms = await drainLoops(ids, concurrency, async (id) => {
    const token = randomUUID();
    const row = await write(({ now, nextSeq }) => {
      const claimed = claim.get({ id, owner: 'raw', until: now + 30_000, newToken: token, ifScheduledAt: null, now, seq: nextSeq() });
      if (claimed !== undefined) openAttempt?.run({ id, run: claimed.runs, attempt: claimed.attempt, owner: 'raw', now: claimed.updated_at });
      return claimed;
    });
    if (row === undefined) throw new Error(`raw claim of ${id} failed`);
    await write(({ now, nextSeq }) => {
      const ended = done.get({ id, token, now, seq: nextSeq() });
      if (ended !== undefined) closeAttempt?.run({ id, run: ended.runs, outcome: 'succeeded', error: null, now });
      return ended;
    });
  });
  db.close();
  return ms;
}

/**
 * PostgreSQL without Horae: the adapter's own claim and Done statements (its internal buildStatements, so the
 * baseline follows its schema, attempt-history CTEs included), one statement each per task, C concurrent loops
 * on a pool of the adapter's size (10).
 */
async function baselinePostgres(spec, ids, concurrency) {
  const { default: pg } = await import('pg');
  const { buildStatements } = await import(new URL('../packages/repo-postgres/dist/statements.js', import.meta.url).href);
  const { channelOf } = await import(pkg('repo-postgres'));
  const sql = buildStatements(`"${spec.schema}"`, channelOf(spec.schema));
  const pool = new pg.Pool({ connectionString: spec.url, max: 10, ...(SYNC_COMMIT ? {} : { options: '-c synchronous_commit=off' }) });
  try {
    return await drainLoops(ids, concurrency, async (id) => {
      const claimed = await pool.query({ name: 'raw-claim', text: sql.claim, values: [id, 'raw', 30_000, null] });
      const row = claimed.rows[0];
      if (row === undefined) throw new Error(`raw claim of ${id} failed`);
      await pool.query({ name: 'raw-done', text: sql.done, values: [id, row.lease_token] });
    });
  } finally {
    await pool.end();
  }
}

/**
 * The adapter alone, claiming in batches: `claimDue` of up to BATCH_CLAIM due tasks, then their markAsDone all
 * at once (grouped by the adapter), until none is left. No middleware: the rate a middleware that claimed in
 * batches (rather than one claim per task) could approach.
 */
async function adapterBatchClaims(repository, n) {
  const start = performance.now();
  let done = 0;
  while (done < n) {
    const claimed = await repository.claimDue({ owner: 'batch', leaseMs: 30_000, limit: BATCH_CLAIM });
    if (claimed.length === 0) throw new Error(`claimDue found nothing due after ${done} of ${n}`);
    // Claims ahead are unstarted: each run starts (counting its attempt) before it can end.
    await Promise.all(claimed.map((task) => repository.markAsStarted(task.id, task.lease.token)));
    await Promise.all(claimed.map((task) => repository.markAsDone(task.id, task.lease.token)));
    done += claimed.length;
  }
  return performance.now() - start;
}

/** Runs `each` over `ids` with `concurrency` loops; returns the wall time in ms. */
async function drainLoops(ids, concurrency, each) {
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < ids.length) await each(ids[next++]);
    }),
  );
  return performance.now() - start;
}

// ---- main -----------------------------------------------------------------------------------------

async function main() {
  const adapter = process.argv[2] ?? 'sqlite';
  const n = Number(process.argv[3] ?? 20_000);
  const concurrency = Number(process.argv[4] ?? 16);
  if (!['sqlite', 'postgres', 'memory'].includes(adapter) || !Number.isSafeInteger(n) || n < 1 || !(concurrency >= 1)) {
    throw new Error('usage: node bench/durable.mjs [sqlite|postgres|memory] [N] [C]');
  }
  const out = { adapter, n, concurrency };
  if (adapter === 'postgres') out.synchronous_commit = SYNC_COMMIT ? 'on' : 'off';
  out.claim_backlog = CLAIM_BACKLOG;
  try {
    // Insert, then drain on one node.
    const one = newDatabase(adapter, 'one');
    const repoOne = await openRepository(one);
    const insertMs = await insertAll(repoOne, n, 'one');
    out.insert_per_s = round(n / (insertMs / 1000));
    const drain = await drainOneNode(repoOne, n, concurrency);
    out.drain_per_s = round(n / (drain.ms / 1000));
    // Of the drain: the restore (listDue of the N due tasks, each armed locally), then the runs alone.
    out.drain_restore_ms = round(drain.restoreMs);
    out.drain_runs_per_s = round(n / ((drain.ms - drain.restoreMs) / 1000));
    out.cpu_us_per_run = round(drain.cpuUs / n, 1);

    // Three nodes on a fresh database.
    const three = newDatabase(adapter, 'three');
    const repoThree = await openRepository(three);
    await insertAll(repoThree, n, 'three');
    const threeNodes = await drainThreeNodes(three, repoThree, n, concurrency);
    out.drain_per_s_3_nodes = round(n / (threeNodes.ms / 1000));
    out.runs_per_node_3_nodes = threeNodes.perNode;
    out.cpu_us_per_run_3_nodes = round(threeNodes.cpuUs / n, 1);
    out.three_nodes_in = adapter === 'memory' ? 'one process' : 'three processes';
    await repoThree.close();

    // Start latency of tasks due 1-3 s ahead, on one node (the database holds the N Done rows of the drain).
    const stored = await startLatency(repoOne, concurrency, 'stored');
    out.p50_start_latency_ms = stored.p50;
    out.p99_start_latency_ms = stored.p99;
    out.max_start_latency_ms = stored.max;
    const scheduled = await startLatency(repoOne, concurrency, 'scheduled');
    out.p50_start_latency_scheduled_ms = scheduled.p50;
    out.p99_start_latency_scheduled_ms = scheduled.p99;
    out.scheduled_2000_within_ms = scheduled.readyWithinMs;
    await repoOne.close();

    // The adapter alone, claiming in batches (no middleware).
    const batch = newDatabase(adapter, 'batch');
    const repoBatch = await openRepository(batch);
    await insertAll(repoBatch, n, 'batch');
    out.adapter_batch_claim_per_s = round(n / ((await adapterBatchClaims(repoBatch, n)) / 1000));
    await repoBatch.close();

    // The raw database doing the same writes.
    if (adapter === 'memory') out.baseline_drain_per_s = null;
    else {
      const base = newDatabase(adapter, 'base');
      const repoBase = await openRepository(base);
      await insertAll(repoBase, n, 'base');
      await repoBase.close();
      const ids = Array.from({ length: n }, (_, j) => `base-${j}`);
      const ms = adapter === 'sqlite' ? await baselineSqlite(base, ids, concurrency) : await baselinePostgres(base, ids, concurrency);
      out.baseline_drain_per_s = round(n / (ms / 1000));
      out.drain_vs_baseline = round(out.drain_per_s / out.baseline_drain_per_s, 2);
    }
  } finally {
    await cleanup().catch(() => undefined);
  }
  console.log(JSON.stringify(out));
}

await main();
