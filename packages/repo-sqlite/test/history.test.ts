import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VirtualClock } from '@horae/core/testing';
import { MAX_CHECK_INS_PER_ATTEMPT, RepositoryError, type TaskInfo } from '@horae/storage';
import { MIGRATIONS, SCHEMA_VERSION, SqliteRepository, migrate, readSchemaVersion } from '@horae/repo-sqlite';
import { tempDir, type TempDir } from './temp-database.js';

const T0 = Date.UTC(2026, 0, 1);
const DUE = new Date(T0 - 1_000);

let dir: TempDir;
beforeEach(() => {
  dir = tempDir();
});
afterEach(() => dir.remove());

const attemptRows = (db: Database.Database): unknown[] => db.prepare('SELECT * FROM horae_task_attempts ORDER BY task_id, run').all();

describe('upgrading a file of schema version 3 (before execution history)', () => {
  /** A file as version 3 of the adapter left it: its migrations, and rows written by hand in its columns. */
  function writeVersion3File(path: string): void {
    const old = new Database(path);
    migrate(old, MIGRATIONS.slice(0, 3));
    expect(readSchemaVersion(old)).toBe(3);
    const insert = old.prepare(
      `INSERT INTO horae_tasks (id, work_id, param, scheduled_at, state, priority, attempt, max_attempts, lease_owner, lease_until, lease_token,
         unique_key, created_at, updated_at, change_seq)
       VALUES (@id, 'mail', '{"n":1}', 1000, @state, 0, @attempt, 3, @owner, @until, @token, NULL, 500, 500, @seq)`,
    );
    insert.run({ id: 'waiting', state: 'Initialized', attempt: 1, owner: null, until: null, token: null, seq: 1 });
    insert.run({ id: 'running', state: 'Working', attempt: 2, owner: 'old-node', until: T0 + 60_000, token: 'old-token', seq: 2 });
    insert.run({ id: 'finished', state: 'Done', attempt: 1, owner: null, until: null, token: null, seq: 3 });
    old.prepare(`UPDATE horae_meta SET value = 3 WHERE key = 'change_seq'`).run();
    old.close();
  }

  it('adds kind scheduled, scheduleName null and an empty history to every existing task', async () => {
    writeVersion3File(dir.file());
    const repository = new SqliteRepository({ database: dir.file(), clock: new VirtualClock({ now: T0 }) });
    for (const id of ['waiting', 'running', 'finished']) {
      expect(await repository.getById(id)).toMatchObject({ id, kind: 'scheduled', scheduleName: null });
      expect(await repository.listAttempts(id)).toEqual([]);
    }
    // list() reads the new columns too (ordered by createdAt, then id: the three share one createdAt).
    expect((await repository.list()).tasks.map((t) => [t.id, t.kind, t.scheduleName])).toEqual([
      ['finished', 'scheduled', null],
      ['running', 'scheduled', null],
      ['waiting', 'scheduled', null],
    ]);
    await repository.close();

    const db = new Database(dir.file());
    expect(readSchemaVersion(db)).toBe(SCHEMA_VERSION);
    expect(SCHEMA_VERSION).toBe(MIGRATIONS.length);
    db.close();
  });

  it('keeps the upgraded tasks working: a run in progress ends without a record, the next claim opens run 1', async () => {
    writeVersion3File(dir.file());
    const repository = new SqliteRepository({ database: dir.file(), clock: new VirtualClock({ now: T0 }) });
    // The run that was in progress at the upgrade has no record: ending it writes none, and nothing fails.
    expect((await repository.markAsDone('running', 'old-token')).state).toBe('Done');
    expect(await repository.listAttempts('running')).toEqual([]);
    // The waiting task (attempt 1 before the upgrade) runs again: its first recorded run.
    const claimed = await repository.claim('waiting', { owner: 'new-node', leaseMs: 60_000 });
    expect(claimed).toMatchObject({ attempt: 2, kind: 'scheduled' });
    expect(await repository.listAttempts('waiting')).toEqual([
      { taskId: 'waiting', run: 1, attempt: 2, node: 'new-node', startedAt: new Date(T0), endedAt: null, outcome: 'running', error: null, checkIns: [] },
    ]);
    // New tasks store their kind beside the old ones.
    const { task } = await repository.insert({ workId: 'mail', scheduledAt: DUE, scheduleName: 'hourly' });
    expect(await repository.getById(task.id)).toMatchObject({ kind: 'periodic', scheduleName: 'hourly' });
    await repository.close();
  });

  it('refuses a kind outside the three in the column itself', () => {
    const db = new Database(':memory:');
    migrate(db);
    expect(() =>
      db
        .prepare(
          `INSERT INTO horae_tasks (id, work_id, param, scheduled_at, state, priority, attempt, max_attempts, created_at, updated_at, change_seq, kind)
           VALUES ('x', 'w', 'null', 0, 'Initialized', 0, 0, 1, 0, 0, 1, 'weekly')`,
        )
        .run(),
    ).toThrow(/CHECK constraint/);
    db.close();
  });
});

