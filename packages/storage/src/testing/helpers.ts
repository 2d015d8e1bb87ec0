import { randomUUID } from 'node:crypto';
import { expect } from 'vitest';
import type { ClaimDueOptions, ClaimOptions, ListOptions, Repository } from '../contract/repository.js';
import type { Lease, NewTask, TaskInfo, TaskState } from '../contract/task-info.js';
import { ALL_TASK_STATES } from '../contract/task-info.js';

/** One minute in milliseconds. */
export const MINUTE = 60_000;

/**
 * A time `ms` before now. The margins the rules use (minutes) dwarf any skew between this process and a
 * local database's clock, which the repository uses for due checks.
 */
export function past(ms = 10 * MINUTE): Date {
  return new Date(Date.now() - ms);
}

/** A time `ms` after now (a year by default: never due during a test). */
export function future(ms = 365 * 24 * 60 * MINUTE): Date {
  return new Date(Date.now() + ms);
}

/** A valid new task, due ten minutes ago unless overridden. */
export function newTask(overrides: Partial<NewTask> = {}): NewTask {
  return { workId: 'work-a', scheduledAt: past(), ...overrides };
}

/** Inserts one task and returns it. */
export async function insertTask(repo: Repository, overrides: Partial<NewTask> = {}): Promise<TaskInfo> {
  return (await repo.insert(newTask(overrides))).task;
}

/** A Working task with its lease. */
export type ClaimedTask = TaskInfo & { lease: Lease };

/** Claims `id` and fails the test when the claim is refused. */
export async function claimOrFail(repo: Repository, id: string, options: Partial<ClaimOptions> = {}): Promise<ClaimedTask> {
  const task = await repo.claim(id, { owner: 'node-a', leaseMs: 60_000, ...options });
  expect(task, `claim of ${id}`).not.toBeNull();
  expect(task!.lease, `lease of ${id}`).not.toBeNull();
  return task as ClaimedTask;
}

/** Inserts one task (maxAttempts 3 unless overridden) and claims it. */
export async function insertClaimed(repo: Repository, overrides: Partial<NewTask> = {}, options: Partial<ClaimOptions> = {}): Promise<ClaimedTask> {
  const task = await insertTask(repo, { maxAttempts: 3, ...overrides });
  return claimOrFail(repo, task.id, options);
}

/**
 * Inserts one task (maxAttempts 3 unless overridden) under a work of its own and claims it ahead with `claimDue`
 * (filtered to that work, so other due tasks of the fixture are left alone); fails the test unless exactly that
 * task is claimed, unstarted.
 */
export async function insertClaimedAhead(repo: Repository, overrides: Partial<NewTask> = {}, options: Partial<ClaimDueOptions> = {}): Promise<ClaimedTask> {
  const task = await insertTask(repo, { maxAttempts: 3, workId: `ahead-${randomUUID()}`, ...overrides });
  const claimed = await repo.claimDue({ owner: 'node-a', leaseMs: 60_000, limit: 1, workIds: [task.workId], ...options });
  expect(idsOf(claimed), `claimDue of ${task.id}`).toEqual([task.id]);
  expect(claimed[0]!.lease, `lease of ${task.id}`).toMatchObject({ started: false });
  return claimed[0] as ClaimedTask;
}

/** Claims `id` ahead again with `claimDue` (it must be its work's only due task), and fails the test unless it is claimed. */
export async function claimAheadOrFail(repo: Repository, task: TaskInfo, options: Partial<ClaimDueOptions> = {}): Promise<ClaimedTask> {
  const claimed = await repo.claimDue({ owner: 'node-a', leaseMs: 60_000, limit: 1, workIds: [task.workId], ...options });
  expect(idsOf(claimed), `claimDue of ${task.id}`).toEqual([task.id]);
  return claimed[0] as ClaimedTask;
}

/** What a call settled to: its value, or the error it rejected with. */
export type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** Awaits `promise` and reports how it settled, so that a rule can check refusals one call at a time. */
export function settle<T>(promise: Promise<T>): Promise<Settled<T>> {
  return promise.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
}

/** A terminal task and the token of the run that ended it (or a random one when no run ended it). */
export interface TerminalTask {
  /** The task, in its terminal state. */
  task: TaskInfo;
  /** The lease token of the run that ended it: a zombie's token once the task is terminal. */
  token: string;
}

