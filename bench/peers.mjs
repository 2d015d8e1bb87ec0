// Horae against two peers on the same machine, in one process run: N no-op jobs enqueued first, then drained at
// concurrency C, timed from the worker's start to the last completion.
//
// Usage: npx tsc -b && node bench/peers.mjs [N=20000] [C=16]   (or HORAE_BENCH_N, HORAE_BENCH_C)
// Prints ONE JSON line. The set (graphile-worker, BullMQ, Horae SQLite, Horae PostgreSQL one node, Horae PostgreSQL
// three processes) runs HORAE_BENCH_ROUNDS times (default 2), interleaved, so that every system sees the same
// machine state. Per system the JSON gives every run (`runs`) and the best; each ratio is taken inside one run, and
// the figure given is the median of the runs' ratios.
//
//   graphile-worker  database HORAE_PEERS_PG_URL (default postgres://postgres@127.0.0.1:5432/horae_peers, created
//                    if missing), schema graphile_worker, dropped before each run and at the end. The settings of
//                    its performance page: localQueue.size 500, completeJobBatchDelay 0, failJobBatchDelay 0,
//                    concurrentJobs C, maxPoolSize C + 1. Jobs added with workerUtils.addJobs, 1,000 a call.
//   BullMQ           Redis HORAE_PEERS_REDIS_URL (default redis://127.0.0.1:6379), queue horae-peers-bench,
//                    obliterated before and after. Queue.addBulk, 1,000 a call; a Worker of concurrency C, with
//                    removeOnComplete { count: 1000 } and removeOnFail { count: 5000 } (its production advice).
//   Horae            bench/lib/horae-drain.mjs, as bench/durable.mjs measures drain_per_s, drain_per_s_3_nodes and
//                    p99_start_latency_ms (HORAE_PG_URL, a schema of its own per phase, dropped after it).
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import {
  cleanup,
  cpuSince,
  drainOneNode,
  drainThreeNodes,
  dropSchemas,
  insertAll,
  newDatabase,
  openRepository,
  round,
  sleep,
  startLatency,
} from './lib/horae-drain.mjs';

const N = Number(process.argv[2] ?? process.env.HORAE_BENCH_N ?? 20_000);
const C = Number(process.argv[3] ?? process.env.HORAE_BENCH_C ?? 16);
const ROUNDS = Number(process.env.HORAE_BENCH_ROUNDS ?? 2);
const PEERS_PG_URL = process.env.HORAE_PEERS_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/horae_peers';
const REDIS_URL = new URL(process.env.HORAE_PEERS_REDIS_URL ?? 'redis://127.0.0.1:6379');
const GRAPHILE_SCHEMA = 'graphile_worker';
const QUEUE = 'horae-peers-bench';
const BATCH = 1_000;
// A drain that takes longer than this is stuck: the run stops with an error rather than hang.
const PHASE_TIMEOUT_MS = Number(process.env.HORAE_BENCH_PHASE_TIMEOUT_MS ?? 10 * 60_000);

const { default: pg } = await import('pg');

function versionOf(name) {
  return JSON.parse(readFileSync(new URL(`../node_modules/${name}/package.json`, import.meta.url), 'utf8')).version;
}

/** Runs `phase`, failing the whole run when it takes longer than PHASE_TIMEOUT_MS. */
async function guarded(name, phase) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${name}: no result after ${PHASE_TIMEOUT_MS} ms`)), PHASE_TIMEOUT_MS);
  });
  try {
    return await Promise.race([phase(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves when `count()` reaches `n`, rejects on the first `fail` call. */
function counter(n) {
  let done = 0;
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => ((resolve = res), (reject = rej)));
  return {
    promise,
    count() {
      if (++done === n) resolve();
    },
    fail(error) {
      reject(error);
    },
  };
}

// ---- graphile-worker ------------------------------------------------------------------------------

/** Creates the peers' database if it is missing (the server's `postgres` database is used to ask). */
async function ensureGraphileDatabase() {
  const url = new URL(PEERS_PG_URL);
  const name = decodeURIComponent(url.pathname.slice(1));
  url.pathname = '/postgres';
  const admin = new pg.Client({ connectionString: url.href });
  await admin.connect();
  try {
    const { rowCount } = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (rowCount === 0) await admin.query(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
}

async function dropGraphileSchema() {
  const client = new pg.Client({ connectionString: PEERS_PG_URL });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${GRAPHILE_SCHEMA}" CASCADE`);
  } finally {
    await client.end();
  }
}

