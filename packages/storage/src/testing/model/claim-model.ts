import type { TaskInfo } from '../../contract/task-info.js';
import { DEFAULT_AGING_MS, checkClaimOrder, claimOrderGroups } from './claim-order.js';
import type { ModelState, ModelTask } from './model-task.js';
import { leaseUntil, nothing, timeOf, unspecified } from './model-task.js';
import type { Observed, ResolvedOperation } from './operation-runner.js';
import type { Verdict } from './verdicts.js';
import { agree, describeObserved, fail, isVerdict, refused, returnsTask, taskValue } from './verdicts.js';

/** The claims of the reference model: by id (the run starts) and ahead (it does not), and what they share. */

/** How the call ran: by itself, or together with other calls. */
export type Mode = 'alone' | 'racing';

/** Far enough ahead that a due time beyond it is not due while a run lasts (the drawn ones are a year away). */
const NOT_DUE_AFTER_MS = 24 * 60 * 60_000;

/** Whether a task is due by the database's clock (due times are far from now either way). */
export function isDue(task: ModelTask): boolean {
  return timeOf(task.scheduledAt) < Date.now() + NOT_DUE_AFTER_MS;
}

/** The live task with this id. */
export function find(state: ModelState, id: string): ModelTask | undefined {
  return state.tasks.find((task) => task.id === id);
}

/** A run starts: the attempt counts and its record opens. */
export function startRun(task: ModelTask, node: string): ModelTask {
  const attempt = task.attempt + 1;
  return { ...task, attempt, unstartedClaims: 0, runs: [...task.runs, { run: task.runs.length + 1, attempt, node, outcome: 'running', error: nothing(), checkIns: [] }] };
}

/** A new claim's lease token: a non-empty string no claim handed out before. */
function checkNewToken(state: ModelState, actual: TaskInfo, what: string): string | Verdict {
  const token = actual.lease?.token;
  if (typeof token !== 'string' || token.length === 0) return fail(`${what}: the claim returned no lease token`);
  if (state.tasks.some((task) => task.tokens.includes(token))) return fail(`${what}: the claim of ${actual.id} handed out the token ${token}, which an earlier claim had`);
  return token;
}

/** The resolved operation of one kind. */
export type Op<K extends ResolvedOperation['kind']> = Extract<ResolvedOperation, { kind: K }>;

/** A claim by id: null when not Initialized or rescheduled, TaskNotDueError when not due, else a started run. */
export function claim(state: ModelState, op: Op<'claim'>, observed: Observed, what: string): Verdict {
  const task = find(state, op.id);
  if (task === undefined) return refused(state, observed, ['TASK_NOT_FOUND'], what);
  const stale = op.ifScheduledAt !== undefined && op.ifScheduledAt !== timeOf(task.scheduledAt);
  if (task.state !== 'Initialized' || stale) {
    if (observed.ok && observed.value === null) return agree(state);
    return fail(`${what}: a ${task.state} task${stale ? ' claimed with a stale ifScheduledAt' : ''} expects null, got ${describeObserved(observed)}`);
  }
  if (!isDue(task)) return refused(state, observed, ['NOT_DUE'], `${what} of a task not due`);
  const actual = taskValue(observed, what);
  if (isVerdict(actual)) return actual;
  const token = checkNewToken(state, actual, what);
  if (isVerdict(token)) return token;
  const started = startRun(task, op.owner);
  const lease = { owner: op.owner, token, started: true, expired: op.leaseMs === 0, until: leaseUntil(op.leaseMs) };
  return returnsTask(state, { ...started, state: 'Working', claims: task.claims + 1, lease, progress: nothing(), tokens: [...task.tokens, token] }, actual, what);
}

/** The tasks a claim ahead may take: Initialized, due, of the works named (all when none are). */
export function claimableAhead(state: ModelState, workIds: readonly string[] | undefined): ModelTask[] {
  return state.tasks.filter((task) => task.state === 'Initialized' && isDue(task) && (workIds === undefined || workIds.includes(task.workId)));
}

/** A claim ahead: made alone, the head of the claim order up to its limit; in a race, claimable tasks, none twice. */
export function claimDue(state: ModelState, op: Op<'claimDue'>, observed: Observed, mode: Mode, what: string): Verdict {
  const candidates = claimableAhead(state, op.workIds);
  if (!observed.ok || !Array.isArray(observed.value)) return fail(`${what}: expected an array of tasks, got ${describeObserved(observed)}`);
  const claimed = observed.value as TaskInfo[];
  const ids = claimed.map((task) => task.id);
  if (mode === 'alone') {
    const wrongOrder = checkClaimOrder(claimOrderGroups(candidates, op.agingMs ?? DEFAULT_AGING_MS), ids, op.limit);
    if (wrongOrder !== null) return fail(`${what}: ${wrongOrder}`);
  } else {
    if (new Set(ids).size !== ids.length) return fail(`${what}: returned a task twice: ${ids.join(', ')}`);
    if (ids.length > op.limit) return fail(`${what}: returned ${ids.length} tasks, over its limit ${op.limit}`);
    const stray = ids.find((id) => !candidates.some((task) => task.id === id));
    if (stray !== undefined) return fail(`${what}: claimed ${stray}, which was not a due Initialized task of its works`);
  }
  return applyClaimsAhead(state, claimed, op.owner, op.leaseMs, what);
}

/** The tasks a claim ahead returned (each checked to be claimable) go to Working under unstarted leases. */
export function applyClaimsAhead(state: ModelState, claimed: readonly TaskInfo[], owner: string, leaseMs: number, what: string): Verdict {
  let current = state;
  for (const actual of claimed) {
    const task = find(current, actual.id)!;
    const token = checkNewToken(current, actual, what);
    if (isVerdict(token)) return token;
    const lease = { owner, token, started: false, expired: leaseMs === 0, until: leaseUntil(leaseMs) };
    const verdict = returnsTask(current, { ...task, state: 'Working', claims: task.claims + 1, lease, progress: unspecified(), tokens: [...task.tokens, token] }, actual, what);
    if (!verdict.ok) return verdict;
    current = verdict.state;
  }
  return agree(current, claimed.map((task) => task.id));
}
