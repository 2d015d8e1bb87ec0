/**
 * One chaos scenario with real processes: worker nodes (test/multi-node/worker-source.ts, each a Scheduler behind
 * `multiNodeStorage`) share one repository; the parent inserts the tasks, injects a fault once part of them ended
 * (the fault is the test's own function: stop the database, kill a node, hold SQLite's write lock, fill the disk),
 * waits until every task is Done or Failed, stops the nodes still alive, and checks the invariants
 * (invariants.ts) against the logs, the rows and the execution history. A watcher snapshots the rows every
 * {@link SNAPSHOT_EVERY_MS} throughout, so that a terminal state that changes while the fault is on is seen.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Repository, TaskAttempt, TaskInfo } from '@horae/storage';
import { listAll, poll, readHistory, readLog, Worker, workerBase, writeWorkerScript, type ProofDatabase } from '../multi-node/proof.js';
import { fnv1a, type RunLine } from '../multi-node/run-log.js';
import { SKEW_PRELOAD } from '../multi-node/skew-preload.js';
import { checkInvariants, TerminalWatch, type InvariantReport } from './invariants.js';

/** How often the watcher reads every row. */
export const SNAPSHOT_EVERY_MS = 100;

/** What the parent reads of the shared database, and how it inserts the tasks. */
export type ChaosObserver = Pick<Repository, 'insertMany' | 'list' | 'countByState' | 'listAttempts'>;

/** The work's parameters, the same on every node (see worker-source.ts). */
export interface ChaosWork {
  leaseMs: number;
  syncIntervalMs: number;
  concurrency: number;
  /** Each run sleeps a hashed time in minRunMs..maxRunMs. */
  minRunMs: number;
  maxRunMs: number;
  /** Runs that fail by the hash of (task, attempt), in percent; each is retried after retryDelayMs. */
  failPercent: number;
  maxAttempts: number;
  retryDelayMs: number;
}

/**
 * The default work: runs of 20-80 ms, 10% of them failing and retried, 5 attempts (a lease lost to the fault costs
 * one), a 2 s lease renewed every 667 ms, sync every 100 ms.
 */
export const CHAOS_WORK: ChaosWork = {
  leaseMs: 2000,
  syncIntervalMs: 100,
  concurrency: 4,
  minRunMs: 20,
  maxRunMs: 80,
  failPercent: 10,
  maxAttempts: 5,
  retryDelayMs: 50,
};

/** One node: its clock skew (a preload shifts its `Date`), and config beyond the work (e.g. `busyTimeoutMs`). */
export interface ChaosNode {
  skewMs?: number;
  config?: Record<string, unknown>;
}

/** What a fault sees. */
export interface FaultContext {
  workers: readonly Worker[];
  logPaths: readonly string[];
  /** The watcher's latest snapshot of the rows. */
  latest: () => readonly TaskInfo[];
}

/** What a fault did: the workers it killed, and the real times (ms) of its steps, for the figures. */
export interface FaultOutcome {
  killedPids?: number[];
  marks: Record<string, number>;
}

/** A scenario. */
export interface ScenarioOptions {
  database: ProofDatabase;
  observer: ChaosObserver;
  dir: string;
  nodes: readonly ChaosNode[];
  work: ChaosWork;
  tasks: number;
  /** Tasks due at the insert; the others fall due over `spreadMs`, from `firstDueMs` after it. */
  dueNow: number;
  spreadMs: number;
  /** @defaultValue 0 */
  firstDueMs?: number;
  /** The fault starts once this many tasks ended. */
  faultAfterEnded: number;
  fault: (context: FaultContext) => Promise<FaultOutcome>;
  /** How long the drain may take after the fault. */
  drainTimeoutMs: number;
}

