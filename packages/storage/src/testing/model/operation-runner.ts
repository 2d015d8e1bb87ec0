import type { Repository, WorkLimiter } from '../../contract/repository.js';
import { isWorkLimiter } from '../../contract/repository.js';
import type { JsonValue, NewTask, TaskError, TaskInfo, TaskProgress } from '../../contract/task-info.js';
import type { ModelState, ModelTask } from './model-task.js';
import type { BadInputCall, DueRef, NewTaskSpec, Operation, TaskRef, TokenRef } from './operations.js';

/** An id that no insert of a run ever uses (the repository generates the others). */
export const NEVER_USED_ID = '00000000-0000-4000-8000-00000000dead';

/** A token that no claim ever hands out. */
export const FOREIGN_TOKEN = '00000000-0000-4000-8000-0000000f0e19';

/** The error the operations give markAsFailed and release. */
export const MODEL_ERROR: TaskError = { message: 'failed in the model run', code: 'E_MODEL' };

const MINUTE = 60_000;
const YEAR = 365 * 24 * 60 * MINUTE;

/** An operation with its task, token and times resolved to values, ready to run and to apply to the model. */
export type ResolvedOperation = { readonly client: number; readonly owner: string } & (
  | { readonly kind: 'insert'; readonly input: NewTask }
  | { readonly kind: 'insertMany'; readonly inputs: readonly NewTask[] }
  | { readonly kind: 'claim'; readonly id: string; readonly leaseMs: number; readonly ifScheduledAt: number | undefined }
  | { readonly kind: 'claimDue'; readonly limit: number; readonly leaseMs: number; readonly workIds: readonly string[] | undefined; readonly agingMs: number | undefined }
  | { readonly kind: 'markAsStarted' | 'markAsDone'; readonly id: string; readonly token: string }
  | { readonly kind: 'renewLease'; readonly id: string; readonly token: string; readonly leaseMs: number }
  | { readonly kind: 'release'; readonly id: string; readonly token: string; readonly runAt: number; readonly error: TaskError | undefined; readonly refundAttempt: boolean }
  | { readonly kind: 'markAsFailed'; readonly id: string; readonly token: string | undefined; readonly error: TaskError }
  | { readonly kind: 'markAsCancelled'; readonly id: string; readonly token: string | undefined }
  | { readonly kind: 'update'; readonly id: string; readonly priority: number | undefined; readonly scheduledAt: number | undefined; readonly param: JsonValue | undefined }
  | { readonly kind: 'setProgress'; readonly id: string; readonly token: string; readonly progress: Omit<TaskProgress, 'at'> }
  | { readonly kind: 'reclaimExpired'; readonly limit: number | undefined; readonly maxUnstartedClaims: number | undefined }
  | { readonly kind: 'getById' | 'listAttempts'; readonly id: string }
  | { readonly kind: 'countByState' }
  | { readonly kind: 'deleteTerminalBefore'; readonly before: number }
  | { readonly kind: 'drainChanges'; readonly cursor: string | null; readonly pageSize: number }
  | { readonly kind: 'listDue'; readonly before: number; readonly pageSize: number }
  | { readonly kind: 'badInput'; readonly call: BadInputCall; readonly id: string; readonly token: string }
  | { readonly kind: 'claimWithinLimit'; readonly id: string; readonly leaseMs: number; readonly ifScheduledAt: number | undefined; readonly maxWorking: number }
  | {
      readonly kind: 'claimDueWithinLimits';
      readonly limit: number;
      readonly leaseMs: number;
      readonly workIds: readonly string[] | undefined;
      readonly agingMs: number | undefined;
      readonly workLimits: Readonly<Record<string, number>>;
    }
);

/** What a drain of the change feed read: every task of every page, in order, and the cursor after the last page. */
export interface DrainedChanges {
  /** The tasks of every page, in order. */
  readonly tasks: readonly TaskInfo[];
  /** The cursor after the empty page. */
  readonly cursor: string;
}

/** How a call settled: its value, or what it threw. */
export type Observed = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: unknown };

/** The node id of a client: lease owners and attempt records name it. */
export function ownerOf(client: number): string {
  return `node-${client}`;
}

