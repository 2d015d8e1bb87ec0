/**
 * The TaskSearch of SqliteRepository: one SELECT per page and one per count, built from the query with bound
 * parameters only (no input is ever spliced into the SQL text), over `horae_tasks`.
 */
import {
  assembleTaskCounts,
  normalizeSearchTasks,
  normalizeTaskQuery,
  type JsonValue,
  type NormalizedTaskQuery,
  type ParamPathSegment,
  type SearchTasksOptions,
  type TaskCounts,
  type TaskQuery,
  type TaskSearch,
  type TaskSearchPage,
  type TaskState,
  MAX_COUNTED_WORKS,
  RepositoryError,
} from '@horae/storage';
import type { SqliteDatabase, SqliteStatement } from './driver.js';
import { decodePageCursor, encodePageCursor } from './page-cursor.js';
import { rowToTask, type TaskRow } from './row-mapping.js';

/** How the search reaches the repository's database. */
export interface SqliteTaskSearchAccess {
  /** The open database (to prepare statements). */
  db: SqliteDatabase;
  /** Runs a read, checking that the repository is open and translating driver errors. */
  read<T>(action: string, run: () => T): T;
}

/** A WHERE clause and its parameters, in order. */
export interface SqlFilter {
  /** The conditions, joined by AND (`1` when there are none). */
  where: string;
  /** The values of its `?` placeholders, in order. */
  params: unknown[];
}

/** How many prepared statements the search keeps (queries of one shape share one). */
const STATEMENT_CACHE = 64;

/**
 * Task search on SQLite.
 *
 * Which index serves what: pages are read in (created_at, id) order, through `horae_tasks_created`, or
 * `horae_tasks_state_created` / `horae_tasks_work_created` when states or works narrow the search (the planner
 * picks). The other filters (uniqueKey, scheduleName, the due and ended ranges, the id prefix) are checked on the
 * rows that walk reaches; the ended range may use `horae_tasks_ended`. A param match reads the JSON text of every
 * row the other filters select (`json_type` and `json_extract` on its path): its cost grows with those rows, so
 * narrow a param search by state, work or time on a large table.
 *
 * ### Examples
 * ```ts
 * const search = repository.taskSearch();
 * const { tasks, next } = await search.searchTasks({ states: ['Failed'], param: { path: ['tenant'], equals: 'acme' }, limit: 50 });
 * ```
 */
export class SqliteTaskSearch implements TaskSearch {
  readonly #access: SqliteTaskSearchAccess;
  readonly #statements = new Map<string, SqliteStatement>();

  /** @param access - the repository's database and read wrapper */
  constructor(access: SqliteTaskSearchAccess) {
    this.#access = access;
  }

  /** {@inheritDoc @horae/storage!index.TaskSearch#searchTasks} */
  searchTasks(options?: SearchTasksOptions): Promise<TaskSearchPage> {
    return settle(() => {
      const search = normalizeSearchTasks(options);
      const filter = taskFilter(search);
      let where = filter.where;
      const params = [...filter.params];
      if (search.after !== null) {
        const after = decodePageCursor(search.after);
        where += ' AND (created_at, id) > (?, ?)';
        params.push(after.at, after.id);
      }
      params.push(search.limit + 1);
      const sql = `SELECT * FROM horae_tasks WHERE ${where} ORDER BY created_at, id LIMIT ?`;
      const rows = this.#access.read('searchTasks', () => this.#prepare(sql).all(...params) as TaskRow[]);
      const page = rows.slice(0, search.limit);
      const last = page[page.length - 1];
      return { tasks: page.map(rowToTask), next: rows.length > search.limit && last !== undefined ? encodePageCursor({ at: last.created_at, id: last.id }) : null };
    });
  }

  /** {@inheritDoc @horae/storage!index.TaskSearch#countTasks} */
  countTasks(query?: TaskQuery): Promise<TaskCounts> {
    return settle(() => {
      const filter = taskFilter(normalizeTaskQuery(query));
      // The matching rows once (MATERIALIZED), counted per state, and per (work, state) for the largest works only.
      const sql = `WITH m AS MATERIALIZED (SELECT work_id, state FROM horae_tasks WHERE ${filter.where})
        SELECT NULL AS work_id, state, count(*) AS n FROM m GROUP BY state
        UNION ALL
        SELECT work_id, state, count(*) AS n FROM m
        WHERE work_id IN (SELECT work_id FROM m GROUP BY work_id ORDER BY count(*) DESC, work_id LIMIT ${MAX_COUNTED_WORKS})
        GROUP BY work_id, state`;
      const rows = this.#access.read('countTasks', () => this.#prepare(sql).all(...filter.params) as { work_id: string | null; state: TaskState; n: number }[]);
      return assembleTaskCounts(
        rows.filter((row) => row.work_id === null).map((row) => ({ state: row.state, count: row.n })),
        rows.filter((row) => row.work_id !== null).map((row) => ({ workId: row.work_id!, state: row.state, count: row.n })),
      );
    });
  }

