/**
 * Operator search (issue 12): finding tasks by state, work, keys, times, id prefix and a param value, in stable
 * pages, with counts per state and per work. An optional capability of a repository, reached through
 * {@link TaskSearchProvider.taskSearch}, as the hook outbox is.
 */
import { InvalidInputError, quoteInput } from '@horae/core';
import type { Repository } from './repository.js';
import { ALL_TASK_STATES, type JsonValue, type TaskInfo, type TaskState } from './task-info.js';
import { MAX_SCHEDULE_NAME_LENGTH, MAX_TASK_ID_LENGTH, MAX_UNIQUE_KEY_LENGTH, MAX_WORK_ID_LENGTH, assertJsonValue, assertKey } from './validation.js';

/** The most segments a {@link TaskParamMatch.path} may have. */
export const MAX_PARAM_PATH_SEGMENTS = 32;
/** The longest object key of a {@link TaskParamMatch.path}, in UTF-16 code units. */
export const MAX_PARAM_PATH_KEY_LENGTH = 200;
/** The largest array index of a {@link TaskParamMatch.path}. */
export const MAX_PARAM_PATH_INDEX = 2_147_483_647;
/**
 * The most JSON values (each scalar, array and object counts one) {@link TaskParamMatch.equals} may hold: an adapter
 * may turn each into a condition of its query, so the bound keeps a query's size bounded.
 */
export const MAX_PARAM_MATCH_VALUES = 100;
/** The most bytes of JSON {@link TaskParamMatch.equals} may take. */
export const MAX_PARAM_MATCH_BYTES = 16_384;
/** The most workIds a {@link TaskQuery.workIds} list may name. */
export const MAX_QUERY_WORK_IDS = 1000;
/** The most tasks one {@link TaskSearch.searchTasks} page holds. */
export const MAX_SEARCH_PAGE = 1000;
/** The page size of {@link TaskSearch.searchTasks} when `limit` is left out. */
export const DEFAULT_SEARCH_PAGE = 100;
/** The most works {@link TaskCounts.byWork} lists: the ones with the most matching tasks. */
export const MAX_COUNTED_WORKS = 1000;

/** One segment of a path into a param: an object key, or an array index (an integer ≥ 0). */
export type ParamPathSegment = string | number;

/**
 * A param match: the JSON value found at `path` inside a task's param equals `equals`.
 *
 * Equality is JSON equality: a string equals only the same string (`"1"` never equals `1`), a number only the same
 * number (`1` equals `1.0`), `true` and `false` only themselves, `null` only a stored `null` (a missing path is not
 * `null`: it never matches), an array an array of equal items in the same order, an object an object with the same
 * keys (in any order) whose values are equal.
 */
export interface TaskParamMatch {
  /**
   * Where to look: object keys (strings of at most {@link MAX_PARAM_PATH_KEY_LENGTH} characters, any characters) and
   * array indexes (integers from 0 to {@link MAX_PARAM_PATH_INDEX}), at most {@link MAX_PARAM_PATH_SEGMENTS} of them.
   * An empty path is the whole param. A key never matches an array item and an index never matches an object key
   * (`["0"]` reads the key "0" of an object, `[0]` the first item of an array).
   */
  path: readonly ParamPathSegment[];
  /** The value to find there: plain JSON of at most {@link MAX_PARAM_MATCH_VALUES} values and {@link MAX_PARAM_MATCH_BYTES} bytes. */
  equals: JsonValue;
}

/**
 * What to find. Every field left out matches every task; the fields given all apply (AND). Ranges are half-open:
 * `from` included, `to` excluded; either end may be left out.
 */
