/**
 * The task query of `horae tasks ls`. A repository with the TaskSearch capability (every shipped adapter:
 * `repository.taskSearch()`) gets the whole query: several states and works, the search filters, one native cursor.
 * Without it, `list` filters by one state and/or one work: several states are listed state by state and merged in
 * the contract's order (createdAt, then id), under a cursor that holds each state's own position, and the search
 * filters are refused. Nothing else in the CLI lists tasks.
 */
import { InvalidInputError } from '@horae/core';
import { isTaskSearchProvider, type Repository, type TaskInfo, type TaskQuery as SearchQuery, type TaskState } from '@horae/storage';
import { usageError } from './exit-codes.js';

/** What `tasks ls` asks for. */
export interface TaskQuery {
  /** Only tasks in one of these states; empty: every state. */
  states: readonly TaskState[];
  /** Only tasks of this work. */
  workId?: string;
  /** The search filters (id prefix, param match, time ranges, …): they need the TaskSearch capability. */
  search?: SearchQuery;
  /** The page size. */
  limit: number;
  /** The `next` of the previous page. */
  after?: string;
}

/** A page of tasks. */
export interface TaskPage {
  /** Ordered by createdAt, then id. */
  tasks: TaskInfo[];
  /** Pass as `after` for the next page; null on the last page. */
  next: string | null;
}

/** Where each state's listing stands: its `list` cursor (null: from the start), or `'end'` when it has no more tasks. */
type MergeCursor = Record<string, string | null>;

/**
 * Lists one page of tasks.
 *
 * @throws CliError (usage) when `after` is not a cursor of this query, a search filter is refused, or search filters
 * meet a repository without search
 */
export async function listTasks(repository: Repository, query: TaskQuery): Promise<TaskPage> {
  if (isTaskSearchProvider(repository)) {
    try {
      return await repository.taskSearch().searchTasks({
        ...query.search,
        ...(query.states.length === 0 ? {} : { states: query.states }),
        ...(query.workId === undefined ? {} : { workIds: [query.workId] }),
        limit: query.limit,
        after: query.after ?? null,
      });
    } catch (error) {
      // What the search refuses is what the person typed (a cursor of another query, a path too deep): a usage error.
      if (error instanceof InvalidInputError) throw usageError(error.message);
      throw error;
    }
  }
  if (query.search !== undefined && Object.keys(query.search).length > 0) {
    throw usageError('this repository cannot search (it has no TaskSearch capability): only --state and --work filter here');
  }
  const filter = query.workId === undefined ? {} : { workId: query.workId };
  if (query.states.length <= 1) {
    const state = query.states[0];
    const page = await repository.list({ ...filter, ...(state === undefined ? {} : { state }), limit: query.limit, after: query.after ?? null });
    return { tasks: page.tasks, next: page.next };
  }
  const cursor = query.after === undefined ? Object.fromEntries(query.states.map((s) => [s, null])) : decodeCursor(query.after, query.states);
  const pages = await Promise.all(
    query.states.map(async (state) => {
      const at = cursor[state];
      if (at === 'end') return { state, tasks: [] as TaskInfo[], next: 'end' as const };
      const page = await repository.list({ ...filter, state, limit: query.limit, after: at ?? null });
      return { state, tasks: page.tasks, next: page.next ?? ('end' as const) };
    }),
  );
  const merged = pages
    .flatMap((p) => p.tasks)
    .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .slice(0, query.limit);
  const next: MergeCursor = {};
  for (const page of pages) {
    const taken = merged.filter((t) => t.state === page.state).length;
    if (taken === page.tasks.length) next[page.state] = page.next;
    else if (taken === 0) next[page.state] = cursor[page.state] ?? null;
    // Part of this state's page was shown: list exactly that many again from the old position, for the cursor
    // after the last one shown (the contract's cursors are opaque, handed out only at page ends).
    else next[page.state] = (await repository.list({ ...filter, state: page.state, limit: taken, after: cursor[page.state] ?? null })).next ?? 'end';
  }
  const done = Object.values(next).every((v) => v === 'end');
  return { tasks: merged, next: done ? null : encodeCursor(next) };
}

function encodeCursor(cursor: MergeCursor): string {
  return `m.${Buffer.from(JSON.stringify(cursor)).toString('base64url')}`;
}

function decodeCursor(text: string, states: readonly TaskState[]): MergeCursor {
  const refuse = (): never => {
    throw usageError('--after is not a cursor of this listing: pass the `next` printed by the previous page, with the same --state and --work');
  };
  if (!text.startsWith('m.')) return refuse();
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(text.slice(2), 'base64url').toString('utf8'));
  } catch {
    return refuse();
  }
  if (parsed === null || typeof parsed !== 'object') return refuse();
  const cursor = parsed as Record<string, unknown>;
  const keys = Object.keys(cursor).sort();
  if (keys.join() !== [...states].sort().join()) return refuse();
  for (const value of Object.values(cursor)) if (value !== null && typeof value !== 'string') return refuse();
  return cursor as MergeCursor;
}
