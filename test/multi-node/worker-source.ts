/**
 * The source of one worker process of the multi-node proof: a plain .mjs that the test writes to its temp
 * directory (so that no untyped file sits in the linted tree) and forks three times. It imports the built
 * packages (dist) by URL, so it runs on plain Node, not under vitest's "source" condition.
 *
 * The worker opens the shared repository, runs a Scheduler behind `multiNodeStorage`, schedules its share of
 * the tasks when the parent says `go`, and appends one line per run start and per run end to its own log file
 * (one file per process: appends from different processes never interleave):
 *
 * ```
 * start <taskId> <attempt> <pid> <at> [<leaseUntil>]
 * end <taskId> <attempt> <pid> ok|fail [<at>]
 * end <taskId> <attempt> <pid> abort <at>        (with logLease: the run's signal aborted it)
 * ```
 *
 * `at` is the real time of the start, in ms: the system clock (the one the database server reads), through the
 * `Date.now` that a test's skewing preload (clock-skew.test.ts) keeps for it under
 * `Symbol.for('horae.test.realDateNow')`, so the logs hold true times on the database's clock.
 * (`performance.timeOrigin + performance.now()` counts on the monotonic clock from the process start, and does not
 * follow a correction of the system clock during a run.)
 *
 * Whether a run fails is a pure function of (taskId, attempt) — the same hash as `runFails` in
 * run-log.ts — so the parent can recompute every outcome from the log.
 *
 * Optional config beyond the proof's: `runMs` (every run takes that long, instead of the hashed
 * minRunMs..maxRunMs), `claimAhead` (the storage option), `share` empty (the parent inserts the tasks itself),
 * `busyTimeoutMs` (SQLite's option), `logLease` (each start line ends with ` <leaseUntil>`: the expiry, in ms on the
 * database's clock, of the lease the run started under, as the claim or start returned it; renewals only push it
 * later, so it is a lower bound of when another node may take the task over — test/chaos checks it; and each end line
 * ends with the real time of the end).
 * `ready` carries `skewMs`: how far this process's `Date.now()` is from the real time.
 *
 * Messages: worker → parent `ready`, `scheduled`, `stopped`, `error`; parent → worker `go`, `stop`.
 */