export interface TaskQuery {
  /** Only tasks in one of these states: a non-empty list of {@link TaskState}. */
  states?: readonly TaskState[];
  /** Only tasks of one of these works: a non-empty list of at most {@link MAX_QUERY_WORK_IDS} workIds. */
  workIds?: readonly string[];
  /** Only tasks with this uniqueKey (live or ended). */
  uniqueKey?: string;
  /** Only occurrences of this recurring schedule. */
  scheduleName?: string;
  /** Only tasks created at or after this time. */
  createdFrom?: Date;
  /** Only tasks created before this time. */
  createdTo?: Date;
  /** Only tasks due (`scheduledAt`) at or after this time. */
  dueFrom?: Date;
  /** Only tasks due (`scheduledAt`) before this time. */
  dueTo?: Date;
  /** Only ended tasks (Done, Cancelled, Failed) whose last change (`updatedAt`, when they ended) is at or after this time. */
  endedFrom?: Date;
  /** Only ended tasks (Done, Cancelled, Failed) whose last change (`updatedAt`) is before this time. */
  endedTo?: Date;
  /** Only tasks whose id starts with this (case-sensitive) prefix: 1 to {@link MAX_TASK_ID_LENGTH} characters. */
  idPrefix?: string;
  /** Only tasks whose param holds this value at this path. */
  param?: TaskParamMatch;
}

/** What {@link TaskSearch.searchTasks} takes: a query and a page. */
export interface SearchTasksOptions extends TaskQuery {
  /** The most tasks in the page: 1 to {@link MAX_SEARCH_PAGE}. @defaultValue {@link DEFAULT_SEARCH_PAGE} */
  limit?: number;
  /** The `next` of the previous page (of the same query); null or left out for the first page. */
  after?: string | null;
}

/** A page of {@link TaskSearch.searchTasks}. */
export interface TaskSearchPage {
  /** The matching tasks, ordered by createdAt, then id. */
  tasks: TaskInfo[];
  /** Pass as `after` for the next page; null when there is none. Opaque. */
  next: string | null;
}

/** The counts of one work. */
export interface WorkCount {
  /** The work. */
  workId: string;
  /** Its matching tasks per state; every state is present. */
  byState: Record<TaskState, number>;
}

/** What {@link TaskSearch.countTasks} returns. */
export interface TaskCounts {
  /** Every matching task. */
  total: number;
  /** The matching tasks per state; every state is present, and they sum to `total`. */
  byState: Record<TaskState, number>;
  /**
   * The matching tasks per work, the works with the most matching tasks first (then by workId), at most
   * {@link MAX_COUNTED_WORKS} works: the counts of the works left out are in `total` and `byState` only.
   */
  byWork: WorkCount[];
}

/**
 * Operator search over the tasks of a repository. An optional capability, reached through
 * {@link TaskSearchProvider.taskSearch}; the conformance suite of `@horae/storage/testing` checks these rules on every
 * repository that has it. A read only: it never writes.
 *
 * Rules:
 * - A task matches when it matches every field given ({@link TaskQuery}); ranges are half-open [from, to).
 * - `searchTasks` returns the matching tasks in (createdAt, id) order, ids compared by their text as the database
 *   orders them. The `next` cursor is the position of the last task of the page: the next page starts after it, so
 *   a task inserted or changed between pages never makes a page repeat a task or skip a matching task that was
 *   already there (a task that stops matching between pages is simply not returned; one created meanwhile may be).
 * - Page until `next` is null. A page may hold fewer than `limit` tasks, even none, while `next` is not null: an
 *   adapter that checks a param match outside the database (MongoDB) stops a page after a bounded scan.
 * - `countTasks` counts what `searchTasks` would return at that moment: `total` is the sum of `byState`, and each
 *   work's `byState` counts its matching tasks.
 * - Bad input (a field of the wrong type, an unknown state, an empty list, a key over its limit, an invalid date,
 *   a range whose from is after its to, a path over its bounds, an `equals` that is not plain JSON or over its
 *   bounds, a bad limit, a cursor this repository did not make) throws InvalidInputError, and nothing is read.
 * - The cost of a filter depends on the adapter: each says which filters its indexes serve, and a param match
 *   reads the params of the tasks the other filters select (see each adapter's `taskSearch`).
 */
