import type { AttemptOutcome, NewTask, TaskAttempt, TaskError, TaskInfo, TaskState } from '../../contract/task-info.js';
import { DEFAULT_MAX_UNSTARTED_CLAIMS, isTerminal, poisonTaskError } from '../../contract/task-info.js';
import type { Mode, Op } from './claim-model.js';
import { claim, claimDue, find, startRun } from './claim-model.js';
import type { Expected, ModelState, ModelTask, ProgressView } from './model-task.js';
import { canonical, compareRuns, errorLike, exact, leaseUntil, nearNow, nothing, someError, unspecified } from './model-task.js';
import type { Observed, ResolvedOperation } from './operation-runner.js';
import { drainChanges, listDue } from './paged-reads.js';
import { claimDueWithinLimits, claimWithinLimit } from './work-limit-model.js';
import type { RefusalCode, Verdict } from './verdicts.js';
import { agree, describeObserved, expectTask, fail, refused, returnsTask, withTask } from './verdicts.js';

/**
 * The reference model of the Repository contract: a pure statement of what each call must return and leave
 * stored, written from the contract's TSDoc (repository.ts, task-info.ts), not from any adapter.
 *
 * It is applied to what a call was observed to return, because some of what a call returns is the database's
 * choice (a generated id, a lease token, a time on its clock): the model checks that choice against the contract's
 * bounds and then keeps it. In `alone` mode the call ran by itself and its result is checked exactly; in `racing`
 * mode it ran together with others, and a claimDue or reclaimExpired may have been told apart from tasks a
 * concurrent call held (SKIP LOCKED), so only what it returned is checked, not that it took all it could.
 */

function held(task: ModelTask, token: string | undefined): boolean {
  return task.state === 'Working' && task.lease !== null && task.lease.token === token;
}

/** The run in progress closes with `outcome`. */
function closeRun(task: ModelTask, outcome: AttemptOutcome, error: Expected<TaskError | null>): ModelTask {
  const last = task.runs.at(-1);
  if (last === undefined || last.outcome !== 'running') return task;
  return { ...task, runs: [...task.runs.slice(0, -1), { ...last, outcome, error }] };
}

/** The task ends in `state` (Done, Failed, Cancelled): the lease goes, the run closes as `outcome`. */
function end(task: ModelTask, state: TaskState, outcome: AttemptOutcome, error: Expected<TaskError | null>): ModelTask {
  const ended = task.lease?.started === true ? closeRun(task, outcome, error) : task;
  return { ...ended, state, lease: null, progress: unspecified() };
}

function newModelTask(input: NewTask, actual: TaskInfo): ModelTask {
  return {
    id: actual.id,
    workId: input.workId,
    param: input.param ?? null,
    scheduledAt: exact(input.scheduledAt.getTime()),
    state: 'Initialized',
    priority: input.priority ?? 0,
    attempt: 0,
    claims: 0,
    unstartedClaims: 0,
    maxAttempts: input.maxAttempts ?? 1,
    lease: null,
    lastError: nothing(),
    uniqueKey: input.uniqueKey ?? null,
    progress: nothing(),
    createdAt: actual.createdAt.getTime(),
    runs: [],
    tokens: [],
  };
}

/** One insert: a live task holding the key is returned; else a new task (a taken id is refused). */
function insertOne(state: ModelState, input: NewTask, observed: Observed, what: string): Verdict {
  const holder = input.uniqueKey === undefined || input.uniqueKey === null ? undefined : state.tasks.find((task) => task.uniqueKey === input.uniqueKey && !isTerminal(task.state));
  const taken = input.id !== undefined && state.tasks.some((task) => task.id === input.id);
  // Both a taken id and a held key: the contract does not say which check comes first, so either answer agrees.
  if (taken && (holder === undefined || !observed.ok)) return refused(state, observed, ['INVALID_INPUT'], `${what} with a taken id`);
  if (!observed.ok) return fail(`${what}: expected an insert result, got ${describeObserved(observed)}`);
  const result = observed.value as { task: TaskInfo; created: boolean };
  if (holder !== undefined) {
    if (result.created !== false) return fail(`${what}: the key ${input.uniqueKey} is held by the live task ${holder.id}, yet created is ${String(result.created)}`);
    return returnsTask(state, holder, result.task, `${what} of a held key`, false);
  }
  if (result.created !== true) return fail(`${what}: no live task holds the key, yet created is ${String(result.created)}`);
  if (state.tasks.some((task) => task.id === result.task.id) || state.gone.includes(result.task.id)) return fail(`${what}: the new task got the id ${result.task.id}, already used`);
  if (Math.abs(result.task.createdAt.getTime() - Date.now()) > 5 * 60_000) return fail(`${what}: createdAt ${result.task.createdAt.toISOString()} is not about now`);
  const created = newModelTask(input, result.task);
  return returnsTask({ ...state, tasks: [...state.tasks, created] }, created, result.task, what);
}

