import { InvalidInputError } from '@horae/core';
import { expect } from 'vitest';
import type { TaskInfo } from '../../contract/task-info.js';
import { ALL_TASK_STATES } from '../../contract/task-info.js';
import { MINUTE, compareIds, expectNoDuplicates, idsOf, insertClaimed, insertTask, insertTerminal, listAll, listAllDue, newTask, past } from '../helpers.js';
import type { SuiteContext } from '../suite-context.js';

/** Asserts that `tasks` are ordered by createdAt, then id. */
function expectCreationOrder(tasks: readonly TaskInfo[]): void {
  for (let i = 1; i < tasks.length; i++) {
    const a = tasks[i - 1]!;
    const b = tasks[i]!;
    const byTime = a.createdAt.getTime() - b.createdAt.getTime();
    expect(byTime < 0 || (byTime === 0 && compareIds(a.id, b.id) < 0), `${a.id} listed before ${b.id}`).toBe(true);
  }
}

/** list, listDue, countByState and deleteTerminalBefore. */
export function listRules({ group, rule, repo }: SuiteContext): void {
  group('list', () => {
    rule('list pages through every task without duplicates or gaps', async () => {
      const batch = await repo().insertMany(Array.from({ length: 13 }, () => newTask()));
      const single: string[] = [];
      for (let i = 0; i < 10; i++) single.push((await insertTask(repo())).id);
      const all = await listAll(repo(), { limit: 4 });
      expectNoDuplicates(idsOf(all), 'a task');
      expect(idsOf(all).sort()).toEqual([...batch.map((r) => r.task.id), ...single].sort());
      expectCreationOrder(all);
      const first = await repo().list();
      expect(first.next).toBeNull();
      expect(first.tasks).toHaveLength(23);
    });

    rule('list of an empty store is one empty page', async () => {
      expect(await repo().list({ limit: 5 })).toEqual({ tasks: [], next: null });
    });

    rule('list filters by state, with paging', async () => {
      const inserted = await repo().insertMany(Array.from({ length: 10 }, () => newTask({ maxAttempts: 2 })));
      const ids = inserted.map((r) => r.task.id);
      for (const id of ids.slice(0, 3)) await repo().claim(id, { owner: 'node-a', leaseMs: 60_000 });
      for (const id of ids.slice(3, 5)) await repo().markAsCancelled(id);
      const expectState = async (state: TaskInfo['state'], expected: string[]): Promise<void> => {
        const listed = await listAll(repo(), { state, limit: 2 });
        expectNoDuplicates(idsOf(listed), 'a task');
        expect(idsOf(listed).sort(), state).toEqual([...expected].sort());
        for (const task of listed) expect(task.state).toBe(state);
        expectCreationOrder(listed);
      };
      await expectState('Working', ids.slice(0, 3));
      await expectState('Cancelled', ids.slice(3, 5));
      await expectState('Initialized', ids.slice(5));
      await expectState('Done', []);
    });

    rule('list filters by workId, and by workId and state together', async () => {
      const a: string[] = [];
      const b: string[] = [];
      for (let i = 0; i < 7; i++) {
        a.push((await insertTask(repo(), { workId: 'work-a' })).id);
        b.push((await insertTask(repo(), { workId: 'work-b' })).id);
      }
      const listedA = await listAll(repo(), { workId: 'work-a', limit: 3 });
      expect(idsOf(listedA).sort()).toEqual([...a].sort());
      expectCreationOrder(listedA);
      await repo().markAsCancelled(b[2]!);
      await repo().markAsCancelled(a[1]!);
      const cancelledB = await listAll(repo(), { workId: 'work-b', state: 'Cancelled', limit: 3 });
      expect(idsOf(cancelledB)).toEqual([b[2]]);
      expect(await listAll(repo(), { workId: 'work-z', limit: 3 })).toEqual([]);
    });

    rule('list refuses an invalid limit', async () => {
      await expect(repo().list({ limit: 0 })).rejects.toBeInstanceOf(InvalidInputError);
    });
  });

  group('listDue', () => {
    rule('listDue lists Initialized tasks due before the date, by due time then id, in pages', async () => {
      const base = Date.now() + 60 * MINUTE;
      const at = (seconds: number): Date => new Date(base + seconds * 1_000);
      const t1 = await insertTask(repo(), { scheduledAt: at(1) });
      const tied = [await insertTask(repo(), { scheduledAt: at(2) }), await insertTask(repo(), { scheduledAt: at(2) }), await insertTask(repo(), { scheduledAt: at(2) })];
      const t4 = await insertTask(repo(), { scheduledAt: at(3) });
      await insertTask(repo(), { scheduledAt: at(10) }); // exactly at `before`: excluded
      await insertTask(repo(), { scheduledAt: at(20) });
      // Due already (a claim by id of a task not due is refused), before `before`, and excluded by their state.
      await insertClaimed(repo(), { scheduledAt: past(5 * MINUTE) }); // Working: excluded
      await insertTerminal(repo(), 'Done', { scheduledAt: past(5 * MINUTE) }); // terminal: excluded
      const cancelled = await insertTask(repo(), { scheduledAt: at(1) });
      await repo().markAsCancelled(cancelled.id);
      const early = await insertTask(repo(), { scheduledAt: new Date(Date.now() - 5 * MINUTE) });

      const expected = [early.id, t1.id, ...idsOf(tied).sort(compareIds), t4.id];
      expect(idsOf(await listAllDue(repo(), at(10), 2))).toEqual(expected);
      expect(idsOf(await listAllDue(repo(), at(10), 100))).toEqual(expected);
      expect(idsOf(await listAllDue(repo(), at(2), 1))).toEqual([early.id, t1.id]);
    });

    rule('listDue refuses an invalid limit', async () => {
      await expect(repo().listDue({ before: new Date(), limit: 0 })).rejects.toBeInstanceOf(InvalidInputError);
    });
  });

  group('countByState and deleteTerminalBefore', () => {
    rule('countByState counts every state', async () => {
      const empty = await repo().countByState();
      expect(Object.keys(empty).sort()).toEqual([...ALL_TASK_STATES].sort());
      for (const state of ALL_TASK_STATES) expect(empty[state]).toBe(0);
      await insertTask(repo());
      await insertTask(repo());
      await insertClaimed(repo());
      await insertTerminal(repo(), 'Done');
      await insertTerminal(repo(), 'Failed');
      await insertTerminal(repo(), 'Failed');
      expect(await repo().countByState()).toEqual({ Initialized: 2, Working: 1, Done: 1, Cancelled: 0, Failed: 2 });
    });

    rule('deleteTerminalBefore deletes only terminal tasks updated before the date', async () => {
      const live = await insertTask(repo());
      const working = await insertClaimed(repo());
      const terminal = [await insertTerminal(repo(), 'Done'), await insertTerminal(repo(), 'Cancelled'), await insertTerminal(repo(), 'Failed')].map((t) => t.task);
      const times = terminal.map((t) => t.updatedAt.getTime());
      expect(await repo().deleteTerminalBefore(new Date(Math.min(...times)))).toBe(0);
      expect(await repo().countByState()).toMatchObject({ Done: 1, Cancelled: 1, Failed: 1 });
      expect(await repo().deleteTerminalBefore(new Date(Math.max(...times) + 1))).toBe(3);
      expect(await repo().countByState()).toEqual({ Initialized: 1, Working: 1, Done: 0, Cancelled: 0, Failed: 0 });
      expect(await repo().getById(live.id)).toEqual(live);
      expect(await repo().getById(working.id)).toEqual(working);
      expect(await repo().deleteTerminalBefore(new Date(Date.now() + 60 * MINUTE))).toBe(0);
    });
  });
}
