/**
 * The {@link TaskSearch} of MemoryRepository: a walk over the tasks held in memory, the reference the database
 * adapters' queries are checked against.
 */
import { InvalidInputError, quoteInput } from '@horae/core';
import type { TaskInfo } from '../contract/task-info.js';
import {
  assembleTaskCounts,
  normalizeSearchTasks,
  normalizeTaskQuery,
  taskMatches,
  type SearchTasksOptions,
  type TaskCounts,
  type TaskQuery,
  type TaskSearch,
  type TaskSearchPage,
} from '../contract/task-search.js';

/** How the search reaches its repository: a read of every stored task, run as the repository runs its calls. */
export interface MemoryTaskSearchAccess {
  /**
   * Runs `body` as one call of the repository (on a later microtask, failing while it is set unavailable), handing
   * it the stored tasks (never to be changed, and copied before they leave).
   */
  read<T>(operation: string, body: (tasks: Iterable<TaskInfo>) => T): Promise<T>;
}

/**
 * Task search over a MemoryRepository: every call walks every task once (there are no indexes), so it suits the
 * sizes the memory repository is for. Exact by construction: it runs {@link taskMatches}, the reference of the rules.
 *
 * ### Examples
 * ```ts
 * const repository = new MemoryRepository();
 * const { tasks, next } = await repository.taskSearch().searchTasks({ states: ['Failed'], param: { path: ['tenant'], equals: 'acme' } });
 * ```
 */
export class MemoryTaskSearch implements TaskSearch {
  readonly #access: MemoryTaskSearchAccess;

  /** @param access - the repository's read of its tasks */
  constructor(access: MemoryTaskSearchAccess) {
    this.#access = access;
  }

  /** {@inheritDoc TaskSearch.searchTasks} */
  searchTasks(options?: SearchTasksOptions): Promise<TaskSearchPage> {
    return Promise.resolve()
      .then(() => {
        const search = normalizeSearchTasks(options);
        return { search, from: search.after === null ? null : decodeCursor(search.after) };
      })
      .then(({ search, from }) =>
        this.#access.read('searchTasks', (tasks) => {
          const matching: TaskInfo[] = [];
          for (const task of tasks) {
            if (from !== null && compareTo(task, from) <= 0) continue;
            if (taskMatches(task, search)) matching.push(task);
          }
          matching.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || compareText(a.id, b.id));
          const page = matching.slice(0, search.limit);
          const last = page[page.length - 1];
          return {
            tasks: page.map((task) => structuredClone(task)),
            next: matching.length > search.limit && last !== undefined ? `${last.createdAt.getTime()}:${last.id}` : null,
          };
        }),
      );
  }

  /** {@inheritDoc TaskSearch.countTasks} */
  countTasks(query?: TaskQuery): Promise<TaskCounts> {
    return Promise.resolve()
      .then(() => normalizeTaskQuery(query))
      .then((normalized) =>
        this.#access.read('countTasks', (tasks) => {
          const rows = new Map<string, { workId: string; state: TaskInfo['state']; count: number }>();
          for (const task of tasks) {
            if (!taskMatches(task, normalized)) continue;
            const key = `${task.state}\u0000${task.workId}`;
            const row = rows.get(key);
            if (row === undefined) rows.set(key, { workId: task.workId, state: task.state, count: 1 });
            else row.count++;
          }
          return assembleTaskCounts(rows.values(), rows.values());
        }),
      );
  }
}

interface Position {
  at: number;
  id: string;
}

function decodeCursor(after: string): Position {
  const colon = after.indexOf(':');
  const at = colon > 0 && /^-?\d{1,16}$/.test(after.slice(0, colon)) ? Number(after.slice(0, colon)) : Number.NaN;
  if (!Number.isSafeInteger(at) || colon === after.length - 1) throw new InvalidInputError(`${quoteInput(after)} is not a search cursor of this repository`);
  return { at, id: after.slice(colon + 1) };
}

function compareTo(task: TaskInfo, position: Position): number {
  return task.createdAt.getTime() - position.at || compareText(task.id, position.id);
}

function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
