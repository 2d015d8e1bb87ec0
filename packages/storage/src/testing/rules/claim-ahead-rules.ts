import { randomUUID } from 'node:crypto';
import { InvalidInputError } from '@horae/core';
import { expect } from 'vitest';
import { InvalidStateError, LeaseLostError, TaskNotFoundError } from '../../contract/errors.js';
import type { Repository } from '../../contract/repository.js';
import type { TaskInfo } from '../../contract/task-info.js';
import {
  MINUTE,
  claimAheadOrFail,
  claimOrFail,
  compareIds,
  expectNoDuplicates,
  foreignToken,
  future,
  idsOf,
  insertClaimedAhead,
  insertTask,
  newTask,
  openPeers,
  past,
  settle,
  type ClaimedTask,
} from '../helpers.js';
import type { SuiteContext } from '../suite-context.js';

/** Inserts `count` tasks of one work of their own and claims them all ahead; fails the test unless all are claimed. */
async function claimManyAhead(repo: Repository, count: number): Promise<ClaimedTask[]> {
  const workId = `batch-${randomUUID()}`;
  await repo.insertMany(Array.from({ length: count }, (_, i) => newTask({ workId, maxAttempts: 3, param: { i } })));
  const claimed = await repo.claimDue({ owner: 'node-a', leaseMs: 60_000, limit: count, workIds: [workId] });
  expect(claimed).toHaveLength(count);
  return claimed as ClaimedTask[];
}

/** Claims ahead `count` of the due tasks, one claimDue call each (limit 1), and returns their ids in the order they came. */
async function claimOrder(repo: Repository, count: number, agingMs?: number): Promise<string[]> {
  const order: string[] = [];
  for (let i = 0; i < count; i++) {
    const options = { owner: 'node-a', leaseMs: 60_000, limit: 1, ...(agingMs === undefined ? {} : { agingMs }) };
    order.push(...idsOf(await repo.claimDue(options)));
  }
  return order;
}

/**
 * Claims are not attempts (DESIGN rule 11), the claim ahead: claimDue claims without starting the run, in an order
 * aged by waiting time; markAsStarted starts the run; the calls of many runs made together are fenced one by one.
 * The rest of the rule is in the unstarted-claim rules.
 */