/** Brings a new task to `state` (Done, Cancelled or Failed) through a claimed run. */
export async function insertTerminal(repo: Repository, state: TaskState, overrides: Partial<NewTask> = {}): Promise<TerminalTask> {
  const claimed = await insertClaimed(repo, overrides);
  const token = claimed.lease.token;
  let task: TaskInfo;
  if (state === 'Done') task = await repo.markAsDone(claimed.id, token);
  else if (state === 'Failed') task = await repo.markAsFailed(claimed.id, { message: 'boom', name: 'Error' }, token);
  else if (state === 'Cancelled') task = (await repo.markAsCancelled(claimed.id, { token })).task;
  else throw new TypeError(`${state} is not terminal`);
  expect(task.state).toBe(state);
  return { task, token };
}

/** The sum of countByState. */
export async function totalCount(repo: Repository): Promise<number> {
  const counts = await repo.countByState();
  return ALL_TASK_STATES.reduce((sum, state) => sum + counts[state], 0);
}

/** The ids of `tasks`, in order. */
export function idsOf(tasks: readonly TaskInfo[]): string[] {
  return tasks.map((task) => task.id);
}

/** A random token that no claim handed out. */
export function foreignToken(): string {
  return randomUUID();
}

/** Everything a reader saw while paging getUpdatedSince until an empty page. */
export interface Drained {
  /** Every task of every page, in order. */
  tasks: TaskInfo[];
  /** The cursor after the last (empty) page. */
  cursor: string;
  /** How many non-empty pages there were. */
  pages: number;
}

/** Pages `getUpdatedSince` from `cursor` until a page comes back empty, checking each page's size. */
export async function drainChanges(repo: Repository, cursor: string | null, limit: number): Promise<Drained> {
  const tasks: TaskInfo[] = [];
  let current = cursor;
  let pages = 0;
  // A bound, so that an adapter whose cursor never advances fails instead of hanging the run.
  for (let i = 0; i < 10_000; i++) {
    const page = await repo.getUpdatedSince(current, limit);
    expect(typeof page.cursor).toBe('string');
    expect(page.tasks.length).toBeLessThanOrEqual(limit);
    if (page.tasks.length === 0) {
      if (current !== null) expect(page.cursor, 'an empty page leaves the cursor unchanged').toBe(current);
      return { tasks, cursor: page.cursor, pages };
    }
    expect(page.cursor, 'a non-empty page advances the cursor').not.toBe(current);
    tasks.push(...page.tasks);
    pages++;
    current = page.cursor;
  }
  throw new Error('getUpdatedSince did not reach an empty page within 10000 pages');
}

/** Pages `list` until `next` is null. */
export async function listAll(repo: Repository, options: ListOptions): Promise<TaskInfo[]> {
  const tasks: TaskInfo[] = [];
  let after: string | null = null;
  for (let i = 0; i < 10_000; i++) {
    const page = await repo.list({ ...options, after });
    if (options.limit !== undefined) expect(page.tasks.length).toBeLessThanOrEqual(options.limit);
    tasks.push(...page.tasks);
    if (page.next === null) return tasks;
    expect(page.next).not.toBe(after);
    after = page.next;
  }
  throw new Error('list did not reach its last page within 10000 pages');
}

/** Pages `listDue` until `next` is null. */
export async function listAllDue(repo: Repository, before: Date, limit: number): Promise<TaskInfo[]> {
  const tasks: TaskInfo[] = [];
  let after: string | null = null;
  for (let i = 0; i < 10_000; i++) {
    const page = await repo.listDue({ before, limit, after });
    expect(page.tasks.length).toBeLessThanOrEqual(limit);
    tasks.push(...page.tasks);
    if (page.next === null) return tasks;
    expect(page.next).not.toBe(after);
    after = page.next;
  }
  throw new Error('listDue did not reach its last page within 10000 pages');
}

/** Compares two ids as the database does for uuids: by their lowercase text. */
export function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Opens `count` peers of the running fixture. */
export async function openPeers(open: () => Promise<Repository>, count: number): Promise<Repository[]> {
  const peers: Repository[] = [];
  for (let i = 0; i < count; i++) peers.push(await open());
  return peers;
}

/** Asserts that `values` holds no value twice. */
export function expectNoDuplicates(values: readonly string[], what: string): void {
  const seen = new Set<string>();
  const duplicates = values.filter((value) => (seen.has(value) ? true : (seen.add(value), false)));
  expect(duplicates, `${what} returned twice`).toEqual([]);
}
