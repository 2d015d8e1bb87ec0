/**
 * The TaskSearch of PostgresRepository: one SELECT per page and one per count, built from the query with
 * parameters only (`$n` placeholders; no input is ever spliced into the SQL text).
 */
import {
  MAX_COUNTED_WORKS,
  assembleTaskCounts,
  normalizeSearchTasks,
  normalizeTaskQuery,
  type NormalizedTaskQuery,
  type ParamPathSegment,
  type SearchTasksOptions,
  type TaskCounts,
  type TaskQuery,
  type TaskSearch,
  type TaskSearchPage,
  type TaskState,
} from '@horae/storage';
import { decodePageCursor, encodePageCursor } from './cursor.js';
import type { PgQueryResult } from './pg-types.js';
import { rowToTask, taskOutput } from './row-mapping.js';

/** Runs one statement as the repository runs its own (retried on a deadlock, driver errors translated). */
export type PgSearchQuery = (action: string, text: string, values: unknown[]) => Promise<PgQueryResult>;

/** A WHERE clause and its values, in the order of their `$n`. */
export interface PgFilter {
  /** The conditions, joined by AND (`true` when there are none). */
  where: string;
  /** The values of `$1`, `$2`, … */
  values: unknown[];
}

/**
 * Task search on PostgreSQL.
 *
 * Which index serves what: pages are read in (created_at, id) order through `tasks_created`; the planner may start
 * from `tasks_terminal` for an ended range or `tasks_due` for a due range of Initialized tasks, and checks the other
 * filters (states, works, uniqueKey, scheduleName, the id prefix) on the rows it reaches. `param` is stored as `json`
 * (its text exactly as written), so a param match reads the param of every row the other filters select and
 * compares `(param #> path)::jsonb = value::jsonb` (jsonb equality: numbers by value, objects whatever their key
 * order), after checking that each step of the path is an object key or an array index as asked (`#>` alone would
 * read an array's item for a key "0" and count "-1" from the end): narrow a param search by state, work or time on a
 * large table. jsonb cannot hold the character U+0000: an `equals` holding it, or a stored param holding it at the
 * path being compared, fails the search with ValueRefusedError.
 *
 * A statement's text depends only on which filters are given and the length of the path, so the prepared statements
 * of the repository's connections stay few.
 *
 * ### Examples
 * ```ts
 * const counts = await repository.taskSearch().countTasks({ workIds: ['send-mail'], createdFrom: new Date(Date.now() - 86_400_000) });
 * ```
 */
export class PostgresTaskSearch implements TaskSearch {
  readonly #table: string;
  readonly #query: PgSearchQuery;

  /**
   * @param schema - the quoted schema name
   * @param query - the repository's statement runner
   */
  constructor(schema: string, query: PgSearchQuery) {
    this.#table = `${schema}.tasks`;
    this.#query = query;
  }

  /** {@inheritDoc @horae/storage!index.TaskSearch#searchTasks} */
  async searchTasks(options?: SearchTasksOptions): Promise<TaskSearchPage> {
    const search = normalizeSearchTasks(options);
    const after = decodePageCursor(search.after);
    const filter = taskFilter(search);
    const values = [...filter.values];
    let where = filter.where;
    if (after !== null) {
      values.push(after.at, after.id);
      where += ` AND (t.created_at, t.id) > ($${values.length - 1}::timestamptz, $${values.length}::text)`;
    }
    values.push(search.limit + 1);
    const text = `SELECT ${taskOutput()} FROM ${this.#table} t WHERE ${where} ORDER BY t.created_at, t.id LIMIT $${values.length}`;
    const { rows } = await this.#query('search tasks', text, values);
    const tasks = rows.slice(0, search.limit).map(rowToTask);
    const last = tasks[tasks.length - 1];
    return { tasks, next: rows.length > search.limit && last !== undefined ? encodePageCursor(last.createdAt, last.id) : null };
  }

  /** {@inheritDoc @horae/storage!index.TaskSearch#countTasks} */
  async countTasks(query?: TaskQuery): Promise<TaskCounts> {
    const filter = taskFilter(normalizeTaskQuery(query));
    // The matching rows once (MATERIALIZED), counted per state, and per (work, state) for the largest works only.
    const text = `WITH m AS MATERIALIZED (SELECT t.work_id, t.state FROM ${this.#table} t WHERE ${filter.where})
      SELECT NULL::text AS work_id, state, count(*)::int AS n FROM m GROUP BY state
      UNION ALL
      SELECT work_id, state, count(*)::int AS n FROM m
      WHERE work_id IN (SELECT work_id FROM m GROUP BY work_id ORDER BY count(*) DESC, work_id COLLATE "C" LIMIT ${MAX_COUNTED_WORKS})
      GROUP BY work_id, state`;
    const { rows } = await this.#query('count tasks', text, filter.values);
    const typed = rows as { work_id: string | null; state: TaskState; n: number }[];
    return assembleTaskCounts(
      typed.filter((row) => row.work_id === null).map((row) => ({ state: row.state, count: Number(row.n) })),
      typed.filter((row) => row.work_id !== null).map((row) => ({ workId: row.work_id!, state: row.state, count: Number(row.n) })),
    );
  }
}

/**
 * The WHERE clause of a normalized query on the tasks table aliased `t`: conditions with `$n` placeholders, and
 * their values. Exported for the tests of the SQL it builds.
 */
export function taskFilter(query: NormalizedTaskQuery): PgFilter {
  const where: string[] = [];
  const values: unknown[] = [];
  const bind = (value: unknown, type: string): string => {
    values.push(value);
    return `$${values.length}::${type}`;
  };
  if (query.states !== null) where.push(`t.state = ANY (${bind(query.states, 'text[]')})`);
  if (query.workIds !== null) where.push(`t.work_id = ANY (${bind(query.workIds, 'text[]')})`);
  if (query.uniqueKey !== null) where.push(`t.unique_key = ${bind(query.uniqueKey, 'text')}`);
  if (query.scheduleName !== null) where.push(`t.schedule_name = ${bind(query.scheduleName, 'text')}`);
  const range = (column: string, r: { from: number | null; to: number | null }): void => {
    if (r.from !== null) where.push(`t.${column} >= ${bind(new Date(r.from), 'timestamptz')}`);
    if (r.to !== null) where.push(`t.${column} < ${bind(new Date(r.to), 'timestamptz')}`);
  };
  range('created_at', query.created);
  range('scheduled_at', query.due);
  if (query.ended.from !== null || query.ended.to !== null) {
    where.push(`t.state IN ('Done', 'Cancelled', 'Failed')`);
    range('updated_at', query.ended);
  }
  // starts_with is exact: no wildcard of LIKE to escape, case-sensitive.
  if (query.idPrefix !== null) where.push(`starts_with(t.id, ${bind(query.idPrefix, 'text')})`);
  if (query.param !== null) {
    const path = query.param.path;
    // Each step must go into the kind of value it names: an index into an array, a key into an object.
    path.forEach((segment, i) => {
      where.push(`json_typeof(t.param #> ${bind(textPath(path.slice(0, i)), 'text[]')}) = '${typeof segment === 'number' ? 'array' : 'object'}'`);
    });
    where.push(`(t.param #> ${bind(textPath(path), 'text[]')})::jsonb = ${bind(JSON.stringify(query.param.equals), 'jsonb')}`);
  }
  return { where: where.length === 0 ? 'true' : where.join(' AND '), values };
}

/** A path as the `text[]` that `#>` takes (indexes in decimal). */
function textPath(path: readonly ParamPathSegment[]): string[] {
  return path.map((segment) => String(segment));
}
