/**
 * The search options of `horae tasks ls` (`--param`, `--id-prefix`, time ranges, …), turned into the `TaskQuery` of
 * the TaskSearch capability. Times are ISO 8601 instants, or a duration meaning "that long ago" (`2h`).
 */
import type { JsonValue, TaskParamMatch, TaskQuery as SearchQuery } from '@horae/storage';
import { parseDuration } from './duration.js';
import { usageError } from './exit-codes.js';

/** The search options as commander gives them. */
export interface SearchOptions {
  uniqueKey?: string;
  schedule?: string;
  idPrefix?: string;
  param?: string;
  createdFrom?: string;
  createdTo?: string;
  dueFrom?: string;
  dueTo?: string;
  endedFrom?: string;
  endedTo?: string;
}

/**
 * The query of the search options.
 *
 * @param options - what commander parsed
 * @param now - the current time, for durations ("2h" = two hours before now)
 * @returns the query fields (states and works are added by the caller)
 * @throws CliError (usage) on a malformed time or `--param`
 */
export function toSearchQuery(options: SearchOptions, now: number): SearchQuery {
  const query: SearchQuery = {};
  if (options.uniqueKey !== undefined) query.uniqueKey = options.uniqueKey;
  if (options.schedule !== undefined) query.scheduleName = options.schedule;
  if (options.idPrefix !== undefined) query.idPrefix = options.idPrefix;
  if (options.param !== undefined) query.param = parseParamMatch(options.param);
  const times = [
    ['createdFrom', '--created-from'],
    ['createdTo', '--created-to'],
    ['dueFrom', '--due-from'],
    ['dueTo', '--due-to'],
    ['endedFrom', '--ended-from'],
    ['endedTo', '--ended-to'],
  ] as const;
  for (const [key, flag] of times) {
    const text = options[key];
    if (text !== undefined) query[key] = parseInstant(text, flag, now);
  }
  return query;
}

/**
 * Parses `--param path=value`: the path is dot-separated keys, an all-digit segment being an array index
 * (`items.0.sku`), or a JSON array of keys and indexes for keys that hold dots (`["a.b",0]`); the value is JSON when
 * it parses as JSON (`42`, `true`, `null`, `"42"`, `{"a":1}`), else the text itself (`ada@example.com`).
 *
 * @throws CliError (usage) when there is no `=` or the path is empty or malformed
 */
export function parseParamMatch(text: string): TaskParamMatch {
  const split = splitAtEquals(text);
  if (split === undefined) throw usageError(`--param must be path=value, such as customer.id=42 or to=ada@example.com; got ${JSON.stringify(text)}`);
  const [pathText, valueText] = split;
  return { path: parsePath(pathText), equals: parseValue(valueText) };
}

function splitAtEquals(text: string): [string, string] | undefined {
  // A JSON-array path may hold '=' inside its strings: split after its closing bracket.
  if (text.startsWith('[')) {
    const end = text.indexOf(']=');
    return end < 0 ? undefined : [text.slice(0, end + 1), text.slice(end + 2)];
  }
  const at = text.indexOf('=');
  return at <= 0 ? undefined : [text.slice(0, at), text.slice(at + 1)];
}

function parsePath(text: string): (string | number)[] {
  if (text.startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw usageError(`the --param path ${JSON.stringify(text)} is not a JSON array of keys and indexes`);
    }
    if (!Array.isArray(parsed) || parsed.length === 0 || !parsed.every((s) => typeof s === 'string' || (typeof s === 'number' && Number.isSafeInteger(s) && s >= 0))) {
      throw usageError(`the --param path ${JSON.stringify(text)} must be a non-empty JSON array of keys (strings) and indexes (integers ≥ 0)`);
    }
    return parsed as (string | number)[];
  }
  const segments = text.split('.');
  if (segments.some((s) => s === '')) throw usageError(`the --param path ${JSON.stringify(text)} has an empty segment; use the JSON form ["a.b",0] for keys with dots`);
  return segments.map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

function parseValue(text: string): JsonValue {
  try {
    return JSON.parse(text) as JsonValue;
  } catch {
    return text;
  }
}

/** An ISO 8601 instant, or a duration before `now`. */
function parseInstant(text: string, flag: string, now: number): Date {
  if (/^\d+(ms|s|m|h|d|w)$/.test(text.trim())) return new Date(now - parseDuration(text, flag));
  const time = Date.parse(text);
  if (!/^\d{4}-\d{2}-\d{2}/.test(text) || Number.isNaN(time)) {
    throw usageError(`${flag} must be an ISO 8601 time (2026-12-04T10:00:00Z) or a duration ago (2h, 7d); got ${JSON.stringify(text)}`);
  }
  return new Date(time);
}
