import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidInputError } from '@horae/core';
import { VirtualClock } from '@horae/core/testing';
import { RepositoryError, TaskNotDueError } from '@horae/storage';
import { SqliteRepository } from '@horae/repo-sqlite';
import { tempDir, type TempDir } from './temp-database.js';

const T0 = Date.UTC(2026, 0, 1);

describe('times come from the clock option', () => {
  let clock: VirtualClock;
  let repository: SqliteRepository;
  beforeEach(() => {
    clock = new VirtualClock({ now: T0 });
    repository = new SqliteRepository({ database: ':memory:', clock });
  });
  afterEach(() => repository.close());

  it('stamps createdAt, updatedAt, lease.until and progress.at with clock.now()', async () => {
    const { task } = await repository.insert({ workId: 'w', scheduledAt: new Date(T0) });
    expect(task.createdAt.getTime()).toBe(T0);
    expect(task.updatedAt.getTime()).toBe(T0);
    clock.jump(1_000);
    const claimed = await repository.claim(task.id, { owner: 'n', leaseMs: 30_000 });
    expect(claimed!.updatedAt.getTime()).toBe(T0 + 1_000);
    expect(claimed!.lease!.until.getTime()).toBe(T0 + 31_000);
    clock.jump(500);
    await repository.setProgress(task.id, claimed!.lease!.token, { completed: 1, total: 4, message: 'a quarter' });
    const read = await repository.getById(task.id);
    expect(read.progress).toEqual({ completed: 1, total: 4, message: 'a quarter', at: new Date(T0 + 1_500) });
    expect(read.createdAt.getTime()).toBe(T0);
  });

  it('claimDue takes only tasks due by clock.now(), inclusive', async () => {
    const { task: now } = await repository.insert({ workId: 'w', scheduledAt: new Date(T0) });
    const { task: later } = await repository.insert({ workId: 'w', scheduledAt: new Date(T0 + 1) });
    expect((await repository.claimDue({ owner: 'n', leaseMs: 1000, limit: 10 })).map((t) => t.id)).toEqual([now.id]);
    clock.jump(1);
    expect((await repository.claimDue({ owner: 'n', leaseMs: 1000, limit: 10 })).map((t) => t.id)).toEqual([later.id]);
  });

  it('claim by id judges "due" by clock.now(): 1 ms early is TaskNotDueError, writing nothing; at the due time it claims', async () => {
    const { task } = await repository.insert({ workId: 'w', scheduledAt: new Date(T0 + 1_000) });
    clock.jump(999);
    const cursor = await repository.getCursor();
    const early = await repository.claim(task.id, { owner: 'n', leaseMs: 1_000 }).catch((error: unknown) => error);
    expect(early).toBeInstanceOf(TaskNotDueError);
    expect(early).toMatchObject({ taskId: task.id, dueInMs: 1 });
    await expect(repository.claimWithinLimit(task.id, { owner: 'n', leaseMs: 1_000, maxWorking: 1 })).rejects.toMatchObject({ dueInMs: 1 });
    expect(await repository.getCursor()).toBe(cursor);
    expect(await repository.getById(task.id)).toEqual(task);
    clock.jump(1);
    expect(await repository.claim(task.id, { owner: 'n', leaseMs: 1_000 })).toMatchObject({ state: 'Working', attempt: 1, claims: 1 });
  });

  it('claimDue ages priorities by clock.now(): a task waiting long enough passes a higher priority', async () => {
    // At the default aging (a point per 10 s), 3 points are worth 30 s of waiting: priority 3 due 20 s after a priority 0
    // stays ahead of it, whatever the time; a priority 0 due 40 s before that one has waited 4 points' worth, and passes.
    const waited = (await repository.insert({ workId: 'w', priority: 0, scheduledAt: new Date(T0 - 40_000) })).task.id;
    const recent = (await repository.insert({ workId: 'w', priority: 0, scheduledAt: new Date(T0) })).task.id;
    const high = (await repository.insert({ workId: 'w', priority: 3, scheduledAt: new Date(T0 + 20_000) })).task.id;
    clock.jump(20_000);
    const order: string[] = [];
    for (let i = 0; i < 3; i++) order.push(...(await repository.claimDue({ owner: 'n', leaseMs: 1000, limit: 1 })).map((t) => t.id));
    expect(order).toEqual([waited, high, recent]);
  });

  it('reclaimExpired takes a lease back once lease.until <= clock.now(), not before', async () => {
    const { task } = await repository.insert({ workId: 'w', scheduledAt: new Date(T0), maxAttempts: 2 });
    await repository.claim(task.id, { owner: 'n', leaseMs: 1_000 });
    clock.jump(999);
    expect(await repository.reclaimExpired()).toEqual([]);
    clock.jump(1);
    const [reclaimed] = await repository.reclaimExpired();
    expect(reclaimed).toMatchObject({ id: task.id, state: 'Initialized', lease: null, attempt: 1, lastError: { message: 'lease expired', code: 'LEASE_EXPIRED' } });
    expect(reclaimed!.scheduledAt.getTime()).toBe(T0 + 1_000);
  });

  it('claimDue with agingMs Infinity orders by priority, then due time, then age, across priority levels with future tasks in between', async () => {
    const insert = async (priority: number, at: number): Promise<string> => (await repository.insert({ workId: 'w', priority, scheduledAt: new Date(T0 + at) })).task.id;
    const lowOld = await insert(0, -50);
    const futureHigh = await insert(9, 60_000);
    const highLate = await insert(5, -10);
    const highEarly = await insert(5, -20);
    const mid = await insert(2.5, 0);
    clock.jump(1);
    const sameDueYounger = await insert(0, -50);
    const claimed = await repository.claimDue({ owner: 'n', leaseMs: 1000, limit: 10, agingMs: Number.POSITIVE_INFINITY });
    expect(claimed.map((t) => t.id)).toEqual([highEarly, highLate, mid, lowOld, sameDueYounger]);
    expect(claimed.map((t) => t.id)).not.toContain(futureHigh);
    const limited = await repository.insertMany([{ workId: 'x', scheduledAt: new Date(T0) }, { workId: 'y', scheduledAt: new Date(T0) }]);
    const ofWork = await repository.claimDue({ owner: 'n', leaseMs: 1000, limit: 10, workIds: ['y'] });
    expect(ofWork.map((t) => t.id)).toEqual([limited[1]!.task.id]);
  });
});

