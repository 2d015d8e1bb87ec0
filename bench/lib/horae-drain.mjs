// Horae's drain measurements, shared by bench/durable.mjs and bench/peers.mjs: where a phase's database lives, a
// node (Scheduler + multiNodeStorage running a no-op), the one-node and three-node drains, and the start latency.
//
// Run as a script with `--node SPEC C INDEX`, this file is one node of the three-node drain (forked by
// drainThreeNodes, so that each node opens its own connection, as real nodes do).
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const pkg = (name) => new URL(`../../packages/${name}/dist/index.js`, import.meta.url).href;
export const PG_URL = process.env.HORAE_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const BATCH = 1_000;
const LATENCY_TASKS = 2_000;
// HORAE_BENCH_SYNC_COMMIT=off: PostgreSQL commits without waiting for the WAL flush, on Horae's connections and
// the baseline's alike (a diagnostic: it shows how much of a figure is the disk's fsync). Default: the server's.
export const SYNC_COMMIT = process.env.HORAE_BENCH_SYNC_COMMIT !== 'off';
// HORAE_BENCH_CLAIM_BACKLOG=off: the nodes hold due tasks on timers and claim them one by one (the storage option
// claimBacklog: false), for an A/B against batch claims of the backlog (the default) in the same machine state.
export const CLAIM_BACKLOG = process.env.HORAE_BENCH_CLAIM_BACKLOG !== 'off';

const { Scheduler } = await import(pkg('core'));
const { WorkRegistry, multiNodeStorage, MemoryRepository } = await import(pkg('storage'));

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
export const round = (x, d = 0) => (x === null || x === undefined ? null : Math.round(x * 10 ** d) / 10 ** d);
export function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** CPU time (user + system) this process spent since `since` (a process.cpuUsage() reading), in µs. */
export function cpuSince(since) {
  const { user, system } = process.cpuUsage(since);
  return user + system;
}

// ---- databases ------------------------------------------------------------------------------------

/** Where one phase's repository lives: a spec a child process can open too. */
export function newDatabase(adapter, tag) {
  if (adapter === 'sqlite') return { adapter, path: join(workDir(), `${tag}.db`) };
  if (adapter === 'postgres') return { adapter, url: PG_URL, schema: `horae_bench_${randomBytes(4).toString('hex')}_${tag}` };
  return { adapter };
}

let dir;
function workDir() {
  dir ??= mkdtempSync(join(tmpdir(), 'horae-bench-'));
  return dir;
}

const schemas = [];
export async function openRepository(spec, shared) {
  if (spec.adapter === 'sqlite') {
    const { SqliteRepository } = await import(pkg('repo-sqlite'));
    return new SqliteRepository({ database: spec.path });
  }
  if (spec.adapter === 'postgres') {
    const { PostgresRepository } = await import(pkg('repo-postgres'));
    if (!schemas.includes(spec.schema)) schemas.push(spec.schema);
    const repository = new PostgresRepository({ connectionString: spec.url, schema: spec.schema, synchronousCommit: SYNC_COMMIT });
    await repository.init();
    return repository;
  }
  return shared ? shared.openPeer() : new MemoryRepository();
}

/** Drops every PostgreSQL schema opened so far. */
export async function dropSchemas() {
  if (schemas.length === 0) return;
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    while (schemas.length > 0) await client.query(`DROP SCHEMA IF EXISTS "${schemas.pop()}" CASCADE`);
  } finally {
    await client.end();
  }
}

/** Removes what the phases left: the PostgreSQL schemas and the SQLite temp directory. */
export async function cleanup() {
  try {
    await dropSchemas();
  } finally {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  }
}

export async function insertAll(repository, n, prefix) {
  const now = new Date();
  const start = performance.now();
  for (let i = 0; i < n; i += BATCH) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + BATCH); j++) batch.push({ id: `${prefix}-${j}`, workId: 'noop', param: { j }, scheduledAt: now });
    await repository.insertMany(batch);
  }
  return performance.now() - start;
}

// ---- one node -------------------------------------------------------------------------------------

/** One Horae node: a Scheduler behind multiNodeStorage, running a no-op (or `work`). */
export function makeNode(repository, concurrency, nodeId, work = () => undefined) {
  const registry = new WorkRegistry().register('noop', work);
  const storage = multiNodeStorage(repository, registry, { nodeId, leaseMs: 30_000, claimBacklog: CLAIM_BACKLOG });
  const scheduler = new Scheduler({ concurrency }).use(storage.middleware);
  let succeeded = 0;
  let waiter;
  let target = Infinity;
  storage.events.on('task:succeeded', () => {
    succeeded++;
    if (succeeded >= target) waiter?.();
  });
  return {
    storage,
    scheduler,
    get succeeded() {
      return succeeded;
    },
    /** Resolves once `n` runs succeeded on this node. */
    until(n) {
      target = n;
      return succeeded >= n ? Promise.resolve() : new Promise((resolve) => (waiter = resolve));
    },
    async start() {
      await storage.start(scheduler);
      scheduler.start();
    },
    async stop() {
      await scheduler.stop({ timeoutMs: 1000 });
      await storage.stop();
    },
  };
}

/**
 * One node drains the N due tasks of `repository`: from storage.start() (the restore) until N runs succeeded.
 * `cpuUs`: this process's CPU time (user + system) over the same span.
 */
