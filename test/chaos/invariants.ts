/**
 * The invariants of the chaos suite (issue 10), checked from the outside: the workers' append-only run logs
 * (test/multi-node/worker-source.ts, with `logLease`), the rows the repository holds at the end, each task's execution
 * history (`listAttempts`), and the snapshots the parent took while the fault was on. Pure functions, so that each
 * rule reads in one place and is unit-tested to fail (invariants.test.ts).
 *
 * Every time compared here is on one clock: the machine's system clock, which the PostgreSQL server (on this machine)
 * and SQLite (the processes' own clock) read, and which the workers log past any skew a test put on their `Date`.
 */
import type { TaskAttempt, TaskInfo } from '@horae/storage';
import { runFails, type RunLine } from '../multi-node/run-log.js';

/**
 * The five invariants, named as the issue names them, and a sixth the suite found missing (a run never starts on an
 * expired lease: any node may reclaim it then); each problem found says which one it breaks.
 */
export type Invariant = 'lost' | 'started-twice' | 'before-lease-expiry' | 'terminal-changed' | 'before-due' | 'started-on-expired-lease';

/** One broken rule. */
export interface Violation {
  invariant: Invariant;
  taskId: string;
  message: string;
}

/** What the checks need to know of the scenario. */
export interface InvariantOptions {
  /** Each inserted task's due time (ms since the epoch), by id: the tasks that must not be lost. */
  dueAt: ReadonlyMap<string, number>;
  /** The tasks' maxAttempts. */
  maxAttempts: number;
  /** The random failure rate of the work, in percent (see run-log.ts `runFails`). */
  failPercent: number;
  /**
   * Slack on comparisons of a logged time with a database time. Both read the same system clock, but the database
   * keeps microseconds and JavaScript dates keep whole milliseconds (truncated), so a start logged in the same
   * millisecond as a lease expiry or a due time may read one millisecond earlier. @defaultValue 1
   */
  toleranceMs?: number;
  /** Pids of workers killed with SIGKILL: only their runs may start without an end. */
  killedPids?: ReadonlySet<number>;
}

/** Counts of what the log and the history show, for the figures. */
export interface InvariantCounts {
  /** Start lines in all the logs. */
  runs: number;
  /** History records closed `lease-expired`: runs (or claims by id) whose node lost them. */
  leaseExpired: number;
  /** Runs that started again after a lease expired (the next attempt of a `lease-expired` record). */
  rerunAfterExpiry: number;
  /** Of those, the smallest margin (ms) between the previous lease's logged expiry and the next start. */
  minTakeoverMarginMs: number | undefined;
  /** The smallest margin (ms) between a checked due time and the start after it (log or database record). */
  minDueMarginMs: number | undefined;
  /** Records with no start line: claimed (and counted) by a node that never got to log the run. */
  recordedNotLogged: number;
  /**
   * Runs whose work began (by the log) after the lease they started under had expired, though the database started
   * them inside it (a slow event loop between the start write and the work): counted, not a violation.
   */
  startedExpired: number;
  /** Of those, the longest time (ms) between the lease's expiry and the start. */
  maxStartedExpiredByMs: number | undefined;
  /**
   * Consecutive runs of one task that overlapped: the next one started before the previous one logged its end (the
   * previous lease had expired, so no invariant above forbids it; counted, with the first few as examples).
   */
  overlaps: number;
  /** Up to five examples of each of the two counts above: `<taskId>#<attempt>`. */
  examples: { startedExpired: string[]; overlaps: string[] };
  /** Tasks by final state. */
  states: Record<string, number>;
}

/** What {@link checkInvariants} found. */
export interface InvariantReport {
  violations: Violation[];
  counts: InvariantCounts;
}

/** The pid in a worker's node id (`node-<index>-<pid>`). */
export function pidOfNode(node: string): number {
  return Number(node.slice(node.lastIndexOf('-') + 1));
}

function groupBy<T>(items: readonly T[], key: (item: T) => string): Map<string, T[]> {
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const id = key(item);
    const list = groups.get(id);
    if (list === undefined) groups.set(id, [item]);
    else list.push(item);
  }
  return groups;
}

