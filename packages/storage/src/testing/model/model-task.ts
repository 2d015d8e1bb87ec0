import type { AttemptOutcome, JsonValue, TaskAttempt, TaskError, TaskInfo, TaskState } from '../../contract/task-info.js';

/**
 * What the reference model expects of a value: the value itself, or, for what the database chooses (a time on its
 * clock, the text of an error it writes), a bound the value must meet. A bounded value is pinned to the first value
 * seen, so every later read must return exactly that.
 */
export type Expected<T> = { readonly exact: T } | { readonly loose: string; readonly accepts: (value: T) => boolean };

/** The model's view of a lease: who holds it, the token a claim handed out, whether its run started, whether it expired. */
export interface ModelLease {
  /** The claiming client's node id. */
  readonly owner: string;
  /** The token the claim returned. */
  readonly token: string;
  /** Whether the run of this claim started (its attempt counted). */
  readonly started: boolean;
  /** Taken or renewed with `leaseMs: 0`: reclaimable at once. */
  readonly expired: boolean;
  /** lease.until, by the database's clock. */
  readonly until: Expected<number>;
}

/** The model's view of one attempt record (`listAttempts`). */
export interface ModelRun {
  /** 1 for the task's first run. */
  readonly run: number;
  /** The task's attempt counter during the run. */
  readonly attempt: number;
  /** The lease owner that ran it. */
  readonly node: string;
  /** How it ended, or `running`. */
  readonly outcome: AttemptOutcome;
  /** The error it ended with. */
  readonly error: Expected<TaskError | null>;
  /** The messages of its check-ins, oldest first. */
  readonly checkIns: readonly string[];
}

/** The progress a run reported, without its time. */
export interface ProgressView {
  /** Units done. */
  readonly completed: number;
  /** Units in all. */
  readonly total: number;
  /** The check-in message, if any. */
  readonly message?: string;
}

/** The model's record of one task: what every read of it must return. */
export interface ModelTask {
  /** Its id, as the repository generated it. */
  readonly id: string;
  /** Its work. */
  readonly workId: string;
  /** Its param. */
  readonly param: JsonValue;
  /** When it is due. */
  readonly scheduledAt: Expected<number>;
  /** Its state. */
  readonly state: TaskState;
  /** Its priority. */
  readonly priority: number;
  /** Runs started, less those given back. */
  readonly attempt: number;
  /** Claims in all: only grows. */
  readonly claims: number;
  /** Claims in a row whose lease expired unstarted. */
  readonly unstartedClaims: number;
  /** Runs allowed. */
  readonly maxAttempts: number;
  /** Its lease while Working. */
  readonly lease: ModelLease | null;
  /** Its last error. */
  readonly lastError: Expected<TaskError | null>;
  /** Its key. */
  readonly uniqueKey: string | null;
  /** The progress of its current run. */
  readonly progress: Expected<ProgressView | null>;
  /** createdAt, as the insert returned it. */
  readonly createdAt: number;
  /** Its attempt records. */
  readonly runs: readonly ModelRun[];
  /** Every lease token a claim of it handed out, oldest first. */
  readonly tokens: readonly string[];
}

/** Five minutes: the tolerance for a time the database sets, from its clock, against this process's clock. */
export const CLOCK_TOLERANCE_MS = 5 * 60_000;

/** An exact expectation. */
export function exact<T>(value: T): Expected<T> {
  return { exact: value };
}

/** A time set from the database's clock at about now. */
export function nearNow(): Expected<number> {
  return { loose: 'about now', accepts: (value) => Math.abs(value - Date.now()) < CLOCK_TOLERANCE_MS };
}

/** A lease.until: about now for a lease of 0 ms, else at least `leaseMs` minus the tolerance ahead. */
export function leaseUntil(leaseMs: number): Expected<number> {
  if (leaseMs === 0) return nearNow();
  return { loose: `about now + ${leaseMs} ms`, accepts: (value) => Math.abs(value - (Date.now() + leaseMs)) < CLOCK_TOLERANCE_MS };
}

/** Anything: a field the contract leaves to the adapter; pinned once seen. */
export function unspecified<T>(): Expected<T> {
  return { loose: 'whatever the adapter stores', accepts: () => true };
}