export interface TaskSearch {
  /**
   * One page of the tasks matching `query`, in (createdAt, id) order.
   *
   * @param query - the filters, `limit` and `after`
   * @returns the page and the cursor of the next one
   * @throws InvalidInputError on bad input; nothing is read
   */
  searchTasks(query?: SearchTasksOptions): Promise<TaskSearchPage>;

  /**
   * Counts the tasks matching `query`, in all, per state, and per work (the {@link MAX_COUNTED_WORKS} works with the
   * most matching tasks).
   *
   * @param query - the filters
   * @returns the counts
   * @throws InvalidInputError on bad input; nothing is read
   */
  countTasks(query?: TaskQuery): Promise<TaskCounts>;
}

/** A repository that has {@link TaskSearch}. */
export interface TaskSearchProvider {
  /** The task search on the same database (the same object on every call). */
  taskSearch(): TaskSearch;
}

/**
 * True when `repository` has a task search.
 *
 * @param repository - any repository
 * @returns whether {@link TaskSearchProvider.taskSearch} can be called
 */
export function isTaskSearchProvider(repository: Repository): repository is Repository & TaskSearchProvider {
  return typeof (repository as Partial<TaskSearchProvider>).taskSearch === 'function';
}

/** A {@link TaskQuery} after validation: lists deduplicated, ranges as epoch ms (null where open), every field present. */
export interface NormalizedTaskQuery {
  /** The states, deduplicated, in lifecycle order; null for all. */
  states: TaskState[] | null;
  /** The workIds, deduplicated; null for all. */
  workIds: string[] | null;
  /** The uniqueKey, or null. */
  uniqueKey: string | null;
  /** The schedule name, or null. */
  scheduleName: string | null;
  /** The createdAt range, epoch ms, [from, to). */
  created: TimeRange;
  /** The scheduledAt range, epoch ms, [from, to). */
  due: TimeRange;
  /** The updatedAt range of ended tasks, epoch ms, [from, to); when either end is set only ended tasks match. */
  ended: TimeRange;
  /** The id prefix, or null. */
  idPrefix: string | null;
  /** The param match, its `equals` a deep copy; null for none. */
  param: { path: ParamPathSegment[]; equals: JsonValue } | null;
}

/** A half-open range of epoch ms; null ends are open. */
export interface TimeRange {
  /** Included, or null. */
  from: number | null;
  /** Excluded, or null. */
  to: number | null;
}

/** A normalized query with its page. */
export interface NormalizedSearch extends NormalizedTaskQuery {
  /** The page size. */
  limit: number;
  /** The cursor as given (each adapter decodes its own), or null. */
  after: string | null;
}

const QUERY_FIELDS: ReadonlySet<string> = new Set([
  'states',
  'workIds',
  'uniqueKey',
  'scheduleName',
  'createdFrom',
  'createdTo',
  'dueFrom',
  'dueTo',
  'endedFrom',
  'endedTo',
  'idPrefix',
  'param',
]);
const PAGE_FIELDS: ReadonlySet<string> = new Set([...QUERY_FIELDS, 'limit', 'after']);

/**
 * Validates a {@link TaskQuery}; every adapter calls it before it reads.
 *
 * @param query - the query (undefined: everything)
 * @returns it normalized
 * @throws InvalidInputError on any bad field, naming it; an unknown field too (a misspelt filter must not widen a search)
 */
export function normalizeTaskQuery(query: TaskQuery | undefined): NormalizedTaskQuery {
  return normalize(query, QUERY_FIELDS);
}

/**
 * Validates the options of {@link TaskSearch.searchTasks}: the query, `limit` and the type of `after`.
 *
 * @param options - the options (undefined: the first page of everything)
 * @returns them normalized
 * @throws InvalidInputError on any bad field
 */