/**
 * Checks the five invariants of the chaos suite against one scenario's evidence.
 *
 * - **lost**: every inserted task has a row and ended Done or Failed; Done has exactly one `succeeded` record, its
 *   last, whose run logged an `ok` end on the node that recorded it; Failed has spent its attempts (its last run failed
 *   or lost its lease) or is a poison task; no run or row of a task that was never inserted.
 * - **started-twice**: no (task, attempt) has two start lines, nor two history records (a graceful stop's `released`
 *   record refunds the attempt, so the attempt after it may repeat); every start line has the history record of that
 *   attempt on the same node, recorded no later than the logged start; an end follows its own start on the same pid; a logged outcome is the one the failure
 *   function decides; a run on a worker that was not killed ended, or lost its lease (its record says
 *   `lease-expired`).
 * - **before-lease-expiry**: when a run's record is `lease-expired`, the next run of the task started (by the log, and
 *   by the database's record) no earlier than the expiry of the lease the previous run started under (logged with
 *   the start: renewals only push it later, so it is a lower bound of the true expiry).
 * - **terminal-changed**: nothing follows a `succeeded` or `failed` record; no run logged an attempt beyond the
 *   stored one (see also {@link TerminalWatch}, which compares snapshots taken during the run).
 * - **before-due**: the first run started no earlier than the inserted due time, and the last run no earlier than
 *   the stored due time (a retry's or a reclaim's), both by the log and by the database's record of the start.
 *
 * @param tasks - every row of the repository, read after the drain
 * @param lines - every line of every worker's log
 * @param history - each task's execution history
 * @param options - the scenario's parameters
 * @returns the violations (none when the invariants hold) and counts
 */