/** A due time in milliseconds, from the run's start `t0`. */
export function timeOfDue(due: DueRef, t0: number): number {
  return 'pastMinutes' in due ? t0 - due.pastMinutes * MINUTE : t0 + YEAR + due.futureMinutes * MINUTE;
}

/** The live task a reference names: its slot among the tasks in its state, or among all when none is in that state. */
function taskOf(state: ModelState, ref: TaskRef): ModelTask | undefined {
  if (ref === 'gone') return undefined;
  const inState = state.tasks.filter((task) => task.state === ref.among);
  const pool = inState.length > 0 ? inState : state.tasks;
  return pool[ref.slot % Math.max(1, pool.length)];
}

function idOf(state: ModelState, ref: TaskRef): string {
  return taskOf(state, ref)?.id ?? state.gone.at(-1) ?? NEVER_USED_ID;
}

function tokenOf(state: ModelState, ref: TaskRef, role: TokenRef): string {
  const task = taskOf(state, ref);
  if (task === undefined || role === 'foreign') return FOREIGN_TOKEN;
  if (role === 'current') return task.lease?.token ?? task.tokens.at(-1) ?? FOREIGN_TOKEN;
  return task.tokens.at(-2) ?? task.tokens.at(-1) ?? FOREIGN_TOKEN;
}

function newTaskOf(spec: NewTaskSpec, t0: number, id?: string): NewTask {
  const { due, ...fields } = spec;
  return { ...fields, scheduledAt: new Date(timeOfDue(due, t0)), ...(id === undefined ? {} : { id }) };
}

/**
 * Resolves a symbolic operation against the model state it runs on; `t0` is when the run started, `cursors` each
 * client's change-feed cursor.
 */
export function resolveOperation(op: Operation, state: ModelState, t0: number, cursors: readonly (string | null)[]): ResolvedOperation {
  const base = { client: op.client, owner: ownerOf(op.client) };
  switch (op.kind) {
    case 'insert':
      return { ...base, kind: 'insert', input: newTaskOf(op.task, t0, op.takenId === null ? undefined : taskOf(state, op.takenId)?.id) };
    case 'insertMany':
      return { ...base, kind: 'insertMany', inputs: op.tasks.map((spec) => newTaskOf(spec, t0)) };
    case 'claim':
    case 'claimWithinLimit': {
      const id = idOf(state, op.task);
      const task = state.tasks.find((candidate) => candidate.id === id);
      const current = task !== undefined && 'exact' in task.scheduledAt ? task.scheduledAt.exact : t0;
      const ifScheduledAt = op.ifScheduledAt === 'none' ? undefined : op.ifScheduledAt === 'current' ? current : current + 1_000;
      if (op.kind === 'claim') return { ...base, kind: 'claim', id, leaseMs: op.leaseMs, ifScheduledAt };
      return { ...base, kind: 'claimWithinLimit', id, leaseMs: op.leaseMs, ifScheduledAt, maxWorking: op.maxWorking };
    }
    case 'claimDueWithinLimits':
      return { ...base, kind: 'claimDueWithinLimits', limit: op.limit, leaseMs: op.leaseMs, workIds: op.workIds ?? undefined, agingMs: op.agingMs ?? undefined, workLimits: op.workLimits };
    case 'claimDue':
      return { ...base, kind: 'claimDue', limit: op.limit, leaseMs: op.leaseMs, workIds: op.workIds ?? undefined, agingMs: op.agingMs ?? undefined };
    case 'markAsStarted':
    case 'markAsDone':
      return { ...base, kind: op.kind, id: idOf(state, op.task), token: tokenOf(state, op.task, op.token) };
    case 'renewLease':
      return { ...base, kind: 'renewLease', id: idOf(state, op.task), token: tokenOf(state, op.task, op.token), leaseMs: op.leaseMs };
    case 'release':
      return {
        ...base,
        kind: 'release',
        id: idOf(state, op.task),
        token: tokenOf(state, op.task, op.token),
        runAt: timeOfDue(op.runAt, t0),
        error: op.withError ? MODEL_ERROR : undefined,
        refundAttempt: op.refundAttempt,
      };
    case 'markAsFailed':
      return { ...base, kind: 'markAsFailed', id: idOf(state, op.task), token: op.token === null ? undefined : tokenOf(state, op.task, op.token), error: MODEL_ERROR };
    case 'markAsCancelled':
      return { ...base, kind: 'markAsCancelled', id: idOf(state, op.task), token: op.token === null ? undefined : tokenOf(state, op.task, op.token) };
    case 'update':
      return {
        ...base,
        kind: 'update',
        id: idOf(state, op.task),
        priority: op.priority ?? undefined,
        scheduledAt: op.due === null ? undefined : timeOfDue(op.due, t0),
        param: op.param,
      };
    case 'setProgress':
      return {
        ...base,
        kind: 'setProgress',
        id: idOf(state, op.task),
        token: tokenOf(state, op.task, op.token),
        progress: { completed: op.completed, total: 3, ...(op.message === null ? {} : { message: op.message }) },
      };
    case 'reclaimExpired':
      return { ...base, kind: 'reclaimExpired', limit: op.limit ?? undefined, maxUnstartedClaims: op.maxUnstartedClaims ?? undefined };
    case 'getById':
    case 'listAttempts':
      return { ...base, kind: op.kind, id: idOf(state, op.task) };
    case 'countByState':
      return { ...base, kind: 'countByState' };
    case 'deleteTerminalBefore':
      // Everything: every terminal task (last updated before ten years from now); else none (before a year ago).
      return { ...base, kind: 'deleteTerminalBefore', before: op.everything ? t0 + 10 * YEAR : t0 - YEAR };
    case 'drainChanges':
      return { ...base, kind: 'drainChanges', cursor: cursors[op.client] ?? null, pageSize: op.pageSize };
    case 'badInput':
      return { ...base, kind: 'badInput', call: op.call, id: idOf(state, op.task), token: tokenOf(state, op.task, 'current') };
    case 'listDue':
      // Every due task and none of those a year ahead.
      return { ...base, kind: 'listDue', before: t0 + 24 * 60 * MINUTE, pageSize: op.pageSize };
  }
}

