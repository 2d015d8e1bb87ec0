import { InvalidInputError } from '@horae/core';
import { beforeEach, expect } from 'vitest';
import type { Repository } from '../../contract/repository.js';
import type { TaskInfo, TaskState } from '../../contract/task-info.js';
import { hasHookSubscriptions, isHookOutboxProvider, type HookOutbox, type HookSubscriptions } from '../../hooks/hook-outbox.js';
import { toStatusHookPayload, type StatusHookPayload } from '../../hooks/hook-payload.js';
import { MINUTE, claimOrFail, foreignToken, insertClaimed, insertClaimedAhead, insertTask, openPeers } from '../helpers.js';
import type { SuiteContext } from '../suite-context.js';

type SubscribingOutbox = HookOutbox & HookSubscriptions;

/** The payload a change of `task` (as it is after the change) must carry, as the JSON text parses. */
function expected(task: TaskInfo, from: TaskState | null, to: TaskState, error?: StatusHookPayload['error']): StatusHookPayload {
  return { ...toStatusHookPayload({ taskId: task.id, workId: task.workId, from, to, attempt: task.attempt, time: task.updatedAt }, 0), ...(error === undefined ? {} : { error }) };
}

/**
 * HookSubscriptions: the deliveries of subscribed hooks written by the repository in the transaction of each change.
 * Every check reads the outbox right after the call that made the change: nothing else writes to it here, so a row
 * that is there was written by that call.
 */