  #prepare(sql: string): SqliteStatement {
    let statement = this.#statements.get(sql);
    if (statement === undefined) {
      if (this.#statements.size >= STATEMENT_CACHE) this.#statements.clear();
      statement = this.#access.db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }
}

/**
 * The WHERE clause of a normalized query on `horae_tasks`: conditions with `?` placeholders, and their values.
 * Exported for the tests of the SQL it builds.
 */
export function taskFilter(query: NormalizedTaskQuery): SqlFilter {
  const where: string[] = [];
  const params: unknown[] = [];
  if (query.states !== null) {
    where.push(`state IN (${query.states.map(() => '?').join(', ')})`);
    params.push(...query.states);
  }
  if (query.workIds !== null) {
    // One placeholder for the list (its JSON text), so queries with lists of any length share a statement.
    where.push('work_id IN (SELECT value FROM json_each(?))');
    params.push(JSON.stringify(query.workIds));
  }
  if (query.uniqueKey !== null) {
    where.push('unique_key = ?');
    params.push(query.uniqueKey);
  }
  if (query.scheduleName !== null) {
    where.push('schedule_name = ?');
    params.push(query.scheduleName);
  }
  const range = (column: string, r: { from: number | null; to: number | null }): void => {
    if (r.from !== null) {
      where.push(`${column} >= ?`);
      params.push(r.from);
    }
    if (r.to !== null) {
      where.push(`${column} < ?`);
      params.push(r.to);
    }
  };
  range('created_at', query.created);
  range('scheduled_at', query.due);
  if (query.ended.from !== null || query.ended.to !== null) {
    where.push(`state IN ('Done', 'Cancelled', 'Failed')`);
    range('updated_at', query.ended);
  }
  if (query.idPrefix !== null) {
    // instr is exact on text: no wildcard of LIKE or GLOB to escape, and case-sensitive.
    where.push('instr(id, ?) = 1');
    params.push(query.idPrefix);
  }
  if (query.param !== null) paramConditions(query.param.path, query.param.equals, where, params);
  return { where: where.length === 0 ? '1' : where.join(' AND '), params };
}

/**
 * A SQLite JSON path for `path`: `$`, then `."key"` for a key (quoted as JSON quotes it, which is how SQLite matches a
 * label against the key as stored: the params are written by JSON.stringify), `[n]` for an index.
 */
export function sqliteJsonPath(path: readonly ParamPathSegment[]): string {
  let out = '$';
  for (const segment of path) out += typeof segment === 'number' ? `[${segment}]` : `.${JSON.stringify(segment)}`;
  return out;
}

/**
 * The conditions under which the JSON value at `path` of `param` equals `value`, by JSON equality. `json_extract`
 * returns SQL values (true as 1, a string "1" as text '1'), so every value is checked with its JSON type first
 * (`json_type`: 'text', 'integer' or 'real', 'true', 'false', 'null', 'array', 'object'; SQL NULL where the path is
 * missing, so a missing path never equals null). Arrays check their length and each item; objects their number of
 * keys and each key's value, so key order does not matter.
 */
function paramConditions(path: readonly ParamPathSegment[], value: JsonValue, where: string[], params: unknown[]): void {
  const at = sqliteJsonPath(path);
  if (value === null || typeof value === 'boolean') {
    where.push('json_type(param, ?) = ?');
    params.push(at, value === null ? 'null' : value ? 'true' : 'false');
  } else if (typeof value === 'string') {
    where.push(`json_type(param, ?) = 'text' AND json_extract(param, ?) = ?`);
    params.push(at, at, value);
  } else if (typeof value === 'number') {
    where.push(`json_type(param, ?) IN ('integer', 'real') AND json_extract(param, ?) = ?`);
    params.push(at, at, value);
  } else if (Array.isArray(value)) {
    where.push(`json_type(param, ?) = 'array' AND json_array_length(param, ?) = ?`);
    params.push(at, at, value.length);
    value.forEach((item, i) => paramConditions([...path, i], item, where, params));
  } else {
    const keys = Object.keys(value);
    where.push(`json_type(param, ?) = 'object' AND (SELECT count(*) FROM json_each(horae_tasks.param, ?)) = ?`);
    params.push(at, at, keys.length);
    for (const key of keys) paramConditions([...path, key], value[key]!, where, params);
  }
}

function settle<T>(run: () => T): Promise<T> {
  try {
    return Promise.resolve(run());
  } catch (error) {
    return Promise.reject(error instanceof Error ? error : new RepositoryError(String(error)));
  }
}
