import { fork, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteRepository } from '@horae/repo-sqlite';
import { buildPackagesForChildren, builtPackageUrl } from '../../../test/support/built-packages.js';
import { tempDir, type TempDir } from './temp-database.js';
import { waitUntil } from '../../../test/support/wait-until.js';

// The crash test of issue 3: a real process runs durable tasks on a SQLite file and is killed with SIGKILL in
// the middle of a run; a new process starts on the same file and every task ends Done exactly once, the killed
// run being retried and counted as an attempt.

const dist = builtPackageUrl;

/**
 * The child: a plain .mjs written to the test's temp directory, importing the built packages by URL. In `seed`
 * mode it schedules the tasks and runs them until it is killed; in `resume` mode it restores what is pending
 * and reports once every task ended. Each run appends `start|end <taskId> <attempt> <n>` to a log file, so the
 * parent sees exactly which runs started and finished, in which process.
 */
const CHILD_SOURCE = `// A child process of crash-recovery.test.ts: runs durable tasks on a SQLite file with the built packages.
import { appendFileSync } from 'node:fs';

const [mode, dbPath, logPath, coreUrl, storageUrl, sqliteUrl] = process.argv.slice(2);
const { Scheduler } = await import(coreUrl);
const { WorkRegistry, singleNodeStorage } = await import(storageUrl);
const { SqliteRepository } = await import(sqliteUrl);

const repository = new SqliteRepository({ database: dbPath });
const registry = new WorkRegistry().register(
  'job',
  async (ctx) => {
    appendFileSync(logPath, \`start \${ctx.taskId} \${ctx.attempt} \${ctx.param.n}\\n\`);
    // The victim's first run never ends by itself: the process is killed during it.
    const ms = ctx.param.victim && ctx.attempt === 1 ? 600_000 : 20;
    await new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, ms);
      ctx.signal.addEventListener('abort', () => {
        clearTimeout(timer);
        reject(ctx.signal.reason);
      });
    });
    appendFileSync(logPath, \`end \${ctx.taskId} \${ctx.attempt} \${ctx.param.n}\\n\`);
    return ctx.param.n;
  },
  { maxAttempts: 3 },
);
const storage = singleNodeStorage(repository, registry, { leaseMs: 1000, syncIntervalMs: 100 });
const scheduler = new Scheduler({ concurrency: 4 }).use(storage.middleware);
await storage.start(scheduler);
scheduler.start();

if (mode === 'seed') {
  for (let n = 0; n < 20; n++) await scheduler.schedule({ workId: 'job', param: { n } });
  await scheduler.schedule({ workId: 'job', param: { n: 20, victim: true }, delayMs: 200 });
  for (let n = 21; n < 26; n++) await scheduler.schedule({ workId: 'job', param: { n }, delayMs: 6000 });
  process.send({ type: 'seeded' });
} else {
  const poll = setInterval(() => {
    repository.countByState().then(async (counts) => {
      if (counts.Initialized + counts.Working > 0) return;
      clearInterval(poll);
      await scheduler.stop({ timeoutMs: 1000 });
      await storage.stop();
      await repository.close();
      process.send({ type: 'finished', counts }, () => process.exit(0));
    }, (error) => process.send({ type: 'error', message: String(error?.stack ?? error) }, () => process.exit(1)));
  }, 50);
}
`;

type ChildMessage = { type: 'seeded' } | { type: 'finished'; counts: Record<string, number> } | { type: 'error'; message: string };

