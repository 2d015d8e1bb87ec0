import { InvalidInputError } from '@horae/core';
import { beforeEach, expect } from 'vitest';
import type { Repository } from '../../contract/repository.js';
import { ALL_TASK_STATES, type JsonValue, type TaskInfo, type TaskState } from '../../contract/task-info.js';
import { isTaskSearchProvider, type SearchTasksOptions, type TaskQuery, type TaskSearch } from '../../contract/task-search.js';
import { MINUTE, compareIds, expectNoDuplicates, idsOf, insertClaimed, insertTask, insertTerminal, newTask } from '../helpers.js';
import type { SuiteContext } from '../suite-context.js';

/** Reads a call's rejection, failing the test when it resolves. */
async function rejectionOf(call: Promise<unknown>): Promise<unknown> {
  return call.then(
    () => expect.fail('the call was expected to throw'),
    (error: unknown) => error,
  );
}

/** Asserts that `tasks` are ordered by createdAt, then id. */
function expectCreationOrder(tasks: readonly TaskInfo[]): void {
  for (let i = 1; i < tasks.length; i++) {
    const a = tasks[i - 1]!;
    const b = tasks[i]!;
    const byTime = a.createdAt.getTime() - b.createdAt.getTime();
    expect(byTime < 0 || (byTime === 0 && compareIds(a.id, b.id) < 0), `${a.id} found before ${b.id}`).toBe(true);
  }
}

/** Every page of a search, until `next` is null (checking each page's bound and order). */
async function searchAll(search: TaskSearch, query: SearchTasksOptions = {}): Promise<TaskInfo[]> {
  const tasks: TaskInfo[] = [];
  let after: string | null = query.after ?? null;
  for (let i = 0; i < 10_000; i++) {
    const page = await search.searchTasks({ ...query, after });
    expect(page.tasks.length).toBeLessThanOrEqual(query.limit ?? 100);
    tasks.push(...page.tasks);
    if (page.next === null) {
      expectNoDuplicates(idsOf(tasks), 'a task');
      expectCreationOrder(tasks);
      return tasks;
    }
    expect(page.next).not.toBe(after);
    after = page.next;
  }
  throw new Error('searchTasks did not reach its last page within 10000 pages');
}

/** The ids of `tasks`, sorted. */
const sortedIds = (tasks: readonly TaskInfo[]): string[] => idsOf(tasks).sort();