export function normalizeSearchTasks(options: SearchTasksOptions | undefined): NormalizedSearch {
  const query = normalize(options, PAGE_FIELDS);
  const limit = options?.limit ?? DEFAULT_SEARCH_PAGE;
  if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1 || limit > MAX_SEARCH_PAGE) {
    throw new InvalidInputError(`limit must be an integer from 1 to ${MAX_SEARCH_PAGE}, got ${quoteInput(limit)}`);
  }
  const after = options?.after ?? null;
  if (after !== null && (typeof after !== 'string' || after === '')) throw new InvalidInputError(`after must be a page cursor (a string) or null, got ${quoteInput(after)}`);
  return { ...query, limit, after };
}

function normalize(query: TaskQuery | undefined, fields: ReadonlySet<string>): NormalizedTaskQuery {
  if (query === undefined) query = {};
  if (query === null || typeof query !== 'object' || Array.isArray(query)) throw new InvalidInputError(`a task query must be an object, got ${quoteInput(query)}`);
  for (const key of Object.keys(query)) {
    if (!fields.has(key)) throw new InvalidInputError(`a task query has no field ${quoteInput(key)}`);
  }
  const uniqueKey = optional(query.uniqueKey, (v) => assertKey(v, 'uniqueKey', MAX_UNIQUE_KEY_LENGTH));
  const scheduleName = optional(query.scheduleName, (v) => assertKey(v, 'scheduleName', MAX_SCHEDULE_NAME_LENGTH));
  const idPrefix = optional(query.idPrefix, (v) => assertKey(v, 'idPrefix', MAX_TASK_ID_LENGTH));
  return {
    states: normalizeStates(query.states),
    workIds: normalizeWorkIds(query.workIds),
    uniqueKey,
    scheduleName,
    created: range(query.createdFrom, query.createdTo, 'createdFrom', 'createdTo'),
    due: range(query.dueFrom, query.dueTo, 'dueFrom', 'dueTo'),
    ended: range(query.endedFrom, query.endedTo, 'endedFrom', 'endedTo'),
    idPrefix,
    param: query.param === undefined ? null : normalizeParamMatch(query.param),
  };
}

function optional(value: unknown, check: (value: unknown) => void): string | null {
  if (value === undefined) return null;
  check(value);
  return value as string;
}

function normalizeStates(states: unknown): TaskState[] | null {
  if (states === undefined) return null;
  if (!Array.isArray(states) || states.length === 0) {
    throw new InvalidInputError(`states must be a non-empty list of ${ALL_TASK_STATES.join(', ')} (leave it out for every state), got ${quoteInput(states)}`);
  }
  for (const state of states) {
    if (!ALL_TASK_STATES.includes(state as TaskState)) throw new InvalidInputError(`states must hold only ${ALL_TASK_STATES.join(', ')}, got ${quoteInput(state)}`);
  }
  return ALL_TASK_STATES.filter((state) => (states as unknown[]).includes(state));
}

function normalizeWorkIds(workIds: unknown): string[] | null {
  if (workIds === undefined) return null;
  if (!Array.isArray(workIds) || workIds.length === 0 || workIds.length > MAX_QUERY_WORK_IDS) {
    throw new InvalidInputError(`workIds must be a list of 1 to ${MAX_QUERY_WORK_IDS} workIds (leave it out for every work), got ${quoteInput(workIds)}`);
  }
  for (const workId of workIds) assertKey(workId, 'a workId of workIds', MAX_WORK_ID_LENGTH);
  return [...new Set(workIds as string[])];
}

function range(from: unknown, to: unknown, fromName: string, toName: string): TimeRange {
  const out: TimeRange = { from: time(from, fromName), to: time(to, toName) };
  if (out.from !== null && out.to !== null && out.from > out.to) {
    throw new InvalidInputError(`${fromName} (${new Date(out.from).toISOString()}) is after ${toName} (${new Date(out.to).toISOString()})`);
  }
  return out;
}