/** Makes the call of a bad-input operation. */
function callWithBadInput(repository: Repository, op: Extract<ResolvedOperation, { kind: 'badInput' }>): Promise<unknown> {
  switch (op.call) {
    case 'claim with leaseMs -1':
      return repository.claim(op.id, { owner: op.owner, leaseMs: -1 });
    case 'claimDue with limit 0':
      return repository.claimDue({ owner: op.owner, leaseMs: 60_000, limit: 0 });
    case 'reclaimExpired with maxUnstartedClaims 0':
      return repository.reclaimExpired({ maxUnstartedClaims: 0 });
    case "insert with workId ''":
      return repository.insert({ workId: '', scheduledAt: new Date() });
    case 'update with priority NaN':
      return repository.update(op.id, { priority: Number.NaN });
    case 'release with an invalid runAt':
      return repository.release(op.id, op.token, { runAt: new Date(Number.NaN) });
  }
}

/** Pages getUpdatedSince from `cursor` until an empty page; a bound stops an adapter whose cursor never advances. */
async function drainChanges(repository: Repository, cursor: string | null, pageSize: number): Promise<DrainedChanges> {
  const tasks: TaskInfo[] = [];
  let current = cursor;
  for (let page = 0; page < 1_000; page++) {
    const { tasks: changed, cursor: next } = await repository.getUpdatedSince(current, pageSize);
    if (changed.length > pageSize) throw new Error(`getUpdatedSince returned ${changed.length} tasks, over its limit ${pageSize}`);
    if (changed.length === 0) {
      if (current !== null && next !== current) throw new Error('getUpdatedSince moved the cursor on an empty page');
      return { tasks, cursor: next };
    }
    tasks.push(...changed);
    current = next;
  }
  throw new Error('getUpdatedSince did not reach an empty page within 1000 pages');
}

/** Pages listDue until `next` is null. */
async function listAllDue(repository: Repository, before: number, pageSize: number): Promise<TaskInfo[]> {
  const tasks: TaskInfo[] = [];
  let after: string | null = null;
  for (let page = 0; page < 1_000; page++) {
    const result = await repository.listDue({ before: new Date(before), limit: pageSize, after });
    if (result.tasks.length > pageSize) throw new Error(`listDue returned ${result.tasks.length} tasks, over its limit ${pageSize}`);
    tasks.push(...result.tasks);
    if (result.next === null) return tasks;
    after = result.next;
  }
  throw new Error('listDue did not reach its last page within 1000 pages');
}