function insertMany(state: ModelState, inputs: readonly NewTask[], observed: Observed, what: string): Verdict {
  if (!observed.ok) return fail(`${what}: expected ${inputs.length} results, got ${describeObserved(observed)}`);
  const results = observed.value as unknown[];
  if (!Array.isArray(results) || results.length !== inputs.length) return fail(`${what}: expected ${inputs.length} results in input order, got ${canonical(results)}`);
  let current = state;
  const changed: string[] = [];
  for (const [i, input] of inputs.entries()) {
    const verdict = insertOne(current, input, { ok: true, value: results[i] }, `${what}[${i}]`);
    if (!verdict.ok) return verdict;
    current = verdict.state;
    changed.push(...verdict.changed);
  }
  return agree(current, changed);
}

function reclaimExpired(state: ModelState, op: Op<'reclaimExpired'>, observed: Observed, mode: Mode, what: string): Verdict {
  const expired = state.tasks.filter((task) => task.state === 'Working' && task.lease?.expired === true);
  if (!observed.ok || !Array.isArray(observed.value)) return fail(`${what}: expected an array of tasks, got ${describeObserved(observed)}`);
  const reclaimed = observed.value as TaskInfo[];
  const ids = reclaimed.map((task) => task.id);
  const expectedCount = Math.min(op.limit ?? Number.POSITIVE_INFINITY, expired.length);
  if (new Set(ids).size !== ids.length) return fail(`${what}: returned a task twice: ${ids.join(', ')}`);
  if (mode === 'alone' ? ids.length !== expectedCount : ids.length > expectedCount) {
    return fail(`${what}: reclaimed ${ids.length} tasks (${ids.join(', ')}), expected ${expectedCount} of the expired ${expired.map((task) => task.id).join(', ')}`);
  }
  let current = state;
  for (const actual of reclaimed) {
    const task = expired.find((candidate) => candidate.id === actual.id);
    if (task === undefined) return fail(`${what}: reclaimed ${actual.id}, whose lease had not expired (or which was not Working)`);
    let next: ModelTask;
    if (task.lease!.started) {
      const closed = closeRun(task, 'lease-expired', unspecified());
      next = task.attempt >= task.maxAttempts ? { ...closed, state: 'Failed', lastError: someError(), scheduledAt: unspecified() } : { ...closed, state: 'Initialized', scheduledAt: nearNow(), lastError: unspecified() };
    } else {
      const unstartedClaims = task.unstartedClaims + 1;
      next =
        unstartedClaims >= (op.maxUnstartedClaims ?? DEFAULT_MAX_UNSTARTED_CLAIMS)
          ? { ...task, unstartedClaims, state: 'Failed', lastError: errorLike(poisonTaskError(unstartedClaims)), scheduledAt: unspecified() }
          : { ...task, unstartedClaims, state: 'Initialized', scheduledAt: nearNow(), lastError: unspecified() };
    }
    const verdict = returnsTask(current, { ...next, lease: null, progress: unspecified() }, actual, what);
    if (!verdict.ok) return verdict;
    current = verdict.state;
  }
  return agree(current, ids);
}

