import { InvalidInputError } from '@horae/core';
import { expect } from 'vitest';
import { TaskNotDueError } from '../../contract/errors.js';
import { isWorkLimiter, type LimitedClaim, type Repository, type WorkLimiter } from '../../contract/repository.js';
import type { TaskInfo } from '../../contract/task-info.js';
import { MINUTE, claimOrFail, expectNoDuplicates, future, idsOf, insertTask, newTask, openPeers, past } from '../helpers.js';
import type { SuiteContext } from '../suite-context.js';

/** The name of the group: an adapter without the {@link WorkLimiter} capability declares it in `skip`. */
export const WORK_LIMIT_GROUP = 'work limits (WorkLimiter)';

/** The repository as a WorkLimiter; fails the rule with a clear message when it is not one. */
function limiter(repo: Repository): Repository & WorkLimiter {
  expect(isWorkLimiter(repo), `the repository lacks claimWithinLimit/claimDueWithinLimits: declare skip "${WORK_LIMIT_GROUP}" with the reason`).toBe(true);
  return repo as Repository & WorkLimiter;
}

const LEASE = { owner: 'node-a', leaseMs: 60_000 } as const;

function claimedTask(result: LimitedClaim): TaskInfo {
  expect(result, 'a claim within the limit').not.toBeNull();
  expect(result).toHaveProperty('task');
  return (result as { task: TaskInfo }).task;
}

/** How many tasks of `workId` are Working now. */
async function workingOf(repo: Repository, workId: string): Promise<number> {
  const page = await repo.list({ state: 'Working', workId, limit: 1000 });
  return page.tasks.length;
}

