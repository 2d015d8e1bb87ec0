import { InvalidInputError, type Clock, type ClockTimer } from '@horae/core';
import { MemoryRepository, RepositoryError, TaskNotDueError, type TaskInfo } from '@horae/storage';
import { describeRepositoryConformance, describeRepositoryModel } from '@horae/storage/testing';
import { describe, expect, it } from 'vitest';

describeRepositoryConformance('MemoryRepository', () => {
  const repository = new MemoryRepository();
  return Promise.resolve({ repository, openPeer: () => Promise.resolve(repository.openPeer()), dispose: () => repository.close() });
});

describeRepositoryModel('MemoryRepository', () => {
  const repository = new MemoryRepository();
  return Promise.resolve({ repository, openPeer: () => Promise.resolve(repository.openPeer()), dispose: () => repository.close() });
});

/** A clock moved by hand; the repository only reads `now()`. (The VirtualClock of @horae/core/testing is not there yet.) */
class FakeClock implements Clock {
  constructor(public nowMs: number) {}
  now(): number {
    return this.nowMs;
  }
  setTimer(): ClockTimer {
    throw new TypeError('the repository never arms timers');
  }
}

const T0 = Date.parse('2030-01-01T00:00:00.000Z');

function setup(): { clock: FakeClock; repo: MemoryRepository } {
  const clock = new FakeClock(T0);
  return { clock, repo: new MemoryRepository({ clock }) };
}