export async function drainOneNode(repository, n, concurrency) {
  const node = makeNode(repository, concurrency, 'bench-node-0');
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  await node.start();
  const restoreMs = performance.now() - start;
  await node.until(n);
  const ms = performance.now() - start;
  const cpuUs = cpuSince(cpu0);
  await node.stop();
  return { ms, restoreMs, cpuUs };
}

// ---- three nodes ----------------------------------------------------------------------------------

/** Child mode: one node in its own process, on the database the parent names. */
async function childNode(spec, concurrency, index) {
  const repository = await openRepository(spec);
  const node = makeNode(repository, concurrency, `bench-node-${index}-${process.pid}`);
  let cpu0;
  process.on('message', async (message) => {
    if (message.type === 'go') {
      cpu0 = process.cpuUsage();
      await node.start();
      process.send({ type: 'started' });
    } else if (message.type === 'stop') {
      // CPU from 'go' until the parent saw every task Done (and told us): the drain, plus at most one poll's wait.
      const cpuUs = cpuSince(cpu0);
      await node.stop();
      await repository.close();
      process.send({ type: 'stopped', succeeded: node.succeeded, cpuUs }, () => process.exit(0));
    }
  });
  process.send({ type: 'ready' });
}

function nextMessage(child, type) {
  return new Promise((resolve, reject) => {
    const onExit = (code) => reject(new Error(`bench node exited with ${code} before "${type}"`));
    child.once('exit', onExit);
    const onMessage = (message) => {
      if (message.type !== type) return;
      child.off('message', onMessage);
      child.off('exit', onExit);
      resolve(message);
    };
    child.on('message', onMessage);
  });
}

/**
 * Three nodes drain the N due tasks of `repository`: separate processes for sqlite/postgres, peers of one
 * MemoryRepository in this process for memory. `cpuUs`: the three processes' CPU time summed (memory: this
 * process's), from the moment they are told to start until every task is Done.
 */
export async function drainThreeNodes(spec, repository, n, concurrency) {
  if (spec.adapter === 'memory') {
    const nodes = [0, 1, 2].map((i) => makeNode(i === 0 ? repository : repository.openPeer(), concurrency, `bench-node-${i}`));
    const cpu0 = process.cpuUsage();
    const start = performance.now();
    await Promise.all(nodes.map((node) => node.start()));
    await waitAllDone(repository, n);
    const ms = performance.now() - start;
    const cpuUs = cpuSince(cpu0);
    await Promise.all(nodes.map((node) => node.stop()));
    return { ms, perNode: nodes.map((node) => node.succeeded), cpuUs };
  }
  const children = [0, 1, 2].map((i) =>
    fork(fileURLToPath(import.meta.url), ['--node', JSON.stringify(spec), String(concurrency), String(i)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }),
  );
  try {
    await Promise.all(children.map((child) => nextMessage(child, 'ready')));
    const start = performance.now();
    for (const child of children) child.send({ type: 'go' });
    await waitAllDone(repository, n);
    const ms = performance.now() - start;
    const stopped = children.map((child) => nextMessage(child, 'stopped'));
    for (const child of children) child.send({ type: 'stop' });
    const reports = await Promise.all(stopped);
    return { ms, perNode: reports.map((r) => r.succeeded), cpuUs: reports.reduce((sum, r) => sum + r.cpuUs, 0) };
  } finally {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

/** Polls the repository (every 20 ms: a small error on runs of a second or more) until every task is Done. */
async function waitAllDone(repository, n) {
  for (;;) {
    const counts = await repository.countByState();
    if (counts.Done >= n) return;
    await sleep(20);
  }
}

// ---- start latency --------------------------------------------------------------------------------

/**
 * Start latency (start − runAt, in the work) of LATENCY_TASKS tasks due 1-3 s ahead, on one node.
 *
 * `stored`: the tasks are written first (insertMany, a few statements) and the node restores them at start, so
 * the figure is the path a due task takes: the timer, the claim, the start. `scheduled`: the node schedules them
 * itself, in bursts of 100, each due 1-3 s after its own schedule() call, so the inserts compete with the runs.
 */
export async function startLatency(repository, concurrency, mode) {
  const late = [];
  let allStarted;
  const started = new Promise((resolve) => (allStarted = resolve));
  const node = makeNode(repository, concurrency, `bench-latency-${mode}`, (ctx) => {
    late.push(Date.now() - ctx.scheduledAt.getTime());
    if (late.length === LATENCY_TASKS) allStarted();
  });
  const t0 = Date.now();
  const due = () => new Date(Date.now() + 1000 + Math.floor(Math.random() * 2000));
  if (mode === 'stored') {
    const tasks = Array.from({ length: LATENCY_TASKS }, (_, j) => ({ workId: 'noop', param: { j }, scheduledAt: due() }));
    for (let i = 0; i < tasks.length; i += BATCH) await repository.insertMany(tasks.slice(i, i + BATCH));
    await node.start();
  } else {
    await node.start();
    for (let i = 0; i < LATENCY_TASKS; i += 100) {
      const calls = [];
      for (let j = i; j < Math.min(LATENCY_TASKS, i + 100); j++) calls.push(node.scheduler.schedule({ workId: 'noop', param: { j }, runAt: due() }));
      await Promise.all(calls);
    }
  }
  const readyWithinMs = Date.now() - t0;
  await started;
  await node.stop();
  late.sort((a, b) => a - b);
  return { p50: percentile(late, 50), p99: percentile(late, 99), max: late[late.length - 1], readyWithinMs };
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === '--node') {
  await childNode(JSON.parse(process.argv[3]), Number(process.argv[4]), Number(process.argv[5]));
}