/** An error whose message and code are these (the adapter may add a name or a stack). */
export function errorLike(error: TaskError): Expected<TaskError | null> {
  return {
    loose: `an error like ${JSON.stringify(error)}`,
    accepts: (value) => value !== null && value.message === error.message && value.code === error.code && (error.name === undefined || value.name === error.name),
  };
}

/** Some error with a message. */
export function someError(): Expected<TaskError | null> {
  return { loose: 'an error with a message', accepts: (value) => value !== null && typeof value.message === 'string' };
}

/** The value a task's due time is judged by: its exact time, or now while it is only bounded (a reclaim: due now). */
export function timeOf(expected: Expected<number>): number {
  return 'exact' in expected ? expected.exact : Date.now();
}

/** A stable text of a JSON-like value (keys sorted, Dates as ISO text, undefined keys dropped) for comparison. */
export function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, inner: unknown) => {
    if (inner === null || typeof inner !== 'object' || Array.isArray(inner)) return inner;
    const sorted: Record<string, unknown> = {};
    for (const key of Object.keys(inner).sort()) sorted[key] = (inner as Record<string, unknown>)[key];
    return sorted;
  });
}

/** Checks `actual` against `expected`; returns the pinned expectation, or a mismatch text. */
export function settleValue<T>(what: string, expected: Expected<T>, actual: T): { pinned: Expected<T> } | { mismatch: string } {
  if ('exact' in expected) {
    return canonical(expected.exact) === canonical(actual) ? { pinned: expected } : { mismatch: `${what}: expected ${canonical(expected.exact)}, got ${canonical(actual)}` };
  }
  return expected.accepts(actual) ? { pinned: exact(actual) } : { mismatch: `${what}: expected ${expected.loose}, got ${canonical(actual)}` };
}

/** The result of comparing a read with the model: the model with its bounded values pinned, or what differs. */
export type Comparison<T> = { ok: true; model: T } | { ok: false; mismatches: string[] };

/** Compares a TaskInfo the repository returned with the model's record of the task. */
export function compareTask(model: ModelTask, actual: TaskInfo): Comparison<ModelTask> {
  const mismatches: string[] = [];
  const plain: [string, unknown, unknown][] = [
    ['id', model.id, actual.id],
    ['workId', model.workId, actual.workId],
    ['param', model.param, actual.param],
    ['state', model.state, actual.state],
    ['priority', model.priority, actual.priority],
    ['attempt', model.attempt, actual.attempt],
    ['claims', model.claims, actual.claims],
    ['unstartedClaims', model.unstartedClaims, actual.unstartedClaims],
    ['maxAttempts', model.maxAttempts, actual.maxAttempts],
    ['uniqueKey', model.uniqueKey, actual.uniqueKey],
    ['createdAt', model.createdAt, actual.createdAt instanceof Date ? actual.createdAt.getTime() : actual.createdAt],
    ['kind', 'scheduled', actual.kind],
    ['scheduleName', null, actual.scheduleName],
  ];
  for (const [what, expected, got] of plain) if (canonical(expected) !== canonical(got)) mismatches.push(`${what}: expected ${canonical(expected)}, got ${canonical(got)}`);

  const scheduledAt = settleValue('scheduledAt', model.scheduledAt, actual.scheduledAt.getTime());
  const lastError = settleValue('lastError', model.lastError, actual.lastError);
  const { at: _at, ...progressView } = actual.progress ?? { at: null };
  const progress = settleValue('progress', model.progress, actual.progress === null ? null : (progressView as ProgressView));
  let lease = model.lease;
  if (model.lease === null || actual.lease === null) {
    if (model.lease !== actual.lease) mismatches.push(`lease: expected ${model.lease === null ? 'none' : 'one'}, got ${canonical(actual.lease)}`);
  } else {
    const held = model.lease;
    for (const [what, expected, got] of [['owner', held.owner, actual.lease.owner], ['token', held.token, actual.lease.token], ['started', held.started, actual.lease.started]] as const) {
      if (expected !== got) mismatches.push(`lease.${what}: expected ${String(expected)}, got ${String(got)}`);
    }
    const until = settleValue('lease.until', held.until, actual.lease.until.getTime());
    if ('mismatch' in until) mismatches.push(until.mismatch);
    else lease = { ...held, until: until.pinned };
  }
  for (const settled of [scheduledAt, lastError, progress]) if ('mismatch' in settled) mismatches.push(settled.mismatch);
  if (mismatches.length > 0 || 'mismatch' in scheduledAt || 'mismatch' in lastError || 'mismatch' in progress) return { ok: false, mismatches: mismatches.map((m) => `task ${model.id}: ${m}`) };
  return { ok: true, model: { ...model, scheduledAt: scheduledAt.pinned, lastError: lastError.pinned, progress: progress.pinned, lease } };
}

