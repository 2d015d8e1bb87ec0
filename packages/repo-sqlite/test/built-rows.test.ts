import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VirtualClock } from '@horae/core/testing';
import { LeaseLostError, TaskNotFoundError } from '@horae/storage';
import { SqliteRepository } from '@horae/repo-sqlite';
import { driverSlice } from './driver-slice.js';

const T0 = Date.UTC(2026, 0, 1);
const MINUTE = 60_000;

// claim and markAsDone read the row, write without RETURNING and build the result in JS: what they return must be
// exactly what is stored, whatever the row held before (progress, an error, a clock set back since the insert).
describe('claim and markAsDone return exactly the stored row', () => {
  let clock: VirtualClock;
  let repository: SqliteRepository;
  beforeEach(() => {
    clock = new VirtualClock({ now: T0 });
    repository = new SqliteRepository({ database: ':memory:', clock });
  });
  afterEach(() => repository.close());

  it('through a second run, with progress and an error from the first, and with the clock set back', async () => {
    const { task } = await repository.insert({ workId: 'w', scheduledAt: new Date(T0), param: { deep: [1, 'two', { three: null }] }, uniqueKey: 'k', priority: 2.5, maxAttempts: 3 });
    clock.jump(1_000);
    const first = await repository.claim(task.id, { owner: 'node-a', leaseMs: MINUTE, ifScheduledAt: new Date(T0) });
    expect(first).toEqual(await repository.getById(task.id));
    await repository.setProgress(task.id, first!.lease!.token, { completed: 1, total: 2, message: 'half' });
    // Due again before the insert, so that the claim below (by the repository's clock, set back) finds it due.
    await repository.release(task.id, first!.lease!.token, { runAt: new Date(T0 - 20_000), error: { message: 'boom', code: 'E' } });

    // Set back below createdAt: updatedAt stays at createdAt, as the SQL's MAX(now, created_at) keeps it.
    clock.jump(-10_000);
    const second = await repository.claim(task.id, { owner: 'node-b', leaseMs: MINUTE });
    expect(second).toEqual(await repository.getById(task.id));
    expect(second).toMatchObject({ state: 'Working', attempt: 2, claims: 2, progress: null, lastError: { message: 'boom', code: 'E' }, uniqueKey: 'k', priority: 2.5 });
    expect(second!.updatedAt.getTime()).toBe(T0);

    clock.jump(20_000);
    const done = await repository.markAsDone(task.id, second!.lease!.token);
    expect(done).toEqual(await repository.getById(task.id));
    expect(done).toMatchObject({ state: 'Done', lease: null });
    expect((await repository.listAttempts(task.id)).map((a) => [a.run, a.node, a.outcome])).toEqual([
      [1, 'node-a', 'retried'],
      [2, 'node-b', 'succeeded'],
    ]);
    // The change cursor sees the Done row with the change number the built row was given.
    const page = await repository.getUpdatedSince(null, 10);
    expect(page.tasks).toEqual([done]);
  });

  it('claimDue returns the stored rows too', async () => {
    await repository.insertMany(Array.from({ length: 3 }, (_, i) => ({ workId: 'w', scheduledAt: new Date(T0 - i), param: { i } })));
    const claimed = await repository.claimDue({ owner: 'node-a', leaseMs: MINUTE, limit: 3 });
    expect(claimed).toHaveLength(3);
    for (const task of claimed) expect(task).toEqual(await repository.getById(task.id));
  });

  it('markAsStarted returns the stored row, from a remembered claim ahead and from a read, with the clock set back', async () => {
    // On `repository` the claim ahead is remembered; the progress written below changes the row behind that memory,
    // so its markAsStarted falls back to a read. Either way the result must be the stored row.
    await repository.insertMany([
      { id: 'remembered', workId: 'w', scheduledAt: new Date(T0 - 1), param: { a: 1 } },
      { id: 'changed', workId: 'w', scheduledAt: new Date(T0), param: { b: 2 }, priority: -1 },
    ]);
    const claimed = await repository.claimDue({ owner: 'node-a', leaseMs: MINUTE, limit: 2, agingMs: Number.POSITIVE_INFINITY });
    expect(claimed.map((task) => task.id)).toEqual(['remembered', 'changed']);
    const changed = claimed[1]!;
    await repository.setProgress(changed.id, changed.lease!.token, { completed: 1, total: 3 });
    clock.jump(-5_000);
    for (const task of claimed) {
      const started = await repository.markAsStarted(task.id, task.lease!.token);
      expect(started).toEqual(await repository.getById(task.id));
      expect(started).toMatchObject({ attempt: 1, claims: 1, lease: { token: task.lease!.token, started: true } });
      expect(started.updatedAt.getTime()).toBe(T0);
      expect(await repository.listAttempts(task.id)).toEqual([
        { taskId: task.id, run: 1, attempt: 1, node: 'node-a', startedAt: new Date(T0), endedAt: null, outcome: 'running', error: null, checkIns: [] },
      ]);
      clock.jump(1_000);
      expect(await repository.markAsDone(task.id, task.lease!.token)).toEqual(await repository.getById(task.id));
    }
  });

  it('refusals write nothing: a wrong token, a finished task, a missing one', async () => {
    const { task } = await repository.insert({ workId: 'w', scheduledAt: new Date(T0) });
    const claimed = await repository.claim(task.id, { owner: 'node-a', leaseMs: MINUTE });
    const cursor = await repository.getCursor();
    await expect(repository.markAsDone(task.id, 'not-the-token')).rejects.toBeInstanceOf(LeaseLostError);
    await expect(repository.markAsDone('missing', 'x')).rejects.toBeInstanceOf(TaskNotFoundError);
    await expect(repository.claim('missing', { owner: 'node-a', leaseMs: MINUTE })).rejects.toBeInstanceOf(TaskNotFoundError);
    expect(await repository.claim(task.id, { owner: 'node-b', leaseMs: MINUTE })).toBeNull();
    expect(await repository.getCursor()).toBe(cursor);
    expect(await repository.getById(task.id)).toEqual(claimed);
    await repository.markAsDone(task.id, claimed!.lease!.token);
    await expect(repository.markAsDone(task.id, claimed!.lease!.token)).rejects.toBeInstanceOf(LeaseLostError);
    expect(await repository.listAttempts(task.id)).toHaveLength(1);
  });

  it('works the same through a driver slice whose statements have no raw() (rows read as objects)', async () => {
    const db = new Database(':memory:');
    const slice = driverSlice(db, (_source, statement) => ({
      run: (...params) => statement.run(...params),
      get: (...params) => statement.get(...params),
      all: (...params) => statement.all(...params),
    }));
    const plain = new SqliteRepository({ database: slice, clock });
    try {
      const { task } = await plain.insert({ workId: 'w', scheduledAt: new Date(T0), param: { a: 1 } });
      const claimed = await plain.claim(task.id, { owner: 'node-a', leaseMs: MINUTE });
      expect(claimed).toEqual(await plain.getById(task.id));
      expect(await plain.markAsDone(task.id, claimed!.lease!.token)).toEqual(await plain.getById(task.id));
      await expect(plain.markAsDone(task.id, claimed!.lease!.token)).rejects.toBeInstanceOf(LeaseLostError);
    } finally {
      await plain.close();
      db.close();
    }
  });
});