describe('connection options', () => {
  let dir: TempDir;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => dir.remove());

  it('sets WAL, the busy timeout and the chosen synchronous level', async () => {
    const levels = { OFF: 0, NORMAL: 1, FULL: 2, EXTRA: 3 } as const;
    for (const [level, value] of Object.entries(levels)) {
      const db = new Database(dir.file(`${level}.db`));
      const repository = new SqliteRepository({ database: db, synchronous: level as keyof typeof levels, busyTimeoutMs: 1234 });
      expect(db.pragma('synchronous', { simple: true })).toBe(value);
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.pragma('busy_timeout', { simple: true })).toBe(1234);
      await repository.close();
      db.close();
    }
  });

  it('defaults to synchronous NORMAL and a 5000 ms busy timeout', async () => {
    const db = new Database(dir.file());
    const repository = new SqliteRepository({ database: db });
    expect(db.pragma('synchronous', { simple: true })).toBe(1);
    expect(db.pragma('busy_timeout', { simple: true })).toBe(5000);
    await repository.close();
    db.close();
  });

  it('refuses bad options with InvalidInputError', () => {
    expect(() => new SqliteRepository({ database: ':memory:', synchronous: 'SOMETIMES' as never })).toThrow(InvalidInputError);
    expect(() => new SqliteRepository({ database: ':memory:', busyTimeoutMs: -1 })).toThrow(InvalidInputError);
    expect(() => new SqliteRepository({ database: ':memory:', maxBatchSize: 0 })).toThrow(InvalidInputError);
    expect(() => new SqliteRepository({ database: 42 as never })).toThrow(InvalidInputError);
  });

  it('reports a file it cannot open as RepositoryError with the driver error as cause', () => {
    let caught: unknown;
    try {
      new SqliteRepository({ database: dir.file('no-such-dir/horae.db') });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(RepositoryError);
    // better-sqlite3 checks the directory itself and throws a TypeError saying so.
    expect((caught as RepositoryError).cause).toBeInstanceOf(Error);
    expect((caught as RepositoryError).message).toMatch(/directory does not exist/);
  });

  it('accepts a bare path, and closes only the database it opened', async () => {
    const owned = new SqliteRepository(dir.file('owned.db'));
    await owned.insert({ workId: 'w', scheduledAt: new Date() });
    await owned.close();
    await expect(owned.countByState()).rejects.toBeInstanceOf(RepositoryError);
    await expect(owned.insert({ workId: 'w', scheduledAt: new Date() })).rejects.toBeInstanceOf(RepositoryError);
    await owned.close(); // twice does nothing

    const db = new Database(dir.file('given.db'));
    const given = new SqliteRepository({ database: db });
    await given.close();
    expect(db.open).toBe(true);
    expect(db.prepare('SELECT count(*) AS n FROM horae_tasks').get()).toEqual({ n: 0 });
    db.close();
  });

  it('translates a closed connection into RepositoryError', async () => {
    const db = new Database(':memory:');
    const repository = new SqliteRepository({ database: db });
    db.close();
    await expect(repository.countByState()).rejects.toBeInstanceOf(RepositoryError);
    await expect(repository.insert({ workId: 'w', scheduledAt: new Date() })).rejects.toBeInstanceOf(RepositoryError);
    await repository.close();
  });
});
