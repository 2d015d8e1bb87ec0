import { expect } from 'vitest';
import type { TaskState } from '../../contract/task-info.js';
import { insertTerminal, newTask, openPeers, totalCount } from '../helpers.js';
import type { SuiteContext } from '../suite-context.js';

/** uniqueKey: while a live task holds a key, no second task with it is created. */
export function uniqueKeyRules({ group, rule, repo, fixture }: SuiteContext): void {
  group('uniqueKey', () => {
    rule('insert with a key held by a live task returns that task with created: false', async () => {
      const first = await repo().insert(newTask({ uniqueKey: 'k1', param: { n: 1 } }));
      expect(first.created).toBe(true);
      const second = await repo().insert(newTask({ uniqueKey: 'k1', param: { n: 2 } }));
      expect(second.created).toBe(false);
      expect(second.task).toEqual(await repo().getById(first.task.id));
      expect(second.task.param).toEqual({ n: 1 });
      expect(await totalCount(repo())).toBe(1);
      const other = await repo().insert(newTask({ uniqueKey: 'k2' }));
      expect(other.created).toBe(true);
      expect(await totalCount(repo())).toBe(2);
    });

    rule('a Working task still holds its key', async () => {
      const first = await repo().insert(newTask({ uniqueKey: 'k1' }));
      expect(await repo().claim(first.task.id, { owner: 'node-a', leaseMs: 60_000 })).not.toBeNull();
      const second = await repo().insert(newTask({ uniqueKey: 'k1' }));
      expect(second).toMatchObject({ created: false, task: { id: first.task.id, state: 'Working' } });
      expect(await totalCount(repo())).toBe(1);
    });

    rule('once the holder is terminal a new task with the key can be created', async () => {
      const states: TaskState[] = ['Done', 'Cancelled', 'Failed'];
      const ids = new Set<string>();
      for (const state of states) {
        const { task } = await insertTerminal(repo(), state, { uniqueKey: 'k1' });
        ids.add(task.id);
        const next = await repo().insert(newTask({ uniqueKey: 'k1' }));
        expect(next.created, `after ${state}`).toBe(true);
        expect(ids.has(next.task.id)).toBe(false);
        ids.add(next.task.id);
        await repo().markAsCancelled(next.task.id);
      }
      expect(await totalCount(repo())).toBe(6);
    });

    rule('of 10 concurrent inserts with one key from several clients exactly one creates', async () => {
      const clients = [repo(), ...(await openPeers(() => fixture().openPeer(), 3))];
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) => clients[i % clients.length]!.insert(newTask({ uniqueKey: 'race', param: { i } }))));
      expect(results.filter((r) => r.created)).toHaveLength(1);
      expect(new Set(results.map((r) => r.task.id)).size).toBe(1);
      expect(await totalCount(repo())).toBe(1);
    });

    rule('insertMany with a key already held returns the existing task', async () => {
      const held = await repo().insert(newTask({ uniqueKey: 'k1' }));
      const results = await repo().insertMany([newTask({ uniqueKey: 'k1' }), newTask({ uniqueKey: 'k2' }), newTask()]);
      expect(results[0]).toMatchObject({ created: false, task: { id: held.task.id } });
      expect(results[1]?.created).toBe(true);
      expect(results[2]?.created).toBe(true);
      expect(await totalCount(repo())).toBe(3);
    });

    rule('insertMany with one key twice creates one task', async () => {
      const results = await repo().insertMany([newTask({ uniqueKey: 'k1', param: 1 }), newTask({ uniqueKey: 'k1', param: 2 })]);
      expect(results.map((r) => r.created)).toEqual([true, false]);
      expect(results[1]!.task.id).toBe(results[0]!.task.id);
      expect(results[1]!.task.param).toBe(1);
      expect(await totalCount(repo())).toBe(1);
    });
  });
}