/** Per-workId concurrency limits across clients: the optional {@link WorkLimiter} capability. */
export function workLimitRules({ group, rule, repo, fixture }: SuiteContext): void {
  group(WORK_LIMIT_GROUP, () => {
    rule('claimWithinLimit claims below the limit and refuses at it, writing nothing', async () => {
      const r = limiter(repo());
      const [a, b, c] = await Promise.all([insertTask(r, { workId: 'encode' }), insertTask(r, { workId: 'encode' }), insertTask(r, { workId: 'encode' })]);
      const first = claimedTask(await r.claimWithinLimit(a.id, { ...LEASE, maxWorking: 2 }));
      // A claim by id, limited or not, starts the run at once.
      expect(first).toMatchObject({ id: a.id, state: 'Working', attempt: 1, claims: 1, lease: { owner: 'node-a', started: true } });
      claimedTask(await r.claimWithinLimit(b.id, { ...LEASE, maxWorking: 2 }));
      expect(await r.claimWithinLimit(c.id, { ...LEASE, maxWorking: 2 })).toEqual({ refused: 'limit' });
      // Refused: no attempt counted, no history record, no change.
      expect(await r.getById(c.id)).toEqual(c);
      expect(await r.listAttempts(c.id)).toEqual([]);
      expect(await workingOf(r, 'encode')).toBe(2);
    });

    rule('claimWithinLimit returns null for a task that is not claimable, whatever the count', async () => {
      const r = limiter(repo());
      const held = await insertTask(r, { workId: 'encode' });
      await claimOrFail(r, held.id);
      // Working already: null, not a refusal.
      expect(await r.claimWithinLimit(held.id, { ...LEASE, maxWorking: 1 })).toBeNull();
      const other = await insertTask(r, { workId: 'encode' });
      const stale = new Date(other.scheduledAt.getTime() + 1_000);
      expect(await r.claimWithinLimit(other.id, { ...LEASE, maxWorking: 5, ifScheduledAt: stale })).toBeNull();
      expect(await r.claimWithinLimit(other.id, { ...LEASE, maxWorking: 1, ifScheduledAt: new Date(other.scheduledAt.getTime()) })).toEqual({ refused: 'limit' });
      claimedTask(await r.claimWithinLimit(other.id, { ...LEASE, maxWorking: 2, ifScheduledAt: new Date(other.scheduledAt.getTime()) }));
    });

    rule('of 20 concurrent limited claims of 20 tasks across clients, exactly the limit win', async () => {
      const r = limiter(repo());
      const inserted = await r.insertMany(Array.from({ length: 20 }, (_, i) => newTask({ workId: 'encode', param: { i } })));
      const clients = [r, ...(await openPeers(() => fixture().openPeer(), 4))].map(limiter);
      const results = await Promise.all(
        inserted.map(({ task }, i) => clients[i % clients.length]!.claimWithinLimit(task.id, { owner: `node-${i % clients.length}`, leaseMs: 60_000, maxWorking: 3 })),
      );
      const won = results.filter((result) => result !== null && 'task' in result);
      const refused = results.filter((result) => result !== null && 'refused' in result);
      expect(won).toHaveLength(3);
      expect(refused).toHaveLength(17);
      expect(await workingOf(r, 'encode')).toBe(3);
      expect((await r.countByState()).Initialized).toBe(17);
    });

    rule('a slot frees when a Working task ends: Done, Failed, Cancelled or released', async () => {
      const r = limiter(repo());
      const tasks = await r.insertMany(Array.from({ length: 5 }, () => newTask({ workId: 'encode', maxAttempts: 3 })));
      const ids = tasks.map(({ task }) => task.id);
      const claim = (id: string): Promise<LimitedClaim> => r.claimWithinLimit(id, { ...LEASE, maxWorking: 1 });
      const ends: ((task: TaskInfo) => Promise<unknown>)[] = [
        (task) => r.markAsDone(task.id, task.lease!.token),
        (task) => r.markAsFailed(task.id, { message: 'boom' }, task.lease!.token),
        (task) => r.markAsCancelled(task.id, { token: task.lease!.token }),
        (task) => r.release(task.id, task.lease!.token, { runAt: future() }),
      ];
      let running = claimedTask(await claim(ids[0]!));
      for (const [i, end] of ends.entries()) {
        const nextId = ids[i + 1]!;
        expect(await claim(nextId), `refused while task ${i} runs`).toEqual({ refused: 'limit' });
        await end(running);
        running = claimedTask(await claim(nextId));
      }
      expect(await workingOf(r, 'encode')).toBe(1);
    });

    rule('a Working task with an expired lease holds its slot until it is reclaimed', async () => {
      const r = limiter(repo());
      const expired = await insertTask(r, { workId: 'encode', maxAttempts: 3 });
      await claimOrFail(r, expired.id, { leaseMs: 0 });
      const waiting = await insertTask(r, { workId: 'encode' });
      expect(await r.claimWithinLimit(waiting.id, { ...LEASE, maxWorking: 1 })).toEqual({ refused: 'limit' });
      const reclaimed = await r.reclaimExpired();
      expect(reclaimed.map((task) => task.id)).toEqual([expired.id]);
      claimedTask(await r.claimWithinLimit(waiting.id, { ...LEASE, maxWorking: 1 }));
    });

    rule('a work at its limit leaves other works unaffected', async () => {
      const r = limiter(repo());
      const full = await insertTask(r, { workId: 'encode' });
      await claimOrFail(r, full.id);
      const blocked = await insertTask(r, { workId: 'encode' });
      const other = await insertTask(r, { workId: 'thumbnail' });
      expect(await r.claimWithinLimit(blocked.id, { ...LEASE, maxWorking: 1 })).toEqual({ refused: 'limit' });
      expect(claimedTask(await r.claimWithinLimit(other.id, { ...LEASE, maxWorking: 1 })).workId).toBe('thumbnail');
    });

    rule('claimDueWithinLimits never returns more tasks of a work than its free slots', async () => {
      const r = limiter(repo());
      const running = await insertTask(r, { workId: 'encode' });
      await claimOrFail(r, running.id);
      await r.insertMany([
        ...Array.from({ length: 5 }, (_, i) => newTask({ workId: 'encode', priority: 10, param: { i } })),
        ...Array.from({ length: 3 }, (_, i) => newTask({ workId: 'thumbnail', param: { i } })),
        ...Array.from({ length: 2 }, (_, i) => newTask({ workId: 'mail', param: { i } })),
      ]);
      const claimed = await r.claimDueWithinLimits({ ...LEASE, limit: 10, workLimits: { encode: 3, thumbnail: 2 } });
      const byWork = (workId: string): number => claimed.filter((task) => task.workId === workId).length;
      // encode: 3 slots, 1 in use → 2; thumbnail: 2; mail: unlimited → 2.
      expect([byWork('encode'), byWork('thumbnail'), byWork('mail')]).toEqual([2, 2, 2]);
      // Claimed ahead, as claimDue claims: unstarted, no attempt counted, no record; yet each holds its slot.
      for (const task of claimed) expect(task).toMatchObject({ state: 'Working', attempt: 0, claims: 1, lease: { owner: 'node-a', started: false } });
      for (const task of claimed) expect(await r.listAttempts(task.id)).toEqual([]);
      // The highest priority first, as claimDue orders them.
      expect(claimed.slice(0, 2).map((task) => task.workId)).toEqual(['encode', 'encode']);
      expect(await r.claimDueWithinLimits({ ...LEASE, limit: 10, workLimits: { encode: 3, thumbnail: 2 } })).toEqual([]);
      expect(await workingOf(r, 'encode')).toBe(3);
      const next = await r.claimDueWithinLimits({ ...LEASE, limit: 10, workIds: ['thumbnail'], workLimits: { encode: 3, thumbnail: 3 } });
      expect(next.map((task) => task.workId)).toEqual(['thumbnail']);
    });

    rule('concurrent claimDueWithinLimits calls across clients respect the limit together', async () => {
      const r = limiter(repo());
      await r.insertMany(Array.from({ length: 20 }, (_, i) => newTask({ workId: 'encode', param: { i } })));
      const clients = [r, ...(await openPeers(() => fixture().openPeer(), 3))].map(limiter);
      const results = await Promise.all(clients.map((client, i) => client.claimDueWithinLimits({ owner: `node-${i}`, leaseMs: 60_000, limit: 10, workLimits: { encode: 3 } })));
      const all = results.flat().map((task) => task.id);
      expectNoDuplicates(all, 'a task claimed by two clients');
      expect(all).toHaveLength(3);
      expect(await workingOf(r, 'encode')).toBe(3);
    });

    rule('claimWithinLimit of a task not due yet throws TaskNotDueError and writes nothing', async () => {
      const r = limiter(repo());
      const later = await insertTask(r, { workId: 'encode', scheduledAt: future(5 * MINUTE) });
      const error: unknown = await r.claimWithinLimit(later.id, { ...LEASE, maxWorking: 2 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(TaskNotDueError);
      expect((error as TaskNotDueError).dueInMs).toBeGreaterThan(0);
      expect(await r.getById(later.id)).toEqual(later);
      expect(await r.listAttempts(later.id)).toEqual([]);
      // Not Initialized, or rescheduled: null, checked before the due time.
      const stale = new Date(later.scheduledAt.getTime() + 1_000);
      expect(await r.claimWithinLimit(later.id, { ...LEASE, maxWorking: 2, ifScheduledAt: stale })).toBeNull();
      await r.markAsCancelled(later.id);
      expect(await r.claimWithinLimit(later.id, { ...LEASE, maxWorking: 2 })).toBeNull();
    });

    rule('claimDueWithinLimits claims in the aged order of claimDue', async () => {
      const r = limiter(repo());
      // priority 0 due 10 minutes ago ages to 10 at one point a minute; priority 5 due 1 minute ago to 6.
      const old = await insertTask(r, { workId: 'encode', priority: 0, scheduledAt: past(10 * MINUTE) });
      const recent = await insertTask(r, { workId: 'encode', priority: 5, scheduledAt: past(MINUTE) });
      const options = { ...LEASE, limit: 1, workLimits: { encode: 5 } };
      const aged = [...(await r.claimDueWithinLimits({ ...options, agingMs: MINUTE })), ...(await r.claimDueWithinLimits({ ...options, agingMs: MINUTE }))];
      expect(idsOf(aged)).toEqual([old.id, recent.id]);
      for (const task of aged) await r.release(task.id, task.lease!.token, { runAt: new Date(task.scheduledAt.getTime()) });
      const byPriority = [...(await r.claimDueWithinLimits({ ...options, agingMs: Number.POSITIVE_INFINITY })), ...(await r.claimDueWithinLimits({ ...options, agingMs: Number.POSITIVE_INFINITY }))];
      expect(idsOf(byPriority)).toEqual([recent.id, old.id]);
      await expect(r.claimDueWithinLimits({ ...options, agingMs: 0 })).rejects.toBeInstanceOf(InvalidInputError);
    });

    rule('claimWithinLimit and claimDueWithinLimits refuse an invalid limit and write nothing', async () => {
      const r = limiter(repo());
      const task = await insertTask(r, { workId: 'encode', scheduledAt: new Date(Date.now() - MINUTE) });
      for (const maxWorking of [0, -1, 1.5, Number.NaN]) {
        await expect(r.claimWithinLimit(task.id, { ...LEASE, maxWorking }), `maxWorking ${maxWorking}`).rejects.toBeInstanceOf(InvalidInputError);
      }
      await expect(r.claimDueWithinLimits({ ...LEASE, limit: 5, workLimits: { encode: 0 } })).rejects.toBeInstanceOf(InvalidInputError);
      expect(await r.getById(task.id)).toEqual(task);
    });
  });
}
