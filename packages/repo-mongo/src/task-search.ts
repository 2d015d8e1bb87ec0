/**
 * The TaskSearch of MongoRepository. Every filter but the param match is a query filter on the tasks collection.
 * The param is stored as JSON text (`encodeParam`: JSON.stringify, so that it round-trips exactly), which no query
 * operator can look inside: a param match is checked here, on the documents the other filters select, read in
 * pages order and bounded (see {@link MongoTaskSearch}).
 */
import { InvalidInputError } from '@horae/core';
import {
  assembleTaskCounts,
  MAX_COUNTED_WORKS,
  normalizeSearchTasks,
  normalizeTaskQuery,
  paramMatches,
  type NormalizedTaskQuery,
  type SearchTasksOptions,
  type TaskCounts,
  type TaskQuery,
  type TaskSearch,
  type TaskSearchPage,
  type TaskState,
} from '@horae/storage';
import type { Collection, Document } from 'mongodb';
import { decodePageCursor, encodePageCursor, type PagePosition } from './cursors.js';
import { LIST_SORT, TASK_PROJECTION } from './queries.js';
import { decodeParam, toTaskInfo, type TaskDocument } from './task-document.js';

/** The most documents one `searchTasks` page reads to check a param match; the page then ends early, with a cursor. */
export const MAX_PARAM_SCAN_PER_PAGE = 10_000;
/** The most documents a `countTasks` with a param match may read: over it, the count is refused. */
export const MAX_PARAM_COUNT_SCAN = 100_000;
/** How many documents one read of a param scan asks for. */
const SCAN_BATCH = 500;

const TERMINAL_STATES: readonly TaskState[] = ['Done', 'Cancelled', 'Failed'];

/** The part of the tasks collection the search uses. */
export type SearchCollection = Pick<Collection<TaskDocument>, 'find' | 'countDocuments' | 'aggregate'>;

/** Runs `body` as the repository runs its calls (after init, driver errors translated). */
export type MongoSearchRun = <T>(operation: string, body: () => Promise<T>) => Promise<T>;

/**
 * Task search on MongoDB.
 *
 * Which index serves what: pages are read in (createdAt, _id) order through `horae_list`, or `horae_list_state` /
 * `horae_list_work` when one state or one work narrows the search (the server's planner picks); the id prefix is an
 * anchored regular expression, which can use the `_id` index; the other filters are checked on the documents that
 * walk reaches.
 *
 * A param match cannot be a query: the param is JSON text. A page with a param match reads the documents the other
 * filters select, in page order, in batches, and keeps those whose param holds the value; it stops after
 * {@link MAX_PARAM_SCAN_PER_PAGE} documents, returning what it found (possibly nothing) with a `next` cursor after the
 * last document it read, so paging goes on where it stopped and never skips one. A count with a param match first
 * counts the documents the other filters select and refuses with InvalidInputError when they are more than
 * {@link MAX_PARAM_COUNT_SCAN} (narrow it by state, work or time); otherwise it reads them all. Narrow a param search
 * by the other filters on a large collection.
 *
 * ### Examples
 * ```ts
 * const { tasks, next } = await repository.taskSearch().searchTasks({ workIds: ['send-mail'], param: { path: ['to'], equals: 'a@b.c' } });
 * ```
 */
export class MongoTaskSearch implements TaskSearch {
  readonly #tasks: SearchCollection;
  readonly #run: MongoSearchRun;

  /**
   * @param tasks - the tasks collection
   * @param run - the repository's runner
   */
  constructor(tasks: SearchCollection, run: MongoSearchRun) {
    this.#tasks = tasks;
    this.#run = run;
  }