/** Compares the attempt records the repository returned with the model's. */
export function compareRuns(model: ModelTask, actual: readonly TaskAttempt[]): Comparison<ModelTask> {
  const mismatches: string[] = [];
  if (actual.length !== model.runs.length) return { ok: false, mismatches: [`task ${model.id}: expected ${model.runs.length} attempt records, got ${actual.length}: ${canonical(actual)}`] };
  const runs = model.runs.map((run, i) => {
    const record = actual[i]!;
    const fields: [string, unknown, unknown][] = [
      ['taskId', model.id, record.taskId],
      ['run', run.run, record.run],
      ['attempt', run.attempt, record.attempt],
      ['node', run.node, record.node],
      ['outcome', run.outcome, record.outcome],
      ['checkIns', run.checkIns, record.checkIns.map((checkIn) => checkIn.message)],
      ['ended', run.outcome !== 'running', record.endedAt !== null],
    ];
    for (const [what, expected, got] of fields) if (canonical(expected) !== canonical(got)) mismatches.push(`task ${model.id} run ${run.run} ${what}: expected ${canonical(expected)}, got ${canonical(got)}`);
    if (record.endedAt !== null && record.endedAt.getTime() < record.startedAt.getTime()) mismatches.push(`task ${model.id} run ${run.run} ended before it started`);
    const error = settleValue(`task ${model.id} run ${run.run} error`, run.error, record.error);
    if ('mismatch' in error) {
      mismatches.push(error.mismatch);
      return run;
    }
    return { ...run, error: error.pinned };
  });
  return mismatches.length > 0 ? { ok: false, mismatches } : { ok: true, model: { ...model, runs } };
}

/** The model's whole store: the live tasks in insertion order, and the ids of tasks deleted since. */
export interface ModelState {
  /** The tasks the store holds, oldest insert first. */
  readonly tasks: readonly ModelTask[];
  /** Ids of deleted tasks: every read of them must say TaskNotFoundError. */
  readonly gone: readonly string[];
  /** Per client, the tasks written since its last drain of the change feed: its next drain must see each. */
  readonly unseen: readonly (readonly string[])[];
}

/** The store after `changed` were written: every client's next drain of the change feed must see them. */
export function withUnseen(state: ModelState, changed: readonly string[]): ModelState {
  if (changed.length === 0) return state;
  return { ...state, unseen: state.unseen.map((ids) => [...new Set([...ids, ...changed])]) };
}

/** Compares everything the store holds (one `list` read) with the model; pins the model's bounded values. */
export function compareStore(state: ModelState, actual: readonly TaskInfo[]): Comparison<ModelState> {
  const byId = new Map(actual.map((task) => [task.id, task]));
  const mismatches: string[] = [];
  const expectedIds = new Set(state.tasks.map((task) => task.id));
  for (const id of byId.keys()) if (!expectedIds.has(id)) mismatches.push(`the store holds task ${id}, which the model does not`);
  const tasks = state.tasks.map((task) => {
    const stored = byId.get(task.id);
    if (stored === undefined) {
      mismatches.push(`task ${task.id} is missing from the store`);
      return task;
    }
    const compared = compareTask(task, stored);
    if (!compared.ok) mismatches.push(...compared.mismatches);
    return compared.ok ? compared.model : task;
  });
  return mismatches.length > 0 ? { ok: false, mismatches } : { ok: true, model: { ...state, tasks } };
}

/** An exact null: no error, no progress. */
export function nothing<T>(): Expected<T | null> {
  return { exact: null };
}