export function hookSubscriptionRules({ group, rule, repo, fixture }: SuiteContext): void {
  const outboxOf = (repository: Repository): SubscribingOutbox => (repository as Repository & { hookOutbox(): SubscribingOutbox }).hookOutbox();
  const outbox = (): SubscribingOutbox => outboxOf(repo());
  /** The bodies written for one hook since the last call (the rows are purged as read), parsed, in seq order. */
  const take = async (hook = 'audit', from: Repository = repo()): Promise<StatusHookPayload[]> => {
    const rows = await outboxOf(from).listHookDeliveries({ hook, limit: 1000 });
    await outboxOf(from).purgeHookDeliveries({ state: 'pending', before: new Date(Date.now() + 10 * MINUTE), hook });
    return rows.map((row) => JSON.parse(row.body) as StatusHookPayload);
  };

  group('hook subscriptions (HookSubscriptions)', () => {
    beforeEach((test) => {
      const repository = repo();
      if (!isHookOutboxProvider(repository) || !hasHookSubscriptions(repository.hookOutbox())) {
        test.skip('this repository does not implement the optional HookSubscriptions capability');
      }
    });

    rule('subscriptions are stored, listed sorted, idempotent, and removed by unsubscribe', async () => {
      expect(await outbox().listHookSubscriptions()).toEqual([]);
      await outbox().subscribeHooks(['zeta', 'audit', 'zeta']);
      await outbox().subscribeHooks(['audit']);
      expect(await outbox().listHookSubscriptions()).toEqual(['audit', 'zeta']);
      expect(await outbox().unsubscribeHooks(['zeta', 'never'])).toBe(1);
      expect(await outbox().listHookSubscriptions()).toEqual(['audit']);
    });

    rule('bad hook names are refused with InvalidInputError and nothing is written', async () => {
      await expect(outbox().subscribeHooks(['ok', ''])).rejects.toBeInstanceOf(InvalidInputError);
      await expect(outbox().subscribeHooks(['x'.repeat(201)])).rejects.toBeInstanceOf(InvalidInputError);
      await expect(outbox().subscribeHooks('audit' as unknown as string[])).rejects.toBeInstanceOf(InvalidInputError);
      await expect(outbox().unsubscribeHooks([42 as unknown as string])).rejects.toBeInstanceOf(InvalidInputError);
      expect(await outbox().listHookSubscriptions()).toEqual([]);
    });

    rule('without subscriptions no change writes a delivery', async () => {
      const claimed = await insertClaimed(repo());
      await repo().markAsDone(claimed.id, claimed.lease.token);
      expect(await outbox().listHookDeliveries()).toEqual([]);
    });

    rule('each change writes one delivery per subscribed hook, in hook-name order, before the call returns', async () => {
      await outbox().subscribeHooks(['zeta', 'audit']);
      const task = await insertTask(repo(), { maxAttempts: 3 });
      const rows = await outbox().listHookDeliveries();
      expect(rows.map((r) => [r.hook, r.taskId, r.state, r.attempts])).toEqual([
        ['audit', task.id, 'pending', 0],
        ['zeta', task.id, 'pending', 0],
      ]);
      expect(rows[0]!.id).not.toEqual(rows[1]!.id);
      expect(rows[0]!.body).toEqual(rows[1]!.body);
      expect(JSON.parse(rows[0]!.body)).toEqual(expected(task, null, 'Initialized'));
      // The key order of a StatusHookPayload, so that every adapter's bodies read alike.
      expect(Object.keys(JSON.parse(rows[0]!.body) as object)).toEqual(['taskId', 'workId', 'from', 'to', 'attempt', 'time']);
      expect(rows[0]!.nextAttemptAt.getTime()).toBeLessThanOrEqual(Date.now() + MINUTE);
    });

    rule('a run: created, started (a claim by id), Done, each with the task as it is after the change', async () => {
      await outbox().subscribeHooks(['audit']);
      const task = await insertTask(repo(), { maxAttempts: 3 });
      expect(await take()).toEqual([expected(task, null, 'Initialized')]);
      const claimed = await claimOrFail(repo(), task.id);
      expect(await take()).toEqual([expected(claimed, 'Initialized', 'Working')]);
      const renewed = await repo().renewLease(claimed.id, claimed.lease.token, 10 * MINUTE);
      await repo().setProgress(claimed.id, claimed.lease.token, { completed: 1, total: 2 });
      expect(renewed.state).toBe('Working');
      expect(await take()).toEqual([]);
      const done = await repo().markAsDone(claimed.id, claimed.lease.token);
      expect(await take()).toEqual([expected(done, 'Working', 'Done')]);
    });

    rule('a claim ahead writes nothing until its run starts; its hand-back before a start writes nothing', async () => {
      await outbox().subscribeHooks(['audit']);
      const ahead = await insertClaimedAhead(repo());
      await take();
      const back = await repo().release(ahead.id, ahead.lease.token, { runAt: new Date() });
      expect(back.state).toBe('Initialized');
      expect(await take()).toEqual([]);
      const again = await insertClaimedAhead(repo());
      await take();
      const started = await repo().markAsStarted(again.id, again.lease.token);
      expect(await take()).toEqual([expected(started, 'Initialized', 'Working')]);
    });

    rule("a run's end carries its error (message, name, code; never the stack): retry and failure", async () => {
      await outbox().subscribeHooks(['audit']);
      const claimed = await insertClaimed(repo(), { maxAttempts: 3 });
      await take();
      const retried = await repo().release(claimed.id, claimed.lease.token, { runAt: new Date(), error: { message: 'try again', name: 'TimeoutError', code: 'ETIMEDOUT', stack: 'at secret/path.js:1' } });
      expect(await take()).toEqual([expected(retried, 'Working', 'Initialized', { message: 'try again', name: 'TimeoutError', code: 'ETIMEDOUT' })]);
      const second = await claimOrFail(repo(), claimed.id);
      await take();
      // The same error again is still the error of this run.
      const again = await repo().release(second.id, second.lease.token, { runAt: new Date(), error: { message: 'try again', name: 'TimeoutError', code: 'ETIMEDOUT', stack: 'at secret/path.js:1' } });
      expect(await take()).toEqual([expected(again, 'Working', 'Initialized', { message: 'try again', name: 'TimeoutError', code: 'ETIMEDOUT' })]);
      const third = await claimOrFail(repo(), claimed.id);
      await take();
      const failed = await repo().markAsFailed(third.id, { message: 'gave up' }, third.lease.token);
      expect(await take()).toEqual([expected(failed, 'Working', 'Failed', { message: 'gave up' })]);
      // A run handed back without an error (a graceful stop) says so, without one.
      const other = await insertClaimed(repo());
      await take();
      const released = await repo().release(other.id, other.lease.token, { runAt: new Date(), refundAttempt: true });
      expect(await take()).toEqual([expected(released, 'Working', 'Initialized')]);
    });

    rule('an expired lease reclaimed: Working → Initialized (or Failed) with the reclaim error; an unstarted one writes nothing', async () => {
      await outbox().subscribeHooks(['audit']);
      const claimed = await insertClaimed(repo(), { maxAttempts: 3 }, { leaseMs: 0 });
      const last = await insertClaimed(repo(), { maxAttempts: 1 }, { leaseMs: 0 });
      const ahead = await insertClaimedAhead(repo(), {}, { leaseMs: 0 });
      await take();
      const reclaimed = await repo().reclaimExpired();
      const byId = new Map(reclaimed.map((t) => [t.id, t]));
      const bodies = await take();
      expect(bodies).toHaveLength(2);
      const retry = bodies.find((b) => b.taskId === claimed.id)!;
      expect(retry).toMatchObject(expected(byId.get(claimed.id)!, 'Working', 'Initialized'));
      expect(retry.error?.message).toEqual(byId.get(claimed.id)!.lastError!.message);
      const fail = bodies.find((b) => b.taskId === last.id)!;
      expect(fail).toMatchObject({ ...expected(byId.get(last.id)!, 'Working', 'Failed'), error: { message: byId.get(last.id)!.lastError!.message } });
      expect(bodies.some((b) => b.taskId === ahead.id)).toBe(false);
    });

    rule('fails and cancels: Initialized → Failed with its error; Initialized, claimed-ahead and Working → Cancelled', async () => {
      await outbox().subscribeHooks(['audit']);
      const waiting = await insertTask(repo());
      const ahead = await insertClaimedAhead(repo());
      const running = await insertClaimed(repo());
      const poison = await insertTask(repo());
      await take();
      const failed = await repo().markAsFailed(poison.id, { message: 'bad param', name: 'ValidationError' });
      expect(await take()).toEqual([expected(failed, 'Initialized', 'Failed', { message: 'bad param', name: 'ValidationError' })]);
      const c1 = (await repo().markAsCancelled(waiting.id)).task;
      const c2 = (await repo().markAsCancelled(ahead.id)).task;
      const c3 = (await repo().markAsCancelled(running.id, { token: running.lease.token })).task;
      expect(await take()).toEqual([expected(c1, 'Initialized', 'Cancelled'), expected(c2, 'Initialized', 'Cancelled'), expected(c3, 'Working', 'Cancelled')]);
      // A task already ended is not cancelled again, and says nothing.
      expect((await repo().markAsCancelled(waiting.id)).cancelled).toBe(false);
      expect(await take()).toEqual([]);
    });

    rule('a refused write writes no delivery: a lost lease, an insert of a taken id or unique key', async () => {
      await outbox().subscribeHooks(['audit']);
      const claimed = await insertClaimed(repo(), { uniqueKey: 'only-one' });
      await take();
      await expect(repo().markAsDone(claimed.id, foreignToken())).rejects.toThrow();
      await expect(repo().markAsFailed(claimed.id, { message: 'x' }, foreignToken())).rejects.toThrow();
      await expect(repo().insert({ id: claimed.id, workId: 'work-a', scheduledAt: new Date() })).rejects.toBeInstanceOf(InvalidInputError);
      const key = await repo().insert({ workId: 'work-a', scheduledAt: new Date(), uniqueKey: 'only-one' });
      expect(key.created).toBe(false);
      expect(await take()).toEqual([]);
    });

    rule('two clients subscribing at once both succeed; after the last unsubscribe nothing is written, until a new subscription', async () => {
      const [peer] = await openPeers(() => fixture().openPeer(), 1);
      await Promise.all([outbox().subscribeHooks(['audit']), outboxOf(peer!).subscribeHooks(['zeta']), outbox().subscribeHooks(['audit', 'zeta'])]);
      expect(await outbox().listHookSubscriptions()).toEqual(['audit', 'zeta']);
      const first = await insertTask(repo());
      expect([await take('audit'), await take('zeta')]).toEqual([[expected(first, null, 'Initialized')], [expected(first, null, 'Initialized')]]);
      expect(await outboxOf(peer!).unsubscribeHooks(['audit', 'zeta'])).toBe(2);
      const unheard = await insertClaimed(repo());
      await repo().markAsDone(unheard.id, unheard.lease.token);
      expect(await outbox().listHookDeliveries()).toEqual([]);
      await outbox().subscribeHooks(['audit']);
      const again = await insertTask(repo());
      expect(await take('audit')).toEqual([expected(again, null, 'Initialized')]);
    });

    rule('an unsubscribed hook gets nothing from then on; subscriptions hold for every client of the store', async () => {
      await outbox().subscribeHooks(['audit', 'zeta']);
      await outbox().unsubscribeHooks(['zeta']);
      const [peer] = await openPeers(() => fixture().openPeer(), 1);
      const task = await insertTask(peer!);
      expect(await take('audit')).toEqual([expected(task, null, 'Initialized')]);
      expect(await take('zeta')).toEqual([]);
      expect(await outboxOf(peer!).listHookSubscriptions()).toEqual(['audit']);
    });
  });
}