describe('attempt records on the clock of the repository', () => {
  let clock: VirtualClock;
  let repository: SqliteRepository;
  beforeEach(() => {
    clock = new VirtualClock({ now: T0 });
    repository = new SqliteRepository({ database: ':memory:', clock });
  });
  afterEach(() => repository.close());

  it('stamps startedAt, endedAt and check-ins with clock.now()', async () => {
    const { task } = await repository.insert({ workId: 'w', scheduledAt: DUE, maxAttempts: 2 });
    clock.jump(1_000);
    const claimed = await repository.claim(task.id, { owner: 'n', leaseMs: 60_000 });
    clock.jump(250);
    await repository.setProgress(task.id, claimed!.lease!.token, { completed: 1, total: 2, message: 'halfway' });
    clock.jump(250);
    await repository.markAsDone(task.id, claimed!.lease!.token);
    expect(await repository.listAttempts(task.id)).toEqual([
      {
        taskId: task.id,
        run: 1,
        attempt: 1,
        node: 'n',
        startedAt: new Date(T0 + 1_000),
        endedAt: new Date(T0 + 1_500),
        outcome: 'succeeded',
        error: null,
        checkIns: [{ at: new Date(T0 + 1_250), message: 'halfway' }],
      },
    ]);
  });

  it('never records an end before the start, when the clock steps back during a run', async () => {
    const { task } = await repository.insert({ workId: 'w', scheduledAt: DUE });
    const claimed = await repository.claim(task.id, { owner: 'n', leaseMs: 60_000 });
    clock.jump(-5_000);
    await repository.markAsDone(task.id, claimed!.lease!.token);
    const [attempt] = await repository.listAttempts(task.id);
    expect(attempt!.startedAt.getTime()).toBe(T0);
    expect(attempt!.endedAt!.getTime()).toBe(T0);
  });

  it('keeps the latest check-ins of a long run, and a message with quotes and unicode as given', async () => {
    const { task } = await repository.insert({ workId: 'w', scheduledAt: DUE });
    const claimed = await repository.claim(task.id, { owner: 'n', leaseMs: 60_000 });
    const count = MAX_CHECK_INS_PER_ATTEMPT * 2 + 3;
    for (let i = 1; i <= count; i++) {
      clock.jump(1);
      await repository.setProgress(task.id, claimed!.lease!.token, { completed: i, total: count, message: `step "${i}" ✓ $[0]` });
    }
    const [attempt] = await repository.listAttempts(task.id);
    expect(attempt!.checkIns).toHaveLength(MAX_CHECK_INS_PER_ATTEMPT);
    expect(attempt!.checkIns[0]).toEqual({ at: new Date(T0 + count - MAX_CHECK_INS_PER_ATTEMPT + 1), message: `step "${count - MAX_CHECK_INS_PER_ATTEMPT + 1}" ✓ $[0]` });
    expect(attempt!.checkIns.at(-1)).toEqual({ at: new Date(T0 + count), message: `step "${count}" ✓ $[0]` });
  });
});