describe('MemoryRepository beyond the contract', () => {
  it('takes createdAt, updatedAt, lease.until and progress.at from its clock', async () => {
    const { clock, repo } = setup();
    const { task } = await repo.insert({ workId: 'w', scheduledAt: new Date(T0), maxAttempts: 2 });
    expect(task.createdAt.getTime()).toBe(T0);
    expect(task.updatedAt.getTime()).toBe(T0);
    clock.nowMs = T0 + 1_000;
    const claimed = await repo.claim(task.id, { owner: 'n', leaseMs: 5_000 });
    expect(claimed!.updatedAt.getTime()).toBe(T0 + 1_000);
    expect(claimed!.lease!.until.getTime()).toBe(T0 + 6_000);
    clock.nowMs = T0 + 2_000;
    await repo.setProgress(task.id, claimed!.lease!.token, { completed: 1, total: 2 });
    expect((await repo.getById(task.id)).progress!.at.getTime()).toBe(T0 + 2_000);
  });

  it('claimDue takes a task only once its due time is reached on the clock', async () => {
    const { clock, repo } = setup();
    const { task } = await repo.insert({ workId: 'w', scheduledAt: new Date(T0 + 10_000) });
    clock.nowMs = T0 + 9_999;
    expect(await repo.claimDue({ owner: 'n', leaseMs: 1_000, limit: 10 })).toEqual([]);
    clock.nowMs = T0 + 10_000;
    expect((await repo.claimDue({ owner: 'n', leaseMs: 1_000, limit: 10 })).map((t) => t.id)).toEqual([task.id]);
  });

  it('reclaims a lease once the clock reaches its until, recording LEASE_EXPIRED', async () => {
    const { clock, repo } = setup();
    const { task } = await repo.insert({ workId: 'w', scheduledAt: new Date(T0), maxAttempts: 2 });
    await repo.claim(task.id, { owner: 'n', leaseMs: 5_000 });
    clock.nowMs = T0 + 4_999;
    expect(await repo.reclaimExpired()).toEqual([]);
    clock.nowMs = T0 + 5_000;
    const [reclaimed] = await repo.reclaimExpired();
    expect(reclaimed).toMatchObject({ state: 'Initialized', lease: null, attempt: 1, lastError: { message: 'lease expired', code: 'LEASE_EXPIRED' } });
    expect(reclaimed!.scheduledAt.getTime()).toBe(T0 + 5_000);
  });

  it('renewLease moves until to the clock now + leaseMs', async () => {
    const { clock, repo } = setup();
    const { task } = await repo.insert({ workId: 'w', scheduledAt: new Date(T0) });
    const claimed = await repo.claim(task.id, { owner: 'n', leaseMs: 1_000 });
    clock.nowMs = T0 + 800;
    const renewed = await repo.renewLease(task.id, claimed!.lease!.token, 1_000);
    expect(renewed.lease!.until.getTime()).toBe(T0 + 1_800);
    clock.nowMs = T0 + 1_500;
    expect(await repo.reclaimExpired()).toEqual([]);
  });

  it('refuses a claim by id until its clock reaches the due time, saying how long to wait', async () => {
    const { clock, repo } = setup();
    const { task } = await repo.insert({ workId: 'w', scheduledAt: new Date(T0 + 10_000) });
    clock.nowMs = T0 + 2_500;
    const error: unknown = await repo.claim(task.id, { owner: 'n', leaseMs: 1_000 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TaskNotDueError);
    expect((error as TaskNotDueError).dueInMs).toBe(7_500);
    expect(await repo.getById(task.id)).toEqual(task);
    clock.nowMs = T0 + 10_000;
    expect(await repo.claim(task.id, { owner: 'n', leaseMs: 1_000 })).toMatchObject({ state: 'Working', attempt: 1, lease: { started: true } });
  });

  it('claims ahead in the aged order, the same at any later time', async () => {
    const { clock, repo } = setup();
    const old = (await repo.insert({ workId: 'w', priority: 0, scheduledAt: new Date(T0 - 600_000) })).task;
    const recent = (await repo.insert({ workId: 'w', priority: 5, scheduledAt: new Date(T0) })).task;
    // Aged at one point a minute: 0 + 10 against 5 + 0 now, and 0 + 70 against 5 + 60 an hour later.
    for (const now of [T0, T0 + 3_600_000]) {
      clock.nowMs = now;
      const [first] = await repo.claimDue({ owner: 'n', leaseMs: 1_000, limit: 1, agingMs: 60_000 });
      expect(first!.id).toBe(old.id);
      await repo.release(first!.id, first!.lease!.token, { runAt: first!.scheduledAt });
    }
    const [byPriority] = await repo.claimDue({ owner: 'n', leaseMs: 1_000, limit: 1, agingMs: Number.POSITIVE_INFINITY });
    expect(byPriority!.id).toBe(recent.id);
  });

  it('a batch of claimDue over a large backlog is the head of the full aged order', async () => {
    const { clock, repo } = setup();
    // A deterministic spread of priorities and due times (a linear congruential sequence), not a random one.
    let seed = 7;
    const next = (modulo: number): number => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) % modulo;
    await repo.insertMany(Array.from({ length: 300 }, () => ({ workId: 'w', priority: next(7) - 3, scheduledAt: new Date(T0 - next(600) * 1_000) })));
    clock.nowMs = T0 + 1;
    // priority + (now − due) / 30 s, times 30 s: exact, so that exact ties fall to the due time, then createdAt, then id.
    const aged = (task: TaskInfo): number => task.priority * 30_000 - task.scheduledAt.getTime();
    const all = (await repo.list({ limit: 1_000 })).tasks;
    const expected = all
      .sort((a, b) => aged(b) - aged(a) || a.scheduledAt.getTime() - b.scheduledAt.getTime() || a.createdAt.getTime() - b.createdAt.getTime() || (a.id < b.id ? -1 : 1))
      .map((task) => task.id);
    const claimed: string[] = [];
    for (const limit of [1, 10, 50]) claimed.push(...(await repo.claimDue({ owner: 'n', leaseMs: 1_000, limit, agingMs: 30_000 })).map((task) => task.id));
    expect(claimed).toEqual(expected.slice(0, 61));
  });

  it('starts a run claimed ahead on its clock, and reclaims an unstarted claim due at its clock', async () => {
    const { clock, repo } = setup();
    const { task } = await repo.insert({ workId: 'w', scheduledAt: new Date(T0), maxAttempts: 2 });
    const [ahead] = await repo.claimDue({ owner: 'n', leaseMs: 5_000, limit: 1 });
    expect(ahead).toMatchObject({ attempt: 0, claims: 1, lease: { started: false } });
    expect(ahead!.lease!.until.getTime()).toBe(T0 + 5_000);
    clock.nowMs = T0 + 5_000;
    expect(await repo.reclaimExpired()).toMatchObject([{ id: task.id, state: 'Initialized', unstartedClaims: 1, attempt: 0, lastError: null }]);
    expect((await repo.getById(task.id)).scheduledAt.getTime()).toBe(T0 + 5_000);
    const [again] = await repo.claimDue({ owner: 'm', leaseMs: 5_000, limit: 1 });
    clock.nowMs = T0 + 6_000;
    await repo.markAsStarted(task.id, again!.lease!.token);
    expect(await repo.listAttempts(task.id)).toMatchObject([{ run: 1, attempt: 1, node: 'm', startedAt: new Date(T0 + 6_000), outcome: 'running' }]);
  });

  it('getCursor is the exact end of the change log', async () => {
    const { repo } = setup();
    await repo.insert({ workId: 'w', scheduledAt: new Date(T0) });
    const cursor = await repo.getCursor();
    expect(await repo.getUpdatedSince(cursor, 10)).toEqual({ tasks: [], cursor });
    const { task } = await repo.insert({ workId: 'w', scheduledAt: new Date(T0) });
    expect((await repo.getUpdatedSince(cursor, 10)).tasks.map((t) => t.id)).toEqual([task.id]);
  });

  it('refuses a cursor it did not hand out', async () => {
    const { repo } = setup();
    await expect(repo.getUpdatedSince('not-a-cursor', 10)).rejects.toBeInstanceOf(InvalidInputError);
    await expect(repo.list({ after: 'garbage' })).rejects.toBeInstanceOf(InvalidInputError);
    await expect(repo.listDue({ before: new Date(T0), limit: 1, after: 'x:y' })).rejects.toBeInstanceOf(InvalidInputError);
  });

  it('cuts an oversized error to the stored bounds', async () => {
    const { repo } = setup();
    const { task } = await repo.insert({ workId: 'w', scheduledAt: new Date(T0) });
    const failed = await repo.markAsFailed(task.id, { message: 'm'.repeat(10_000), stack: 's'.repeat(50_000) });
    expect(failed.lastError!.message).toHaveLength(2_000);
    expect(failed.lastError!.stack).toHaveLength(8_000);
  });

  it('keeps peers on one store and one clock', async () => {
    const { clock, repo } = setup();
    const peer = repo.openPeer();
    const { task } = await peer.insert({ workId: 'w', scheduledAt: new Date(T0) });
    expect((await repo.getById(task.id)).id).toBe(task.id);
    clock.nowMs = T0 + 1;
    const claimed = await peer.claim(task.id, { owner: 'n', leaseMs: 0 });
    expect(claimed!.lease!.until.getTime()).toBe(T0 + 1);
    expect(await repo.claim(task.id, { owner: 'm', leaseMs: 0 })).toBeNull();
  });
});