export function checkInvariants(
  tasks: readonly TaskInfo[],
  lines: readonly RunLine[],
  history: ReadonlyMap<string, readonly TaskAttempt[]>,
  options: InvariantOptions,
): InvariantReport {
  const tolerance = options.toleranceMs ?? 1;
  const killed = options.killedPids ?? new Set<number>();
  const violations: Violation[] = [];
  const counts: InvariantCounts = {
    runs: lines.filter((l) => l.kind === 'start').length,
    leaseExpired: 0,
    rerunAfterExpiry: 0,
    minTakeoverMarginMs: undefined,
    minDueMarginMs: undefined,
    recordedNotLogged: 0,
    startedExpired: 0,
    maxStartedExpiredByMs: undefined,
    overlaps: 0,
    examples: { startedExpired: [], overlaps: [] },
    states: {},
  };
  const example = (list: string[], value: string): void => {
    if (list.length < 5) list.push(value);
  };
  const byTask = groupBy(lines, (line) => line.taskId);
  const rows = new Map(tasks.map((task) => [task.id, task]));
  for (const id of options.dueAt.keys()) {
    if (!rows.has(id)) violations.push({ invariant: 'lost', taskId: id, message: 'inserted, but no row at the end' });
  }
  for (const id of rows.keys()) {
    if (!options.dueAt.has(id)) violations.push({ invariant: 'lost', taskId: id, message: 'a row that was never inserted' });
  }
  for (const id of byTask.keys()) {
    if (!rows.has(id)) violations.push({ invariant: 'lost', taskId: id, message: 'ran, but no such row' });
  }

  for (const task of tasks) {
    counts.states[task.state] = (counts.states[task.state] ?? 0) + 1;
    const report = (invariant: Invariant, message: string): void => {
      violations.push({ invariant, taskId: task.id, message: `(${task.state}, attempt ${task.attempt}) ${message}` });
    };
    const records = [...(history.get(task.id) ?? [])].sort((a, b) => a.run - b.run);
    const starts = new Map<number, RunLine>();
    const ends = new Map<number, RunLine>();
    const alwaysFail = (task.param as { alwaysFail?: unknown } | null)?.alwaysFail === true;
    for (const line of byTask.get(task.id) ?? []) {
      const into = line.kind === 'start' ? starts : ends;
      if (into.has(line.attempt)) {
        report('started-twice', `attempt ${line.attempt} has two ${line.kind} lines (pids ${into.get(line.attempt)?.pid} and ${line.pid})`);
        continue;
      }
      if (line.kind === 'end') {
        const start = starts.get(line.attempt);
        if (start === undefined || start.pid !== line.pid) report('started-twice', `attempt ${line.attempt} ended on pid ${line.pid} without its start there`);
        if (line.aborted !== true && line.ok === runFails(task.id, line.attempt, alwaysFail, options.failPercent)) {
          report('started-twice', `attempt ${line.attempt} logged a wrong outcome`);
        }
      }
      into.set(line.attempt, line);
      if (line.attempt > task.attempt) report('terminal-changed', `a run logged attempt ${line.attempt}, beyond the stored attempt`);
    }

    // One record per attempt (a `released` record hands its attempt back: the next record may repeat it).
    const recordOf = new Map<number, TaskAttempt>();
    let previous: TaskAttempt | undefined;
    for (const record of records) {
      const repeatAllowed = previous?.outcome === 'released' && previous.attempt === record.attempt;
      if (recordOf.has(record.attempt) && !repeatAllowed) report('started-twice', `the history has two records of attempt ${record.attempt}`);
      recordOf.set(record.attempt, record);
      if (previous !== undefined && (previous.outcome === 'succeeded' || previous.outcome === 'failed')) {
        report('terminal-changed', `run ${record.run} (attempt ${record.attempt}) followed a ${previous.outcome} run`);
      }
      previous = record;
    }
    for (const [attempt, start] of starts) {
      const record = recordOf.get(attempt);
      if (record === undefined || pidOfNode(record.node) !== start.pid) {
        report('started-twice', `attempt ${attempt} logged a start on pid ${start.pid} that the history does not record there (${record?.node ?? 'no record'})`);
        continue;
      }
      // The work starts once the database recorded the start (a claim by id, or markAsStarted), never before.
      if (start.at !== undefined && start.at < record.startedAt.getTime() - tolerance) {
        report('started-twice', `attempt ${attempt} was logged ${record.startedAt.getTime() - start.at} ms before the database recorded its start`);
      }
      if (!ends.has(attempt) && !killed.has(start.pid) && record.outcome !== 'lease-expired') {
        report('started-twice', `attempt ${attempt} started on pid ${start.pid}, never ended nor lost its lease (${record.outcome})`);
      }
      // The database recorded the start inside the lease the run started under (both by the database's clock).
      if (start.leaseUntil !== undefined && start.leaseUntil >= 0 && record.startedAt.getTime() - start.leaseUntil >= tolerance) {
        report('started-on-expired-lease', `attempt ${attempt} was started by the database ${record.startedAt.getTime() - start.leaseUntil} ms after its lease expired`);
      }
      if (start.leaseUntil !== undefined && start.leaseUntil >= 0 && start.at !== undefined && start.leaseUntil < start.at) {
        counts.startedExpired++;
        counts.maxStartedExpiredByMs = Math.max(counts.maxStartedExpiredByMs ?? 0, start.at - start.leaseUntil);
        example(counts.examples.startedExpired, `${task.id}#${attempt}`);
      }
      const previousEnd = ends.get(attempt - 1)?.endedAt;
      if (previousEnd !== undefined && start.at !== undefined && start.at < previousEnd - tolerance) {
        counts.overlaps++;
        example(counts.examples.overlaps, `${task.id}#${attempt}`);
      }
    }
    counts.recordedNotLogged += records.filter((record) => !starts.has(record.attempt)).length;

    // Nothing lost: a terminal state that the evidence explains.
    const last = records.at(-1);
    if (task.state === 'Done') {
      const succeeded = records.filter((r) => r.outcome === 'succeeded');
      if (succeeded.length !== 1 || last?.outcome !== 'succeeded' || last.attempt !== task.attempt) {
        report('lost', `Done, but its history is ${JSON.stringify(records.map((r) => `${r.attempt}:${r.outcome}`))}`);
      } else {
        const end = ends.get(last.attempt);
        if (end?.ok !== true || end.pid !== pidOfNode(last.node)) report('lost', `Done by ${last.node}, but no logged success of attempt ${last.attempt} there`);
      }
    } else if (task.state === 'Failed') {
      const poison = task.lastError?.code === 'POISON_TASK';
      const spent = task.attempt === options.maxAttempts && (last?.outcome === 'failed' || last?.outcome === 'lease-expired');
      if (!poison && !spent) report('lost', `Failed with attempts left or an unexplained last run (${last?.outcome ?? 'none'})`);
    } else {
      report('lost', 'not Done nor Failed at the end');
    }

    // A run again only after the lease of the previous one expired.
    for (let i = 0; i + 1 < records.length; i++) {
      const record = records[i]!;
      if (record.outcome !== 'lease-expired') continue;
      const next = records[i + 1]!;
      counts.rerunAfterExpiry++;
      const until = starts.get(record.attempt)?.leaseUntil;
      // A claim whose node never logged the run: its lease is not known from outside; the database's record of the
      // next start is still checked against the record of this one below.
      if (until === undefined || until < 0) continue;
      const nextLogged = starts.get(next.attempt)?.at;
      const nextStart = Math.min(nextLogged ?? Number.POSITIVE_INFINITY, next.startedAt.getTime());
      const margin = nextStart - until;
      counts.minTakeoverMarginMs = Math.min(counts.minTakeoverMarginMs ?? margin, margin);
      if (margin < -tolerance) {
        report('before-lease-expiry', `attempt ${next.attempt} started ${-margin} ms before the lease of attempt ${record.attempt} expired (${new Date(until).toISOString()})`);
      }
    }
    counts.leaseExpired += records.filter((r) => r.outcome === 'lease-expired').length;

    // Not before it was due: the first run against the inserted due time, the last against the stored one.
    const checkDue = (attempt: number, dueAt: number, which: string): void => {
      const record = recordOf.get(attempt);
      const logged = starts.get(attempt)?.at;
      const earliest = Math.min(logged ?? Number.POSITIVE_INFINITY, record?.startedAt.getTime() ?? Number.POSITIVE_INFINITY);
      if (Number.isFinite(earliest)) counts.minDueMarginMs = Math.min(counts.minDueMarginMs ?? earliest - dueAt, earliest - dueAt);
      if (logged !== undefined && logged < dueAt - tolerance) report('before-due', `attempt ${attempt} started ${dueAt - logged} ms before its ${which} due time (log)`);
      if (record !== undefined && record.startedAt.getTime() < dueAt - tolerance) {
        report('before-due', `attempt ${attempt} started ${dueAt - record.startedAt.getTime()} ms before its ${which} due time (the database's record)`);
      }
    };
    const insertedDue = options.dueAt.get(task.id);
    if (insertedDue !== undefined && records.length > 0) checkDue(records[0]!.attempt, insertedDue, 'inserted');
    if (last !== undefined && records.length > 1) checkDue(last.attempt, task.scheduledAt.getTime(), 'stored');
  }
  return { violations, counts };
}

/**
 * Watches terminal states across snapshots of the rows taken while the fault is on: once a task is seen Done,
 * Cancelled or Failed, every later snapshot must show it in that state, at that attempt.
 */
export class TerminalWatch {
  readonly #seen = new Map<string, { state: string; attempt: number }>();
  readonly violations: Violation[] = [];
  /** Snapshots observed. */
  snapshots = 0;

  /** Compares one snapshot with what earlier ones showed. */
  observe(tasks: readonly TaskInfo[]): void {
    this.snapshots++;
    for (const task of tasks) {
      const before = this.#seen.get(task.id);
      if (before !== undefined && (before.state !== task.state || before.attempt !== task.attempt)) {
        this.violations.push({
          invariant: 'terminal-changed',
          taskId: task.id,
          message: `was ${before.state} at attempt ${before.attempt}, later ${task.state} at attempt ${task.attempt}`,
        });
        // Reported once per change, not again in every later snapshot.
        before.state = task.state;
        before.attempt = task.attempt;
      }
      if (before === undefined && (task.state === 'Done' || task.state === 'Failed' || task.state === 'Cancelled')) {
        this.#seen.set(task.id, { state: task.state, attempt: task.attempt });
      }
    }
  }
}