  /** {@inheritDoc @horae/storage!index.TaskSearch#searchTasks} */
  async searchTasks(options?: SearchTasksOptions): Promise<TaskSearchPage> {
    const search = normalizeSearchTasks(options);
    const after = search.after === null ? null : decodePageCursor(search.after);
    return this.#run('search tasks', async () => {
      if (search.param === null) {
        const docs = await this.#tasks.find(searchFilter(search, after), { projection: TASK_PROJECTION }).sort(LIST_SORT).limit(search.limit + 1).toArray();
        const rows = docs.slice(0, search.limit);
        const last = rows.at(-1);
        return { tasks: rows.map(toTaskInfo), next: docs.length > search.limit && last !== undefined ? encodePageCursor(positionOf(last)) : null };
      }
      return this.#scanPage(search, search.limit, after);
    });
  }

  /** {@inheritDoc @horae/storage!index.TaskSearch#countTasks} */
  async countTasks(query?: TaskQuery): Promise<TaskCounts> {
    const normalized = normalizeTaskQuery(query);
    const filter = searchFilter(normalized, null);
    return this.#run('count tasks', async () => {
      if (normalized.param === null) {
        const [byState, byWork] = await Promise.all([
          this.#tasks.aggregate<{ _id: TaskState; n: number }>(stateCountPipeline(filter)).toArray(),
          this.#tasks.aggregate<{ _id: string; states: { s: TaskState; n: number }[] }>(workCountPipeline(filter)).toArray(),
        ]);
        return assembleTaskCounts(
          byState.map((row) => ({ state: row._id, count: row.n })),
          byWork.flatMap((row) => row.states.map((s) => ({ workId: row._id, state: s.s, count: s.n }))),
        );
      }
      const selected = await this.#tasks.countDocuments(filter, { limit: MAX_PARAM_COUNT_SCAN + 1 });
      if (selected > MAX_PARAM_COUNT_SCAN) {
        throw new InvalidInputError(
          `a count with a param match reads the params of the tasks the other filters select; more than ${MAX_PARAM_COUNT_SCAN} do: narrow the query by states, workIds or a time range`,
        );
      }
      const rows: { workId: string; state: TaskState; count: number }[] = [];
      let after: PagePosition | null = null;
      for (;;) {
        const docs: TaskDocument[] = await this.#tasks
          .find(searchFilter(normalized, after), { projection: { workId: 1, state: 1, param: 1, createdAt: 1 } })
          .sort(LIST_SORT)
          .limit(SCAN_BATCH)
          .toArray();
        for (const doc of docs) if (paramMatches(decodeParam(doc.param), normalized.param)) rows.push({ workId: doc.workId, state: doc.state, count: 1 });
        const last = docs.at(-1);
        if (docs.length < SCAN_BATCH || last === undefined) break;
        after = positionOf(last);
      }
      return assembleTaskCounts(rows, rows);
    });
  }

  /** A page of a search with a param match: batches in page order, checked here, up to the scan bound. */
  async #scanPage(query: NormalizedTaskQuery, limit: number, after: PagePosition | null): Promise<TaskSearchPage> {
    const found: TaskDocument[] = [];
    let position = after;
    let scanned = 0;
    while (scanned < MAX_PARAM_SCAN_PER_PAGE) {
      const batch = Math.min(SCAN_BATCH, MAX_PARAM_SCAN_PER_PAGE - scanned);
      const docs: TaskDocument[] = await this.#tasks.find(searchFilter(query, position), { projection: TASK_PROJECTION }).sort(LIST_SORT).limit(batch).toArray();
      for (const doc of docs) {
        scanned++;
        position = positionOf(doc);
        if (!paramMatches(decodeParam(doc.param), query.param!)) continue;
        found.push(doc);
        // A full page: the next one starts after its last task (it may turn out empty, with next null).
        if (found.length === limit) return { tasks: found.map(toTaskInfo), next: encodePageCursor(position) };
      }
      if (docs.length < batch) return { tasks: found.map(toTaskInfo), next: null };
    }
    // The scan bound: what was found, and a cursor after the last document read.
    return { tasks: found.map(toTaskInfo), next: position === null ? null : encodePageCursor(position) };
  }
}

function positionOf(doc: TaskDocument): PagePosition {
  return { at: doc.createdAt, id: doc._id };
}

/** A regular expression source matching exactly the strings that start with `prefix`. */
export function prefixPattern(prefix: string): string {
  return `^${prefix.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&')}`;
}

/**
 * The query filter of every field of a normalized query but `param`, after a page position. Exported for the
 * model tests.
 */
export function searchFilter(query: NormalizedTaskQuery, after: PagePosition | null): Document {
  const and: Document[] = [];
  if (query.states !== null) and.push({ state: { $in: query.states } });
  if (query.workIds !== null) and.push({ workId: { $in: query.workIds } });
  if (query.uniqueKey !== null) and.push({ uniqueKey: query.uniqueKey });
  // A document written before schema version 2 has no scheduleName: it matches no name.
  if (query.scheduleName !== null) and.push({ scheduleName: query.scheduleName });
  const range = (field: string, r: { from: number | null; to: number | null }): void => {
    const condition: Document = {};
    if (r.from !== null) condition.$gte = new Date(r.from);
    if (r.to !== null) condition.$lt = new Date(r.to);
    if (Object.keys(condition).length > 0) and.push({ [field]: condition });
  };
  range('createdAt', query.created);
  range('scheduledAt', query.due);
  if (query.ended.from !== null || query.ended.to !== null) {
    and.push({ state: { $in: TERMINAL_STATES } });
    range('updatedAt', query.ended);
  }
  if (query.idPrefix !== null) and.push({ _id: { $regex: prefixPattern(query.idPrefix) } });
  if (after !== null) and.push({ $or: [{ createdAt: { $gt: after.at } }, { createdAt: after.at, _id: { $gt: after.id } }] });
  return and.length === 0 ? {} : { $and: and };
}

/** The counts per state of the documents `filter` selects. */
export function stateCountPipeline(filter: Document): Document[] {
  return [{ $match: filter }, { $group: { _id: '$state', n: { $sum: 1 } } }];
}

/** The counts per (work, state) of the {@link MAX_COUNTED_WORKS} works with the most documents `filter` selects. */
export function workCountPipeline(filter: Document): Document[] {
  return [
    { $match: filter },
    { $group: { _id: { w: '$workId', s: '$state' }, n: { $sum: 1 } } },
    { $group: { _id: '$_id.w', total: { $sum: '$n' }, states: { $push: { s: '$_id.s', n: '$n' } } } },
    { $sort: { total: -1, _id: 1 } },
    { $limit: MAX_COUNTED_WORKS },
  ];
}
