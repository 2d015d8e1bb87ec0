/**
 * The task query of `horae tasks ls`, handed whole to the repository's search capability (`repository.taskSearch()`,
 * which every adapter the CLI opens has): several states, the search filters, one native cursor. Nothing else in the
 * CLI lists tasks.
 */
import { InvalidInputError } from '@horae/core';
import { isTaskSearchProvider, type Repository, type TaskInfo, type TaskQuery as SearchQuery, type TaskState } from '@horae/storage';
import { CliError, EXIT_FAILED, usageError } from './exit-codes.js';

/** What `tasks ls` asks for. */
export interface TaskQuery {
  /** Only tasks in one of these states; empty: every state. */
  states: readonly TaskState[];
  /** Only tasks of this work. */
  workId?: string;
  /** The search filters (id prefix, param match, time ranges, …). */
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

/**
 * Lists one page of tasks.
 *
 * @throws CliError (usage) when a filter or the cursor is refused; (failed) when the repository cannot search
 */
export async function listTasks(repository: Repository, query: TaskQuery): Promise<TaskPage> {
  if (!isTaskSearchProvider(repository)) throw new CliError('this repository cannot search tasks (it has no TaskSearch capability)', EXIT_FAILED);
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