/** What a scenario produced, for the test to assert on. */
export interface ScenarioResult {
  tasks: TaskInfo[];
  lines: RunLine[];
  history: Map<string, TaskAttempt[]>;
  /** The invariants, checked from the evidence (snapshots included). */
  report: InvariantReport;
  /** The fault's marks, plus `inserted`, `faultStarted`, `faultEnded` and `drained` (real ms). */
  marks: Record<string, number>;
  killedPids: number[];
  workerErrors: string[];
  /** Storage event counts of each node still alive at the end. */
  stats: Record<string, number>[];
  /** Snapshots that failed (the database was down) and that landed. */
  snapshots: { failed: number; landed: number };
}

/** The due time of task n: `dueNow` of them at the insert, the rest spread by a hash over the spread. */
function dueAt(n: number, options: ScenarioOptions, insertAt: number): number {
  if (n < options.dueNow) return insertAt;
  return insertAt + (options.firstDueMs ?? 0) + (fnv1a(`due${n}`) % options.spreadMs);
}

/**
 * Runs a scenario; the caller asserts on the result (the invariants first).
 *
 * @param options - the database, the nodes, the work, the fault
 * @returns the evidence and the checks
 */
export async function runScenario(options: ScenarioOptions): Promise<ScenarioResult> {
  const script = writeWorkerScript(options.dir);
  const preload = join(options.dir, 'skew-preload.mjs');
  writeFileSync(preload, SKEW_PRELOAD);
  const logPaths = options.nodes.map((_, index) => join(options.dir, `runs-${index}.log`));
  const workers = options.nodes.map((node, index) => {
    const config = { ...workerBase(options.database, index, logPaths[index]!), ...options.work, ...node.config, logLease: true, share: [] };
    const skewed = node.skewMs !== undefined && node.skewMs !== 0;
    return new Worker(script, config, skewed ? { execArgv: ['--import', pathToFileURL(preload).href], env: { HORAE_TEST_CLOCK_SKEW_MS: String(node.skewMs) } } : {});
  });
  const watch = new TerminalWatch();
  const snapshots = { failed: 0, landed: 0 };
  let latest: TaskInfo[] = [];
  let watching = true;
  let watcher: Promise<void> | undefined;
  try {
    for (const worker of workers) await worker.next('ready', 30_000);
    const insertAt = Date.now();
    const due = new Map<string, number>();
    const rows = Array.from({ length: options.tasks }, (_, n) => {
      const id = `k${n}`;
      due.set(id, dueAt(n, options, insertAt));
      return { id, workId: 'job', scheduledAt: new Date(due.get(id)!), param: { n, alwaysFail: false }, maxAttempts: options.work.maxAttempts };
    });
    for (let i = 0; i < rows.length; i += 500) {
      const inserted = await options.observer.insertMany(rows.slice(i, i + 500));
      if (!inserted.every((result) => result.created)) throw new Error('a task of the scenario was not created');
    }
    const marks: Record<string, number> = { inserted: Date.now() };

    // The watcher: every row, every SNAPSHOT_EVERY_MS, until the end; a read that fails (the database is down) is
    // counted and the next one tried.
    watcher = (async () => {
      while (watching) {
        try {
          latest = await listAll(options.observer);
          watch.observe(latest);
          snapshots.landed++;
        } catch {
          snapshots.failed++;
        }
        await new Promise((resolve) => setTimeout(resolve, SNAPSHOT_EVERY_MS));
      }
    })();
    const ended = (): number => latest.filter((t) => t.state === 'Done' || t.state === 'Failed').length;

    await poll(() => (ended() >= options.faultAfterEnded ? true : undefined), `${options.faultAfterEnded} tasks to end before the fault`, 60_000, 20);
    marks.faultStarted = Date.now();
    const outcome = await options.fault({ workers, logPaths, latest: () => latest });
    marks.faultEnded = Date.now();
    Object.assign(marks, outcome.marks);
    const killedPids = outcome.killedPids ?? [];

    const drainedAfter = marks.faultEnded;
    await poll(() => (latest.length === options.tasks && ended() === options.tasks ? true : undefined), 'every task to be Done or Failed', options.drainTimeoutMs, 20);
    // The snapshot that showed the drain was read up to one interval earlier; this bounds the drain from above.
    marks.drained = Date.now();
    if (marks.drained < drainedAfter) throw new Error('drained before the fault ended');

    const survivors = workers.filter((worker) => worker.alive);
    for (const worker of survivors) worker.send({ type: 'stop' });
    const stats: Record<string, number>[] = [];
    for (const worker of survivors) stats.push((await worker.next('stopped', 30_000)).stats);
    watching = false;
    await watcher;

    const tasks = await listAll(options.observer);
    watch.observe(tasks);
    const lines = logPaths.flatMap((path) => readLog(path));
    const history = await readHistory(options.observer, tasks);
    const report = checkInvariants(tasks, lines, history, {
      dueAt: due,
      maxAttempts: options.work.maxAttempts,
      failPercent: options.work.failPercent,
      killedPids: new Set(killedPids),
    });
    report.violations.push(...watch.violations);
    return { tasks, lines, history, report, marks, killedPids, workerErrors: workers.flatMap((w) => w.errors), stats, snapshots };
  } finally {
    watching = false;
    await watcher;
    for (const worker of workers) if (worker.alive) worker.child.kill('SIGKILL');
  }
}

