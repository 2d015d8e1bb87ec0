import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidInputError } from '@horae/core';
import { LeaseLostError, RepositoryError, TaskNotFoundError, type TaskInfo } from '@horae/storage';
import { SqliteRepository, type SqliteDatabase, type SqliteRepositoryOptions, type SqliteStatement } from '@horae/repo-sqlite';
import { driverSlice } from './driver-slice.js';
import { tempDir, type TempDir } from './temp-database.js';

/**
 * A real better-sqlite3 connection seen through the adapter's driver slice, counting the write
 * transactions the adapter opens (instrumentation, not a mock: every statement runs on the database).
 */
function countingConnection(db: Database.Database): { connection: SqliteDatabase; transactions: () => number } {
  let transactions = 0;
  const connection = driverSlice(db, (source, statement): SqliteStatement => {
    if (source !== 'BEGIN IMMEDIATE') return statement;
    return {
      run: (...params: unknown[]) => {
        transactions++;
        return statement.run(...params);
      },
      get: (...params: unknown[]) => statement.get(...params),
      all: (...params: unknown[]) => statement.all(...params),
    };
  });
  return { connection, transactions: () => transactions };
}

const DUE = new Date(Date.UTC(2020, 0, 1));

let dir: TempDir;
let db: Database.Database;
let counter: ReturnType<typeof countingConnection>;
const open = (options: Omit<SqliteRepositoryOptions, 'database'> = {}): SqliteRepository => new SqliteRepository({ ...options, database: counter.connection });

beforeEach(() => {
  dir = tempDir();
  db = new Database(dir.file());
  counter = countingConnection(db);
});
afterEach(() => {
  db.close();
  dir.remove();
});

async function transactionsOf<T>(work: () => Promise<T>): Promise<{ result: T; transactions: number }> {
  const before = counter.transactions();
  const result = await work();
  return { result, transactions: counter.transactions() - before };
}

