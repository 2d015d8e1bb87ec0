/**
 * Model tests of MongoTaskSearch without a server: the filters it builds run on the pipeline model, over a fake
 * collection, and what it finds is compared with `taskMatches`, the reference of the TaskSearch rules.
 */
import { describe, expect, it } from 'vitest';
import type { Document } from 'mongodb';
import { InvalidInputError } from '@horae/core';
import { normalizeTaskQuery, taskMatches, type TaskInfo, type TaskQuery, type TaskState } from '@horae/storage';
import { MAX_PARAM_COUNT_SCAN, MAX_PARAM_SCAN_PER_PAGE, MongoTaskSearch, prefixPattern, type SearchCollection } from '../src/task-search.js';
import { toTaskInfo, type TaskDocument } from '../src/task-document.js';
import { matches, sortBy, type Doc } from './pipeline-model.js';

const NOW = new Date('2030-01-01T00:00:00.000Z');
const STATES: TaskState[] = ['Initialized', 'Working', 'Done', 'Cancelled', 'Failed'];

/** The model's matches, with the anchored `$regex` of the id prefix (which the model does not know) run by RegExp. */
function matchDoc(doc: Doc, filter: Document): boolean {
  const clauses = (filter.$and as Document[] | undefined) ?? [filter];
  return clauses.every((clause) => {
    const regex = (clause._id as { $regex?: string } | undefined)?.$regex;
    return regex !== undefined ? new RegExp(regex).test(doc._id as string) : matches(doc, clause, NOW);
  });
}

/** A tiny evaluator of the two count pipelines' stages ($match, $group, $sort, $limit). */
function runPipeline(docs: Doc[], pipeline: Document[]): Doc[] {
  const read = (doc: Doc, expr: unknown): unknown =>
    typeof expr === 'string' && expr.startsWith('$') ? expr.slice(1).split('.').reduce<unknown>((v, k) => (v as Doc | undefined)?.[k], doc) : expr;
  let out = docs;
  for (const stage of pipeline) {
    if (stage.$match !== undefined) out = out.filter((doc) => matchDoc(doc, stage.$match as Document));
    else if (stage.$sort !== undefined) out = sortBy(out, stage.$sort as Document);
    else if (stage.$limit !== undefined) out = out.slice(0, stage.$limit as number);
    else if (stage.$group !== undefined) {
      const { _id: key, ...fields } = stage.$group as Doc;
      const groups = new Map<string, Doc>();
      for (const doc of out) {
        const id = key !== null && typeof key === 'object' ? Object.fromEntries(Object.entries(key as Doc).map(([k, e]) => [k, read(doc, e)])) : read(doc, key);
        const name = JSON.stringify(id);
        const group = groups.get(name) ?? { _id: id };
        for (const [field, acc] of Object.entries(fields as Record<string, Doc>)) {
          if (acc.$sum !== undefined) group[field] = ((group[field] as number | undefined) ?? 0) + (read(doc, acc.$sum) as number);
          else if (acc.$push !== undefined) {
            const pushed = Object.fromEntries(Object.entries(acc.$push as Doc).map(([k, e]) => [k, read(doc, e)]));
            group[field] = [...((group[field] as unknown[] | undefined) ?? []), pushed];
          } else throw new Error(`unknown accumulator in ${JSON.stringify(acc)}`);
        }
        groups.set(name, group);
      }
      out = [...groups.values()];
    } else throw new Error(`unknown stage ${JSON.stringify(stage)}`);
  }
  return out;
}

/** A fake tasks collection over the model, counting the documents handed out. */
function fakeCollection(docs: TaskDocument[], countOverride?: number): SearchCollection & { read: number } {
  const fake = {
    read: 0,
    find: (filter: Document) => ({
      sort: (spec: Document) => ({
        limit: (n: number) => ({
          toArray: () => {
            const found = sortBy((docs as unknown as Doc[]).filter((doc) => matchDoc(doc, filter)), spec).slice(0, n);
            fake.read += found.length;
            return Promise.resolve(structuredClone(found));
          },
        }),
      }),
    }),
    countDocuments: (filter: Document, options: { limit: number }) =>
      Promise.resolve(countOverride ?? Math.min(options.limit, (docs as unknown as Doc[]).filter((doc) => matchDoc(doc, filter)).length)),
    aggregate: (pipeline: Document[]) => ({ toArray: () => Promise.resolve(runPipeline(docs as unknown as Doc[], pipeline)) }),
  };
  return fake as unknown as SearchCollection & { read: number };
}