/** TaskSearch: filters, a stable page cursor, counts, param matches, refusals. */
export function searchRules({ group, rule, repo }: SuiteContext): void {
  const search = (): TaskSearch => (repo() as Repository & { taskSearch(): TaskSearch }).taskSearch();
  /** The ids found by a search (every page, small pages), sorted. */
  const found = async (query: TaskQuery, limit = 2): Promise<string[]> => sortedIds(await searchAll(search(), { ...query, limit }));

  group('task search (TaskSearch)', () => {
    beforeEach((test) => {
      if (!isTaskSearchProvider(repo())) test.skip('this repository does not implement the optional TaskSearch capability');
    });

    rule('search filters by states and by workIds, alone and together, in pages', async () => {
      const a = await repo().insertMany(Array.from({ length: 5 }, () => newTask({ workId: 'work-a', maxAttempts: 2 })));
      const b = await repo().insertMany(Array.from({ length: 4 }, () => newTask({ workId: 'work-b', maxAttempts: 2 })));
      const c = await insertTask(repo(), { workId: 'work-c' });
      const [a0, a1, a2] = a.map((r) => r.task.id);
      const [b0] = b.map((r) => r.task.id);
      await repo().claim(a0!, { owner: 'node-a', leaseMs: 60_000 });
      await repo().markAsCancelled(a1!);
      await repo().markAsCancelled(b0!);
      const all = [...a, ...b].map((r) => r.task.id).concat(c.id);
      expect(await found({})).toEqual([...all].sort());
      expect(await found({ states: ['Cancelled'] })).toEqual([a1, b0].sort());
      expect(await found({ states: ['Working', 'Cancelled'] })).toEqual([a0, a1, b0].sort());
      expect(await found({ states: ['Done'] })).toEqual([]);
      expect(await found({ workIds: ['work-a'] })).toEqual(a.map((r) => r.task.id).sort());
      expect(await found({ workIds: ['work-b', 'work-c', 'work-z'] })).toEqual([...b.map((r) => r.task.id), c.id].sort());
      expect(await found({ workIds: ['work-a'], states: ['Initialized'] })).toEqual(a.slice(2).map((r) => r.task.id).sort());
      expect(await found({ workIds: ['work-a', 'work-b'], states: ['Cancelled', 'Initialized'] })).toEqual(
        [a1, a2, ...a.slice(3).map((r) => r.task.id), ...b.map((r) => r.task.id)].sort(),
      );
      const first = await search().searchTasks({ limit: 1000 });
      expect(first.next).toBeNull();
      expect(first.tasks).toHaveLength(10);
      expect(first.tasks.find((t) => t.id === a0)).toMatchObject({ state: 'Working', workId: 'work-a' });
    });

    rule('search filters by uniqueKey, scheduleName and idPrefix (exact text, no wildcards)', async () => {
      // An ended task and the live one that holds its key now: both hold the key.
      const ended = await insertTerminal(repo(), 'Done', { uniqueKey: 'order-1' });
      const keyed = await insertTask(repo(), { uniqueKey: 'order-1' });
      expect(keyed.id).not.toBe(ended.task.id);
      await insertTask(repo(), { uniqueKey: 'order-10' });
      const occurrence = await insertTask(repo(), { scheduleName: 'nightly', uniqueKey: 'schedule:nightly:1' });
      await insertTask(repo(), { scheduleName: 'nightly-2' });
      const ids = ['job-a-1', 'job-a-2', 'job-b-1', 'Job-a-3', 'x.*1', 'xa*1', 'p%_1', 'pab1', 'q\\1', 'q1'];
      for (const id of ids) await insertTask(repo(), { id });
      expect(await found({ uniqueKey: 'order-1' })).toEqual([keyed.id, ended.task.id].sort());
      expect(await found({ uniqueKey: 'order-1', states: ['Initialized'] })).toEqual([keyed.id]);
      expect(await found({ scheduleName: 'nightly' })).toEqual([occurrence.id]);
      expect(await found({ idPrefix: 'job-a' })).toEqual(['job-a-1', 'job-a-2']);
      expect(await found({ idPrefix: 'job-a-1' })).toEqual(['job-a-1']);
      expect(await found({ idPrefix: 'job' })).toEqual(['job-a-1', 'job-a-2', 'job-b-1']);
      expect(await found({ idPrefix: 'x.*' })).toEqual(['x.*1']);
      expect(await found({ idPrefix: 'p%_' })).toEqual(['p%_1']);
      expect(await found({ idPrefix: 'q\\' })).toEqual(['q\\1']);
      expect(await found({ idPrefix: 'job-a-1-and-more' })).toEqual([]);
    });

    rule('time ranges are half-open: created, due, and ended (terminal tasks only)', async () => {
      const base = Date.now() + 60 * MINUTE;
      const due = await Promise.all([0, 1, 2, 3].map(async (i) => insertTask(repo(), { scheduledAt: new Date(base + i * MINUTE) })));
      const dueIds = idsOf(due);
      expect(await found({ dueFrom: new Date(base + MINUTE), dueTo: new Date(base + 3 * MINUTE) })).toEqual([dueIds[1], dueIds[2]].sort());
      expect(await found({ dueFrom: new Date(base + 3 * MINUTE) })).toEqual([dueIds[3]]);
      expect(await found({ dueTo: new Date(base) })).toEqual([]);
      expect(await found({ dueFrom: new Date(base), dueTo: new Date(base) })).toEqual([]);

      const all = await searchAll(search(), { limit: 1000 });
      const first = all[0]!;
      const last = all[all.length - 1]!;
      // createdFrom includes a task created at that very time; createdTo excludes it.
      expect(await found({ createdFrom: first.createdAt })).toEqual(sortedIds(all));
      expect(await found({ createdTo: first.createdAt })).toEqual([]);
      expect(await found({ createdFrom: last.createdAt, createdTo: new Date(last.createdAt.getTime() + 1) })).toEqual(
        sortedIds(all.filter((t) => t.createdAt.getTime() === last.createdAt.getTime())),
      );

      const done = await insertTerminal(repo(), 'Done');
      const failed = await insertTerminal(repo(), 'Failed');
      const working = await insertClaimed(repo());
      const wide = { endedFrom: new Date(Date.now() - 60 * MINUTE), endedTo: new Date(Date.now() + 60 * MINUTE) };
      expect(await found(wide)).toEqual([done.task.id, failed.task.id].sort());
      expect(await found({ endedFrom: new Date(0) })).toEqual([done.task.id, failed.task.id].sort());
      expect(await found({ endedFrom: done.task.updatedAt, endedTo: done.task.updatedAt })).toEqual([]);
      expect(await found({ endedTo: done.task.updatedAt })).not.toContain(done.task.id);
      expect(await found({ endedFrom: done.task.updatedAt, endedTo: new Date(done.task.updatedAt.getTime() + 1) })).toContain(done.task.id);
      expect(await found({ ...wide, states: ['Working'] })).toEqual([]);
      expect(await found({})).toContain(working.id);
    });

    rule('the cursor is stable: tasks inserted between pages never make a page repeat or skip an older task', async () => {
      const older = await repo().insertMany(Array.from({ length: 11 }, (_, i) => newTask({ workId: i % 2 === 0 ? 'work-a' : 'work-b' })));
      const seen: TaskInfo[] = [];
      let after: string | null = null;
      let insertedMeanwhile = 0;
      for (let i = 0; i < 100; i++) {
        const page = await search().searchTasks({ limit: 3, after, workIds: ['work-a', 'work-b'] });
        expect(page.tasks.length).toBeLessThanOrEqual(3);
        seen.push(...page.tasks);
        // Between pages: new tasks (some would sort first by id), and a task of an older page changed.
        await repo().insertMany([newTask({ workId: 'work-a' }), newTask({ workId: 'work-b' })]);
        insertedMeanwhile += 2;
        if (seen[0] !== undefined && i === 1) await repo().markAsCancelled(seen[0].id);
        if (page.next === null) break;
        after = page.next;
      }
      expectNoDuplicates(idsOf(seen), 'a task');
      expectCreationOrder(seen);
      const seenIds = new Set(idsOf(seen));
      for (const { task } of older) expect(seenIds.has(task.id), `older task ${task.id} was skipped`).toBe(true);
      // The same query from the start now finds every task, each once.
      expect((await searchAll(search(), { limit: 4 })).length).toBe(11 + insertedMeanwhile);
    });

    rule('a page holds at most limit tasks; the last page has next null; an empty store is one empty page', async () => {
      expect(await search().searchTasks()).toEqual({ tasks: [], next: null });
      await repo().insertMany(Array.from({ length: 5 }, () => newTask()));
      const page = await search().searchTasks({ limit: 5 });
      expect(page.tasks).toHaveLength(5);
      expect(page.next).toBeNull();
      const firstOfTwo = await search().searchTasks({ limit: 4 });
      expect(firstOfTwo.tasks).toHaveLength(4);
      expect(firstOfTwo.next).not.toBeNull();
      const rest = await searchAll(search(), { limit: 4, after: firstOfTwo.next });
      expect(rest).toHaveLength(1);
    });

    rule('counts per state and per work match the search', async () => {
      const a = await repo().insertMany(Array.from({ length: 6 }, () => newTask({ workId: 'work-a', param: { tenant: 'acme' } })));
      const b = await repo().insertMany(Array.from({ length: 3 }, () => newTask({ workId: 'work-b', param: { tenant: 'acme' } })));
      await repo().insertMany(Array.from({ length: 2 }, () => newTask({ workId: 'work-c', param: { tenant: 'other' } })));
      await repo().markAsCancelled(a[0]!.task.id);
      await repo().markAsCancelled(b[0]!.task.id);
      await repo().claim(a[1]!.task.id, { owner: 'node-a', leaseMs: 60_000 });
      const zero = Object.fromEntries(ALL_TASK_STATES.map((s) => [s, 0])) as Record<TaskState, number>;

      const all = await search().countTasks();
      expect(all).toEqual({
        total: 11,
        byState: { ...zero, Initialized: 8, Working: 1, Cancelled: 2 },
        byWork: [
          { workId: 'work-a', byState: { ...zero, Initialized: 4, Working: 1, Cancelled: 1 } },
          { workId: 'work-b', byState: { ...zero, Initialized: 2, Cancelled: 1 } },
          { workId: 'work-c', byState: { ...zero, Initialized: 2 } },
        ],
      });
      const queries: TaskQuery[] = [
        { param: { path: ['tenant'], equals: 'acme' } },
        { states: ['Cancelled', 'Working'] },
        { workIds: ['work-b', 'work-c'], states: ['Initialized'] },
        { idPrefix: a[2]!.task.id.slice(0, 8) },
        { states: ['Done'] },
      ];
      for (const query of queries) {
        const tasks = await searchAll(search(), { ...query, limit: 3 });
        const counts = await search().countTasks(query);
        const byState = { ...zero };
        const works = new Map<string, Record<TaskState, number>>();
        for (const task of tasks) {
          byState[task.state]++;
          if (!works.has(task.workId)) works.set(task.workId, { ...zero });
          works.get(task.workId)![task.state]++;
        }
        expect(counts.total, JSON.stringify(query)).toBe(tasks.length);
        expect(counts.byState, JSON.stringify(query)).toEqual(byState);
        const expected = [...works].map(([workId, s]) => ({ workId, byState: s }));
        const sum = (s: Record<TaskState, number>): number => ALL_TASK_STATES.reduce((n, state) => n + s[state], 0);
        expected.sort((x, y) => sum(y.byState) - sum(x.byState) || (x.workId < y.workId ? -1 : 1));
        expect(counts.byWork, JSON.stringify(query)).toEqual(expected);
      }
      expect((await search().countTasks({ param: { path: ['tenant'], equals: 'acme' } })).total).toBe(9);
    });

    rule('a param match compares JSON values: nested paths, array indexes, "1" is not 1, booleans, null is not missing, objects and arrays', async () => {
      const params: Record<string, JsonValue> = {
        str1: { v: '1' },
        num1: { v: 1 },
        num1x: { v: 1.5 },
        yes: { v: true },
        no: { v: false },
        nil: { v: null },
        missing: { other: 1 },
        obj: { v: { a: 1, b: [1, '2', null] } },
        objOrder: { v: { b: [1, '2', null], a: 1 } },
        objMore: { v: { a: 1, b: [1, '2', null], c: 0 } },
        arr: { v: [1, '2', null] },
        arrLonger: { v: [1, '2', null, false] },
        nested: { a: { b: [{ c: 'deep' }, { c: 'other' }] } },
        keyZero: { v: { '0': 'key' } },
        indexZero: { v: ['item'] },
        odd: { 'a.b': { 'q"uote': { 'back\\slash': { '': 'found' } } } },
        emptyStr: { v: '' },
        zero: { v: 0 },
        top: 'just a string',
        topNull: null,
      };
      const idOf = new Map<string, string>();
      for (const [name, param] of Object.entries(params)) idOf.set(name, (await insertTask(repo(), { param })).id);
      const expectMatch = async (path: (string | number)[], equals: JsonValue, names: string[]): Promise<void> => {
        const ids = await found({ param: { path, equals } }, 3);
        expect(ids, `${JSON.stringify(path)} = ${JSON.stringify(equals)}`).toEqual(names.map((n) => idOf.get(n)!).sort());
      };
      await expectMatch(['v'], '1', ['str1']);
      await expectMatch(['v'], 1, ['num1']);
      await expectMatch(['v'], 1.5, ['num1x']);
      await expectMatch(['v'], true, ['yes']);
      await expectMatch(['v'], false, ['no']);
      await expectMatch(['v'], null, ['nil']);
      await expectMatch(['v'], 0, ['zero']);
      await expectMatch(['v'], '', ['emptyStr']);
      await expectMatch(['v'], { a: 1, b: [1, '2', null] }, ['obj', 'objOrder']);
      await expectMatch(['v'], { b: [1, '2', null], a: 1 }, ['obj', 'objOrder']);
      await expectMatch(['v'], {}, []);
      await expectMatch(['v'], [1, '2', null], ['arr']);
      await expectMatch(['v'], ['2', 1, null], []);
      await expectMatch(['v', 1], '2', ['arr', 'arrLonger']);
      await expectMatch(['v', 'b', 1], '2', ['obj', 'objOrder', 'objMore']);
      await expectMatch(['v', 'b', 2], null, ['obj', 'objOrder', 'objMore']);
      await expectMatch(['v', 3], false, ['arrLonger']);
      await expectMatch(['v', 9], null, []);
      await expectMatch(['a', 'b', 0, 'c'], 'deep', ['nested']);
      await expectMatch(['a', 'b', 1, 'c'], 'deep', []);
      await expectMatch(['a', 'b', 1], { c: 'other' }, ['nested']);
      await expectMatch(['v', '0'], 'key', ['keyZero']);
      await expectMatch(['v', 0], 'item', ['indexZero']);
      await expectMatch(['v', 0], 'key', []);
      await expectMatch(['v', '0'], 'item', []);
      await expectMatch(['a.b', 'q"uote', 'back\\slash', ''], 'found', ['odd']);
      await expectMatch(['a', 'b.q"uote'], 'found', []);
      await expectMatch(['other'], 1, ['missing']);
      await expectMatch([], 'just a string', ['top']);
      await expectMatch([], null, ['topNull']);
      await expectMatch(['v', 'length'], 1, []);
      // Together with other filters.
      const one = await repo().markAsCancelled(idOf.get('num1')!);
      expect(one.cancelled).toBe(true);
      expect(await found({ param: { path: ['v'], equals: 1 }, states: ['Initialized'] })).toEqual([]);
      expect(await found({ param: { path: ['v'], equals: 1 }, states: ['Cancelled'], workIds: ['work-a'] })).toEqual([idOf.get('num1')]);
    });

    rule('bad input is refused with InvalidInputError', async () => {
      await insertTask(repo());
      const bad: unknown[] = [
        { states: [] },
        { states: ['Running'] },
        { states: 'Done' },
        { workIds: [] },
        { workIds: [''] },
        { workIds: ['x'.repeat(256)] },
        { uniqueKey: '' },
        { uniqueKey: 5 },
        { scheduleName: 'x'.repeat(201) },
        { idPrefix: '' },
        { createdFrom: new Date(Number.NaN) },
        { dueTo: '2030-01-01' },
        { endedFrom: new Date(2000), endedTo: new Date(1000) },
        { param: { path: ['a'] } },
        { param: { path: 'a', equals: 1 } },
        { param: { path: [-1], equals: 1 } },
        { param: { path: [1.5], equals: 1 } },
        { param: { path: ['x'.repeat(201)], equals: 1 } },
        { param: { path: Array.from({ length: 33 }, () => 'a'), equals: 1 } },
        { param: { path: [true], equals: 1 } },
        { param: { path: [], equals: Number.NaN } },
        { param: { path: [], equals: new Date() } },
        { param: { path: [], equals: Array.from({ length: 100 }, (_, i) => i) } },
        { stats: ['Done'] },
        null,
      ];
      for (const query of bad) {
        expect(await rejectionOf(search().searchTasks(query as SearchTasksOptions)), JSON.stringify(query)).toBeInstanceOf(InvalidInputError);
        if (query !== null) expect(await rejectionOf(search().countTasks(query as TaskQuery)), JSON.stringify(query)).toBeInstanceOf(InvalidInputError);
      }
      for (const page of [{ limit: 0 }, { limit: 1001 }, { limit: 1.5 }, { after: 'not a cursor' }, { after: 42 }]) {
        expect(await rejectionOf(search().searchTasks(page as SearchTasksOptions)), JSON.stringify(page)).toBeInstanceOf(InvalidInputError);
      }
      // Bounds that are allowed.
      await search().searchTasks({ param: { path: Array.from({ length: 32 }, () => 'x'.repeat(200)), equals: Array.from({ length: 99 }, (_, i) => i) }, limit: 1000 });
    });
  });
}