describe('MemoryRepository.setUnavailable', () => {
  it('makes every method but close reject with RepositoryError, writing nothing', async () => {
    const { repo } = setup();
    const { task } = await repo.insert({ workId: 'w', scheduledAt: new Date(T0) });
    repo.setUnavailable(true);
    const calls: [string, () => Promise<unknown>][] = [
      ['insert', () => repo.insert({ workId: 'w', scheduledAt: new Date(T0) })],
      ['insertMany', () => repo.insertMany([{ workId: 'w', scheduledAt: new Date(T0) }])],
      ['getById', () => repo.getById(task.id)],
      ['getUpdatedSince', () => repo.getUpdatedSince(null, 10)],
      ['getCursor', () => repo.getCursor()],
      ['listDue', () => repo.listDue({ before: new Date(T0 + 1), limit: 10 })],
      ['claim', () => repo.claim(task.id, { owner: 'n', leaseMs: 1_000 })],
      ['claimDue', () => repo.claimDue({ owner: 'n', leaseMs: 1_000, limit: 10 })],
      ['markAsStarted', () => repo.markAsStarted(task.id, 't')],
      ['renewLease', () => repo.renewLease(task.id, 't', 1_000)],
      ['release', () => repo.release(task.id, 't', { runAt: new Date(T0) })],
      ['markAsDone', () => repo.markAsDone(task.id, 't')],
      ['markAsFailed', () => repo.markAsFailed(task.id, { message: 'x' })],
      ['markAsCancelled', () => repo.markAsCancelled(task.id)],
      ['update', () => repo.update(task.id, { priority: 3 })],
      ['setProgress', () => repo.setProgress(task.id, 't', { completed: 1, total: 1 })],
      ['reclaimExpired', () => repo.reclaimExpired()],
      ['list', () => repo.list()],
      ['countByState', () => repo.countByState()],
      ['deleteTerminalBefore', () => repo.deleteTerminalBefore(new Date(T0 + 1))],
    ];
    for (const [name, call] of calls) {
      const error: unknown = await call().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, name).toBeInstanceOf(RepositoryError);
      expect((error as RepositoryError).code, name).toBe('REPOSITORY_UNAVAILABLE');
    }
    await expect(repo.close()).resolves.toBeUndefined();
    repo.setUnavailable(false);
    expect(await repo.getById(task.id)).toEqual(task);
    expect(await repo.countByState()).toMatchObject({ Initialized: 1 });
  });

  it('fails only the client it is set on: a peer keeps working', async () => {
    const { repo } = setup();
    const peer = repo.openPeer();
    repo.setUnavailable(true);
    const { task } = await peer.insert({ workId: 'w', scheduledAt: new Date(T0) });
    await expect(repo.getById(task.id)).rejects.toBeInstanceOf(RepositoryError);
    repo.setUnavailable(false);
    expect((await repo.getById(task.id)).id).toBe(task.id);
  });

  it('rejects asynchronously: the call itself never throws', () => {
    const { repo } = setup();
    repo.setUnavailable(true);
    const pending = repo.countByState();
    expect(pending).toBeInstanceOf(Promise);
    return expect(pending).rejects.toBeInstanceOf(RepositoryError);
  });
});