const run = <T>(_operation: string, body: () => Promise<T>): Promise<T> => body();

function doc(i: number, overrides: Partial<TaskDocument> = {}): TaskDocument {
  const state = STATES[i % 5]!;
  const params = [{ v: '1' }, { v: 1 }, { v: true }, { v: null }, { w: 1 }, { v: { a: 1, b: [1, '2'] } }, { v: { b: [1, '2'], a: 1 } }, { v: [1, '2'] }, 'top'];
  return {
    _id: `${['job', 'x.*', 'Job', 'p%_'][i % 4]}-${String(i).padStart(5, '0')}`,
    workId: `work-${i % 3}`,
    param: JSON.stringify(params[i % params.length]),
    scheduledAt: new Date(NOW.getTime() + (i % 7) * 60_000),
    state,
    priority: 0,
    attempt: 0,
    maxAttempts: 1,
    lease: null,
    lastError: null,
    uniqueKey: i % 6 === 0 ? `key-${i % 12}` : null,
    progress: null,
    createdAt: new Date(NOW.getTime() + Math.floor(i / 2) * 1000),
    updatedAt: new Date(NOW.getTime() + i * 500),
    live: state === 'Initialized' || state === 'Working',
    seq: i,
    kind: 'scheduled',
    scheduleName: i % 5 === 1 ? 'nightly' : null,
    ...overrides,
  };
}

async function searchAll(search: MongoTaskSearch, query: TaskQuery, limit: number): Promise<TaskInfo[]> {
  const out: TaskInfo[] = [];
  let after: string | null = null;
  for (let i = 0; i < 10_000; i++) {
    const page = await search.searchTasks({ ...query, limit, after });
    expect(page.tasks.length).toBeLessThanOrEqual(limit);
    out.push(...page.tasks);
    if (page.next === null) return out;
    after = page.next;
  }
  throw new Error('no last page');
}