/** The repository as a WorkLimiter; the operations of that capability are drawn only for a repository that has it. */
function limiter(repository: Repository): Repository & WorkLimiter {
  if (!isWorkLimiter(repository)) throw new TypeError('a WorkLimiter operation was drawn for a repository that is not a WorkLimiter');
  return repository;
}

/** Calls the repository method an operation names, on the client it names. */
function call(repository: Repository, op: ResolvedOperation): Promise<unknown> {
  switch (op.kind) {
    case 'insert':
      return repository.insert(op.input);
    case 'insertMany':
      return repository.insertMany(op.inputs);
    case 'claim':
      return repository.claim(op.id, { owner: op.owner, leaseMs: op.leaseMs, ...(op.ifScheduledAt === undefined ? {} : { ifScheduledAt: new Date(op.ifScheduledAt) }) });
    case 'claimDue':
      return repository.claimDue({
        owner: op.owner,
        leaseMs: op.leaseMs,
        limit: op.limit,
        ...(op.workIds === undefined ? {} : { workIds: op.workIds }),
        ...(op.agingMs === undefined ? {} : { agingMs: op.agingMs }),
      });
    case 'markAsStarted':
      return repository.markAsStarted(op.id, op.token);
    case 'markAsDone':
      return repository.markAsDone(op.id, op.token);
    case 'renewLease':
      return repository.renewLease(op.id, op.token, op.leaseMs);
    case 'release':
      return repository.release(op.id, op.token, { runAt: new Date(op.runAt), refundAttempt: op.refundAttempt, ...(op.error === undefined ? {} : { error: op.error }) });
    case 'markAsFailed':
      return repository.markAsFailed(op.id, op.error, op.token);
    case 'markAsCancelled':
      return repository.markAsCancelled(op.id, op.token === undefined ? undefined : { token: op.token });
    case 'update':
      return repository.update(op.id, {
        ...(op.priority === undefined ? {} : { priority: op.priority }),
        ...(op.scheduledAt === undefined ? {} : { scheduledAt: new Date(op.scheduledAt) }),
        ...(op.param === undefined ? {} : { param: op.param }),
      });
    case 'setProgress':
      return repository.setProgress(op.id, op.token, op.progress);
    case 'reclaimExpired':
      return repository.reclaimExpired({
        ...(op.limit === undefined ? {} : { limit: op.limit }),
        ...(op.maxUnstartedClaims === undefined ? {} : { maxUnstartedClaims: op.maxUnstartedClaims }),
      });
    case 'getById':
      return repository.getById(op.id);
    case 'listAttempts':
      return repository.listAttempts(op.id);
    case 'countByState':
      return repository.countByState();
    case 'deleteTerminalBefore':
      return repository.deleteTerminalBefore(new Date(op.before));
    case 'drainChanges':
      return drainChanges(repository, op.cursor, op.pageSize);
    case 'badInput':
      return callWithBadInput(repository, op);
    case 'claimWithinLimit':
      return limiter(repository).claimWithinLimit(op.id, {
        owner: op.owner,
        leaseMs: op.leaseMs,
        maxWorking: op.maxWorking,
        ...(op.ifScheduledAt === undefined ? {} : { ifScheduledAt: new Date(op.ifScheduledAt) }),
      });
    case 'claimDueWithinLimits':
      return limiter(repository).claimDueWithinLimits({
        owner: op.owner,
        leaseMs: op.leaseMs,
        limit: op.limit,
        workLimits: op.workLimits,
        ...(op.workIds === undefined ? {} : { workIds: op.workIds }),
        ...(op.agingMs === undefined ? {} : { agingMs: op.agingMs }),
      });
    case 'listDue':
      return listAllDue(repository, op.before, op.pageSize);
  }
}

/** Runs an operation on its client and reports how it settled; it never rejects. */
export function runOperation(clients: readonly Repository[], op: ResolvedOperation): Promise<Observed> {
  const repository = clients[op.client];
  if (repository === undefined) return Promise.resolve({ ok: false, error: new RangeError(`no client ${op.client}`) });
  // Called inside a then, so a method that throws synchronously is observed like one that rejects.
  return Promise.resolve()
    .then(() => call(repository, op))
    .then(
      (value): Observed => ({ ok: true, value }),
      (error: unknown): Observed => ({ ok: false, error }),
    );
}
