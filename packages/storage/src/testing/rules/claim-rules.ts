import { InvalidInputError } from '@horae/core';
import { expect } from 'vitest';
import { TaskNotDueError } from '../../contract/errors.js';
import type { TaskInfo } from '../../contract/task-info.js';
import { MINUTE, claimOrFail, expectNoDuplicates, future, idsOf, insertTask, newTask, openPeers, past } from '../helpers.js';
import type { SuiteContext } from '../suite-context.js';

/** claim and claimDue: the Initialized → Working transition, and its races. */
export function claimRules({ group, rule, repo, fixture }: SuiteContext): void {
  group('claim', () => {
    rule('claim moves an Initialized task to Working with a lease', async () => {
      const task = await insertTask(repo(), { maxAttempts: 3 });
      const before = Date.now();
      const claimed = await repo().claim(task.id, { owner: 'node-a', leaseMs: 60_000 });
      expect(claimed).not.toBeNull();
      expect(claimed).toMatchObject({ id: task.id, state: 'Working', attempt: 1, claims: 1, unstartedClaims: 0, maxAttempts: 3 });
      const lease = claimed!.lease!;
      expect(lease.owner).toBe('node-a');
      // A claim by id starts its run at once.
      expect(lease.started).toBe(true);
      expect(typeof lease.token).toBe('string');
      expect(lease.token.length).toBeGreaterThan(0);
      expect(lease.until).toBeInstanceOf(Date);
      // until = database now + 60 s; the database clock is within minutes of ours.
      expect(lease.until.getTime()).toBeGreaterThan(before + 30_000);
      expect(lease.until.getTime()).toBeLessThan(before + 2 * MINUTE);
      expect(claimed!.updatedAt.getTime()).toBeGreaterThanOrEqual(task.updatedAt.getTime());
      expect(await repo().getById(task.id)).toEqual(claimed);
    });

    rule('claim of a task that is not Initialized returns null', async () => {
      const task = await insertTask(repo(), { maxAttempts: 3 });
      const first = await claimOrFail(repo(), task.id);
      expect(await repo().claim(task.id, { owner: 'node-b', leaseMs: 60_000 })).toBeNull();
      expect(await repo().getById(task.id)).toEqual(first);
    });

    rule('claim with a stale ifScheduledAt returns null', async () => {
      const task = await insertTask(repo(), { scheduledAt: past(5 * MINUTE) });
      const stale = new Date(task.scheduledAt.getTime() + 1_000);
      expect(await repo().claim(task.id, { owner: 'node-a', leaseMs: 60_000, ifScheduledAt: stale })).toBeNull();
      expect(await repo().getById(task.id)).toEqual(task);
      const claimed = await repo().claim(task.id, { owner: 'node-a', leaseMs: 60_000, ifScheduledAt: new Date(task.scheduledAt.getTime()) });
      expect(claimed?.state).toBe('Working');
    });

    rule('of 20 concurrent claims from several clients exactly one wins', async () => {
      const task = await insertTask(repo(), { maxAttempts: 3 });
      const clients = [repo(), ...(await openPeers(() => fixture().openPeer(), 4))];
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => clients[i % clients.length]!.claim(task.id, { owner: `node-${i}`, leaseMs: 60_000 })),
      );
      const winners = results.filter((r): r is TaskInfo => r !== null);
      expect(winners).toHaveLength(1);
      const stored = await repo().getById(task.id);
      expect(stored).toMatchObject({ attempt: 1, claims: 1 });
      expect(stored.lease?.owner).toBe(winners[0]!.lease?.owner);
      expect(stored.lease?.token).toBe(winners[0]!.lease?.token);
    });

    rule('claim refuses an invalid leaseMs and writes nothing', async () => {
      const task = await insertTask(repo());
      for (const leaseMs of [-1, 1.5, Number.NaN]) {
        await expect(repo().claim(task.id, { owner: 'node-a', leaseMs }), `leaseMs ${leaseMs}`).rejects.toBeInstanceOf(InvalidInputError);
      }
      expect(await repo().getById(task.id)).toEqual(task);
    });
  });

  group('claimDue', () => {
    rule('claimDue claims only due tasks', async () => {
      const due = await insertTask(repo(), { scheduledAt: past() });
      const later = await insertTask(repo(), { scheduledAt: future() });
      const claimed = await repo().claimDue({ owner: 'node-a', leaseMs: 60_000, limit: 10 });
      expect(idsOf(claimed)).toEqual([due.id]);
      // A claim ahead: the run has not started, so no attempt is counted yet.
      expect(claimed[0]).toMatchObject({ state: 'Working', attempt: 0, claims: 1, lease: { owner: 'node-a', started: false } });
      expect(await repo().getById(due.id)).toEqual(claimed[0]);
      expect(await repo().getById(later.id)).toEqual(later);
    });

    rule('claimDue returns no tasks when none is due', async () => {
      const later = await insertTask(repo(), { scheduledAt: future() });
      expect(await repo().claimDue({ owner: 'node-a', leaseMs: 60_000, limit: 10 })).toEqual([]);
      expect(await repo().getById(later.id)).toEqual(later);
    });

    rule('claimDue without aging takes the highest priority first, then the earliest due', async () => {
      const insert = async (priority: number, minutesAgo: number): Promise<string> => (await insertTask(repo(), { priority, scheduledAt: past(minutesAgo * MINUTE) })).id;
      const a = await insert(0, 30);
      const b = await insert(5, 10);
      const c = await insert(5, 20);
      const d = await insert(-1, 40);
      const e = await insert(0, 5);
      const order: string[] = [];
      // agingMs Infinity: priority alone (the default aging would let the tasks due long ago pass; see the claim ahead rules).
      const options = { owner: 'node-a', leaseMs: 60_000, limit: 1, agingMs: Number.POSITIVE_INFINITY };
      for (let i = 0; i < 5; i++) order.push(...idsOf(await repo().claimDue(options)));
      expect(order).toEqual([c, b, a, e, d]);
      expect(await repo().claimDue(options)).toEqual([]);
    });

    rule('claimDue respects its limit', async () => {
      await repo().insertMany(Array.from({ length: 5 }, () => newTask()));
      const claimed = await repo().claimDue({ owner: 'node-a', leaseMs: 60_000, limit: 2 });
      expect(claimed).toHaveLength(2);
      const counts = await repo().countByState();
      expect(counts.Working).toBe(2);
      expect(counts.Initialized).toBe(3);
    });

    rule('claimDue filters by workIds', async () => {
      const a = await insertTask(repo(), { workId: 'work-a' });
      const b1 = await insertTask(repo(), { workId: 'work-b' });
      const c = await insertTask(repo(), { workId: 'work-c' });
      const b2 = await insertTask(repo(), { workId: 'work-b' });
      const onlyB = await repo().claimDue({ owner: 'node-a', leaseMs: 60_000, limit: 10, workIds: ['work-b'] });
      expect(idsOf(onlyB).sort()).toEqual([b1.id, b2.id].sort());
      const aOrC = await repo().claimDue({ owner: 'node-a', leaseMs: 60_000, limit: 10, workIds: ['work-c', 'work-a', 'work-z'] });
      expect(idsOf(aOrC).sort()).toEqual([a.id, c.id].sort());
    });

    rule('two concurrent claimDue calls from two clients share the due tasks without overlap', async () => {
      const inserted = await repo().insertMany(Array.from({ length: 50 }, (_, i) => newTask({ param: { i } })));
      const peer = await fixture().openPeer();
      const [mine, theirs] = await Promise.all([
        repo().claimDue({ owner: 'node-a', leaseMs: 60_000, limit: 50 }),
        peer.claimDue({ owner: 'node-b', leaseMs: 60_000, limit: 50 }),
      ]);
      for (const task of mine) expect(task).toMatchObject({ claims: 1, attempt: 0, lease: { owner: 'node-a', started: false } });
      for (const task of theirs) expect(task).toMatchObject({ claims: 1, attempt: 0, lease: { owner: 'node-b', started: false } });
      const all = [...idsOf(mine), ...idsOf(theirs)];
      expectNoDuplicates(all, 'a task claimed by both');
      expect(all.sort()).toEqual(inserted.map((r) => r.task.id).sort());
      expect((await repo().countByState()).Working).toBe(50);
    });

    rule('claimDue refuses an invalid limit or leaseMs', async () => {
      await insertTask(repo());
      await expect(repo().claimDue({ owner: 'node-a', leaseMs: 60_000, limit: 0 })).rejects.toBeInstanceOf(InvalidInputError);
      await expect(repo().claimDue({ owner: 'node-a', leaseMs: -5, limit: 1 })).rejects.toBeInstanceOf(InvalidInputError);
      expect((await repo().countByState()).Initialized).toBe(1);
    });
  });

  group('claim by id: due by the database clock', () => {
    rule('claim of a task due minutes from now throws TaskNotDueError with dueInMs > 0 and writes nothing', async () => {
      const task = await insertTask(repo(), { scheduledAt: future(5 * MINUTE) });
      const error: unknown = await repo().claim(task.id, { owner: 'node-a', leaseMs: 60_000 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(TaskNotDueError);
      const notDue = error as TaskNotDueError;
      expect(notDue.code).toBe('NOT_DUE');
      expect(notDue.taskId).toBe(task.id);
      // The database clock of a local test database is within a minute of this process's clock.
      expect(notDue.dueInMs).toBeGreaterThan(4 * MINUTE);
      expect(notDue.dueInMs).toBeLessThan(6 * MINUTE);
      await expect(repo().claim(task.id, { owner: 'node-a', leaseMs: 60_000, ifScheduledAt: new Date(task.scheduledAt.getTime()) })).rejects.toBeInstanceOf(TaskNotDueError);
      expect(await repo().getById(task.id)).toEqual(task);
      expect(await repo().listAttempts(task.id)).toEqual([]);
    });

    rule('claim of a task due minutes ago is claimed', async () => {
      const task = await insertTask(repo(), { scheduledAt: past(5 * MINUTE) });
      expect(await repo().claim(task.id, { owner: 'node-a', leaseMs: 60_000, ifScheduledAt: new Date(task.scheduledAt.getTime()) })).toMatchObject({ state: 'Working' });
    });

    rule('a claim of a task not due returns null when the task is not Initialized or its due time differs', async () => {
      const later = await insertTask(repo(), { scheduledAt: future(5 * MINUTE) });
      const stale = new Date(later.scheduledAt.getTime() + 1_000);
      expect(await repo().claim(later.id, { owner: 'node-a', leaseMs: 60_000, ifScheduledAt: stale })).toBeNull();
      await repo().markAsCancelled(later.id);
      expect(await repo().claim(later.id, { owner: 'node-a', leaseMs: 60_000 })).toBeNull();
      // A run handed back to run later is Initialized again, and not due: the claim is refused as not due.
      const held = await claimOrFail(repo(), (await insertTask(repo(), { maxAttempts: 3 })).id);
      await repo().release(held.id, held.lease.token, { runAt: future(5 * MINUTE) });
      await expect(repo().claim(held.id, { owner: 'node-b', leaseMs: 60_000 })).rejects.toBeInstanceOf(TaskNotDueError);
      expect(await repo().getById(held.id)).toMatchObject({ state: 'Initialized', claims: 1, attempt: 1 });
    });
  });
}
