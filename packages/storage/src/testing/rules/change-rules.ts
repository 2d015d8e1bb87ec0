import { InvalidInputError } from '@horae/core';
import { expect } from 'vitest';
import type { ChangePage, Repository } from '../../contract/repository.js';
import type { TaskInfo } from '../../contract/task-info.js';
import { drainChanges, expectNoDuplicates, idsOf, insertClaimed, insertTask, newTask } from '../helpers.js';
import type { SuiteContext } from '../suite-context.js';

/** The last state in which `tasks` shows each id. */
function latestById(tasks: readonly TaskInfo[]): Map<string, TaskInfo> {
  const latest = new Map<string, TaskInfo>();
  for (const task of tasks) latest.set(task.id, task);
  return latest;
}

/** Inserts `count` tasks one write at a time (each its own change), returning their ids in order. */
async function insertSequentially(repo: Repository, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i++) ids.push((await insertTask(repo, { param: { i } })).id);
  return ids;
}

/** getUpdatedSince and getCursor: the change feed sync reads. */
export function changeRules({ group, rule, repo, fixture }: SuiteContext): void {
  group('getUpdatedSince', () => {
    rule('getUpdatedSince from null returns every task', async () => {
      const ids = await insertSequentially(repo(), 5);
      const page = await repo().getUpdatedSince(null, 100);
      expect(idsOf(page.tasks)).toEqual(ids);
      expect(typeof page.cursor).toBe('string');
      for (const task of page.tasks) expect(task).toEqual(await repo().getById(task.id));
    });

    rule('getUpdatedSince on an empty store returns an empty page', async () => {
      const page = await repo().getUpdatedSince(null, 10);
      expect(page.tasks).toEqual([]);
      expect(typeof page.cursor).toBe('string');
      const task = await insertTask(repo());
      expect(idsOf((await drainChanges(repo(), page.cursor, 10)).tasks)).toEqual([task.id]);
    });

    rule('paging with a small limit returns every row exactly once, in change order', async () => {
      const ids = await insertSequentially(repo(), 25);
      const drained = await drainChanges(repo(), null, 3);
      expect(idsOf(drained.tasks)).toEqual(ids);
      expect(drained.pages).toBeGreaterThanOrEqual(9);
    });

    rule('many rows sharing one timestamp are all returned when paging', async () => {
      const inserted = await repo().insertMany(Array.from({ length: 50 }, (_, i) => newTask({ param: { i } })));
      const drained = await drainChanges(repo(), null, 7);
      const ids = idsOf(drained.tasks);
      expectNoDuplicates(ids, 'a row');
      expect(ids.sort()).toEqual(inserted.map((r) => r.task.id).sort());
    });

    rule('changes made between pages are all seen, in their latest state', async () => {
      const ids = await insertSequentially(repo(), 20);
      const seen: TaskInfo[] = [];
      let cursor: string | null = null;
      // Read at least two pages of 5 (about half the rows) before writing.
      while (seen.length < 10) {
        const page: ChangePage = await repo().getUpdatedSince(cursor, 5);
        expect(page.tasks.length).toBeGreaterThan(0);
        seen.push(...page.tasks);
        cursor = page.cursor;
      }
      expect(idsOf(seen)).toEqual(ids.slice(0, seen.length));
      // Change rows already read, one not read yet, and add new ones.
      const changed = [ids[0]!, ids[4]!, ids[9]!];
      for (const [i, id] of changed.entries()) await repo().update(id, { priority: 100 + i });
      const claimed = await repo().claim(ids[15]!, { owner: 'node-a', leaseMs: 60_000 });
      expect(claimed).not.toBeNull();
      const added = await insertSequentially(repo(), 3);
      const rest = await drainChanges(repo(), cursor, 5);
      seen.push(...rest.tasks);

      for (const id of [...changed, ids[15]!, ...added]) expect(idsOf(rest.tasks), `change of ${id} seen after it was made`).toContain(id);
      const latest = latestById(seen);
      expect([...latest.keys()].sort()).toEqual([...ids, ...added].sort());
      for (const [id, task] of latest) expect(task, `latest state of ${id}`).toEqual(await repo().getById(id));
      expect(latest.get(ids[4]!)?.priority).toBe(101);
      expect(latest.get(ids[15]!)?.state).toBe('Working');
    });

    rule('the cursor is unchanged and the page empty when nothing changed', async () => {
      await insertSequentially(repo(), 3);
      const { cursor } = await drainChanges(repo(), null, 2);
      const again = await repo().getUpdatedSince(cursor, 10);
      expect(again.tasks).toEqual([]);
      expect(again.cursor).toBe(cursor);
    });

    rule('every transition is a change', async () => {
      const { cursor: start } = await drainChanges(repo(), null, 10);
      let cursor = start;
      const expectChange = async (id: string, state: string, what: string): Promise<void> => {
        const drained = await drainChanges(repo(), cursor, 10);
        expect(idsOf(drained.tasks), what).toContain(id);
        expect(latestById(drained.tasks).get(id)?.state, what).toBe(state);
        cursor = drained.cursor;
      };
      const task = await insertTask(repo(), { maxAttempts: 5 });
      await expectChange(task.id, 'Initialized', 'insert');
      await repo().update(task.id, { priority: 2 });
      await expectChange(task.id, 'Initialized', 'update');
      const first = await repo().claim(task.id, { owner: 'node-a', leaseMs: 0 });
      await expectChange(task.id, 'Working', 'claim');
      await repo().reclaimExpired();
      await expectChange(task.id, 'Initialized', 'reclaimExpired');
      expect(first).not.toBeNull();
      const second = await repo().claim(task.id, { owner: 'node-a', leaseMs: 60_000 });
      await repo().release(task.id, second!.lease!.token, { runAt: new Date() });
      await expectChange(task.id, 'Initialized', 'release');
      const third = await repo().claim(task.id, { owner: 'node-a', leaseMs: 60_000 });
      await repo().markAsDone(task.id, third!.lease!.token);
      await expectChange(task.id, 'Done', 'markAsDone');
      const cancelled = await insertTask(repo());
      await repo().markAsCancelled(cancelled.id);
      await expectChange(cancelled.id, 'Cancelled', 'markAsCancelled');
      const failed = await insertClaimed(repo());
      await repo().markAsFailed(failed.id, { message: 'x' }, failed.lease.token);
      await expectChange(failed.id, 'Failed', 'markAsFailed');
    });

    rule('a cursor from one client works on a peer', async () => {
      await insertSequentially(repo(), 4);
      const { cursor } = await drainChanges(repo(), null, 3);
      const peer = await fixture().openPeer();
      const added = await insertTask(peer);
      const fromPeer = await drainChanges(peer, cursor, 3);
      expect(idsOf(fromPeer.tasks)).toEqual([added.id]);
      const back = await drainChanges(repo(), fromPeer.cursor, 3);
      expect(back.tasks).toEqual([]);
    });

    rule('getUpdatedSince refuses an invalid limit', async () => {
      await expect(repo().getUpdatedSince(null, 0)).rejects.toBeInstanceOf(InvalidInputError);
      await expect(repo().getUpdatedSince(null, 2.5)).rejects.toBeInstanceOf(InvalidInputError);
    });
  });

  group('getCursor', () => {
    rule('changes after getCursor are seen from its cursor', async () => {
      const old = await insertSequentially(repo(), 5);
      const cursor = await repo().getCursor();
      expect(typeof cursor).toBe('string');
      const added = await insertTask(repo());
      await repo().update(old[2]!, { priority: 42 });
      const drained = await drainChanges(repo(), cursor, 2);
      const latest = latestById(drained.tasks);
      expect(latest.get(added.id)).toEqual(await repo().getById(added.id));
      expect(latest.get(old[2]!)?.priority).toBe(42);
    });

    rule('getCursor on an empty store sees every later change', async () => {
      const cursor = await repo().getCursor();
      const ids = await insertSequentially(repo(), 3);
      expect(idsOf((await drainChanges(repo(), cursor, 2)).tasks)).toEqual(ids);
    });
  });
}
