// A/B of SQLite on the event loop (A: SqliteRepository in-thread) against SQLite on a worker thread (B: the proxy
// of ./sqlite-worker-repository.mjs), through createHorae, interleaved in one run. See bench/README.md, "SQLite on a
// worker thread".
//
// Usage: npx tsc -b packages/repo-sqlite && node bench/experiments/sqlite-worker/run.mjs [ROUNDS=3] [N=20000] [C=16]
//
// Every measurement runs in a fresh child process on a fresh database file (so neither mode inherits the other's
// JIT state, heap or WAL). A round is: drain A, drain B, latency A, latency B (the order of A and B flips every
// round, so that a drift of the machine's load does not favour one mode). Prints one JSON line per measurement,
// then a summary line.
//
//   drain    N no-op tasks due now (inserted first, outside the timing), drained by
//            createHorae({ repository, registry, concurrency: C, nodeId: 'n1', syncIntervalMs: 60000 })
//            from start() until N task:succeeded                → drain_per_s, cpu_us_per_run (process, all threads),
//                                                                 main_elu (main thread's event-loop utilization)
//   latency  2,000 tasks due 1-3 s ahead: `stored` inserted first then restored at start; `scheduled` scheduled
//            through horae.schedule() in bursts of 100 after start   → p50/p99/max of start − runAt, in the work
import { fork } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = (name) => new URL(`../../../packages/${name}/dist/index.js`, import.meta.url).href;
const LATENCY_TASKS = 2_000;
// Diagnostic, off by default: HORAE_SW_CLAIM_AHEAD=n passes claimAhead: n to createHorae (the default claims as many as
// the free slots), to see whether a deeper pipeline (more claims in flight across the thread boundary) changes the A/B.
const EXTRA = process.env.HORAE_SW_CLAIM_AHEAD === undefined ? {} : { claimAhead: Number(process.env.HORAE_SW_CLAIM_AHEAD) };

async function openRepository(mode, database) {
  if (mode === 'inthread') {
    const { SqliteRepository } = await import(pkg('repo-sqlite'));
    return new SqliteRepository({ database });
  }
  const { openSqliteWorkerRepository } = await import('./sqlite-worker-repository.mjs');
  return openSqliteWorkerRepository({ database });
}

