/**
 * The evidence of the multi-node proof: the run log the workers append, and the checks the parent makes of it
 * against the rows left in the repository. Pure functions, so that the rules are readable in one place.
 */
import type { AttemptOutcome as RecordedOutcome, TaskAttempt, TaskInfo } from '@horae/storage';

/** One line of a worker's log: a run started, or a run ended (with its outcome). */
export interface RunLine {
  /** `start` when the work began, `end` when it returned or threw. */
  kind: 'start' | 'end';
  /** The task. */
  taskId: string;
  /** `ctx.attempt` of the run. */
  attempt: number;
  /** The process that ran it. */
  pid: number;
  /** For `end`: whether the work succeeded. */
  ok?: boolean;
  /**
   * For `start`, when the worker logs it: the real time of the start in ms since the epoch (the system clock, read
   * past any skew a test put on the worker's `Date`; see worker-source.ts).
   */
  at?: number;
  /** For `end`, when the worker logs it (`logLease`): the real time of the end, as `at` of a start. */
  endedAt?: number;
  /** For `end`, with `logLease` only: the run's signal aborted it (its lease lost); `ok` is false. */
  aborted?: boolean;
  /**
   * For `start`, when the worker logs it (`logLease`): the expiry, in ms on the database's clock, of the lease the run
   * started under; -1 when the worker did not know it.
   */
  leaseUntil?: number;
}

/**
 * Parses a worker's log: `start <taskId> <attempt> <pid> [<at> [<leaseUntil>]]` / `end <taskId> <attempt> <pid> ok|fail [<at>]` /
 * `end <taskId> <attempt> <pid> abort <at>`.
 *
 * @param text - the file's content
 * @returns its lines, in order
 * @throws Error on a malformed line (a torn write would show here)
 */
export function parseRunLog(text: string): RunLine[] {
  const lines: RunLine[] = [];
  for (const raw of text.split('\n')) {
    if (raw === '') continue;
    const [kind, taskId, attempt, pid, last, sixth, extra] = raw.split(' ');
    const wellFormed =
      extra === undefined &&
      ((kind === 'start' && (last === undefined || /^\d+(\.\d+)?$/.test(last)) && (sixth === undefined || (last !== undefined && /^(-1|\d+)$/.test(sixth)))) ||
        (kind === 'end' && (last === 'ok' || last === 'fail' || (last === 'abort' && sixth !== undefined)) && (sixth === undefined || /^\d+$/.test(sixth))));
    if (!wellFormed || taskId === undefined || !/^\d+$/.test(attempt ?? '') || !/^\d+$/.test(pid ?? '')) {
      throw new Error(`malformed run-log line: ${JSON.stringify(raw)}`);
    }
    const line: RunLine = { kind, taskId, attempt: Number(attempt), pid: Number(pid) };
    if (kind === 'end') {
      line.ok = last === 'ok';
      if (last === 'abort') line.aborted = true;
    }
    else if (last !== undefined) line.at = Number(last);
    if (sixth !== undefined) {
      if (kind === 'end') line.endedAt = Number(sixth);
      else line.leaseUntil = Number(sixth);
    }
    lines.push(line);
  }
  return lines;
}

/**
 * FNV-1a, 32 bits, with murmur3's final mix (plain FNV-1a leaves the hashes of `t1#1`, `t1#2`, `t1#3`
 * correlated modulo 100, so that no task would ever fail three times in a row). The worker's copy
 * (worker-source.ts) must stay the same function: the parent checks every logged outcome against this one.
 */
