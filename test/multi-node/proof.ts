/**
 * The multi-node proof (issue 4): three real worker processes share one repository, schedule their shares of
 * the tasks, run them with random retried failures, one of them is killed with SIGKILL while it runs tasks, and
 * the parent then checks every row against the workers' run logs (see run-log.ts for the rules).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Repository, TaskAttempt, TaskInfo, TaskState } from '@horae/storage';
import { checkRuns, parseRunLog, type RunCheck, type RunLine } from './run-log.js';
import { buildPackagesForChildren, builtPackageUrl } from '../support/built-packages.js';
import { WORKER_SOURCE } from './worker-source.js';

const dist = builtPackageUrl;

/**
 * Builds the packages the workers import (dist): they run on plain Node, not on vitest's sources. `tsc -b` is
 * incremental, so this takes seconds when little changed.
 *
 * @throws Error when a package's dist is missing after the build
 */
export function buildPackages(): void {
  buildPackagesForChildren(['repo-sqlite', 'repo-postgres']);
}

/** What the parent reads of the shared database: the slice of a Repository the proof uses. */
export type ProofObserver = Pick<Repository, 'countByState' | 'list' | 'listAttempts'>;

/** Where the workers' repository is. */
export type ProofDatabase = { adapter: 'sqlite'; dbPath: string } | { adapter: 'postgres'; pgUrl: string; schema: string };

/** The knobs of one proof run. */
export interface ProofOptions {
  /** The shared repository. */
  database: ProofDatabase;
  /** A repository on the same database, for the parent's reads (the workers never see it). */
  observer: ProofObserver;
  /** A directory for the worker script and the logs. */
  dir: string;
  /** Tasks in all, split between the workers. @defaultValue 5000 */
  tasks?: number;
  /** Worker processes. @defaultValue 3 */
  workers?: number;
}

/** What a proof run produced, for the test to assert on. */
export interface ProofResult {
  /** Every row, read after the surviving workers stopped. */
  tasks: TaskInfo[];
  /** Counts by state when the survivors reported idle. */
  counts: Record<TaskState, number>;
  /** The log check (the repository's execution history included). */
  check: RunCheck;
  /** Records of the execution history read, all tasks together. */
  historyRecords: number;
  /** The killed worker's pid, and the runs it had started without ending when it died. */
  killed: { pid: number; openRuns: number; doneBeforeKill: number };
  /** Errors the workers reported (none expected). */
  workerErrors: string[];
  /** What each survivor's storage events counted. */
  survivorStats: Record<string, number>[];
  /** Wall time of the phases, in ms. */
  timings: { schedule: number; drain: number; total: number };
  /** The concurrency of each worker: the most runs the kill can cut. */
  concurrency: number;
}

/** The fixed parameters of the workers; the test reads some to check the log. */
export const WORK = {
  maxAttempts: 3,
  failPercent: 10,
  retryDelayMs: 50,
  minRunMs: 2,
  maxRunMs: 20,
  leaseMs: 2000,
  syncIntervalMs: 100,
  concurrency: 8,
  spreadMs: 4000,
  scheduleBurst: 100,
} as const;

type WorkerMessage =
  | { type: 'ready'; pid: number; skewMs: number }
  | { type: 'scheduled' }
  | { type: 'stopped'; stats: Record<string, number> }
  | { type: 'error'; message: string };

/** How to fork a worker beyond its config: extra Node flags (e.g. `--import` of a preload) and environment. */
export interface WorkerFork {
  execArgv?: string[];
  env?: Record<string, string>;
}

/** A forked worker and its messages, buffered so that none is missed between two waits. */
export class Worker {
  readonly child: ChildProcess;
  readonly #inbox: WorkerMessage[] = [];
  #waiter: (() => void) | undefined;
  readonly errors: string[] = [];

