import { randomUUID } from 'node:crypto';
import { InvalidInputError } from '@horae/core';
import { expect } from 'vitest';
import type { JsonValue } from '../../contract/task-info.js';
import { MINUTE, insertTask, newTask, totalCount } from '../helpers.js';
import type { SuiteContext } from '../suite-context.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** insert and insertMany: defaults, ids, times, and all-or-nothing writes. */
export function insertRules({ group, rule, repo }: SuiteContext): void {
  group('insert', () => {
    rule('insert applies the defaults', async () => {
      const scheduledAt = new Date(Date.now() + 5 * MINUTE);
      const { task, created } = await repo().insert({ workId: 'work-a', scheduledAt });
      expect(created).toBe(true);
      expect(task).toMatchObject({
        workId: 'work-a',
        param: null,
        state: 'Initialized',
        attempt: 0,
        claims: 0,
        unstartedClaims: 0,
        maxAttempts: 1,
        priority: 0,
        lease: null,
        progress: null,
        lastError: null,
        uniqueKey: null,
      });
      expect(task.scheduledAt).toBeInstanceOf(Date);
      expect(task.scheduledAt.getTime()).toBe(scheduledAt.getTime());
      expect(await repo().getById(task.id)).toEqual(task);
    });

    rule('insert keeps the fields it is given', async () => {
      const task = await insertTask(repo(), { workId: 'work-b', param: { n: 1 }, priority: 7, maxAttempts: 4, uniqueKey: 'key-1' });
      expect(task).toMatchObject({ workId: 'work-b', param: { n: 1 }, priority: 7, maxAttempts: 4, uniqueKey: 'key-1' });
      expect(await repo().getById(task.id)).toEqual(task);
    });

    rule('insert generates a uuid id when none is given', async () => {
      const a = await insertTask(repo());
      const b = await insertTask(repo());
      expect(a.id).toMatch(UUID);
      expect(b.id).toMatch(UUID);
      expect(a.id).not.toBe(b.id);
    });

    rule('insert keeps a given id', async () => {
      const id = randomUUID();
      const task = await insertTask(repo(), { id });
      expect(task.id).toBe(id);
      expect((await repo().getById(id)).id).toBe(id);
    });

    rule('insert sets createdAt and updatedAt from the database clock', async () => {
      const before = Date.now();
      const task = await insertTask(repo());
      for (const at of [task.createdAt, task.updatedAt]) {
        expect(at).toBeInstanceOf(Date);
        // The database clock of a local test database is within minutes of this process's clock.
        expect(Math.abs(at.getTime() - before)).toBeLessThan(5 * MINUTE);
      }
      expect(task.updatedAt.getTime()).toBeGreaterThanOrEqual(task.createdAt.getTime());
      const stored = await repo().getById(task.id);
      expect(stored.createdAt.getTime()).toBe(task.createdAt.getTime());
    });

    rule('insert of a taken id throws InvalidInputError and leaves the original unchanged', async () => {
      const original = await insertTask(repo(), { id: randomUUID(), param: { original: true } });
      await expect(repo().insert(newTask({ id: original.id, workId: 'work-b', param: { original: false } }))).rejects.toBeInstanceOf(InvalidInputError);
      expect(await repo().getById(original.id)).toEqual(original);
      expect(await totalCount(repo())).toBe(1);
    });

    rule('insert refuses invalid fields and writes nothing', async () => {
      const bad = [
        newTask({ scheduledAt: new Date(Number.NaN) }),
        newTask({ scheduledAt: '2030-01-01' as unknown as Date }),
        newTask({ workId: '' }),
        newTask({ maxAttempts: 0 }),
        newTask({ maxAttempts: 1.5 }),
        newTask({ priority: Number.NaN }),
        newTask({ uniqueKey: '' }),
      ];
      for (const [i, task] of bad.entries()) {
        await expect(repo().insert(task), `bad task #${i}`).rejects.toBeInstanceOf(InvalidInputError);
      }
      expect(await totalCount(repo())).toBe(0);
    });

    rule('insertMany writes every task, results in input order', async () => {
      const inputs = [0, 1, 2, 3, 4].map((i) => newTask({ workId: `work-${i}`, param: { i }, priority: i }));
      const results = await repo().insertMany(inputs);
      expect(results).toHaveLength(5);
      for (const [i, result] of results.entries()) {
        expect(result.created).toBe(true);
        expect(result.task).toMatchObject({ workId: `work-${i}`, param: { i }, priority: i, state: 'Initialized' });
        expect(await repo().getById(result.task.id)).toEqual(result.task);
      }
      expect(new Set(results.map((r) => r.task.id)).size).toBe(5);
      expect(await totalCount(repo())).toBe(5);
    });

    rule('insertMany of no tasks returns no results', async () => {
      expect(await repo().insertMany([])).toEqual([]);
      expect(await totalCount(repo())).toBe(0);
    });

    rule('insertMany with one invalid input writes nothing', async () => {
      const inputs = [newTask(), newTask({ param: { n: Number.NaN } as unknown as JsonValue }), newTask()];
      await expect(repo().insertMany(inputs)).rejects.toBeInstanceOf(InvalidInputError);
      expect(await totalCount(repo())).toBe(0);
    });

    rule('insertMany with a taken id writes nothing', async () => {
      const existing = await insertTask(repo(), { id: randomUUID() });
      await expect(repo().insertMany([newTask(), newTask({ id: existing.id }), newTask()])).rejects.toBeInstanceOf(InvalidInputError);
      expect(await totalCount(repo())).toBe(1);
      const twice = randomUUID();
      await expect(repo().insertMany([newTask({ id: twice }), newTask({ id: twice })])).rejects.toBeInstanceOf(InvalidInputError);
      expect(await totalCount(repo())).toBe(1);
      expect(await repo().getById(existing.id)).toEqual(existing);
    });

    rule('a returned task is a copy: mutating it changes nothing stored', async () => {
      const task = await insertTask(repo(), { param: { list: [1, 2] } });
      const scheduledAt = task.scheduledAt.getTime();
      (task.param as { list: number[] }).list.push(3);
      task.scheduledAt.setTime(0);
      const read = await repo().getById(task.id);
      (read.param as { list: number[] }).list.push(4);
      read.state = 'Done';
      read.updatedAt.setTime(0);
      const stored = await repo().getById(task.id);
      expect(stored.param).toEqual({ list: [1, 2] });
      expect(stored.state).toBe('Initialized');
      expect(stored.scheduledAt.getTime()).toBe(scheduledAt);
      expect(stored.updatedAt.getTime()).not.toBe(0);
    });
  });
}