async function drainGraphile(n, concurrency) {
  const { Logger, makeWorkerUtils, parseCronItems, run } = await import('graphile-worker');
  const logger = new Logger(() => () => undefined);
  await dropGraphileSchema();
  const utils = await makeWorkerUtils({ connectionString: PEERS_PG_URL, schema: GRAPHILE_SCHEMA, logger });
  try {
    await utils.migrate();
    for (let i = 0; i < n; i += BATCH) {
      const specs = [];
      for (let j = i; j < Math.min(n, i + BATCH); j++) specs.push({ identifier: 'noop', payload: { j } });
      await utils.addJobs(specs);
    }
  } finally {
    await utils.release();
  }

  const events = new EventEmitter();
  const succeeded = counter(n);
  events.on('job:complete', ({ job, error }) => (error ? succeeded.fail(new Error(`graphile job ${job.id} failed: ${error}`)) : succeeded.count()));
  // A job's completion is written after job:complete (batched by completeJobBatchDelay): the drain ends when the
  // table is empty, as Horae's ends when its Done writes landed.
  const probe = new pg.Client({ connectionString: PEERS_PG_URL });
  await probe.connect();
  let runner;
  try {
    const cpu0 = process.cpuUsage();
    const start = performance.now();
    runner = await run({
      connectionString: PEERS_PG_URL,
      schema: GRAPHILE_SCHEMA,
      concurrency,
      maxPoolSize: concurrency + 1,
      noHandleSignals: true,
      logger,
      events,
      taskList: { noop: async () => undefined },
      parsedCronItems: parseCronItems([]),
      preset: { worker: { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } },
    });
    await succeeded.promise;
    for (;;) {
      const { rows } = await probe.query(`SELECT count(*)::int AS left FROM "${GRAPHILE_SCHEMA}"._private_jobs`);
      if (rows[0].left === 0) break;
      await sleep(2);
    }
    const ms = performance.now() - start;
    return { ms, cpuUs: cpuSince(cpu0) };
  } finally {
    if (runner !== undefined) {
      await runner.stop();
      await runner.promise.catch(() => undefined);
    }
    await probe.end();
  }
}

// ---- BullMQ ---------------------------------------------------------------------------------------

async function drainBullmq(n, concurrency) {
  const { Queue, Worker } = await import('bullmq');
  const connection = { host: REDIS_URL.hostname, port: Number(REDIS_URL.port || 6379) };
  const queue = new Queue(QUEUE, { connection });
  let worker;
  try {
    await queue.obliterate({ force: true });
    for (let i = 0; i < n; i += BATCH) {
      const jobs = [];
      for (let j = i; j < Math.min(n, i + BATCH); j++) jobs.push({ name: 'noop', data: { j } });
      await queue.addBulk(jobs);
    }
    const completed = counter(n);
    const cpu0 = process.cpuUsage();
    const start = performance.now();
    worker = new Worker(QUEUE, async () => undefined, {
      connection: { ...connection, maxRetriesPerRequest: null },
      concurrency,
      removeOnComplete: { count: 1000 },
      removeOnFail: { count: 5000 },
    });
    worker.on('completed', () => completed.count());
    worker.on('failed', (job, error) => completed.fail(new Error(`bullmq job ${job?.id} failed: ${error.message}`)));
    worker.on('error', (error) => completed.fail(error));
    await completed.promise;
    const ms = performance.now() - start;
    return { ms, cpuUs: cpuSince(cpu0) };
  } finally {
    await worker?.close();
    await queue.obliterate({ force: true }).catch(() => undefined);
    await queue.close();
  }
}

// ---- Horae ----------------------------------------------------------------------------------------

/** One node drains N due tasks, then the p99 start latency of tasks due 1-3 s ahead on the same database. */
async function drainHoraeOneNode(adapter, n, concurrency, tag) {
  const spec = newDatabase(adapter, tag);
  const repository = await openRepository(spec);
  try {
    await insertAll(repository, n, tag);
    const drain = await drainOneNode(repository, n, concurrency);
    const latency = await startLatency(repository, concurrency, 'stored');
    return { ms: drain.ms, cpuUs: drain.cpuUs, p99: latency.p99 };
  } finally {
    await repository.close();
    await dropSchemas();
  }
}

/** Three processes, one node each, drain N due tasks on one PostgreSQL schema. */
async function drainHoraeThreeNodes(n, concurrency, tag) {
  const spec = newDatabase('postgres', tag);
  const repository = await openRepository(spec);
  try {
    await insertAll(repository, n, tag);
    return await drainThreeNodes(spec, repository, n, concurrency);
  } finally {
    await repository.close();
    await dropSchemas();
  }
}