function time(value: unknown, name: string): number | null {
  if (value === undefined) return null;
  if (!(value instanceof Date) || !Number.isFinite(value.getTime())) throw new InvalidInputError(`${name} must be a valid Date, got ${quoteInput(value)}`);
  return value.getTime();
}

/**
 * Validates a {@link TaskParamMatch}.
 *
 * @param match - the match
 * @returns a copy (the path as an array, `equals` deep-copied)
 * @throws InvalidInputError on a bad path or value
 */
export function normalizeParamMatch(match: TaskParamMatch): { path: ParamPathSegment[]; equals: JsonValue } {
  if (match === null || typeof match !== 'object' || Array.isArray(match)) throw new InvalidInputError(`param must be an object { path, equals }, got ${quoteInput(match)}`);
  const { path, equals } = match as { path: unknown; equals: unknown };
  if (!Array.isArray(path)) throw new InvalidInputError(`param.path must be a list of keys and indexes, got ${quoteInput(path)}`);
  if (path.length > MAX_PARAM_PATH_SEGMENTS) throw new InvalidInputError(`param.path has ${path.length} segments, over its limit of ${MAX_PARAM_PATH_SEGMENTS}`);
  for (const segment of path as unknown[]) {
    if (typeof segment === 'string') {
      if (segment.length > MAX_PARAM_PATH_KEY_LENGTH) {
        throw new InvalidInputError(`a key of param.path is ${segment.length} characters long, over its limit of ${MAX_PARAM_PATH_KEY_LENGTH}: ${quoteInput(segment)}`);
      }
    } else if (typeof segment !== 'number' || !Number.isSafeInteger(segment) || segment < 0 || segment > MAX_PARAM_PATH_INDEX) {
      throw new InvalidInputError(`a segment of param.path must be a key (a string) or an index (an integer from 0 to ${MAX_PARAM_PATH_INDEX}), got ${quoteInput(segment)}`);
    }
  }
  if (!Object.hasOwn(match, 'equals') || equals === undefined) throw new InvalidInputError('param.equals is required (use null to match a stored null)');
  assertJsonValue(equals, 'param.equals', MAX_PARAM_MATCH_BYTES);
  const values = countValues(equals);
  if (values > MAX_PARAM_MATCH_VALUES) throw new InvalidInputError(`param.equals holds ${values} JSON values, over its limit of ${MAX_PARAM_MATCH_VALUES}`);
  return { path: [...(path as ParamPathSegment[])], equals: structuredClone(equals) };
}

function countValues(value: JsonValue): number {
  if (value === null || typeof value !== 'object') return 1;
  const items = Array.isArray(value) ? value : Object.values(value);
  return items.reduce<number>((n, item) => n + countValues(item), 1);
}

/**
 * JSON equality, as {@link TaskParamMatch} defines it (objects compared whatever their key order).
 *
 * @returns whether `a` and `b` are equal JSON values
 */
export function jsonEquals(a: JsonValue | undefined, b: JsonValue | undefined): boolean {
  if (a === b) return a !== undefined;
  if (a === null || b === null || a === undefined || b === undefined || typeof a !== 'object' || typeof b !== 'object') return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const other = b as JsonValue[];
    return a.length === other.length && a.every((item, i) => jsonEquals(item, other[i]));
  }
  const left = a as Record<string, JsonValue>;
  const right = b as Record<string, JsonValue>;
  const keys = Object.keys(left);
  return keys.length === Object.keys(right).length && keys.every((key) => Object.hasOwn(right, key) && jsonEquals(left[key], right[key]));
}

/**
 * The value at `path` inside `value`, or undefined when the path is missing (a key on a non-object or an absent key,
 * an index on a non-array or past its end).
 */