export const WORKER_SOURCE = String.raw`// A worker process of test/multi-node: one Horae node on a shared repository (see worker-source.ts).
import { appendFileSync } from 'node:fs';

const config = JSON.parse(process.argv[2]);
const { Scheduler } = await import(config.urls.core);
const { WorkRegistry, multiNodeStorage } = await import(config.urls.storage);

function fail(error) {
  const message = String(error?.stack ?? error);
  if (process.connected) process.send({ type: 'error', message }, () => process.exit(1));
  else process.exit(1);
}
process.on('unhandledRejection', fail);
process.on('uncaughtException', fail);

async function openRepository() {
  if (config.adapter === 'sqlite') {
    const { SqliteRepository } = await import(config.urls.sqlite);
    return new SqliteRepository({ database: config.dbPath, ...(config.busyTimeoutMs === undefined ? {} : { busyTimeoutMs: config.busyTimeoutMs }) });
  }
  const { PostgresRepository } = await import(config.urls.postgres);
  const repository = new PostgresRepository({ connectionString: config.pgUrl, schema: config.schema, poolSize: 4 });
  await repository.init();
  return repository;
}

// FNV-1a, 32 bits, with murmur3's final mix: the same function as fnv1a in run-log.ts.
function fnv(text) {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  hash ^= hash >>> 16;
  hash = Math.imul(hash, 0x85ebca6b) >>> 0;
  hash ^= hash >>> 13;
  hash = Math.imul(hash, 0xc2b2ae35) >>> 0;
  return (hash ^ (hash >>> 16)) >>> 0;
}
const runFails = (taskId, attempt, alwaysFail) => alwaysFail || fnv(taskId + '#' + attempt) % 100 < config.failPercent;

const pid = process.pid;
const log = (line) => appendFileSync(config.logPath, line + '\n');
// The real time, whatever a preload did to Date (see worker-source.ts).
const realNow = globalThis[Symbol.for('horae.test.realDateNow')] ?? (() => Date.now());

let holding = false;
// With logLease: the lease expiry of each run about to start, keyed by task and attempt (set on task:started,
// which the storage emits before it calls the work).
const leaseUntil = new Map();
const repository = await openRepository();
const registry = new WorkRegistry().register(
  'job',
  async (ctx) => {
    const { taskId, attempt } = ctx;
    const until = leaseUntil.get(taskId + '#' + attempt);
    leaseUntil.delete(taskId + '#' + attempt);
    log('start ' + taskId + ' ' + attempt + ' ' + pid + ' ' + realNow() + (config.logLease ? ' ' + (until ?? -1) : ''));
    // A few milliseconds of "work", so that a node holds several running tasks at any moment.
    const ms = config.runMs ?? config.minRunMs + (fnv(taskId + '@' + attempt) % (config.maxRunMs - config.minRunMs + 1));
    await new Promise((resolve, reject) => {
      // Once told to hold (the worker is about to be killed), a run never ends on its own: the kill must cut it.
      const timer = holding ? undefined : setTimeout(resolve, ms);
      ctx.signal.addEventListener('abort', () => {
        clearTimeout(timer);
        // With logLease, a run aborted (its lease lost, the node stopping) logs when it stopped: 'abort' and the time.
        if (config.logLease) log('end ' + taskId + ' ' + attempt + ' ' + pid + ' abort ' + realNow());
        reject(ctx.signal.reason);
      }, { once: true });
    });
    const fails = runFails(taskId, attempt, ctx.param.alwaysFail === true);
    log('end ' + taskId + ' ' + attempt + ' ' + pid + ' ' + (fails ? 'fail' : 'ok') + (config.logLease ? ' ' + realNow() : ''));
    if (fails) throw new Error('planned failure of ' + taskId + ' at attempt ' + attempt);
    return ctx.param.n;
  },
  { maxAttempts: config.maxAttempts, retry: () => config.retryDelayMs },
);
const storage = multiNodeStorage(repository, registry, {
  nodeId: 'node-' + config.index + '-' + pid,
  leaseMs: config.leaseMs,
  syncIntervalMs: config.syncIntervalMs,
  ...(config.claimAhead === undefined ? {} : { claimAhead: config.claimAhead }),
});
const stats = { leaseLost: 0, repositoryErrors: 0, syncErrors: 0, started: 0, succeeded: 0, failed: 0, retried: 0 };
storage.events.on('task:lease-lost', () => stats.leaseLost++);
storage.events.on('repository:error', () => stats.repositoryErrors++);
storage.events.on('sync:error', () => stats.syncErrors++);
storage.events.on('task:started', (event) => {
  stats.started++;
  if (config.logLease) leaseUntil.set(event.task.id + '#' + event.task.attempt, event.task.lease?.until?.getTime());
});
storage.events.on('task:succeeded', () => stats.succeeded++);
storage.events.on('task:failed', () => stats.failed++);
storage.events.on('task:retried', () => stats.retried++);

const scheduler = new Scheduler({ concurrency: config.concurrency });
// A claim refused because the task is not due yet by the database's clock: the run is deferred, the timer re-armed.
stats.notDue = 0;
scheduler.events.on('task:deferred', (event) => {
  if (/not due/.test(String(event.reason?.message))) stats.notDue++;
});
scheduler.use(storage.middleware);
await storage.start(scheduler);
scheduler.start();

async function scheduleShare() {
  const t0 = Date.now();
  const specs = [];
  for (const n of config.share) {
    const taskId = 't' + n;
    // Some due now, the others spread over the next seconds (a deterministic spread).
    const dueNow = n % 5 < 2;
    const runAt = dueNow ? t0 : t0 + (fnv('due' + n) % config.spreadMs);
    specs.push({ workId: 'job', taskId, runAt, param: { n, alwaysFail: n % 100 === 42 } });
  }
  // In bursts, so that the inserts of one burst share a transaction (group commit).
  for (let i = 0; i < specs.length; i += config.scheduleBurst) {
    await Promise.all(specs.slice(i, i + config.scheduleBurst).map((spec) => scheduler.schedule(spec)));
  }
}

process.on('message', (message) => {
  if (message.type === 'go') {
    scheduleShare().then(() => process.send({ type: 'scheduled' }), fail);
  } else if (message.type === 'hold') {
    holding = true;
  } else if (message.type === 'stop') {
    (async () => {
      await scheduler.stop({ timeoutMs: 2000 });
      await storage.stop();
      await repository.close();
      process.send({ type: 'stopped', stats }, () => process.exit(0));
    })().catch(fail);
  }
});
process.send({ type: 'ready', pid, skewMs: Date.now() - realNow() });
`;