export function claimAheadRules({ group, rule, repo, fixture }: SuiteContext): void {
  group('claim ahead (claimDue)', () => {
    rule('claimDue claims ahead: claims + 1, attempt unchanged, lease.started false, no attempt record', async () => {
      const task = await insertTask(repo(), { maxAttempts: 3 });
      expect(task).toMatchObject({ claims: 0, unstartedClaims: 0, attempt: 0 });
      const [claimed] = await repo().claimDue({ owner: 'node-ahead', leaseMs: 60_000, limit: 10 });
      expect(claimed).toMatchObject({ id: task.id, state: 'Working', attempt: 0, claims: 1, unstartedClaims: 0, lease: { owner: 'node-ahead', started: false } });
      expect(typeof claimed!.lease!.token).toBe('string');
      expect(await repo().getById(task.id)).toEqual(claimed);
      expect(await repo().listAttempts(task.id)).toEqual([]);

      // A task that already ran keeps its attempt through a claim ahead too.
      await repo().release(task.id, claimed!.lease!.token, { runAt: past() });
      const started = await claimOrFail(repo(), task.id);
      expect(started).toMatchObject({ attempt: 1, claims: 2, lease: { started: true } });
      await repo().release(task.id, started.lease.token, { runAt: past() });
      const again = await claimAheadOrFail(repo(), task);
      expect(again).toMatchObject({ attempt: 1, claims: 3, lease: { started: false } });
      expect(await repo().listAttempts(task.id)).toHaveLength(1);
    });

    rule('claims, unstartedClaims and lease.started are returned by every read', async () => {
      const reclaimedAhead = await insertClaimedAhead(repo(), {}, { leaseMs: 0 });
      await repo().reclaimExpired();
      const ahead = await claimAheadOrFail(repo(), reclaimedAhead, { owner: 'node-ahead' });
      expect(ahead).toMatchObject({ claims: 2, unstartedClaims: 1, lease: { started: false } });
      const waiting = await repo().release(ahead.id, ahead.lease.token, { runAt: past(MINUTE) });
      expect(waiting).toMatchObject({ state: 'Initialized', claims: 2, unstartedClaims: 1, lease: null });
      const held = await insertClaimedAhead(repo(), {}, { owner: 'node-held' });
      const counters = (task: TaskInfo | undefined): unknown => task && { claims: task.claims, unstartedClaims: task.unstartedClaims, started: task.lease?.started ?? null };
      const expected = new Map([
        [waiting.id, { claims: 2, unstartedClaims: 1, started: null }],
        [held.id, { claims: 1, unstartedClaims: 0, started: false }],
      ]);
      const reads: [string, TaskInfo[]][] = [
        ['getById', [await repo().getById(waiting.id), await repo().getById(held.id)]],
        ['list', (await repo().list({ limit: 10 })).tasks],
        ['getUpdatedSince', (await repo().getUpdatedSince(null, 10)).tasks],
        ['listDue', (await repo().listDue({ before: future(MINUTE), limit: 10 })).tasks],
      ];
      for (const [name, tasks] of reads) {
        for (const task of tasks) expect(counters(task), `${name} of ${task.id}`).toEqual(expected.get(task.id));
      }
      const started = await repo().markAsStarted(held.id, held.lease.token);
      expect(counters((await repo().list({ state: 'Working', limit: 10 })).tasks[0])).toEqual({ claims: 1, unstartedClaims: 0, started: true });
      expect(counters((await repo().getUpdatedSince(null, 10)).tasks.find((task) => task.id === started.id))).toEqual({ claims: 1, unstartedClaims: 0, started: true });
    });

    rule('claim by id starts the run at once: lease.started true, claims + 1, unstartedClaims 0', async () => {
      const task = await insertTask(repo(), { maxAttempts: 3 });
      const claimed = await claimOrFail(repo(), task.id);
      expect(claimed).toMatchObject({ attempt: 1, claims: 1, unstartedClaims: 0, lease: { started: true } });
      expect(await repo().getById(task.id)).toEqual(claimed);
    });

    rule('claimDue ages priorities: a low priority due long ago passes a higher one due now', async () => {
      // priority 0 due 10 minutes ago ages to 10 at one point a minute; priority 5 due 1 minute ago to 6.
      const old = await insertTask(repo(), { priority: 0, scheduledAt: past(10 * MINUTE) });
      const recent = await insertTask(repo(), { priority: 5, scheduledAt: past(MINUTE) });
      expect(await claimOrder(repo(), 2, MINUTE)).toEqual([old.id, recent.id]);
    });

    rule('claimDue with agingMs Infinity orders by priority alone', async () => {
      const old = await insertTask(repo(), { priority: 0, scheduledAt: past(10 * MINUTE) });
      const recent = await insertTask(repo(), { priority: 5, scheduledAt: past(MINUTE) });
      expect(await claimOrder(repo(), 2, Number.POSITIVE_INFINITY)).toEqual([recent.id, old.id]);
    });

    rule('claimDue ages one point per 10 s by default', async () => {
      // Due 10 min ago at priority 0 ages 60 points; due 1 min ago, 6. 0 + 60 passes 50 + 6 but not 58 + 6.
      const old = await insertTask(repo(), { priority: 0, scheduledAt: past(10 * MINUTE) });
      const fifty = await insertTask(repo(), { priority: 50, scheduledAt: past(MINUTE) });
      const fiftyEight = await insertTask(repo(), { priority: 58, scheduledAt: past(MINUTE) });
      expect(await claimOrder(repo(), 3)).toEqual([fiftyEight.id, old.id, fifty.id]);
    });

    rule('claimDue with equal aged priorities takes the earliest due, then the oldest, then the id', async () => {
      // With aging off, equal priorities fall back to the due time, then to createdAt, then to the id.
      const later = await insertTask(repo(), { priority: 1, scheduledAt: past(2 * MINUTE) });
      const first = await insertTask(repo(), { priority: 1, scheduledAt: past(3 * MINUTE) });
      const twin = await insertTask(repo(), { priority: 1, scheduledAt: new Date(later.scheduledAt.getTime()) });
      // Two inserts may share a createdAt on a fast database; the id decides then.
      const twins = [later, twin].sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || compareIds(a.id, b.id));
      expect(await claimOrder(repo(), 3, Number.POSITIVE_INFINITY)).toEqual([first.id, ...idsOf(twins)]);
    });

    rule('claimDue breaks an exact tie of aged priorities by the earlier due time', async () => {
      // At one point a minute, priority 0 due 2 minutes before priority 2 ties with it exactly, as does priority 1 due
      // 1 minute before it: the contract falls to the earlier due time. Compare exactly (priority × agingMs −
      // scheduledAt in ms is an integer here), not through a float division whose rounding breaks ties at random.
      // Due times on whole minutes, inserted latest first, so that neither insert order nor rounding can fake the order.
      const base = Math.floor((Date.now() - 10 * MINUTE) / MINUTE) * MINUTE;
      const p2 = await insertTask(repo(), { priority: 2, scheduledAt: new Date(base) });
      const p1 = await insertTask(repo(), { priority: 1, scheduledAt: new Date(base - MINUTE) });
      const p0 = await insertTask(repo(), { priority: 0, scheduledAt: new Date(base - 2 * MINUTE) });
      expect(await claimOrder(repo(), 3, MINUTE)).toEqual([p0.id, p1.id, p2.id]);
    });

    rule('claimDue refuses an invalid agingMs and writes nothing', async () => {
      const task = await insertTask(repo());
      for (const agingMs of [0, -1, Number.NaN, Number.NEGATIVE_INFINITY, '1000' as unknown as number, null as unknown as number]) {
        await expect(repo().claimDue({ owner: 'node-a', leaseMs: 60_000, limit: 1, agingMs }), `agingMs ${String(agingMs)}`).rejects.toBeInstanceOf(InvalidInputError);
      }
      expect(await repo().getById(task.id)).toEqual(task);
      expect(idsOf(await repo().claimDue({ owner: 'node-a', leaseMs: 60_000, limit: 1, agingMs: 0.5 }))).toEqual([task.id]);
    });

    rule('claimDue racing from four clients over 50 tasks never hands one task to two', async () => {
      const inserted = await repo().insertMany(Array.from({ length: 50 }, (_, i) => newTask({ param: { i } })));
      const clients = [repo(), ...(await openPeers(() => fixture().openPeer(), 3))];
      const rounds = await Promise.all(
        [0, 1, 2].flatMap((round) => clients.map((client, i) => client.claimDue({ owner: `node-${i}`, leaseMs: 60_000, limit: 7 + round }))),
      );
      const all = rounds.flat();
      expectNoDuplicates(idsOf(all), 'a task claimed by two clients');
      for (const task of all) expect(task).toMatchObject({ state: 'Working', claims: 1, attempt: 0, lease: { started: false } });
      const rest = await repo().claimDue({ owner: 'node-z', leaseMs: 60_000, limit: 50 });
      expect([...idsOf(all), ...idsOf(rest)].sort()).toEqual(inserted.map((r) => r.task.id).sort());
    });
  });

  group('markAsStarted', () => {
    rule('markAsStarted starts the run: attempt + 1, unstartedClaims 0, lease.started, a running record', async () => {
      const claimed = await insertClaimedAhead(repo(), {}, { owner: 'node-ahead' });
      const started = await repo().markAsStarted(claimed.id, claimed.lease.token);
      expect(started).toMatchObject({ id: claimed.id, state: 'Working', attempt: 1, claims: 1, unstartedClaims: 0 });
      expect(started.lease).toEqual({ ...claimed.lease, started: true });
      expect(await repo().getById(claimed.id)).toEqual(started);
      const attempts = await repo().listAttempts(claimed.id);
      expect(attempts).toEqual([
        { taskId: claimed.id, run: 1, attempt: 1, node: 'node-ahead', startedAt: expect.any(Date) as Date, endedAt: null, outcome: 'running', error: null, checkIns: [] },
      ]);
      expect(Math.abs(attempts[0]!.startedAt.getTime() - Date.now())).toBeLessThan(5 * MINUTE);
      expect((await repo().markAsDone(claimed.id, claimed.lease.token)).state).toBe('Done');
      expect((await repo().listAttempts(claimed.id))[0]).toMatchObject({ outcome: 'succeeded' });
    });

    rule('markAsStarted opens the next run number after earlier runs', async () => {
      const first = await claimOrFail(repo(), (await insertTask(repo(), { maxAttempts: 3 })).id, { owner: 'node-a' });
      await repo().release(first.id, first.lease.token, { runAt: past(), error: { message: 'again' } });
      const ahead = await claimAheadOrFail(repo(), first, { owner: 'node-b' });
      expect(ahead).toMatchObject({ attempt: 1, claims: 2 });
      const started = await repo().markAsStarted(ahead.id, ahead.lease.token);
      expect(started.attempt).toBe(2);
      const attempts = await repo().listAttempts(first.id);
      expect(attempts.map((a) => [a.run, a.attempt, a.node, a.outcome])).toEqual([
        [1, 1, 'node-a', 'retried'],
        [2, 2, 'node-b', 'running'],
      ]);
    });

    rule('markAsStarted of a started run returns it unchanged', async () => {
      const claimed = await insertClaimedAhead(repo());
      const started = await repo().markAsStarted(claimed.id, claimed.lease.token);
      expect(await repo().markAsStarted(claimed.id, claimed.lease.token)).toEqual(started);
      expect(await repo().getById(claimed.id)).toEqual(started);
      expect(await repo().listAttempts(claimed.id)).toHaveLength(1);
      // A claim by id started at once: markAsStarted has nothing left to do.
      const byId = await claimOrFail(repo(), (await insertTask(repo())).id);
      expect(await repo().markAsStarted(byId.id, byId.lease.token)).toEqual(byId);
      expect(await repo().getById(byId.id)).toEqual(byId);
      expect(await repo().listAttempts(byId.id)).toHaveLength(1);
    });

    rule('markAsStarted with a wrong token throws LeaseLostError and writes nothing', async () => {
      const claimed = await insertClaimedAhead(repo());
      await expect(repo().markAsStarted(claimed.id, foreignToken())).rejects.toBeInstanceOf(LeaseLostError);
      expect(await repo().getById(claimed.id)).toEqual(claimed);
      expect(await repo().listAttempts(claimed.id)).toEqual([]);
      const initialized = await insertTask(repo(), { scheduledAt: future() });
      await expect(repo().markAsStarted(initialized.id, claimed.lease.token)).rejects.toBeInstanceOf(LeaseLostError);
      expect(await repo().getById(initialized.id)).toEqual(initialized);
    });

    rule('markAsStarted calls made together are each fenced on their own', async () => {
      const claimed = await claimManyAhead(repo(), 20);
      const alreadyStarted = claimed[19]!;
      const startedBefore = await repo().markAsStarted(alreadyStarted.id, alreadyStarted.lease.token);
      const wrong = new Set([claimed[1]!.id, claimed[6]!.id, claimed[13]!.id]);
      const unknown = [randomUUID(), randomUUID()];
      const twice = claimed[4]!;
      const calls: { id: string; expect: 'started' | 'lost' | 'not-found'; promise: Promise<TaskInfo> }[] = [];
      // Built in one synchronous pass, so an adapter that coalesces the calls of one tick gets them all together.
      for (const [i, task] of claimed.entries()) {
        if (i === 3) calls.push({ id: unknown[0]!, expect: 'not-found', promise: repo().markAsStarted(unknown[0]!, task.lease.token) });
        if (i === 10) calls.push({ id: unknown[1]!, expect: 'not-found', promise: repo().markAsStarted(unknown[1]!, foreignToken()) });
        const token = wrong.has(task.id) ? foreignToken() : task.lease.token;
        calls.push({ id: task.id, expect: wrong.has(task.id) ? 'lost' : 'started', promise: repo().markAsStarted(task.id, token) });
        if (task.id === twice.id) calls.push({ id: task.id, expect: 'started', promise: repo().markAsStarted(task.id, token) });
      }
      const results = await Promise.all(calls.map((call) => settle(call.promise)));
      for (const [i, call] of calls.entries()) {
        const result = results[i]!;
        if (call.expect === 'started') {
          expect(result.ok, `markAsStarted of ${call.id}`).toBe(true);
          if (result.ok) expect(result.value).toMatchObject({ id: call.id, state: 'Working', attempt: 1, lease: { started: true } });
        } else {
          expect(result.ok, `markAsStarted of ${call.id}`).toBe(false);
          if (!result.ok) expect(result.error).toBeInstanceOf(call.expect === 'lost' ? LeaseLostError : TaskNotFoundError);
        }
      }
      for (const task of claimed) {
        const stored = await repo().getById(task.id);
        if (wrong.has(task.id)) {
          expect(stored, 'a refused start writes nothing').toEqual(task);
          expect(await repo().listAttempts(task.id)).toEqual([]);
        } else {
          expect(stored).toMatchObject({ attempt: 1, lease: { token: task.lease.token, started: true } });
          expect(await repo().listAttempts(task.id), `the records of ${task.id}`).toHaveLength(1);
        }
      }
      expect(await repo().getById(alreadyStarted.id)).toEqual(startedBefore);
    });
  });

  group('ends made together', () => {
    for (const end of ['markAsDone', 'markAsFailed'] as const) {
      rule(`${end} calls made together are each fenced on their own`, async () => {
        const claimed = await claimManyAhead(repo(), 20);
        const started = await Promise.all(claimed.map((task) => repo().markAsStarted(task.id, task.lease.token)));
        const unstarted = await insertClaimedAhead(repo());
        const wrong = new Set([started[2]!.id, started[9]!.id, started[17]!.id]);
        const call = (id: string, token: string): Promise<TaskInfo> => (end === 'markAsDone' ? repo().markAsDone(id, token) : repo().markAsFailed(id, { message: 'boom' }, token));
        const calls: { id: string; expect: 'ended' | 'lost' | 'not-found' | 'unstarted'; promise: Promise<TaskInfo> }[] = [];
        // Built in one synchronous pass, so an adapter that coalesces the calls of one tick gets them all together.
        for (const [i, task] of started.entries()) {
          if (i === 5) calls.push({ id: unstarted.id, expect: 'unstarted', promise: call(unstarted.id, unstarted.lease.token) });
          if (i % 7 === 0) {
            const id = randomUUID();
            calls.push({ id, expect: 'not-found', promise: call(id, task.lease!.token) });
          }
          const isWrong = wrong.has(task.id);
          calls.push({ id: task.id, expect: isWrong ? 'lost' : 'ended', promise: call(task.id, isWrong ? foreignToken() : task.lease!.token) });
        }
        const results = await Promise.all(calls.map((c) => settle(c.promise)));
        const errors = { lost: LeaseLostError, 'not-found': TaskNotFoundError, unstarted: InvalidStateError };
        const state = end === 'markAsDone' ? 'Done' : 'Failed';
        for (const [i, c] of calls.entries()) {
          const result = results[i]!;
          expect(result.ok, `${end} of ${c.id} (${c.expect})`).toBe(c.expect === 'ended');
          if (result.ok) expect(result.value).toMatchObject({ id: c.id, state, lease: null });
          else if (c.expect !== 'ended') expect(result.error, `${end} of ${c.id}`).toBeInstanceOf(errors[c.expect]);
        }
        for (const task of started) {
          const stored = await repo().getById(task.id);
          if (wrong.has(task.id)) expect(stored, 'a refused end writes nothing').toEqual(task);
          else expect(stored.state).toBe(state);
        }
        expect(await repo().getById(unstarted.id)).toEqual(unstarted);
        // The refused ones were left for their holders: their own tokens still end them.
        for (const id of wrong) {
          const task = started.find((t) => t.id === id)!;
          expect((await call(id, task.lease!.token)).state).toBe(state);
        }
      });
    }
  });
}