/** The transitions of a held lease: start, renew, release, end. */
function leaseTransition(state: ModelState, op: Op<'markAsStarted' | 'renewLease' | 'release' | 'markAsDone' | 'setProgress'>, observed: Observed, what: string): Verdict {
  const task = find(state, op.id);
  if (task === undefined) return refused(state, observed, ['TASK_NOT_FOUND'], what);
  if (!held(task, op.token)) return refused(state, observed, ['LEASE_LOST'], `${what} (not Working under this token)`);
  const lease = task.lease!;
  switch (op.kind) {
    case 'markAsStarted':
      if (lease.started) return expectTask(state, observed, task, `${what} of a started run`, false);
      // A run never starts on an expired lease: any node may reclaim the task at any moment.
      if (lease.expired) return refused(state, observed, ['LEASE_LOST'], `${what} of a claim ahead whose lease expired`);
      return expectTask(state, observed, { ...startRun(task, lease.owner), lease: { ...lease, started: true } }, what);
    case 'renewLease':
      return expectTask(state, observed, { ...task, lease: { ...lease, expired: op.leaseMs === 0, until: leaseUntil(op.leaseMs) } }, what);
    case 'release': {
      const closed = closeRun(task, op.error === undefined ? 'released' : 'retried', op.error === undefined ? nothing() : errorLike(op.error));
      const attempt = lease.started && op.refundAttempt ? task.attempt - 1 : task.attempt;
      const lastError = op.error === undefined ? task.lastError : errorLike(op.error);
      return expectTask(state, observed, { ...closed, state: 'Initialized', scheduledAt: exact(op.runAt), lease: null, attempt, lastError, progress: unspecified() }, what);
    }
    case 'markAsDone':
      if (!lease.started) return refused(state, observed, ['INVALID_STATE'], `${what} of an unstarted claim`);
      return expectTask(state, observed, end(task, 'Done', 'succeeded', nothing()), what);
    case 'setProgress': {
      if (!observed.ok || observed.value !== undefined) return fail(`${what}: expected it to resolve to nothing, got ${describeObserved(observed)}`);
      const message = op.progress.message;
      const last = task.runs.at(-1);
      const checkIn = message !== undefined && last?.outcome === 'running' && last.checkIns.at(-1) !== message;
      const runs = checkIn ? [...task.runs.slice(0, -1), { ...last, checkIns: [...last.checkIns, message] }] : task.runs;
      return agree(withTask(state, { ...task, runs, progress: exact<ProgressView | null>({ ...op.progress }) }), [task.id]);
    }
  }
}

function markAsFailed(state: ModelState, op: Op<'markAsFailed'>, observed: Observed, what: string): Verdict {
  const task = find(state, op.id);
  if (task === undefined) return refused(state, observed, ['TASK_NOT_FOUND'], what);
  if (op.token === undefined) {
    if (task.state !== 'Initialized') return refused(state, observed, ['INVALID_STATE'], `${what} without a token of a ${task.state} task`);
    return expectTask(state, observed, { ...task, state: 'Failed', lastError: errorLike(op.error), progress: unspecified() }, what);
  }
  if (!held(task, op.token)) return refused(state, observed, ['LEASE_LOST'], `${what} (not Working under this token)`);
  if (!task.lease!.started) return refused(state, observed, ['INVALID_STATE'], `${what} of an unstarted claim`);
  return expectTask(state, observed, { ...end(task, 'Failed', 'failed', errorLike(op.error)), lastError: errorLike(op.error) }, what);
}

function markAsCancelled(state: ModelState, op: Op<'markAsCancelled'>, observed: Observed, what: string): Verdict {
  const task = find(state, op.id);
  if (task === undefined) return refused(state, observed, ['TASK_NOT_FOUND'], what);
  const unchanged = (): Verdict => {
    if (!observed.ok) return fail(`${what} of a ${task.state} task: expected { cancelled: false }, got ${describeObserved(observed)}`);
    const result = observed.value as { task: TaskInfo; cancelled: boolean };
    if (result.cancelled !== false) return fail(`${what} of a ${task.state} task: expected cancelled: false, got ${String(result.cancelled)}`);
    return returnsTask(state, task, result.task, what, false);
  };
  if (isTerminal(task.state)) {
    if (op.token === undefined) return unchanged();
    // With a token, the contract names both refusals of a terminal task: LeaseLostError, or cancelled: false.
    return observed.ok ? unchanged() : refused(state, observed, ['LEASE_LOST'], `${what} of a ${task.state} task with a token`);
  }
  if (op.token !== undefined && !held(task, op.token)) return refused(state, observed, ['LEASE_LOST'], `${what} (not Working under this token)`);
  if (!observed.ok) return fail(`${what}: expected { cancelled: true }, got ${describeObserved(observed)}`);
  const result = observed.value as { task: TaskInfo; cancelled: boolean };
  if (result.cancelled !== true) return fail(`${what} of a ${task.state} task: expected cancelled: true, got ${String(result.cancelled)}`);
  return returnsTask(state, end(task, 'Cancelled', 'cancelled', nothing()), result.task, what);
}

function update(state: ModelState, op: Op<'update'>, observed: Observed, what: string): Verdict {
  const task = find(state, op.id);
  if (task === undefined) return refused(state, observed, ['TASK_NOT_FOUND'], what);
  if (task.state !== 'Initialized') return refused(state, observed, ['INVALID_STATE'], `${what} of a ${task.state} task`);
  const next: ModelTask = {
    ...task,
    ...(op.priority === undefined ? {} : { priority: op.priority }),
    ...(op.scheduledAt === undefined ? {} : { scheduledAt: exact(op.scheduledAt) }),
    ...(op.param === undefined ? {} : { param: op.param }),
  };
  return expectTask(state, observed, next, what);
}