describe('attempt records share the transaction of their transition', () => {
  it('records 100 claims and 100 completions in one transaction each, under group commit', async () => {
    const db = new Database(dir.file());
    let transactions = 0;
    const repository = new SqliteRepository({ database: db });
    // The change counter row is written once per write transaction: a temporary trigger counts those writes.
    db.function('count_tx', () => ++transactions);
    db.exec(`CREATE TEMP TRIGGER count_commits AFTER UPDATE ON horae_meta BEGIN SELECT count_tx(); END`);
    const inserted = await repository.insertMany(Array.from({ length: 100 }, () => ({ workId: 'w', scheduledAt: DUE })));
    transactions = 0;
    const claimed = await Promise.all(inserted.map((r) => repository.claim(r.task.id, { owner: 'n', leaseMs: 60_000 })));
    expect(transactions).toBe(1);
    await Promise.all(claimed.map((t) => repository.markAsDone(t!.id, t!.lease!.token)));
    expect(transactions).toBe(2);
    const outcomes = db.prepare('SELECT outcome, count(*) AS n FROM horae_task_attempts GROUP BY outcome').all();
    expect(outcomes).toEqual([{ outcome: 'succeeded', n: 100 }]);
    await repository.close();
    db.close();
  });

  it('when the attempt record cannot be written, the transition does not land either (nor the rest of its batch)', async () => {
    const db = new Database(dir.file());
    const repository = new SqliteRepository({ database: db });
    const { task } = await repository.insert({ id: 'refused', workId: 'w', scheduledAt: DUE });
    // A trigger of the caller's own refuses the attempt row of one node: the claim must not land without it.
    db.exec(`CREATE TRIGGER refuse_node BEFORE INSERT ON horae_task_attempts WHEN NEW.node = 'refused-node'
      BEGIN SELECT RAISE(ABORT, 'no history for this node'); END`);
    const results = await Promise.allSettled([
      repository.claim(task.id, { owner: 'refused-node', leaseMs: 60_000 }),
      repository.insert({ id: 'beside', workId: 'w', scheduledAt: DUE }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    for (const r of results) expect((r as PromiseRejectedResult).reason).toBeInstanceOf(RepositoryError);
    expect(await repository.getById(task.id)).toMatchObject({ state: 'Initialized', attempt: 0, lease: null });
    expect((await repository.list()).tasks.map((t: TaskInfo) => t.id)).toEqual(['refused']);
    expect(attemptRows(db)).toEqual([]);
    // Another node claims it, with its record, in the next transaction.
    const claimed = await repository.claim(task.id, { owner: 'other-node', leaseMs: 60_000 });
    expect(claimed?.attempt).toBe(1);
    expect(await repository.listAttempts(task.id)).toMatchObject([{ run: 1, node: 'other-node', outcome: 'running' }]);
    await repository.close();
    db.close();
  });

  // better-sqlite3 turns foreign keys on (the ON DELETE CASCADE applies); a caller's connection may turn them off.
  it.each([1, 0])('deleteTerminalBefore deletes the attempts of the deleted tasks only (foreign_keys = %i)', async (foreignKeys) => {
    const db = new Database(dir.file());
    db.pragma(`foreign_keys = ${foreignKeys}`);
    expect(db.pragma('foreign_keys', { simple: true })).toBe(foreignKeys);
    const clock = new VirtualClock({ now: T0 });
    const repository = new SqliteRepository({ database: db, clock });
    const [old, kept, live] = await repository.insertMany(Array.from({ length: 3 }, () => ({ workId: 'w', scheduledAt: DUE })));
    for (const { task } of [old!, kept!]) {
      const claimed = await repository.claim(task.id, { owner: 'n', leaseMs: 60_000 });
      await repository.markAsDone(task.id, claimed!.lease!.token);
      clock.jump(10_000);
    }
    await repository.claim(live!.task.id, { owner: 'n', leaseMs: 60_000 });
    expect(await repository.deleteTerminalBefore(new Date(T0 + 5_000))).toBe(1);
    expect((attemptRows(db) as { task_id: string }[]).map((r) => r.task_id).sort()).toEqual([kept!.task.id, live!.task.id].sort());
    await repository.close();
    db.close();
  });
});
