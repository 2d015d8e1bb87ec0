import { InvalidInputError } from '@horae/core';
import { describe, expect, it } from 'vitest';
import { RepositoryError } from '@horae/storage';
import type { TaskError } from '@horae/storage';
import { MongoRepository } from '@horae/repo-mongo';

// Nothing listens on port 1: every operation that reaches the network fails fast with a real driver error.
const UNREACHABLE = 'mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300&connectTimeoutMS=300';

describe('MongoRepository without a server', () => {
  it('refuses missing or contradictory options', () => {
    expect(() => new MongoRepository(undefined as never)).toThrow(InvalidInputError);
    expect(() => new MongoRepository({} as never)).toThrow(InvalidInputError);
    expect(() => new MongoRepository({ uri: UNREACHABLE, changeTicketTtlMs: 0 })).toThrow(InvalidInputError);
    expect(() => new MongoRepository({ uri: UNREACHABLE, changeTicketTtlMs: 5_000, changeTicketExpiryMs: 5_000 })).toThrow(InvalidInputError);
  });

  it('an unreachable server is a RepositoryError with the driver error as cause, and init is tried again', async () => {
    const repo = new MongoRepository({ uri: UNREACHABLE });
    try {
      const first: unknown = await repo.getById('x').catch((e: unknown) => e);
      expect(first).toBeInstanceOf(RepositoryError);
      expect((first as RepositoryError).cause).toBeInstanceOf(Error);
      expect(((first as RepositoryError).cause as Error).name).toMatch(/^Mongo/);
      // The failed set-up is not cached: the next call tries again (and fails again, here).
      await expect(repo.init()).rejects.toBeInstanceOf(RepositoryError);
    } finally {
      await repo.close();
    }
  });

  it('refuses bad input before touching the network', async () => {
    // Each of these would take 300 ms and throw RepositoryError if it reached the network.
    const repo = new MongoRepository({ uri: UNREACHABLE });
    const past = new Date(0);
    const calls: [string, () => Promise<unknown>][] = [
      ['insert with a NaN param', () => repo.insert({ workId: 'w', scheduledAt: past, param: { n: Number.NaN } })],
      ['insertMany of a non-array', () => repo.insertMany('x' as never)],
      ['insertMany with one id twice', () => repo.insertMany([{ id: 'a', workId: 'w', scheduledAt: past }, { id: 'a', workId: 'w', scheduledAt: past }])],
      ['an id that is an operator object', () => repo.getById({ $ne: null } as never)],
      ['claim with an operator owner', () => repo.claim('x', { owner: { $gt: '' } as never, leaseMs: 1 })],
      ['claim with a negative lease', () => repo.claim('x', { owner: 'n', leaseMs: -1 })],
      ['claimDue with workIds holding an object', () => repo.claimDue({ owner: 'n', leaseMs: 1, limit: 1, workIds: [{ $ne: null } as never] })],
      ['claimDue with limit 0', () => repo.claimDue({ owner: 'n', leaseMs: 1, limit: 0 })],
      ['release with an invalid runAt', () => repo.release('x', 't', { runAt: new Date(Number.NaN) })],
      ['markAsFailed with a non-error', () => repo.markAsFailed('x', 'boom' as unknown as TaskError)],
      ['markAsCancelled with an operator token', () => repo.markAsCancelled('x', { token: { $ne: null } as never })],
      ['update with a bad patch', () => repo.update('x', { priority: Number.NaN })],
      ['setProgress with a NaN total', () => repo.setProgress('x', 't', { completed: 1, total: Number.NaN })],
      ['reclaimExpired with limit 0', () => repo.reclaimExpired({ limit: 0 })],
      ['reclaimExpired with maxUnstartedClaims 0', () => repo.reclaimExpired({ maxUnstartedClaims: 0 })],
      ['reclaimExpired with maxUnstartedClaims 1.5', () => repo.reclaimExpired({ maxUnstartedClaims: 1.5 })],
      ['reclaimExpired with maxUnstartedClaims NaN', () => repo.reclaimExpired({ maxUnstartedClaims: Number.NaN })],
      ['claimDue with agingMs 0', () => repo.claimDue({ owner: 'n', leaseMs: 1, limit: 1, agingMs: 0 })],
      ['claimDue with agingMs -1', () => repo.claimDue({ owner: 'n', leaseMs: 1, limit: 1, agingMs: -1 })],
      ['claimDue with agingMs NaN', () => repo.claimDue({ owner: 'n', leaseMs: 1, limit: 1, agingMs: Number.NaN })],
      ['claimDue with agingMs -Infinity', () => repo.claimDue({ owner: 'n', leaseMs: 1, limit: 1, agingMs: -Infinity })],
      ['claimDue with agingMs a string', () => repo.claimDue({ owner: 'n', leaseMs: 1, limit: 1, agingMs: '10000' as never })],
      ['claimDue with agingMs null', () => repo.claimDue({ owner: 'n', leaseMs: 1, limit: 1, agingMs: null as never })],
      ['reclaimExpired with maxUnstartedClaims null', () => repo.reclaimExpired({ maxUnstartedClaims: null as never })],
      ['reclaimExpired with maxUnstartedClaims Infinity', () => repo.reclaimExpired({ maxUnstartedClaims: Infinity })],
      // No work to claim would return [] at once: the bad aging is refused first.
      ['claimDue with no workIds and agingMs 0', () => repo.claimDue({ owner: 'n', leaseMs: 1, limit: 1, workIds: [], agingMs: 0 })],
      ['markAsStarted with an operator id', () => repo.markAsStarted({ $ne: null } as never, 't')],
      ['markAsStarted with an empty id', () => repo.markAsStarted('', 't')],
      ['getUpdatedSince with a foreign cursor', () => repo.getUpdatedSince('not-a-cursor', 10)],
      ['getUpdatedSince with limit 0', () => repo.getUpdatedSince(null, 0)],
      ['listDue with an invalid date', () => repo.listDue({ before: new Date(Number.NaN), limit: 1 })],
      ['list with an unknown state', () => repo.list({ state: 'Sleeping' as never })],
      ['list with a foreign cursor', () => repo.list({ after: 'nope' })],
      ['deleteTerminalBefore with a string', () => repo.deleteTerminalBefore('2020' as never)],
      ['listAttempts with an operator task id', () => repo.listAttempts({ $ne: null } as never)],
      ['listAttempts with an empty task id', () => repo.listAttempts('')],
    ];
    try {
      for (const [label, call] of calls) await expect(call(), label).rejects.toBeInstanceOf(InvalidInputError);
    } finally {
      await repo.close();
    }
  });

  it('accepts the edges of the new options: agingMs Infinity or a fraction, maxUnstartedClaims 1 (they reach the network)', async () => {
    const repo = new MongoRepository({ uri: UNREACHABLE });
    try {
      // RepositoryError, not InvalidInputError: the input passed and the call failed only on the unreachable server.
      await expect(repo.claimDue({ owner: 'n', leaseMs: 1, limit: 1, agingMs: Infinity })).rejects.toBeInstanceOf(RepositoryError);
      await expect(repo.claimDue({ owner: 'n', leaseMs: 1, limit: 1, agingMs: 0.5 })).rejects.toBeInstanceOf(RepositoryError);
      await expect(repo.reclaimExpired({ maxUnstartedClaims: 1 })).rejects.toBeInstanceOf(RepositoryError);
      // An empty list of works claims nothing, without a round trip.
      await expect(repo.claimDue({ owner: 'n', leaseMs: 1, limit: 1, workIds: [], agingMs: Infinity })).resolves.toEqual([]);
    } finally {
      await repo.close();
    }
  });

  it('close of a repository given a Db leaves it open (nothing to close)', async () => {
    const db = { databaseName: 'x', collection: () => ({}) } as never;
    const repo = new MongoRepository({ db });
    await expect(repo.close()).resolves.toBeUndefined();
  });
});