/** CPU time (user + system) of one thread of this process, in µs, from /proc (10 ms resolution); `sys` alone. */
function threadCpu(tid) {
  const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { all: (Number(fields[11]) + Number(fields[12])) * 10_000, sys: Number(fields[12]) * 10_000 };
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

async function drain(mode, n, concurrency, database) {
  const { WorkRegistry, createHorae } = await import(pkg('storage'));
  const { countGroupCommits } = await import('./sqlite-worker-repository.mjs');
  const commits = mode === 'inthread' ? await countGroupCommits() : undefined;
  const repository = await openRepository(mode, database);
  const now = Date.now();
  const t0 = performance.now();
  for (let i = 0; i < n; i += 1000) {
    await repository.insertMany(Array.from({ length: Math.min(1000, n - i) }, (_, j) => ({ workId: 'noop', param: { j: i + j }, scheduledAt: new Date(now - 1000) })));
  }
  const insertMs = performance.now() - t0;
  const registry = new WorkRegistry().register('noop', () => undefined);
  let done = 0;
  let allDone;
  const all = new Promise((resolve) => (allDone = resolve));
  const horae = createHorae({ repository, registry, concurrency, nodeId: 'n1', syncIntervalMs: 60_000, ...EXTRA });
  horae.events.on('task:succeeded', () => {
    if (++done === n) allDone();
  });
  const stats0 = repository.workerStats?.();
  const counters0 = (await repository.workerCounters?.()) ?? { ...commits };
  const elu0 = performance.eventLoopUtilization();
  const main0 = threadCpu(process.pid);
  const worker0 = stats0 === undefined ? { all: 0, sys: 0 } : threadCpu(stats0.tid);
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  await horae.start();
  await all;
  const ms = performance.now() - start;
  const cpu = process.cpuUsage(cpu0);
  const main1 = threadCpu(process.pid);
  const mainUs = main1.all - main0.all;
  const elu = performance.eventLoopUtilization(elu0);
  const stats1 = repository.workerStats?.();
  const worker1 = stats1 === undefined ? { all: 0, sys: 0 } : threadCpu(stats1.tid);
  const workerUs = worker1.all - worker0.all;
  const counters1 = (await repository.workerCounters?.()) ?? { ...commits };
  await horae.stop();
  const counts = await repository.countByState();
  await repository.close();
  if (counts.Done !== n) throw new Error(`expected ${n} Done, found ${JSON.stringify(counts)}`);
  return {
    insert_per_s: Math.round(n / (insertMs / 1000)),
    drain_per_s: Math.round(n / (ms / 1000)),
    cpu_us_per_run: Math.round(((cpu.user + cpu.system) / n) * 10) / 10,
    // Per thread, µs a run: the main thread, the SQLite worker (B only), and the rest (the background checkpointer's
    // thread, V8's GC helpers, libuv).
    main_thread_us_per_run: Math.round((mainUs / n) * 10) / 10,
    main_thread_sys_us_per_run: Math.round(((main1.sys - main0.sys) / n) * 10) / 10,
    sqlite_thread_us_per_run: Math.round((workerUs / n) * 10) / 10,
    sqlite_thread_sys_us_per_run: Math.round(((worker1.sys - worker0.sys) / n) * 10) / 10,
    other_threads_us_per_run: Math.round(((cpu.user + cpu.system - mainUs - workerUs) / n) * 10) / 10,
    main_elu: Math.round(elu.utilization * 100) / 100,
    // Group commit: writes a run, and writes a transaction (a flush of the write queue).
    writes_per_run: Math.round(((counters1.writes - counters0.writes) / n) * 100) / 100,
    writes_per_tx: Math.round(((counters1.writes - counters0.writes) / (counters1.flushes - counters0.flushes)) * 10) / 10,
    ...(stats1 === undefined ? {} : workerFigures(stats0, stats1, counters0, counters1, n)),
  };
}

/** What crossed to the worker over the drain, and how busy its event loop was. */
function workerFigures(before, after, counters0, counters1, n) {
  const calls = after.calls - before.calls;
  const posts = after.posts - before.posts;
  const replyPosts = after.replyPosts - before.replyPosts;
  const elu = performance.eventLoopUtilization(after.elu, before.elu);
  const byMethod = {};
  for (const [method, count] of Object.entries(after.byMethod)) {
    const delta = count - (before.byMethod[method] ?? 0);
    if (delta > 0) byMethod[method] = delta;
  }
  return {
    worker_elu: Math.round(elu.utilization * 100) / 100,
    calls_per_run: Math.round((calls / n) * 100) / 100,
    calls_per_post: Math.round((calls / posts) * 10) / 10,
    replies_per_post: Math.round(((after.replies - before.replies) / replyPosts) * 10) / 10,
    // Time in postMessage (the structured clone of what is sent) on each side, and the worker's replay of the calls.
    main_post_us_per_run: Math.round(((after.postMs - before.postMs) * 1000 / n) * 10) / 10,
    worker_post_us_per_run: Math.round(((counters1.postMs - counters0.postMs) * 1000 / n) * 10) / 10,
    worker_replay_us_per_run: Math.round(((counters1.replayMs - counters0.replayMs) * 1000 / n) * 10) / 10,
    calls_by_method: byMethod,
  };
}

async function latency(mode, concurrency, database, how) {
  const { WorkRegistry, createHorae } = await import(pkg('storage'));
  const repository = await openRepository(mode, database);
  const late = [];
  let allStarted;
  const started = new Promise((resolve) => (allStarted = resolve));
  const registry = new WorkRegistry().register('noop', (ctx) => {
    late.push(Date.now() - ctx.scheduledAt.getTime());
    if (late.length === LATENCY_TASKS) allStarted();
  });
  const horae = createHorae({ repository, registry, concurrency, nodeId: 'n1', syncIntervalMs: 60_000, ...EXTRA });
  const due = () => new Date(Date.now() + 1000 + Math.floor(Math.random() * 2000));
  if (how === 'stored') {
    const tasks = Array.from({ length: LATENCY_TASKS }, (_, j) => ({ workId: 'noop', param: { j }, scheduledAt: due() }));
    for (let i = 0; i < tasks.length; i += 1000) await repository.insertMany(tasks.slice(i, i + 1000));
    await horae.start();
  } else {
    await horae.start();
    for (let i = 0; i < LATENCY_TASKS; i += 100) {
      const calls = [];
      for (let j = i; j < Math.min(LATENCY_TASKS, i + 100); j++) calls.push(horae.schedule({ workId: 'noop', param: { j }, runAt: due() }));
      await Promise.all(calls);
    }
  }
  await started;
  await horae.stop();
  await repository.close();
  late.sort((a, b) => a - b);
  return { [`p50_${how}_ms`]: percentile(late, 50), [`p99_${how}_ms`]: percentile(late, 99), [`max_${how}_ms`]: late[late.length - 1] };
}

async function child(phase, mode, n, concurrency) {
  const dir = mkdtempSync(join(tmpdir(), 'horae-sqlite-worker-'));
  try {
    const database = join(dir, 'bench.db');
    let out;
    if (phase === 'drain') out = await drain(mode, n, concurrency, database);
    else out = { ...(await latency(mode, concurrency, database, 'stored')), ...(await latency(mode, concurrency, join(dir, 'scheduled.db'), 'scheduled')) };
    process.send({ phase, mode, ...out }, () => process.exit(0));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function measure(phase, mode, n, concurrency) {
  return new Promise((resolve, reject) => {
    const proc = fork(fileURLToPath(import.meta.url), ['--child', phase, mode, String(n), String(concurrency)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let result;
    proc.on('message', (message) => (result = message));
    proc.on('exit', (code) => (result === undefined ? reject(new Error(`${phase} ${mode} exited with ${code}`)) : resolve(result)));
  });
}

async function main() {
  const rounds = Number(process.argv[2] ?? 3);
  const n = Number(process.argv[3] ?? 20_000);
  const concurrency = Number(process.argv[4] ?? 16);
  const results = [];
  for (let round = 1; round <= rounds; round++) {
    const order = round % 2 === 1 ? ['inthread', 'worker'] : ['worker', 'inthread'];
    for (const phase of ['drain', 'latency']) {
      for (const mode of order) {
        const result = { round, at: new Date().toISOString().slice(11, 19), ...(await measure(phase, mode, n, concurrency)) };
        results.push(result);
        console.log(JSON.stringify(result));
      }
    }
  }
  const pick = (phase, mode, key) => results.filter((r) => r.phase === phase && r.mode === mode).map((r) => r[key]);
  const summary = { n, concurrency, rounds, ...EXTRA };
  for (const mode of ['inthread', 'worker']) {
    summary[mode] = {
      drain_per_s: pick('drain', mode, 'drain_per_s'),
      cpu_us_per_run: pick('drain', mode, 'cpu_us_per_run'),
      main_elu: pick('drain', mode, 'main_elu'),
      p99_stored_ms: pick('latency', mode, 'p99_stored_ms'),
      p99_scheduled_ms: pick('latency', mode, 'p99_scheduled_ms'),
    };
  }
  summary.drain_ratio_per_round = summary.worker.drain_per_s.map((b, i) => Math.round((b / summary.inthread.drain_per_s[i]) * 100) / 100);
  console.log(JSON.stringify(summary));
}

if (process.argv[2] === '--child') await child(process.argv[3], process.argv[4], Number(process.argv[5]), Number(process.argv[6]));
else await main();
