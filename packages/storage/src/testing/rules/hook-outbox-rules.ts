import { randomUUID } from 'node:crypto';
import { InvalidInputError } from '@horae/core';
import { beforeEach, expect } from 'vitest';
import type { Repository } from '../../contract/repository.js';
import { isHookOutboxProvider, type ClaimedHookDelivery, type HookOutbox, type NewHookDelivery } from '../../hooks/hook-outbox.js';
import { MINUTE, openPeers } from '../helpers.js';
import type { SuiteContext } from '../suite-context.js';

/** A delivery with fresh ids unless overridden. */
function delivery(overrides: Partial<NewHookDelivery> = {}): NewHookDelivery {
  return { id: randomUUID(), hook: 'default', taskId: randomUUID(), body: '{"to":"Done"}', ...overrides };
}

/** Reads a call's rejection, failing the test when it resolves. */
async function rejectionOf(call: Promise<unknown>): Promise<unknown> {
  return call.then(
    () => expect.fail('the call was expected to throw'),
    (error: unknown) => error,
  );
}

const CLAIM = { hooks: ['default'], limit: 100, leaseMs: 10 * MINUTE } as const;

/** The HookOutbox capability: status hook deliveries as rows, claimed under a lease, retried, dead-lettered, purged. */
export function hookOutboxRules({ group, rule, repo, fixture }: SuiteContext): void {
  const outboxOf = (repository: Repository): HookOutbox => (repository as Repository & { hookOutbox(): HookOutbox }).hookOutbox();
  const outbox = (): HookOutbox => outboxOf(repo());

  group('hook outbox (HookOutbox)', () => {
    beforeEach((test) => {
      if (!isHookOutboxProvider(repo())) test.skip('this repository does not implement the optional HookOutbox capability');
    });

    rule('enqueued deliveries are pending, due at once, in enqueue order; an id enqueued again is skipped', async () => {
      const before = Date.now();
      const a = delivery({ body: '{"n":1,"text":"ünïcödé ✓"}' });
      const b = delivery();
      await outbox().enqueueHookDeliveries([a, b]);
      await outbox().enqueueHookDeliveries([{ ...a, body: '{"replaced":true}' }]);
      const rows = await outbox().listHookDeliveries();
      expect(rows.map((r) => r.id)).toEqual([a.id, b.id]);
      expect(rows[0]).toMatchObject({ ...a, state: 'pending', attempts: 0, lastError: null, leaseUntil: null });
      expect(rows[0]!.seq).toBeLessThan(rows[1]!.seq);
      expect(Math.abs(rows[0]!.createdAt.getTime() - before)).toBeLessThan(MINUTE);
      expect(rows[0]!.nextAttemptAt.getTime()).toBeLessThanOrEqual(rows[0]!.createdAt.getTime());
    });

    rule('bad input is refused with InvalidInputError and writes nothing', async () => {
      const good = delivery();
      expect(await rejectionOf(outbox().enqueueHookDeliveries([good, delivery({ hook: '' })]))).toBeInstanceOf(InvalidInputError);
      expect(await rejectionOf(outbox().enqueueHookDeliveries([good, { ...delivery(), body: 42 as unknown as string }]))).toBeInstanceOf(InvalidInputError);
      expect(await rejectionOf(outbox().enqueueHookDeliveries([delivery({ id: 'x'.repeat(201) })]))).toBeInstanceOf(InvalidInputError);
      expect(await outbox().listHookDeliveries()).toEqual([]);
      expect(await rejectionOf(outbox().claimHookDeliveries({ ...CLAIM, limit: 0 }))).toBeInstanceOf(InvalidInputError);
      expect(await rejectionOf(outbox().claimHookDeliveries({ ...CLAIM, leaseMs: -1 }))).toBeInstanceOf(InvalidInputError);
      expect(await rejectionOf(outbox().settleHookDelivery('id', 'token', { outcome: 'retry', delayMs: -5, error: 'e' }))).toBeInstanceOf(InvalidInputError);
      expect(await rejectionOf(outbox().listHookDeliveries({ limit: 5000 }))).toBeInstanceOf(InvalidInputError);
      expect(await rejectionOf(outbox().purgeHookDeliveries({ state: 'gone' as 'dead', before: new Date() }))).toBeInstanceOf(InvalidInputError);
    });

    rule('a claim takes due rows of the listed hooks under a lease, counts the attempt, and a second claim does not get them', async () => {
      const mine = delivery();
      const other = delivery({ hook: 'elsewhere' });
      await outbox().enqueueHookDeliveries([mine, other]);
      const claimed = await outbox().claimHookDeliveries(CLAIM);
      expect(claimed.map((c) => c.id)).toEqual([mine.id]);
      expect(claimed[0]).toMatchObject({ attempts: 1, state: 'pending' });
      expect(claimed[0]!.token).toEqual(expect.any(String));
      expect(claimed[0]!.leaseUntil!.getTime()).toBeGreaterThan(Date.now() + 9 * MINUTE);
      expect(await outbox().claimHookDeliveries(CLAIM)).toEqual([]);
    });

    rule('two clients racing for the same rows: each delivery is claimed by exactly one', async () => {
      const all = Array.from({ length: 40 }, () => delivery());
      await outbox().enqueueHookDeliveries(all);
      const clients = [repo(), ...(await openPeers(() => fixture().openPeer(), 1))].map(outboxOf);
      const rounds = await Promise.all(clients.flatMap((client) => [client.claimHookDeliveries({ ...CLAIM, limit: 15 }), client.claimHookDeliveries({ ...CLAIM, limit: 15 })]));
      const ids = rounds.flat().map((c) => c.id);
      expect(new Set(ids).size).toBe(ids.length);
      expect(ids.length).toBe(40);
    });

    rule("one task's deliveries to one hook go out one at a time, in enqueue order; other tasks are not held back", async () => {
      const first = delivery({ taskId: 'task-1' });
      const second = delivery({ taskId: 'task-1' });
      const otherTask = delivery({ taskId: 'task-2' });
      const otherHook = delivery({ taskId: 'task-1', hook: 'audit' });
      await outbox().enqueueHookDeliveries([first, second, otherTask, otherHook]);
      const claimed = await outbox().claimHookDeliveries({ ...CLAIM, hooks: ['default', 'audit'] });
      expect(claimed.map((c) => c.id).sort()).toEqual([first.id, otherTask.id, otherHook.id].sort());
      const head = claimed.find((c) => c.id === first.id)!;
      // While the head waits for a retry, the task's next change still waits.
      expect(await outbox().settleHookDelivery(head.id, head.token, { outcome: 'retry', delayMs: 0, error: 'HTTP 503' })).toBe(true);
      expect((await outbox().claimHookDeliveries(CLAIM)).map((c) => c.id)).toEqual([first.id]);
      const again = (await outbox().listHookDeliveries({ state: 'pending' })).find((r) => r.id === first.id)!;
      expect(again.attempts).toBe(2);
    });

    rule('settle: delivered deletes the row; a retry records the error and the next try time; a stale token changes nothing', async () => {
      const [a, b] = [delivery(), delivery()];
      await outbox().enqueueHookDeliveries([a, b]);
      const claimed = await outbox().claimHookDeliveries(CLAIM);
      const byId = new Map(claimed.map((c) => [c.id, c] as const));
      expect(await outbox().settleHookDelivery(a.id, 'not-the-token', { outcome: 'delivered' })).toBe(false);
      expect(await outbox().settleHookDelivery(a.id, byId.get(a.id)!.token, { outcome: 'delivered' })).toBe(true);
      expect(await outbox().settleHookDelivery(a.id, byId.get(a.id)!.token, { outcome: 'delivered' })).toBe(false);
      const before = Date.now();
      expect(await outbox().settleHookDelivery(b.id, byId.get(b.id)!.token, { outcome: 'retry', delayMs: 10 * MINUTE, error: 'HTTP 500' })).toBe(true);
      const rows = await outbox().listHookDeliveries();
      expect(rows.map((r) => r.id)).toEqual([b.id]);
      expect(rows[0]).toMatchObject({ state: 'pending', attempts: 1, lastError: 'HTTP 500', leaseUntil: null });
      expect(rows[0]!.nextAttemptAt.getTime()).toBeGreaterThan(before + 9 * MINUTE);
      // Not due yet: no claim gets it, even with the lease gone.
      expect(await outbox().claimHookDeliveries(CLAIM)).toEqual([]);
      // A settle with the old token after the retry was recorded changes nothing.
      expect(await outbox().settleHookDelivery(b.id, byId.get(b.id)!.token, { outcome: 'dead', error: 'late' })).toBe(false);
    });

    rule('an expired lease is claimed again by another client, whose token then wins over the first', async () => {
      const d = delivery();
      await outbox().enqueueHookDeliveries([d]);
      const [first] = await outbox().claimHookDeliveries({ ...CLAIM, leaseMs: 0 });
      const peer = outboxOf((await openPeers(() => fixture().openPeer(), 1))[0]!);
      const [second] = await peer.claimHookDeliveries(CLAIM);
      expect(second).toMatchObject({ id: d.id, attempts: 2 });
      expect(second!.token).not.toBe(first!.token);
      expect(await outbox().settleHookDelivery(d.id, first!.token, { outcome: 'delivered' })).toBe(false);
      expect(await peer.settleHookDelivery(d.id, second!.token, { outcome: 'delivered' })).toBe(true);
      expect(await outbox().listHookDeliveries()).toEqual([]);
    });

    rule('a dead letter is listed, never claimed, and a redrive makes it pending again with attempts 0', async () => {
      const [d, live] = [delivery(), delivery()];
      await outbox().enqueueHookDeliveries([d, live]);
      const claimed: ClaimedHookDelivery[] = await outbox().claimHookDeliveries({ ...CLAIM, limit: 1 });
      expect(await outbox().settleHookDelivery(d.id, claimed[0]!.token, { outcome: 'dead', error: 'HTTP 410 Gone' })).toBe(true);
      expect((await outbox().listHookDeliveries({ state: 'dead' })).map((r) => [r.id, r.lastError, r.attempts])).toEqual([[d.id, 'HTTP 410 Gone', 1]]);
      expect((await outbox().listHookDeliveries({ state: 'pending' })).map((r) => r.id)).toEqual([live.id]);
      expect((await outbox().claimHookDeliveries(CLAIM)).map((c) => c.id)).toEqual([live.id]);
      expect(await outbox().redriveHookDelivery(live.id)).toBe(false);
      expect(await outbox().redriveHookDelivery('no-such-delivery')).toBe(false);
      expect(await outbox().redriveHookDelivery(d.id)).toBe(true);
      expect(await outbox().redriveHookDelivery(d.id)).toBe(false);
      const [redriven] = await outbox().claimHookDeliveries(CLAIM);
      expect(redriven).toMatchObject({ id: d.id, attempts: 1, state: 'pending', lastError: 'HTTP 410 Gone' });
    });

    rule('list filters by state and hook and pages by seq', async () => {
      const rows = [delivery(), delivery({ hook: 'audit' }), delivery(), delivery()];
      await outbox().enqueueHookDeliveries(rows);
      const firstPage = await outbox().listHookDeliveries({ hook: 'default', limit: 2 });
      expect(firstPage.map((r) => r.id)).toEqual([rows[0]!.id, rows[2]!.id]);
      const next = await outbox().listHookDeliveries({ hook: 'default', afterSeq: firstPage[1]!.seq });
      expect(next.map((r) => r.id)).toEqual([rows[3]!.id]);
      expect((await outbox().listHookDeliveries({ hook: 'audit' })).map((r) => r.id)).toEqual([rows[1]!.id]);
      expect(await outbox().listHookDeliveries({ state: 'dead' })).toEqual([]);
    });

    rule('purge deletes the rows of one state changed before a time, and keeps the rest', async () => {
      const [dead, leased, idle] = [delivery(), delivery(), delivery({ hook: 'removed-hook' })];
      await outbox().enqueueHookDeliveries([dead]);
      const [claim] = await outbox().claimHookDeliveries(CLAIM);
      await outbox().settleHookDelivery(dead.id, claim!.token, { outcome: 'dead', error: 'gone' });
      await outbox().enqueueHookDeliveries([leased, idle]);
      expect(await outbox().claimHookDeliveries(CLAIM)).toHaveLength(1);
      const later = new Date(Date.now() + 10 * MINUTE);
      expect(await outbox().purgeHookDeliveries({ state: 'dead', before: new Date(Date.now() - 10 * MINUTE) })).toBe(0);
      expect(await outbox().purgeHookDeliveries({ state: 'dead', before: later })).toBe(1);
      expect(await outbox().purgeHookDeliveries({ state: 'pending', before: later, hook: 'another' })).toBe(0);
      // A pending row under a live lease is kept, even when old enough; an idle one goes.
      expect(await outbox().purgeHookDeliveries({ state: 'pending', before: later })).toBe(1);
      expect((await outbox().listHookDeliveries()).map((r) => r.id)).toEqual([leased.id]);
    });
  });
}
