// The main job (`npm start`): a Horae worker on the embedded SQLite default.
//
// Worker A (a child process) schedules tasks on .horae/main-job.db and runs them: emails go out, a flaky card
// charge fails twice and is retried with backoff, an email is cancelled before it runs, and a long report
// starts. While the report is half done, worker A is killed with SIGKILL, as a crash would. Worker B (this
// process) then opens the same file: sync restores the tasks A had not run, reclaims the report once A's
// lease expires, and runs everything to the end. Last, the table of what the file holds.
import { fork } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
// `horae` is the one package an application installs; it re-exports the core Scheduler and the storage pieces this
// example wires by hand, to show each event of a task's life.
import { Scheduler, SqliteRepository, WorkRegistry, singleNodeStorage } from 'horae';

const DATABASE = '.horae/main-job.db';
const LEASE_MS = 1500;

const sleep = (ms, signal) =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(signal.reason);
    });
  });

const short = (id) => id.slice(0, 8);
const started = Date.now();
const log = (worker, text) => console.log(`${String(Date.now() - started).padStart(5)} ms  worker ${worker}  ${text}`);

/** The works both workers know: a durable task names its work by id, so any worker can run it after a restart. */
function createRegistry() {
  return new WorkRegistry()
    .register('send-email', async (ctx) => {
      await sleep(100, ctx.signal);
      return `sent to ${ctx.param.to}`;
    })
    .register(
      'charge-card',
      async (ctx) => {
        await sleep(50, ctx.signal);
        if (ctx.attempt < 3) throw new Error(`card gateway timed out (attempt ${ctx.attempt})`);
        return `charged ${ctx.param.amount} EUR`;
      },
      { maxAttempts: 5, retry: (attempt) => 200 * attempt },
    )
    .register(
      'build-report',
      async (ctx) => {
        for (let step = 1; step <= 8; step++) {
          await sleep(150, ctx.signal);
          ctx.progress({ completed: step, total: 8 });
          if (process.send && step === 4) process.send('report-half-done');
        }
        return 'report ready';
      },
      { maxAttempts: 3 },
    );
}

/** Opens the file, wires a scheduler with single-node storage, and prints what happens. */
async function openWorker(name) {
  const repository = new SqliteRepository({ database: DATABASE });
  const storage = singleNodeStorage(repository, createRegistry(), { leaseMs: LEASE_MS, syncIntervalMs: 250 });
  const scheduler = new Scheduler({ concurrency: 4 }).use(storage.middleware);
  const on = storage.events.on.bind(storage.events);
  on('task:scheduled', ({ task, source }) => log(name, `${source.padEnd(8)} ${short(task.id)} ${task.workId} due in ${Math.max(0, task.scheduledAt.getTime() - Date.now())} ms`));
  on('task:started', ({ task }) => log(name, `started  ${short(task.id)} ${task.workId} (attempt ${task.attempt}/${task.maxAttempts})`));
  on('task:succeeded', ({ task, result }) => log(name, `done     ${short(task.id)} ${task.workId}: ${String(result)}`));
  on('task:retried', ({ task, error, runAt }) => log(name, `retry    ${short(task.id)} ${task.workId} in ${runAt.getTime() - Date.now()} ms after: ${error.message}`));
  on('task:failed', ({ task, error }) => log(name, `failed   ${short(task.id)} ${task.workId}: ${error.message}`));
  on('task:cancelled', ({ taskId }) => log(name, `cancel   ${short(taskId)}`));
  on('repository:error', ({ operation, error }) => log(name, `repository error in ${operation}: ${error.message} (retrying)`));
  const report = await storage.start(scheduler);
  scheduler.start();
  return { repository, storage, scheduler, report };
}

/** Worker A: schedules the work, runs it, and is killed by its parent in the middle of the report. */
async function workerA() {
  const { scheduler } = await openWorker('A');
  await scheduler.schedule({ workId: 'send-email', param: { to: 'ada@example.com' } });
  await scheduler.schedule({ workId: 'send-email', param: { to: 'grace@example.com' }, delayMs: 300 });
  await scheduler.schedule({ workId: 'charge-card', param: { amount: 42 } });
  await scheduler.schedule({ workId: 'build-report', param: { month: '2026-11' }, delayMs: 100 });
  const reminder = await scheduler.schedule({ workId: 'send-email', param: { to: 'linus@example.com' }, delayMs: 60_000 });
  // Due after the crash: worker B restores it from the file and sends it.
  await scheduler.schedule({ workId: 'send-email', param: { to: 'barbara@example.com' }, delayMs: 2_500 });
  await reminder.cancel('the customer unsubscribed');
}

/** Worker B: recovers from the file what worker A left, and runs it to the end. */
async function workerB() {
  const { repository, storage, scheduler, report } = await openWorker('B');
  log('B', `restored ${report.scheduled} task(s) from ${DATABASE}; the report is reclaimed once A's lease (${LEASE_MS} ms) expires`);
  for (;;) {
    const counts = await repository.countByState();
    if (counts.Initialized === 0 && counts.Working === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await scheduler.stop({ timeoutMs: 1000 });
  await storage.stop();
  const { tasks } = await repository.list({ limit: 100 });
  console.log('\nWhat the file holds now:');
  console.table(
    tasks.map((task) => ({
      id: short(task.id),
      work: task.workId,
      state: task.state,
      attempts: `${task.attempt}/${task.maxAttempts}`,
      progress: task.progress ? `${task.progress.completed}/${task.progress.total}` : '',
      lastError: task.lastError?.message ?? '',
    })),
  );
  await repository.close();
}

if (process.argv[2] === '--worker-a') {
  await workerA();
} else {
  mkdirSync('.horae', { recursive: true });
  rmSync(DATABASE, { force: true });
  rmSync(`${DATABASE}-wal`, { force: true });
  rmSync(`${DATABASE}-shm`, { force: true });
  console.log(`Horae main job: two workers, one SQLite file (${DATABASE})\n`);
  const child = fork(fileURLToPath(import.meta.url), ['--worker-a']);
  await new Promise((resolve, reject) => {
    child.on('message', (message) => {
      if (message !== 'report-half-done') return;
      log('A', 'is killed with SIGKILL in the middle of the report');
      child.kill('SIGKILL');
    });
    child.on('exit', resolve);
    child.on('error', reject);
  });
  console.log('');
  await workerB();
}