export function fnv1a(text: string): number {
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

/**
 * Whether a run of `taskId` at `attempt` fails: deterministic, about `failPercent`% of runs, and every run of
 * an always-failing task.
 */
export function runFails(taskId: string, attempt: number, alwaysFail: boolean, failPercent: number): boolean {
  return alwaysFail || fnv1a(`${taskId}#${attempt}`) % 100 < failPercent;
}

/** What one attempt of a task came to, as the log and the kill tell it. */
export type LoggedOutcome =
  /** the work succeeded and its Done landed (or the attempt is the task's last) */
  | 'ok'
  /** the work failed */
  | 'fail'
  /** started on the killed worker, no end: the kill cut the run */
  | 'cut'
  /** the killed worker logged ok, but its Done never landed: the lease expired and the task ran again */
  | 'ok-lost'
  /** no start line: claimed by the killed worker, killed before its work logged the start */
  | 'claimed-lost';

/** What {@link checkRuns} found. */
export interface RunCheck {
  /** Every rule broken, one line each (empty when the proof holds). */
  problems: string[];
  /** Tasks by final state. */
  states: Record<string, number>;
  /** Attempts cut by the kill (`cut`), per outcome kind. */
  outcomes: Record<LoggedOutcome, number>;
  /** Tasks whose run the kill cut and that ran again on a surviving worker with attempt + 1. */
  takenOver: number;
  /** Runs started in all (start lines). */
  runs: number;
}

/**
 * What the repository's execution history (`listAttempts`) may record for an attempt the log tells about: a
 * run that ended on a surviving worker is recorded as it ended; a run of the killed worker whose end never
 * landed is closed by the reclaim as `lease-expired`.
 */
function allowedRecords(outcome: LoggedOutcome, last: boolean, onKilled: boolean): RecordedOutcome[] {
  switch (outcome) {
    case 'ok':
      return ['succeeded'];
    case 'fail':
      return onKilled ? [last ? 'failed' : 'retried', 'lease-expired'] : [last ? 'failed' : 'retried'];
    default:
      return ['lease-expired'];
  }
}

/** The pid in a worker's node id (`node-<index>-<pid>`). */
function pidOfNode(node: string): number {
  return Number(node.slice(node.lastIndexOf('-') + 1));
}

/** The parameters of the proof that the checks need. */
export interface RunCheckOptions {
  /** The pid of the worker killed with SIGKILL. */
  killedPid: number;
  /** The tasks' maxAttempts. */
  maxAttempts: number;
  /** The random failure rate of the work, in percent. */
  failPercent: number;
  /** Each task's execution history from the repository (`listAttempts`), checked against the log when given. */
  history?: ReadonlyMap<string, readonly TaskAttempt[]>;
}

/**
 * Checks every task against the run log.
 *
 * Rules checked, for each task:
 * - it ended Done or Failed; no attempt started twice; every end follows its own start on the same pid; the
 *   logged outcome is the one the failure function decides;
 * - every run on a surviving worker ended (only the killed worker may leave a start without an end);
 * - attempts 1..`task.attempt` replay to the stored state: a failed attempt is followed by the next one, a
 *   succeeded one ends the task Done, the last attempt failing (or cut) ends it Failed with attempts spent —
 *   so a task runs again after a success only when the killed worker's lease expired under it, and each such
 *   run counts an attempt;
 * - an attempt with no start line is one the killed worker claimed and died before starting;
 * - when the repository's execution history is given: one record per attempt, on the node whose process logged
 *   it, closed as the log says (`succeeded`, `retried`, `failed`), or `lease-expired` for a run the kill cut.
 *
 * @param tasks - every row of the repository
 * @param lines - every line of every worker's log
 * @param options - the killed pid and the work's parameters
 * @returns the problems found (none when the proof holds) and counts
 */
export function checkRuns(tasks: readonly TaskInfo[], lines: readonly RunLine[], options: RunCheckOptions): RunCheck {
  const problems: string[] = [];
  const states: Record<string, number> = {};
  const outcomes: Record<LoggedOutcome, number> = { ok: 0, fail: 0, cut: 0, 'ok-lost': 0, 'claimed-lost': 0 };
  let takenOver = 0;
  const byTask = new Map<string, RunLine[]>();
  for (const line of lines) {
    const list = byTask.get(line.taskId);
    if (list === undefined) byTask.set(line.taskId, [line]);
    else list.push(line);
  }
  const known = new Set(tasks.map((t) => t.id));
  for (const id of byTask.keys()) if (!known.has(id)) problems.push(`${id}: ran, but no such row`);

  for (const task of tasks) {
    states[task.state] = (states[task.state] ?? 0) + 1;
    const report = (message: string): void => {
      problems.push(`${task.id} (${task.state}, attempt ${task.attempt}): ${message}`);
    };
    if (task.state !== 'Done' && task.state !== 'Failed') report('not Done nor Failed');
    const alwaysFail = (task.param as { alwaysFail?: unknown } | null)?.alwaysFail === true;
    const starts = new Map<number, RunLine>();
    const ends = new Map<number, RunLine>();
    for (const line of byTask.get(task.id) ?? []) {
      const into = line.kind === 'start' ? starts : ends;
      if (into.has(line.attempt)) {
        report(`attempt ${line.attempt} has two ${line.kind} lines (pids ${into.get(line.attempt)?.pid} and ${line.pid})`);
        continue;
      }
      if (line.kind === 'end') {
        const start = starts.get(line.attempt);
        if (start === undefined || start.pid !== line.pid) report(`attempt ${line.attempt} ended on pid ${line.pid} without its start there`);
        if (line.ok === runFails(task.id, line.attempt, alwaysFail, options.failPercent)) report(`attempt ${line.attempt} logged a wrong outcome`);
      }
      into.set(line.attempt, line);
      if (line.attempt > task.attempt || line.attempt < 1) report(`a run logged attempt ${line.attempt} beyond the stored attempt`);
    }
    if (task.attempt < 1 || task.attempt > options.maxAttempts) report(`attempt out of 1..${options.maxAttempts}`);
    const records = options.history?.get(task.id);
    // No run was handed back uncounted in this scenario, so the history has one record per attempt.
    if (records !== undefined && records.length !== task.attempt) report(`the history has ${records.length} runs for ${task.attempt} attempts`);

    // Replay attempts 1..task.attempt.
    for (let attempt = 1; attempt <= task.attempt; attempt++) {
      const start = starts.get(attempt);
      const end = ends.get(attempt);
      const last = attempt === task.attempt;
      let outcome: LoggedOutcome;
      if (start === undefined) outcome = 'claimed-lost';
      else if (start.pid !== options.killedPid) {
        if (end === undefined) {
          report(`attempt ${attempt} started on surviving pid ${start.pid} and never ended`);
          continue;
        }
        outcome = end.ok === true ? 'ok' : 'fail';
      } else if (end === undefined) outcome = 'cut';
      else if (end.ok !== true) outcome = 'fail';
      else outcome = last && task.state === 'Done' ? 'ok' : 'ok-lost';
      outcomes[outcome]++;
      const record = records?.[attempt - 1];
      if (record !== undefined) {
        const pid = start?.pid ?? options.killedPid;
        const allowed = allowedRecords(outcome, last, pid === options.killedPid);
        if (record.attempt !== attempt || pidOfNode(record.node) !== pid || !allowed.includes(record.outcome)) {
          report(`history run ${record.run} says attempt ${record.attempt} on ${record.node} ${record.outcome}; the log says attempt ${attempt} on pid ${pid}, ${outcome}`);
        }
      }
      if (outcome === 'claimed-lost' && !last && starts.get(attempt + 1)?.pid === options.killedPid) {
        report(`attempt ${attempt} has no start, yet the next one ran on the killed worker`);
      }
      if ((outcome === 'cut' || outcome === 'ok-lost') && !last) {
        // The kill cut this run: the next attempt ran elsewhere once the lease expired.
        const next = starts.get(attempt + 1);
        if (next === undefined || next.pid === options.killedPid) report(`attempt ${attempt} was cut by the kill but attempt ${attempt + 1} did not run on a surviving worker`);
        else if (outcome === 'cut') takenOver++;
      }
      if (outcome === 'ok' && !last) report(`attempt ${attempt} succeeded, yet the task ran again`);
      if (last) {
        const expected = outcome === 'ok' ? 'Done' : attempt === options.maxAttempts ? 'Failed' : 'Initialized (a retry pending)';
        if (task.state !== expected) report(`the log says it should be ${expected}`);
      }
    }
  }
  return { problems, states, outcomes, takenOver, runs: lines.filter((l) => l.kind === 'start').length };
}