/** The real times of the run starts in `lines`, sorted. */
export function startTimes(lines: readonly RunLine[]): number[] {
  return lines.flatMap((line) => (line.kind === 'start' && line.at !== undefined ? [line.at] : [])).sort((a, b) => a - b);
}

/** The first start at or after `from`, in ms after it; undefined when none. */
export function firstStartAfter(lines: readonly RunLine[], from: number): number | undefined {
  const at = startTimes(lines).find((t) => t >= from);
  return at === undefined ? undefined : at - from;
}

/**
 * Runs the fault window saw start: logged within [from, to) (`logged`), and of those, the ones whose start the
 * database did not record before `from` (`unrecorded`). While the database cannot be written, a run may still be
 * logged (its node's event loop lagged between the write and the log line), but only if the database recorded its
 * start before the window: `unrecorded` counts runs that started without the database's leave.
 */
export function startsDuring(result: Pick<ScenarioResult, 'lines' | 'history'>, from: number, to: number): { logged: number; unrecorded: number } {
  let logged = 0;
  let unrecorded = 0;
  for (const line of result.lines) {
    if (line.kind !== 'start' || line.at === undefined || line.at < from || line.at >= to) continue;
    logged++;
    const record = result.history.get(line.taskId)?.find((r) => r.attempt === line.attempt && r.node.endsWith(`-${line.pid}`));
    if (record === undefined || record.startedAt.getTime() >= from) unrecorded++;
  }
  return { logged, unrecorded };
}

/** Figures common to every scenario, for the console and docs/reliability.md. */
export function commonFigures(result: ScenarioResult): Record<string, unknown> {
  const { marks, report } = result;
  return {
    drainMs: marks.drained! - marks.inserted!,
    faultMs: marks.faultEnded! - marks.faultStarted!,
    afterFaultMs: marks.drained! - marks.faultEnded!,
    states: report.counts.states,
    runs: report.counts.runs,
    leaseExpired: report.counts.leaseExpired,
    rerunAfterExpiry: report.counts.rerunAfterExpiry,
    minTakeoverMarginMs: report.counts.minTakeoverMarginMs,
    minDueMarginMs: report.counts.minDueMarginMs,
    recordedNotLogged: report.counts.recordedNotLogged,
    startedExpired: report.counts.startedExpired,
    maxStartedExpiredByMs: report.counts.maxStartedExpiredByMs,
    overlaps: report.counts.overlaps,
    examples: report.counts.examples,
    snapshots: result.snapshots,
    stats: result.stats,
  };
}
