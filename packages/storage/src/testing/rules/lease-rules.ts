import { expect } from 'vitest';
import { LeaseLostError } from '../../contract/errors.js';
import { MINUTE, claimOrFail, expectNoDuplicates, foreignToken, idsOf, insertClaimed, newTask } from '../helpers.js';
import type { SuiteContext } from '../suite-context.js';

/** renewLease, reclaimExpired, and fencing: a zombie's token is refused once its lease is taken over. */
export function leaseRules({ group, rule, repo, fixture }: SuiteContext): void {
  group('leases', () => {
    rule('renewLease extends the lease', async () => {
      const claimed = await insertClaimed(repo(), {}, { leaseMs: 1_000 });
      const renewed = await repo().renewLease(claimed.id, claimed.lease.token, 10 * MINUTE);
      expect(renewed.state).toBe('Working');
      expect(renewed.lease?.token).toBe(claimed.lease.token);
      expect(renewed.lease?.owner).toBe(claimed.lease.owner);
      expect(renewed.lease!.until.getTime()).toBeGreaterThan(claimed.lease.until.getTime() + 5 * MINUTE);
      expect(renewed.attempt).toBe(claimed.attempt);
      expect((await repo().getById(claimed.id)).lease?.until.getTime()).toBe(renewed.lease!.until.getTime());
    });

    rule('renewLease with a wrong token throws LeaseLostError', async () => {
      const claimed = await insertClaimed(repo());
      await expect(repo().renewLease(claimed.id, foreignToken(), 10 * MINUTE)).rejects.toBeInstanceOf(LeaseLostError);
      expect(await repo().getById(claimed.id)).toEqual(claimed);
    });

    rule('an expired lease is reclaimed: Initialized, due now, lease cleared, attempt kept', async () => {
      const claimed = await insertClaimed(repo(), { maxAttempts: 3 }, { leaseMs: 0 });
      const reclaimed = await repo().reclaimExpired();
      expect(idsOf(reclaimed)).toEqual([claimed.id]);
      const task = reclaimed[0]!;
      // The run had started (a claim by id): its attempt is spent, and it was not an unstarted claim.
      expect(task).toMatchObject({ state: 'Initialized', lease: null, attempt: 1, claims: 1, unstartedClaims: 0 });
      expect(Math.abs(task.scheduledAt.getTime() - Date.now())).toBeLessThan(5 * MINUTE);
      expect(await repo().getById(claimed.id)).toEqual(task);
      expect(await repo().reclaimExpired()).toEqual([]);
    });

    rule('a live lease is not reclaimed', async () => {
      const claimed = await insertClaimed(repo(), {}, { leaseMs: 60_000 });
      expect(idsOf(await repo().reclaimExpired())).not.toContain(claimed.id);
      expect(await repo().getById(claimed.id)).toEqual(claimed);
    });

    rule('an expired lease with its attempts spent fails the task', async () => {
      const claimed = await insertClaimed(repo(), { maxAttempts: 1 }, { leaseMs: 0 });
      const reclaimed = await repo().reclaimExpired();
      expect(idsOf(reclaimed)).toEqual([claimed.id]);
      expect(reclaimed[0]).toMatchObject({ state: 'Failed', lease: null, attempt: 1 });
      expect(reclaimed[0]!.lastError?.message).toEqual(expect.any(String));
      expect(await repo().getById(claimed.id)).toEqual(reclaimed[0]);
    });

    rule("a zombie's writes are refused once its lease is reclaimed (fencing)", async () => {
      const zombie = await insertClaimed(repo(), { maxAttempts: 3 }, { owner: 'node-zombie', leaseMs: 0 });
      const old = zombie.lease.token;
      expect(idsOf(await repo().reclaimExpired())).toEqual([zombie.id]);
      const afterReclaim = await repo().getById(zombie.id);
      const refused: [string, () => Promise<unknown>][] = [
        ['markAsStarted', () => repo().markAsStarted(zombie.id, old)],
        ['markAsDone', () => repo().markAsDone(zombie.id, old)],
        ['markAsFailed', () => repo().markAsFailed(zombie.id, { message: 'late' }, old)],
        ['release', () => repo().release(zombie.id, old, { runAt: new Date() })],
        ['renewLease', () => repo().renewLease(zombie.id, old, 60_000)],
        ['setProgress', () => repo().setProgress(zombie.id, old, { completed: 1, total: 1 })],
        ['markAsCancelled', () => repo().markAsCancelled(zombie.id, { token: old })],
      ];
      for (const [name, call] of refused) await expect(call(), name).rejects.toBeInstanceOf(LeaseLostError);
      expect(await repo().getById(zombie.id)).toEqual(afterReclaim);

      const next = await claimOrFail(repo(), zombie.id, { owner: 'node-b' });
      expect(next.lease.token).not.toBe(old);
      expect(next.attempt).toBe(2);
      // claims is the fencing token a downstream system can compare: the new holder's is higher.
      expect(next.claims).toBeGreaterThan(zombie.claims);
      for (const [name, call] of refused) await expect(call(), `${name} while another node holds the task`).rejects.toBeInstanceOf(LeaseLostError);
      expect(await repo().getById(zombie.id)).toEqual(next);
      expect((await repo().markAsDone(zombie.id, next.lease.token)).state).toBe('Done');
    });

    rule('each expired task is reclaimed by exactly one of two concurrent callers', async () => {
      await repo().insertMany(Array.from({ length: 10 }, () => newTask({ maxAttempts: 3 })));
      const claimed = await repo().claimDue({ owner: 'node-a', leaseMs: 0, limit: 10 });
      expect(claimed).toHaveLength(10);
      const peer = await fixture().openPeer();
      const [a, b] = await Promise.all([repo().reclaimExpired(), peer.reclaimExpired()]);
      const all = [...idsOf(a), ...idsOf(b)];
      expectNoDuplicates(all, 'a task reclaimed by both');
      expect(all.sort()).toEqual(idsOf(claimed).sort());
      expect((await repo().countByState()).Initialized).toBe(10);
    });

    rule('reclaimExpired respects its limit', async () => {
      await repo().insertMany(Array.from({ length: 5 }, () => newTask({ maxAttempts: 3 })));
      expect(await repo().claimDue({ owner: 'node-a', leaseMs: 0, limit: 5 })).toHaveLength(5);
      expect(await repo().reclaimExpired({ limit: 2 })).toHaveLength(2);
      expect(await repo().reclaimExpired()).toHaveLength(3);
      expect((await repo().countByState()).Working).toBe(0);
    });
  });
}