function nextMessage(child: ChildProcess, timeoutMs: number): Promise<ChildMessage> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no message from the child within ${timeoutMs} ms`)), timeoutMs);
    const onExit = (code: number | null): void => {
      clearTimeout(timer);
      reject(new Error(`child exited with ${String(code)} before answering`));
    };
    child.once('exit', onExit);
    child.once('message', (message) => {
      clearTimeout(timer);
      child.off('exit', onExit);
      resolve(message as ChildMessage);
    });
  });
}

interface LogLine {
  kind: 'start' | 'end';
  taskId: string;
  attempt: number;
  n: number;
}

function readLog(path: string): LogLine[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      const [kind, taskId, attempt, n] = line.split(' ');
      return { kind: kind as 'start' | 'end', taskId: taskId!, attempt: Number(attempt), n: Number(n) };
    });
}

function spawnChild(script: string, mode: 'seed' | 'resume', dbPath: string, logPath: string): ChildProcess {
  return fork(script, [mode, dbPath, logPath, dist('core'), dist('storage'), dist('repo-sqlite')], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    // A plain Node: not vitest's flags, whose "source" condition would resolve packages to TypeScript.
    execArgv: [],
    env: { ...process.env, NODE_OPTIONS: '' },
  });
}

let dir: TempDir;
beforeAll(() => {
  buildPackagesForChildren(['repo-sqlite']);
  dir = tempDir();
}, 120_000);
afterAll(() => dir?.remove());

describe('crash recovery with real processes', () => {
  it('a process killed with SIGKILL mid-run: a new process finishes every task, each Done exactly once', async () => {
    const dbPath = dir.file();
    const logPath = join(dir.path, 'runs.log');
    const script = join(dir.path, 'crash-child.mjs');
    writeFileSync(script, CHILD_SOURCE);
    const observer = new SqliteRepository({ database: dbPath });
    const children: ChildProcess[] = [];
    try {
      // 1. The first process schedules 26 tasks and runs the 20 due at once, then starts the victim.
      const first = spawnChild(script, 'seed', dbPath, logPath);
      children.push(first);
      expect(await nextMessage(first, 30_000)).toEqual({ type: 'seeded' });
      await waitUntil(async () => {
        const log = readLog(logPath);
        const done = (await observer.countByState()).Done;
        return log.some((l) => l.kind === 'start' && l.n === 20) && done === 20;
      }, 'the 20 quick tasks to be Done and the victim to start', { timeoutMs: 20_000, everyMs: 25 });

      // 2. SIGKILL in the middle of the victim's run.
      const exited = new Promise<NodeJS.Signals | null>((resolve) => first.once('exit', (_, signal) => resolve(signal)));
      first.kill('SIGKILL');
      expect(await exited).toBe('SIGKILL');
      const counts = await observer.countByState();
      expect(counts).toMatchObject({ Done: 20, Working: 1, Initialized: 5 });
      const victim = readLog(logPath).find((l) => l.n === 20)!;
      expect(await observer.getById(victim.taskId)).toMatchObject({ state: 'Working', attempt: 1 });

      // 3. A new process on the same file restores the pending tasks and reclaims the victim once its lease expires.
      const second = spawnChild(script, 'resume', dbPath, logPath);
      children.push(second);
      const finished = await nextMessage(second, 30_000);
      if (finished.type === 'error') throw new Error(finished.message);
      expect(finished).toMatchObject({ type: 'finished', counts: { Done: 26, Initialized: 0, Working: 0, Failed: 0, Cancelled: 0 } });

      // 4. Every task ended exactly once; every run that started is counted as an attempt.
      const log = readLog(logPath);
      const all = (await observer.list({ limit: 100 })).tasks;
      expect(all).toHaveLength(26);
      for (const task of all) {
        const starts = log.filter((l) => l.kind === 'start' && l.taskId === task.id);
        const ends = log.filter((l) => l.kind === 'end' && l.taskId === task.id);
        expect(task.state).toBe('Done');
        expect(ends).toHaveLength(1);
        expect(task.attempt).toBe(starts.length);
      }
      const victimTask = all.find((t) => t.id === victim.taskId)!;
      expect(victimTask.attempt).toBe(2);
      expect(log.filter((l) => l.taskId === victim.taskId).map((l) => `${l.kind} ${l.attempt}`)).toEqual(['start 1', 'start 2', 'end 2']);
    } finally {
      for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await observer.close();
    }
  }, 90_000);
});