describe('group commit', () => {
  it('runs the writes issued in one tick in one transaction, each caller getting its own result', async () => {
    const repository = open();
    const inserted = await transactionsOf(() => Promise.all(Array.from({ length: 100 }, (_, i) => repository.insert({ workId: 'w', scheduledAt: DUE, param: i }))));
    expect(inserted.transactions).toBe(1);
    expect(inserted.result.map((r) => r.task.param)).toEqual(Array.from({ length: 100 }, (_, i) => i));

    const claimed = await transactionsOf(() => Promise.all(inserted.result.map((r) => repository.claim(r.task.id, { owner: 'n', leaseMs: 60_000 }))));
    expect(claimed.transactions).toBe(1);
    const done = await transactionsOf(() => Promise.all(claimed.result.map((t) => repository.markAsDone(t!.id, t!.lease!.token))));
    expect(done.transactions).toBe(1);
    expect(done.result.every((t) => t.state === 'Done')).toBe(true);
    expect((await repository.countByState()).Done).toBe(100);
    await repository.close();
  });

  it('runs the markAsStarted calls of one tick in one transaction, each fenced on its own', async () => {
    const repository = open();
    await repository.insertMany(Array.from({ length: 50 }, (_, i) => ({ workId: 'w', scheduledAt: DUE, param: i })));
    const claimed = await repository.claimDue({ owner: 'n', leaseMs: 60_000, limit: 50 });
    expect(claimed).toHaveLength(50);
    // Every tenth call carries a token that holds nothing: refused on its own, inside the same transaction.
    const started = await transactionsOf(() =>
      Promise.all(claimed.map((task, i) => repository.markAsStarted(task.id, i % 10 === 0 ? 'not-the-token' : task.lease!.token).then(
        (value) => ({ ok: true as const, value }),
        (error: unknown) => ({ ok: false as const, error }),
      ))),
    );
    expect(started.transactions).toBe(1);
    for (const [i, outcome] of started.result.entries()) {
      if (i % 10 === 0) expect(outcome.ok === false && outcome.error instanceof LeaseLostError, `call ${i}`).toBe(true);
      else expect(outcome.ok && outcome.value.lease?.started, `call ${i}`).toBe(true);
    }
    const ended = claimed.filter((_, i) => i % 10 !== 0);
    const done = await transactionsOf(() => Promise.all(ended.map((task) => repository.markAsDone(task.id, task.lease!.token))));
    expect(done.transactions).toBe(1);
    expect(await repository.countByState()).toMatchObject({ Done: 45, Working: 5 });
    await repository.close();
  });

  it('with groupCommit: false, runs each write in its own transaction', async () => {
    const repository = open({ groupCommit: false });
    const { transactions } = await transactionsOf(() => Promise.all(Array.from({ length: 20 }, () => repository.insert({ workId: 'w', scheduledAt: DUE }))));
    expect(transactions).toBe(20);
    await repository.close();
  });

  it('flushes early when maxBatchSize writes are queued', async () => {
    const repository = open({ maxBatchSize: 4 });
    const { transactions } = await transactionsOf(() => Promise.all(Array.from({ length: 10 }, () => repository.insert({ workId: 'w', scheduledAt: DUE }))));
    expect(transactions).toBe(3);
    await repository.close();
  });

  it("keeps one write's refusal from failing the others of its transaction", async () => {
    const repository = open();
    const [a, b] = await Promise.all([repository.insert({ workId: 'w', scheduledAt: DUE }), repository.insert({ workId: 'w', scheduledAt: DUE })]);
    const [ca, cb] = await Promise.all([a.task, b.task].map((t) => repository.claim(t.id, { owner: 'n', leaseMs: 60_000 })));
    const { result, transactions } = await transactionsOf(() =>
      Promise.allSettled([
        repository.markAsDone(ca!.id, ca!.lease!.token),
        repository.markAsDone(cb!.id, 'not-the-token'),
        repository.insert({ id: a.task.id, workId: 'w', scheduledAt: DUE }),
        repository.claim('no-such-task', { owner: 'n', leaseMs: 1000 }),
        repository.insertMany([
          { id: 'fresh-1', workId: 'w', scheduledAt: DUE },
          { id: 'fresh-1', workId: 'w', scheduledAt: DUE },
        ]),
        repository.insert({ id: 'fresh-2', workId: 'w', scheduledAt: DUE }),
        repository.renewLease(cb!.id, cb!.lease!.token, 5_000),
      ]),
    );
    expect(transactions).toBe(1);
    expect(result.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'rejected', 'rejected', 'fulfilled', 'fulfilled']);
    const reasons = result.map((r) => (r.status === 'rejected' ? (r.reason as unknown) : undefined));
    expect(reasons[1]).toBeInstanceOf(LeaseLostError);
    expect(reasons[2]).toBeInstanceOf(InvalidInputError);
    expect(reasons[3]).toBeInstanceOf(TaskNotFoundError);
    expect(reasons[4]).toBeInstanceOf(InvalidInputError);
    expect((result[0] as PromiseFulfilledResult<TaskInfo>).value.state).toBe('Done');
    // The refused insertMany wrote nothing (its savepoint rolled back), the insert beside it landed.
    await expect(repository.getById('fresh-1')).rejects.toBeInstanceOf(TaskNotFoundError);
    expect((await repository.getById('fresh-2')).state).toBe('Initialized');
    expect((await repository.getById(cb!.id)).state).toBe('Working');
    await repository.close();
  });

  it('fails only the write whose statement SQLite refused (a constraint), and commits the others of its batch', async () => {
    const repository = open();
    // A trigger of the caller's own: the driver's refusal of one statement, not a rule of the adapter.
    db.exec(`CREATE TRIGGER refuse_work BEFORE INSERT ON horae_tasks WHEN NEW.work_id = 'refused' BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END`);
    const results = await Promise.allSettled([
      repository.insert({ id: 'kept-1', workId: 'w', scheduledAt: DUE }),
      repository.insert({ id: 'refused-1', workId: 'refused', scheduledAt: DUE }),
      repository.insert({ id: 'kept-2', workId: 'w', scheduledAt: DUE }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const reason = (results[1] as PromiseRejectedResult).reason as InvalidInputError;
    expect(reason).toBeInstanceOf(InvalidInputError);
    expect(reason.cause).toMatchObject({ code: 'SQLITE_CONSTRAINT_TRIGGER' });
    expect((await repository.list()).tasks.map((t) => t.id).sort()).toEqual(['kept-1', 'kept-2']);
    await repository.close();
  });

  it('rejects every write of a transaction that cannot get the lock within the busy timeout, and applies none', async () => {
    const repository = open({ busyTimeoutMs: 50 });
    const other = new Database(dir.file());
    other.prepare('BEGIN IMMEDIATE').run();
    const results = await Promise.allSettled([repository.insert({ workId: 'w', scheduledAt: DUE }), repository.insert({ workId: 'w', scheduledAt: DUE })]);
    for (const r of results) {
      expect(r.status).toBe('rejected');
      const reason = (r as PromiseRejectedResult).reason as RepositoryError;
      expect(reason).toBeInstanceOf(RepositoryError);
      expect(reason.cause).toMatchObject({ code: 'SQLITE_BUSY' });
    }
    other.prepare('ROLLBACK').run();
    other.close();
    expect((await repository.countByState()).Initialized).toBe(0);
    await repository.insert({ workId: 'w', scheduledAt: DUE });
    expect((await repository.countByState()).Initialized).toBe(1);
    await repository.close();
  });

  it('commits the writes still queued when closing', async () => {
    const repository = new SqliteRepository({ database: dir.file('queued.db') });
    const pending = repository.insert({ id: 'queued', workId: 'w', scheduledAt: DUE });
    await repository.close();
    expect((await pending).created).toBe(true);
    const reopened = new SqliteRepository({ database: dir.file('queued.db') });
    expect((await reopened.getById('queued')).state).toBe('Initialized');
    await reopened.close();
  });
});
