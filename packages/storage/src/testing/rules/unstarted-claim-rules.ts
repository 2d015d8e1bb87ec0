import { InvalidInputError } from '@horae/core';
import { expect } from 'vitest';
import { InvalidStateError, LeaseLostError } from '../../contract/errors.js';
import { MINUTE, claimAheadOrFail, claimOrFail, foreignToken, idsOf, insertClaimedAhead, insertTask, past } from '../helpers.js';
import type { SuiteContext } from '../suite-context.js';

/**
 * Claims are not attempts (DESIGN rule 11), the claim whose run has not started: the ends of a run refuse it, a
 * release or a cancel costs it nothing, its lease expiring costs no attempt but counts towards a poison task, and
 * `claims` only grows, so a zombie of an earlier claim is fenced off.
 */
export function unstartedClaimRules({ group, rule, repo, fixture }: SuiteContext): void {
  group('unstarted claims', () => {
    rule('markAsDone of an unstarted claim throws InvalidStateError and writes nothing', async () => {
      const claimed = await insertClaimedAhead(repo());
      await expect(repo().markAsDone(claimed.id, claimed.lease.token)).rejects.toBeInstanceOf(InvalidStateError);
      expect(await repo().getById(claimed.id)).toEqual(claimed);
      expect(await repo().listAttempts(claimed.id)).toEqual([]);
      await expect(repo().markAsDone(claimed.id, foreignToken()), 'a wrong token is a lost lease').rejects.toBeInstanceOf(LeaseLostError);
    });

    rule('markAsFailed of an unstarted claim throws InvalidStateError and writes nothing', async () => {
      const claimed = await insertClaimedAhead(repo());
      await expect(repo().markAsFailed(claimed.id, { message: 'boom' }, claimed.lease.token)).rejects.toBeInstanceOf(InvalidStateError);
      await expect(repo().markAsFailed(claimed.id, { message: 'boom' }), 'without a token, out of Working').rejects.toBeInstanceOf(InvalidStateError);
      expect(await repo().getById(claimed.id)).toEqual(claimed);
      expect(await repo().listAttempts(claimed.id)).toEqual([]);
    });

    rule('markAsStarted of an unstarted claim whose lease expired throws LeaseLostError and writes nothing', async () => {
      // Expired and not reclaimed yet: any node may reclaim it at any moment, so a run started now could overlap the
      // next owner's.
      const claimed = await insertClaimedAhead(repo(), {}, { leaseMs: 0 });
      await expect(repo().markAsStarted(claimed.id, claimed.lease.token)).rejects.toBeInstanceOf(LeaseLostError);
      expect(await repo().getById(claimed.id)).toEqual(claimed);
      expect(await repo().listAttempts(claimed.id)).toEqual([]);
      // Among starts made together, the expired one is refused on its own and the live one starts.
      const live = await insertClaimedAhead(repo());
      const [expired, started] = await Promise.allSettled([
        repo().markAsStarted(claimed.id, claimed.lease.token),
        repo().markAsStarted(live.id, live.lease.token),
      ]);
      expect(expired.status === 'rejected' && expired.reason instanceof LeaseLostError, 'the expired start is refused').toBe(true);
      expect(started.status === 'fulfilled' ? started.value : started.reason).toMatchObject({ id: live.id, attempt: 1, lease: { started: true } });
      // The expired claim is reclaimed as an unstarted one: no attempt spent.
      await repo().reclaimExpired();
      expect(await repo().getById(claimed.id)).toMatchObject({ state: 'Initialized', attempt: 0, claims: 1, unstartedClaims: 1 });
    });

    rule('release of an unstarted claim: Initialized, attempt and claims unchanged, no record', async () => {
      const claimed = await insertClaimedAhead(repo());
      const runAt = past(MINUTE);
      const released = await repo().release(claimed.id, claimed.lease.token, { runAt, refundAttempt: true });
      expect(released).toMatchObject({ state: 'Initialized', lease: null, attempt: 0, claims: 1, unstartedClaims: 0 });
      expect(released.scheduledAt.getTime()).toBe(runAt.getTime());
      expect(await repo().getById(claimed.id)).toEqual(released);
      expect(await repo().listAttempts(claimed.id)).toEqual([]);

      // Released after a run that did start: the attempt of that run stays spent, its record untouched.
      const started = await claimOrFail(repo(), claimed.id);
      await repo().release(started.id, started.lease.token, { runAt: past() });
      const before = await repo().listAttempts(claimed.id);
      const ahead = await claimAheadOrFail(repo(), started);
      const again = await repo().release(ahead.id, ahead.lease.token, { runAt: past(), refundAttempt: true });
      expect(again).toMatchObject({ state: 'Initialized', attempt: 1, claims: 3 });
      expect(await repo().listAttempts(claimed.id)).toEqual(before);
    });

    rule('markAsCancelled of an unstarted claim: Cancelled, no record', async () => {
      const byHolder = await insertClaimedAhead(repo());
      const mine = await repo().markAsCancelled(byHolder.id, { token: byHolder.lease.token });
      expect(mine.cancelled).toBe(true);
      expect(mine.task).toMatchObject({ state: 'Cancelled', lease: null, attempt: 0, claims: 1 });
      expect(await repo().listAttempts(byHolder.id)).toEqual([]);
      const byOperator = await insertClaimedAhead(repo());
      expect((await repo().markAsCancelled(byOperator.id)).task).toMatchObject({ state: 'Cancelled', attempt: 0 });
      expect(await repo().listAttempts(byOperator.id)).toEqual([]);
    });

    rule('renewLease extends an unstarted claim, which stays unstarted', async () => {
      const claimed = await insertClaimedAhead(repo(), {}, { leaseMs: 1_000 });
      const renewed = await repo().renewLease(claimed.id, claimed.lease.token, 10 * MINUTE);
      expect(renewed).toMatchObject({ state: 'Working', attempt: 0, claims: 1, lease: { token: claimed.lease.token, started: false } });
      expect(renewed.lease!.until.getTime()).toBeGreaterThan(claimed.lease.until.getTime() + 5 * MINUTE);
      expect(await repo().getById(claimed.id)).toEqual(renewed);
      await expect(repo().renewLease(claimed.id, foreignToken(), MINUTE)).rejects.toBeInstanceOf(LeaseLostError);
    });

    rule('claims only grows: claim, release, claim ahead, reclaim, claim', async () => {
      const task = await insertTask(repo(), { maxAttempts: 3 });
      const first = await claimOrFail(repo(), task.id);
      expect(first).toMatchObject({ claims: 1, attempt: 1 });
      const released = await repo().release(task.id, first.lease.token, { runAt: past(), refundAttempt: true });
      expect(released).toMatchObject({ claims: 1, attempt: 0 });
      const ahead = await claimAheadOrFail(repo(), task, { leaseMs: 0 });
      expect(ahead).toMatchObject({ claims: 2, attempt: 0 });
      const [reclaimed] = await repo().reclaimExpired();
      expect(reclaimed).toMatchObject({ id: task.id, state: 'Initialized', claims: 2, attempt: 0, unstartedClaims: 1 });
      const last = await claimOrFail(repo(), task.id);
      expect(last).toMatchObject({ claims: 3, attempt: 1, unstartedClaims: 0 });
      expect(await repo().getById(task.id)).toEqual(last);
    });
  });

  group('reclaim of unstarted claims', () => {
    rule('an expired unstarted claim goes back to Initialized: unstartedClaims + 1, attempt unchanged, no record', async () => {
      const ahead = await insertClaimedAhead(repo(), {}, { leaseMs: 0 });
      const running = await claimOrFail(repo(), (await insertTask(repo(), { maxAttempts: 3 })).id, { leaseMs: 0 });
      const reclaimed = await repo().reclaimExpired();
      expect(idsOf(reclaimed).sort()).toEqual([ahead.id, running.id].sort());
      const unstarted = reclaimed.find((task) => task.id === ahead.id)!;
      expect(unstarted).toMatchObject({ state: 'Initialized', lease: null, attempt: 0, claims: 1, unstartedClaims: 1 });
      expect(Math.abs(unstarted.scheduledAt.getTime() - Date.now())).toBeLessThan(5 * MINUTE);
      expect(await repo().getById(ahead.id)).toEqual(unstarted);
      expect(await repo().listAttempts(ahead.id)).toEqual([]);
      // The started run beside it is reclaimed as before: its attempt spent, its record closed.
      expect(reclaimed.find((task) => task.id === running.id)).toMatchObject({ state: 'Initialized', attempt: 1, unstartedClaims: 0 });
      expect(await repo().listAttempts(running.id)).toMatchObject([{ outcome: 'lease-expired' }]);
    });

    rule('after maxUnstartedClaims unstarted claims in a row the task fails as a poison task', async () => {
      const ahead = await insertClaimedAhead(repo(), {}, { leaseMs: 0 });
      const [first] = await repo().reclaimExpired({ maxUnstartedClaims: 2 });
      expect(first).toMatchObject({ id: ahead.id, state: 'Initialized', unstartedClaims: 1 });
      await claimAheadOrFail(repo(), ahead, { leaseMs: 0 });
      const [poisoned] = await repo().reclaimExpired({ maxUnstartedClaims: 2 });
      expect(poisoned).toMatchObject({ id: ahead.id, state: 'Failed', lease: null, attempt: 0, claims: 2, unstartedClaims: 2 });
      expect(poisoned!.lastError).toMatchObject({ code: 'POISON_TASK', name: 'PoisonTaskError', message: expect.any(String) as string });
      expect(await repo().getById(ahead.id)).toEqual(poisoned);
      expect(await repo().listAttempts(ahead.id)).toEqual([]);
    });

    rule('maxUnstartedClaims defaults to 3', async () => {
      const ahead = await insertClaimedAhead(repo(), {}, { leaseMs: 0 });
      for (const expected of [1, 2]) {
        expect(await repo().reclaimExpired()).toMatchObject([{ id: ahead.id, state: 'Initialized', unstartedClaims: expected }]);
        await claimAheadOrFail(repo(), ahead, { leaseMs: 0 });
      }
      expect(await repo().reclaimExpired()).toMatchObject([{ id: ahead.id, state: 'Failed', unstartedClaims: 3, lastError: { code: 'POISON_TASK' } }]);
    });

    rule('a started run resets unstartedClaims', async () => {
      const ahead = await insertClaimedAhead(repo(), {}, { leaseMs: 0 });
      expect(await repo().reclaimExpired({ maxUnstartedClaims: 2 })).toMatchObject([{ unstartedClaims: 1 }]);
      const claimed = await claimAheadOrFail(repo(), ahead);
      expect(claimed.unstartedClaims).toBe(1);
      const started = await repo().markAsStarted(claimed.id, claimed.lease.token);
      expect(started).toMatchObject({ unstartedClaims: 0, attempt: 1, claims: 2 });
      await repo().release(started.id, started.lease!.token, { runAt: past() });
      await claimAheadOrFail(repo(), ahead, { leaseMs: 0 });
      // One unstarted claim since the run started: not a poison task yet.
      expect(await repo().reclaimExpired({ maxUnstartedClaims: 2 })).toMatchObject([{ id: ahead.id, state: 'Initialized', unstartedClaims: 1, attempt: 1, claims: 3 }]);
      // A claim by id starts its run too.
      expect(await claimOrFail(repo(), ahead.id)).toMatchObject({ unstartedClaims: 0, attempt: 2, claims: 4 });
    });

    rule('reclaimExpired refuses an invalid maxUnstartedClaims and writes nothing', async () => {
      const ahead = await insertClaimedAhead(repo(), {}, { leaseMs: 0 });
      for (const maxUnstartedClaims of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 31, '2' as unknown as number]) {
        await expect(repo().reclaimExpired({ maxUnstartedClaims }), `maxUnstartedClaims ${String(maxUnstartedClaims)}`).rejects.toBeInstanceOf(InvalidInputError);
      }
      expect(await repo().getById(ahead.id)).toEqual(ahead);
      expect(await repo().reclaimExpired({ maxUnstartedClaims: 1 })).toMatchObject([{ id: ahead.id, state: 'Failed', lastError: { code: 'POISON_TASK' } }]);
    });
  });

  group('fencing of claims', () => {
    rule("a zombie's writes are refused once its unstarted claim was reclaimed and claimed again; claims grows", async () => {
      const zombie = await insertClaimedAhead(repo(), {}, { owner: 'node-zombie', leaseMs: 0 });
      const old = zombie.lease.token;
      expect(idsOf(await repo().reclaimExpired())).toEqual([zombie.id]);
      const peer = await fixture().openPeer();
      const next = await claimAheadOrFail(peer, zombie, { owner: 'node-b' });
      expect(next.lease.token).not.toBe(old);
      expect(next.claims).toBeGreaterThan(zombie.claims);
      const refused: [string, () => Promise<unknown>][] = [
        ['markAsStarted', () => repo().markAsStarted(zombie.id, old)],
        ['markAsDone', () => repo().markAsDone(zombie.id, old)],
        ['markAsFailed', () => repo().markAsFailed(zombie.id, { message: 'late' }, old)],
        ['release', () => repo().release(zombie.id, old, { runAt: new Date() })],
        ['renewLease', () => repo().renewLease(zombie.id, old, 60_000)],
        ['markAsCancelled', () => repo().markAsCancelled(zombie.id, { token: old })],
      ];
      for (const [name, call] of refused) await expect(call(), name).rejects.toBeInstanceOf(LeaseLostError);
      expect(await repo().getById(zombie.id)).toEqual(next);
      const started = await peer.markAsStarted(next.id, next.lease.token);
      expect(started).toMatchObject({ attempt: 1, claims: 2, unstartedClaims: 0 });
      for (const [name, call] of refused) await expect(call(), `${name} once the new holder started`).rejects.toBeInstanceOf(LeaseLostError);
      expect((await peer.markAsDone(next.id, next.lease.token)).state).toBe('Done');
    });
  });
}