describe('MongoTaskSearch on the pipeline model', () => {
  const docs = Array.from({ length: 90 }, (_, i) => doc(i));
  const reference = (query: TaskQuery): string[] =>
    sortBy(docs as unknown as Doc[], { createdAt: 1, _id: 1 })
      .map((d) => toTaskInfo(d as unknown as TaskDocument))
      .filter((task) => taskMatches(task, normalizeTaskQuery(query)))
      .map((task) => task.id);
  const queries: TaskQuery[] = [
    {},
    { states: ['Done', 'Failed'] },
    { workIds: ['work-1'] },
    { workIds: ['work-0', 'work-2'], states: ['Initialized'] },
    { uniqueKey: 'key-6' },
    { scheduleName: 'nightly' },
    { idPrefix: 'x.*' },
    { idPrefix: 'p%_-0001' },
    { idPrefix: 'x' },
    { createdFrom: new Date(NOW.getTime() + 10_000), createdTo: new Date(NOW.getTime() + 20_000) },
    { dueFrom: new Date(NOW.getTime() + 120_000), dueTo: new Date(NOW.getTime() + 180_000) },
    { endedFrom: new Date(NOW.getTime() + 5_000), endedTo: new Date(NOW.getTime() + 30_000) },
    { param: { path: ['v'], equals: 1 } },
    { param: { path: ['v'], equals: '1' } },
    { param: { path: ['v'], equals: true } },
    { param: { path: ['v'], equals: null } },
    { param: { path: ['v'], equals: { b: [1, '2'], a: 1 } } },
    { param: { path: ['v', 'b', 1], equals: '2' } },
    { param: { path: ['v', 1], equals: '2' } },
    { param: { path: [], equals: 'top' } },
    { param: { path: ['v'], equals: 1 }, states: ['Working', 'Done'], workIds: ['work-1', 'work-2'] },
  ];

  it('finds, page by page, exactly what the reference finds, in (createdAt, id) order', async () => {
    const search = new MongoTaskSearch(fakeCollection(docs), run);
    for (const query of queries) {
      const expected = reference(query);
      for (const limit of [1, 4, 1000]) expect((await searchAll(search, query, limit)).map((t) => t.id), JSON.stringify(query)).toEqual(expected);
    }
    expect(reference({ param: { path: ['v'], equals: 1 } }).length).toBeGreaterThan(0);
    expect(reference({ idPrefix: 'x.*' }).length).toBeGreaterThan(0);
  });

  it('counts per state and per work what the search finds, with and without a param match', async () => {
    const search = new MongoTaskSearch(fakeCollection(docs), run);
    for (const query of queries) {
      const tasks = await searchAll(search, query, 1000);
      const counts = await search.countTasks(query);
      expect(counts.total, JSON.stringify(query)).toBe(tasks.length);
      for (const state of STATES) expect(counts.byState[state]).toBe(tasks.filter((t) => t.state === state).length);
      for (const work of counts.byWork) for (const state of STATES) expect(work.byState[state]).toBe(tasks.filter((t) => t.workId === work.workId && t.state === state).length);
      expect(counts.byWork.map((w) => w.workId).sort()).toEqual([...new Set(tasks.map((t) => t.workId))].sort());
    }
  });

  it('a param page stops after its scan bound with a cursor after the last document read, and paging goes on from there', async () => {
    const many = Array.from({ length: MAX_PARAM_SCAN_PER_PAGE + 200 }, (_, i) => doc(i, { param: JSON.stringify({ v: i === MAX_PARAM_SCAN_PER_PAGE + 100 ? 'needle' : 'hay' }) }));
    const collection = fakeCollection(many);
    const search = new MongoTaskSearch(collection, run);
    const first = await search.searchTasks({ param: { path: ['v'], equals: 'needle' } });
    expect(first.tasks).toEqual([]);
    expect(first.next).not.toBeNull();
    expect(collection.read).toBe(MAX_PARAM_SCAN_PER_PAGE);
    const second = await search.searchTasks({ param: { path: ['v'], equals: 'needle' }, after: first.next });
    expect(second.tasks.map((t) => t.id)).toEqual([many[MAX_PARAM_SCAN_PER_PAGE + 100]!._id]);
    expect(second.next).toBeNull();
  });

  it('a count with a param match is refused when the other filters select more than its bound', async () => {
    const search = new MongoTaskSearch(fakeCollection(docs, MAX_PARAM_COUNT_SCAN + 1), run);
    await expect(search.countTasks({ param: { path: ['v'], equals: 1 } })).rejects.toBeInstanceOf(InvalidInputError);
  });

  it('the id prefix pattern matches exactly the ids that start with the prefix', () => {
    for (const prefix of ['x.*', 'p%_', 'a(b)[c]{d}|e^f$g+h?i\\j/k-l', 'ü', ' ']) {
      const pattern = new RegExp(prefixPattern(prefix));
      expect(pattern.test(`${prefix}rest`), prefix).toBe(true);
      expect(pattern.test(prefix), prefix).toBe(true);
      expect(pattern.test(`z${prefix}`), prefix).toBe(false);
      expect(pattern.test(prefix.slice(0, -1) + 'Q'), prefix).toBe(false);
    }
  });

  it('bad input is refused before the collection is read', async () => {
    const collection = fakeCollection(docs);
    const search = new MongoTaskSearch(collection, run);
    await expect(search.searchTasks({ states: [] })).rejects.toBeInstanceOf(InvalidInputError);
    await expect(search.searchTasks({ after: 'nope' })).rejects.toBeInstanceOf(InvalidInputError);
    await expect(search.countTasks({ param: { path: [-1], equals: 1 } })).rejects.toBeInstanceOf(InvalidInputError);
    expect(collection.read).toBe(0);
  });
});