  constructor(script: string, config: Record<string, unknown>, options: WorkerFork = {}) {
    this.child = fork(script, [JSON.stringify(config)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      // A plain Node: not vitest's flags, whose "source" condition would resolve packages to TypeScript.
      execArgv: options.execArgv ?? [],
      env: { ...process.env, NODE_OPTIONS: '', ...options.env },
    });
    this.child.on('message', (message: WorkerMessage) => {
      if (message.type === 'error') this.errors.push(message.message);
      this.#inbox.push(message);
      this.#waiter?.();
    });
    this.child.on('exit', () => this.#waiter?.());
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Waits for the next message of `type` (bounded); an error message or an exit rejects. */
  async next<T extends WorkerMessage['type']>(type: T, timeoutMs: number): Promise<Extract<WorkerMessage, { type: T }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = this.#inbox.findIndex((m) => m.type === type || m.type === 'error');
      if (index >= 0) {
        const [message] = this.#inbox.splice(index, 1);
        if (message?.type === 'error') throw new Error(`worker ${this.child.pid} failed: ${message.message}`);
        return message as Extract<WorkerMessage, { type: T }>;
      }
      if (!this.alive) throw new Error(`worker ${this.child.pid} exited (${this.child.exitCode ?? this.child.signalCode}) before "${type}"`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no "${type}" from worker ${this.child.pid} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#waiter = undefined;
    }
  }

  send(message: { type: 'go' | 'hold' | 'stop' }): void {
    this.child.send(message);
  }
}

/** Polls `probe` (real processes on a real database: polling is the honest way) until it returns a value. */
export async function poll<T>(probe: () => Promise<T | undefined> | T | undefined, what: string, timeoutMs: number, everyMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/**
 * Polls the repository until no task is Initialized or Working: every task ended Done, Failed or Cancelled.
 *
 * @returns the counts by state at that moment
 * @throws Error when some task is still live after `timeoutMs`
 */
export function allEnded(repository: Pick<Repository, 'countByState'>, timeoutMs: number, everyMs: number): Promise<Awaited<ReturnType<Repository['countByState']>>> {
  return poll(
    async () => {
      const c = await repository.countByState();
      return c.Initialized + c.Working === 0 ? c : undefined;
    },
    'every task to end',
    timeoutMs,
    everyMs,
  );
}

/**
 * Reads a worker's log. While the worker runs, its last line may be half-written: `live` drops an unfinished
 * last line; once the worker is gone the log is read strictly (a torn line is an error).
 */
export function readLog(path: string, live = false): RunLine[] {
  if (!existsSync(path)) return [];
  const text = readFileSync(path, 'utf8');
  return parseRunLog(live ? text.slice(0, text.lastIndexOf('\n') + 1) : text);
}

/** Runs started and not ended in one worker's log. */
function openRuns(lines: readonly RunLine[]): number {
  let open = 0;
  for (const line of lines) open += line.kind === 'start' ? 1 : -1;
  return open;
}

/** Every row (optionally of one state), in pages. */
export async function listAll(repository: Pick<Repository, 'list'>, state?: TaskState): Promise<TaskInfo[]> {
  const all: TaskInfo[] = [];
  let after: string | null = null;
  do {
    const page: Awaited<ReturnType<Repository['list']>> = await repository.list({ limit: 1000, after, ...(state === undefined ? {} : { state }) });
    all.push(...page.tasks);
    after = page.next;
  } while (after !== null);
  return all;
}

/** Each task's execution history (`listAttempts`), read 50 tasks at a time. */
export async function readHistory(repository: Pick<Repository, 'listAttempts'>, tasks: readonly TaskInfo[]): Promise<Map<string, TaskAttempt[]>> {
  const history = new Map<string, TaskAttempt[]>();
  for (let i = 0; i < tasks.length; i += 50) {
    const slice = tasks.slice(i, i + 50);
    const records = await Promise.all(slice.map((task) => repository.listAttempts(task.id)));
    slice.forEach((task, j) => history.set(task.id, records[j]!));
  }
  return history;
}

/** The part of a worker's config that says where it runs: the database, its index, its log, the built packages. */
export function workerBase(database: ProofDatabase, index: number, logPath: string): Record<string, unknown> {
  return {
    ...database,
    index,
    logPath,
    urls: { core: dist('core'), storage: dist('storage'), sqlite: dist('repo-sqlite'), postgres: dist('repo-postgres') },
  };
}

/** Writes the worker script into `dir`; returns its path. */
export function writeWorkerScript(dir: string): string {
  const script = join(dir, 'multi-node-worker.mjs');
  writeFileSync(script, WORKER_SOURCE);
  return script;
}

/**
 * Runs the proof: forks the workers, lets each schedule its share, kills one with SIGKILL while it holds
 * running tasks (once about a quarter of the tasks ended), waits for the repository to hold no Initialized nor
 * Working task, stops the survivors, and checks the rows against the logs.
 *
 * @param options - the database, an observer repository on it, a directory
 * @returns what the run produced; the caller asserts
 */
export async function runProof(options: ProofOptions): Promise<ProofResult> {
  const total = options.tasks ?? 5000;
  const workerCount = options.workers ?? 3;
  const script = writeWorkerScript(options.dir);
  const started = Date.now();
  const workers: Worker[] = [];
  const logPaths: string[] = [];
  try {
    for (let index = 0; index < workerCount; index++) {
      const logPath = join(options.dir, `runs-${index}.log`);
      logPaths.push(logPath);
      const share: number[] = [];
      for (let n = index; n < total; n += workerCount) share.push(n);
      workers.push(
        new Worker(script, { ...workerBase(options.database, index, logPath), ...WORK, share }),
      );
    }
    for (const worker of workers) await worker.next('ready', 30_000);

    // Every worker schedules its share at once.
    const scheduleStart = Date.now();
    for (const worker of workers) worker.send({ type: 'go' });
    for (const worker of workers) await worker.next('scheduled', 60_000);
    const scheduleMs = Date.now() - scheduleStart;

    // Kill the middle worker while it runs tasks, once about a quarter of the tasks ended. Runs last milliseconds,
    // so open runs seen in the log could end before the signal lands: the victim is first told to hold, after which
    // its runs never end on their own, and it is killed once it holds at least two.
    const victimIndex = Math.floor(workerCount / 2);
    const victim = workers[victimIndex]!;
    const victimLog = logPaths[victimIndex]!;
    const doneBeforeKill = await poll(
      async () => {
        const counts = await options.observer.countByState();
        const ended = counts.Done + counts.Failed;
        return ended >= total / 4 ? ended : undefined;
      },
      'a quarter of the tasks to end',
      60_000,
      10,
    );
    victim.send({ type: 'hold' });
    await poll(() => (openRuns(readLog(victimLog, true)) >= 2 ? true : undefined), 'the victim to hold two runs', 30_000, 10);
    const exited = new Promise<void>((resolve) => victim.child.once('exit', () => resolve()));
    victim.child.kill('SIGKILL');
    await exited;
    const killedPid = victim.child.pid!;
    const open = openRuns(readLog(victimLog));

    // The survivors drain the rest, the victim's cut runs included once their leases expire.
    const counts = await allEnded(options.observer, 60_000, 100);
    const drainMs = Date.now() - scheduleStart;
    const survivors = workers.filter((w) => w !== victim);
    const survivorStats: Record<string, number>[] = [];
    for (const worker of survivors) worker.send({ type: 'stop' });
    for (const worker of survivors) survivorStats.push((await worker.next('stopped', 30_000)).stats);

    const tasks = await listAll(options.observer);
    const lines = logPaths.flatMap((path) => readLog(path));
    const history = await readHistory(options.observer, tasks);
    const check = checkRuns(tasks, lines, { killedPid, maxAttempts: WORK.maxAttempts, failPercent: WORK.failPercent, history });
    return {
      tasks,
      counts,
      check,
      historyRecords: [...history.values()].reduce((sum, records) => sum + records.length, 0),
      killed: { pid: killedPid, openRuns: open, doneBeforeKill },
      workerErrors: workers.flatMap((w) => w.errors),
      survivorStats,
      timings: { schedule: scheduleMs, drain: drainMs, total: Date.now() - started },
      concurrency: WORK.concurrency,
    };
  } finally {
    for (const worker of workers) if (worker.alive) worker.child.kill('SIGKILL');
  }
}