// ---- main -----------------------------------------------------------------------------------------

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};
const perSecond = (n, ms) => round(n / (ms / 1000));

async function main() {
  if (!Number.isSafeInteger(N) || N < 1 || !(C >= 1) || !Number.isSafeInteger(ROUNDS) || ROUNDS < 1) {
    throw new Error('usage: node bench/peers.mjs [N] [C]  (HORAE_BENCH_N, HORAE_BENCH_C, HORAE_BENCH_ROUNDS)');
  }
  const runs = {
    graphile_per_s: [],
    bullmq_per_s: [],
    sqlite_per_s: [],
    postgres_per_s: [],
    postgres_3_nodes_per_s: [],
    sqlite_vs_graphile: [],
    postgres_vs_graphile: [],
    postgres_3_nodes_vs_1: [],
    sqlite_p99_start_latency_ms: [],
    postgres_p99_start_latency_ms: [],
  };
  const cpu = { graphile: [], bullmq: [], sqlite: [], postgres: [], postgres_3_nodes: [] };
  await ensureGraphileDatabase();
  try {
    for (let r = 0; r < ROUNDS; r++) {
      const graphile = await guarded('graphile-worker', () => drainGraphile(N, C));
      const bullmq = await guarded('bullmq', () => drainBullmq(N, C));
      const sqlite = await guarded('horae-sqlite', () => drainHoraeOneNode('sqlite', N, C, `peers${r}`));
      const postgres = await guarded('horae-pg', () => drainHoraeOneNode('postgres', N, C, `peers${r}`));
      const three = await guarded('horae-pg-3', () => drainHoraeThreeNodes(N, C, `peers3_${r}`));
      const g = perSecond(N, graphile.ms);
      const s = perSecond(N, sqlite.ms);
      const p = perSecond(N, postgres.ms);
      const p3 = perSecond(N, three.ms);
      runs.graphile_per_s.push(g);
      runs.bullmq_per_s.push(perSecond(N, bullmq.ms));
      runs.sqlite_per_s.push(s);
      runs.postgres_per_s.push(p);
      runs.postgres_3_nodes_per_s.push(p3);
      runs.sqlite_vs_graphile.push(round(s / g, 2));
      runs.postgres_vs_graphile.push(round(p / g, 2));
      runs.postgres_3_nodes_vs_1.push(round(p3 / p, 2));
      runs.sqlite_p99_start_latency_ms.push(sqlite.p99);
      runs.postgres_p99_start_latency_ms.push(postgres.p99);
      cpu.graphile.push(round(graphile.cpuUs / N, 1));
      cpu.bullmq.push(round(bullmq.cpuUs / N, 1));
      cpu.sqlite.push(round(sqlite.cpuUs / N, 1));
      cpu.postgres.push(round(postgres.cpuUs / N, 1));
      cpu.postgres_3_nodes.push(round(three.cpuUs / N, 1));
    }
  } finally {
    await dropGraphileSchema().catch(() => undefined);
    await cleanup().catch(() => undefined);
  }
  const out = {
    n: N,
    c: C,
    rounds: ROUNDS,
    figures: 'per system the best run; each ratio taken inside one run, the median of the runs given; p99: the worst run',
    versions: { graphile_worker: versionOf('graphile-worker'), bullmq: versionOf('bullmq') },
    runs,
    graphile_per_s: Math.max(...runs.graphile_per_s),
    bullmq_per_s: Math.max(...runs.bullmq_per_s),
    sqlite_per_s: Math.max(...runs.sqlite_per_s),
    postgres_per_s: Math.max(...runs.postgres_per_s),
    postgres_3_nodes_per_s: Math.max(...runs.postgres_3_nodes_per_s),
    sqlite_vs_graphile: round(median(runs.sqlite_vs_graphile), 2),
    postgres_vs_graphile: round(median(runs.postgres_vs_graphile), 2),
    postgres_3_nodes_vs_1: round(median(runs.postgres_3_nodes_vs_1), 2),
    sqlite_p99_start_latency_ms: Math.max(...runs.sqlite_p99_start_latency_ms),
    postgres_p99_start_latency_ms: Math.max(...runs.postgres_p99_start_latency_ms),
    // Process CPU (user + system) over the drain per job; postgres_3_nodes sums the three node processes. The
    // database's and Redis's own CPU is not in it.
    cpu_us_per_run: cpu,
  };
  console.log(JSON.stringify(out));
}

await main().catch((error) => {
  console.error(error);
  process.exit(1);
});