export function valueAtPath(value: JsonValue, path: readonly ParamPathSegment[]): JsonValue | undefined {
  let current: JsonValue | undefined = value;
  for (const segment of path) {
    if (current === null || typeof current !== 'object' || current === undefined) return undefined;
    if (typeof segment === 'number') {
      if (!Array.isArray(current) || segment >= current.length) return undefined;
      current = current[segment];
    } else {
      if (Array.isArray(current) || !Object.hasOwn(current, segment)) return undefined;
      current = current[segment];
    }
  }
  return current;
}

/**
 * Whether `task` matches `query`, as the rules of {@link TaskSearch} define it: the reference every adapter's
 * query must agree with (the memory repository runs it; an adapter that checks a param outside its database runs
 * its `param` part).
 */
export function taskMatches(task: TaskInfo, query: NormalizedTaskQuery): boolean {
  const within = (at: number, r: TimeRange): boolean => (r.from === null || at >= r.from) && (r.to === null || at < r.to);
  if (query.states !== null && !query.states.includes(task.state)) return false;
  if (query.workIds !== null && !query.workIds.includes(task.workId)) return false;
  if (query.uniqueKey !== null && task.uniqueKey !== query.uniqueKey) return false;
  if (query.scheduleName !== null && task.scheduleName !== query.scheduleName) return false;
  if (!within(task.createdAt.getTime(), query.created) || !within(task.scheduledAt.getTime(), query.due)) return false;
  if (query.ended.from !== null || query.ended.to !== null) {
    if (task.state !== 'Done' && task.state !== 'Cancelled' && task.state !== 'Failed') return false;
    if (!within(task.updatedAt.getTime(), query.ended)) return false;
  }
  if (query.idPrefix !== null && !task.id.startsWith(query.idPrefix)) return false;
  return query.param === null || paramMatches(task.param, query.param);
}

/** Whether `param` holds `match.equals` at `match.path`. */
export function paramMatches(param: JsonValue, match: { path: readonly ParamPathSegment[]; equals: JsonValue }): boolean {
  return jsonEquals(valueAtPath(param, match.path), match.equals);
}

/** Counts of zero for every state. */
export function zeroStateCounts(): Record<TaskState, number> {
  return Object.fromEntries(ALL_TASK_STATES.map((state) => [state, 0])) as Record<TaskState, number>;
}

/**
 * Builds {@link TaskCounts} from grouped counts: per state over every matching task, and per (work, state) for the
 * works kept. Keeps the {@link MAX_COUNTED_WORKS} works with the most tasks (then by workId); an adapter may already
 * have cut `byWorkRows` to those works in its query, so that the rows it reads stay bounded.
 *
 * @param byStateRows - one row per state, as `GROUP BY state` returns them
 * @param byWorkRows - one row per work and state, as `GROUP BY work, state` returns them
 */
export function assembleTaskCounts(
  byStateRows: Iterable<{ state: TaskState; count: number }>,
  byWorkRows: Iterable<{ workId: string; state: TaskState; count: number }>,
): TaskCounts {
  const byState = zeroStateCounts();
  let total = 0;
  for (const row of byStateRows) {
    if (!ALL_TASK_STATES.includes(row.state)) continue;
    byState[row.state] += row.count;
    total += row.count;
  }
  const works = new Map<string, { workId: string; byState: Record<TaskState, number>; total: number }>();
  for (const row of byWorkRows) {
    if (!ALL_TASK_STATES.includes(row.state)) continue;
    let work = works.get(row.workId);
    if (work === undefined) works.set(row.workId, (work = { workId: row.workId, byState: zeroStateCounts(), total: 0 }));
    work.byState[row.state] += row.count;
    work.total += row.count;
  }
  const byWork = [...works.values()]
    .sort((a, b) => b.total - a.total || (a.workId < b.workId ? -1 : a.workId > b.workId ? 1 : 0))
    .slice(0, MAX_COUNTED_WORKS)
    .map(({ workId, byState: counts }) => ({ workId, byState: counts }));
  return { total, byState, byWork };
}