function read(state: ModelState, op: Op<'getById' | 'listAttempts'>, observed: Observed, what: string): Verdict {
  const task = find(state, op.id);
  if (task === undefined) return refused(state, observed, ['TASK_NOT_FOUND'], what);
  if (op.kind === 'getById') return expectTask(state, observed, task, what, false);
  if (!observed.ok || !Array.isArray(observed.value)) return fail(`${what}: expected the attempt records, got ${describeObserved(observed)}`);
  const compared = compareRuns(task, observed.value as TaskAttempt[]);
  return compared.ok ? agree(withTask(state, compared.model)) : fail(`${what}: ${compared.mismatches.join('; ')}`);
}

function countByState(state: ModelState, observed: Observed, what: string): Verdict {
  const expected: Record<TaskState, number> = { Initialized: 0, Working: 0, Done: 0, Cancelled: 0, Failed: 0 };
  for (const task of state.tasks) expected[task.state]++;
  if (observed.ok && canonical(observed.value) === canonical(expected)) return agree(state);
  return fail(`${what}: expected ${canonical(expected)}, got ${describeObserved(observed)}`);
}

function deleteTerminalBefore(state: ModelState, op: Op<'deleteTerminalBefore'>, observed: Observed, what: string): Verdict {
  const deleted = op.before > Date.now() ? state.tasks.filter((task) => isTerminal(task.state)) : [];
  if (!observed.ok || observed.value !== deleted.length) return fail(`${what}: expected ${deleted.length} deleted, got ${describeObserved(observed)}`);
  const ids = deleted.map((task) => task.id);
  return agree({ ...state, tasks: state.tasks.filter((task) => !ids.includes(task.id)), gone: [...state.gone, ...ids] }, ids);
}

/**
 * A call with bad input throws InvalidInputError and writes nothing. Where the same call with a good input would be
 * refused anyway (no such task, not Initialized, not held), the contract does not order the two checks, so that
 * refusal agrees too.
 */
function badInput(state: ModelState, op: Op<'badInput'>, observed: Observed, what: string): Verdict {
  const task = find(state, op.id);
  const codes: RefusalCode[] = ['INVALID_INPUT'];
  let refusedAnyway: 'null' | null = null;
  if (op.call === 'claim with leaseMs -1' || op.call === 'update with priority NaN' || op.call === 'release with an invalid runAt') {
    if (task === undefined) codes.push('TASK_NOT_FOUND');
    else if (op.call === 'update with priority NaN' && task.state !== 'Initialized') codes.push('INVALID_STATE');
    else if (op.call === 'release with an invalid runAt' && !held(task, op.token)) codes.push('LEASE_LOST');
    else if (op.call === 'claim with leaseMs -1' && task.state !== 'Initialized') refusedAnyway = 'null';
  }
  if (refusedAnyway === 'null' && observed.ok && observed.value === null) return agree(state);
  return refused(state, observed, codes, what);
}

/**
 * Applies one observed call to the model: whether the contract allows what the call returned (or threw) from
 * `state`, and the store it leaves.
 */
export function applyOperation(state: ModelState, op: ResolvedOperation, observed: Observed, mode: Mode): Verdict {
  const what = `client${op.client}.${op.kind}${'id' in op ? `(${op.id})` : ''}`;
  switch (op.kind) {
    case 'insert':
      return insertOne(state, op.input, observed, what);
    case 'insertMany':
      return insertMany(state, op.inputs, observed, what);
    case 'claim':
      return claim(state, op, observed, what);
    case 'claimDue':
      return claimDue(state, op, observed, mode, what);
    case 'reclaimExpired':
      return reclaimExpired(state, op, observed, mode, what);
    case 'markAsStarted':
    case 'renewLease':
    case 'release':
    case 'markAsDone':
    case 'setProgress':
      return leaseTransition(state, op, observed, what);
    case 'markAsFailed':
      return markAsFailed(state, op, observed, what);
    case 'markAsCancelled':
      return markAsCancelled(state, op, observed, what);
    case 'update':
      return update(state, op, observed, what);
    case 'getById':
    case 'listAttempts':
      return read(state, op, observed, what);
    case 'countByState':
      return countByState(state, observed, what);
    case 'deleteTerminalBefore':
      return deleteTerminalBefore(state, op, observed, what);
    case 'claimWithinLimit':
      return claimWithinLimit(state, op, observed, mode, what);
    case 'claimDueWithinLimits':
      return claimDueWithinLimits(state, op, observed, mode, what);
    case 'drainChanges':
      return drainChanges(state, op.client, observed, what);
    case 'badInput':
      return badInput(state, op, observed, `${what} ${op.call}`);
    case 'listDue':
      return listDue(state, op.before, observed, what);
  }
}
