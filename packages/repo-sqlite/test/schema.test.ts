import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidInputError } from '@horae/core';
import { VirtualClock } from '@horae/core/testing';
import { SchemaVersionError } from '@horae/storage';
import { MIGRATIONS, SCHEMA_VERSION, SqliteRepository, migrate, readSchemaVersion, type Migration } from '@horae/repo-sqlite';
import { tempDir, type TempDir } from './temp-database.js';

const sha256 = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

const indexNames = (db: Database.Database): string[] =>
  (db.prepare(`SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'horae_%' ORDER BY name`).all() as { name: string }[]).map((r) => r.name);

let dir: TempDir;
beforeEach(() => {
  dir = tempDir();
});
afterEach(() => dir.remove());

describe('the migration runner', () => {
  const tableMigration: Migration = { version: 1, description: 'a table', up: (db) => db.exec('CREATE TABLE t (a INTEGER)') };
  const columnMigration: Migration = { version: 2, description: 'a column', up: (db) => db.exec('ALTER TABLE t ADD COLUMN b TEXT') };

  it('applies a list in order on a fresh database and records the version', () => {
    const db = new Database(':memory:');
    expect(readSchemaVersion(db)).toBe(0);
    expect(migrate(db, [tableMigration, columnMigration])).toEqual({ from: 0, to: 2 });
    expect(readSchemaVersion(db)).toBe(2);
    db.prepare('INSERT INTO t (a, b) VALUES (1, ?)').run('x');
    db.close();
  });

  it('upgrades an older database by applying only the missing migrations, keeping its rows', () => {
    const db = new Database(':memory:');
    migrate(db, [tableMigration]);
    db.prepare('INSERT INTO t (a) VALUES (7)').run();
    expect(migrate(db, [tableMigration, columnMigration])).toEqual({ from: 1, to: 2 });
    expect(db.prepare('SELECT a, b FROM t').all()).toEqual([{ a: 7, b: null }]);
    db.close();
  });

  it('does not write to a database already up to date', () => {
    const db = new Database(':memory:');
    migrate(db, [tableMigration]);
    const changesBefore = db.prepare('SELECT total_changes() AS n').get();
    expect(migrate(db, [tableMigration])).toEqual({ from: 1, to: 1 });
    expect(db.prepare('SELECT total_changes() AS n').get()).toEqual(changesBefore);
    db.close();
  });

  it('refuses a database newer than the list with SchemaVersionError', () => {
    const db = new Database(':memory:');
    migrate(db, [tableMigration, columnMigration]);
    let caught: unknown;
    try {
      migrate(db, [tableMigration]);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(SchemaVersionError);
    expect(caught).toMatchObject({ code: 'SCHEMA_VERSION', found: 2, supported: 1 });
    expect(readSchemaVersion(db)).toBe(2);
    db.close();
  });

  it('rolls back every migration of a run when one fails', () => {
    const db = new Database(':memory:');
    const failing: Migration = { version: 2, description: 'fails', up: (d) => d.exec('CREATE TABLE t2 (x); SELECT * FROM no_such_table') };
    expect(() => migrate(db, [tableMigration, failing])).toThrow(/no_such_table/);
    expect(readSchemaVersion(db)).toBe(0);
    expect(db.prepare(`SELECT name FROM sqlite_master WHERE name IN ('t', 't2')`).all()).toEqual([]);
    expect(db.inTransaction).toBe(false);
    db.close();
  });

  it('refuses a list whose versions are not 1, 2, 3… in order', () => {
    const db = new Database(':memory:');
    expect(() => migrate(db, [columnMigration])).toThrow(InvalidInputError);
    db.close();
  });
});

describe('upgrading a file of schema version 5 (before claims apart from attempts)', () => {
  const T0 = Date.UTC(2026, 0, 1);

  /** A file as version 5 of the adapter left it: its migrations, and rows written by hand in its columns. */
  function writeVersion5File(path: string): void {
    const old = new Database(path);
    migrate(old, MIGRATIONS.slice(0, 5));
    expect(readSchemaVersion(old)).toBe(5);
    const insert = old.prepare(
      `INSERT INTO horae_tasks (id, work_id, param, scheduled_at, state, priority, attempt, max_attempts, lease_owner, lease_until, lease_token,
         last_error, created_at, updated_at, change_seq, runs)
       VALUES (@id, 'mail', '{}', @at, @state, 0, @attempt, 5, @owner, @until, @token, NULL, 500, 500, @seq, @runs)`,
    );
    insert.run({ id: 'waiting', at: T0 - 1_000, state: 'Initialized', attempt: 2, owner: null, until: null, token: null, seq: 1, runs: 2 });
    insert.run({ id: 'running', at: T0 - 1_000, state: 'Working', attempt: 1, owner: 'old-node', until: T0 + 60_000, token: 'old-token', seq: 2, runs: 1 });
    insert.run({ id: 'finished', at: T0 - 1_000, state: 'Done', attempt: 1, owner: null, until: null, token: null, seq: 3, runs: 1 });
    old.prepare(`INSERT INTO horae_task_attempts (task_id, run, attempt, node, started_at, outcome) VALUES ('running', 1, 1, 'old-node', 400, 'running')`).run();
    old.prepare(`UPDATE horae_meta SET value = 3 WHERE key = 'change_seq'`).run();
    old.close();
  }

  it('counts each earlier run as a claim, and a Working task as started, so that its run ends as before', async () => {
    writeVersion5File(dir.file());
    const repository = new SqliteRepository({ database: dir.file(), clock: new VirtualClock({ now: T0 }) });
    expect(await repository.getById('waiting')).toMatchObject({ attempt: 2, claims: 2, unstartedClaims: 0, lease: null });
    expect(await repository.getById('finished')).toMatchObject({ attempt: 1, claims: 1, unstartedClaims: 0, lease: null });
    const running = await repository.getById('running');
    expect(running).toMatchObject({ attempt: 1, claims: 1, unstartedClaims: 0, lease: { owner: 'old-node', token: 'old-token', started: true } });
    // The upgrade changed no task: a reader of the change log has nothing new to see.
    expect((await repository.getUpdatedSince('3', 10)).tasks).toEqual([]);
    // The run in progress at the upgrade ends without a markAsStarted, and closes its record.
    expect(await repository.markAsDone('running', 'old-token')).toMatchObject({ state: 'Done', claims: 1 });
    expect((await repository.listAttempts('running')).map((a) => a.outcome)).toEqual(['succeeded']);
    // The waiting task's next claim counts on from its earlier runs.
    expect(await repository.claim('waiting', { owner: 'new-node', leaseMs: 60_000 })).toMatchObject({ attempt: 3, claims: 3, lease: { started: true } });
    await repository.close();

    const db = new Database(dir.file());
    expect(readSchemaVersion(db)).toBe(SCHEMA_VERSION);
    expect(SCHEMA_VERSION).toBe(8);
    expect(indexNames(db)).toContain('horae_tasks_aged');
    db.close();
  });

  it('leaves the version 5 file as it was when the upgrade fails', () => {
    writeVersion5File(dir.file());
    const db = new Database(dir.file());
    // A column of that name already there (a hand-made change) makes the migration fail half way.
    db.exec('ALTER TABLE horae_tasks ADD COLUMN lease_started INTEGER');
    db.close();
    expect(() => new SqliteRepository({ database: dir.file() })).toThrow(/lease_started/);
    const after = new Database(dir.file());
    expect(readSchemaVersion(after)).toBe(5);
    const columns = (after.prepare(`SELECT name FROM pragma_table_info('horae_tasks')`).all() as { name: string }[]).map((c) => c.name);
    expect(columns).not.toContain('claims');
    expect(indexNames(after)).not.toContain('horae_tasks_aged');
    after.close();
  });
});

describe('SqliteRepository and the schema version', () => {
  it('creates the current schema in a fresh file', async () => {
    const repository = new SqliteRepository({ database: dir.file() });
    await repository.close();
    const db = new Database(dir.file());
    expect(readSchemaVersion(db)).toBe(SCHEMA_VERSION);
    expect(SCHEMA_VERSION).toBe(MIGRATIONS.length);
    expect(indexNames(db)).toContain('horae_tasks_claim');
    expect(indexNames(db)).toContain('horae_tasks_ended');
    db.close();
  });

  it('opens a file of schema version 1 built by hand and upgrades it, keeping its tasks', async () => {
    // A file as version 1 of the adapter left it: the v1 DDL and a task row written by hand.
    const old = new Database(dir.file());
    old.exec('CREATE TABLE horae_meta (key TEXT NOT NULL PRIMARY KEY, value INTEGER NOT NULL)');
    MIGRATIONS[0]!.up(old);
    old.prepare(`INSERT INTO horae_meta (key, value) VALUES ('schema_version', 1)`).run();
    old
      .prepare(
        `INSERT INTO horae_tasks (id, work_id, param, scheduled_at, state, priority, attempt, max_attempts, created_at, updated_at, change_seq)
         VALUES ('old-task', 'mail', '{"to":"a@b.c"}', 1000, 'Initialized', 0, 0, 3, 500, 500, 1)`,
      )
      .run();
    old.prepare(`UPDATE horae_meta SET value = 1 WHERE key = 'change_seq'`).run();
    expect(indexNames(old)).not.toContain('horae_tasks_ended');
    old.close();

    const repository = new SqliteRepository({ database: dir.file() });
    const task = await repository.getById('old-task');
    expect(task).toMatchObject({ workId: 'mail', param: { to: 'a@b.c' }, maxAttempts: 3, state: 'Initialized' });
    expect(task.scheduledAt.getTime()).toBe(1000);
    // The change counter carried over: the next write gets a later number than the old row.
    const { task: inserted } = await repository.insert({ workId: 'mail', scheduledAt: new Date(2000) });
    const page = await repository.getUpdatedSince('1', 10);
    expect(page.tasks.map((t) => t.id)).toEqual([inserted.id]);
    await repository.close();

    const db = new Database(dir.file());
    expect(readSchemaVersion(db)).toBe(SCHEMA_VERSION);
    expect(indexNames(db)).toContain('horae_tasks_ended');
    expect(indexNames(db)).toContain('horae_schedules_due');
    db.close();
  });

  it('refuses a file from a newer version with SchemaVersionError and leaves it byte for byte untouched', () => {
    const future = new Database(dir.file());
    future.exec(`CREATE TABLE horae_meta (key TEXT NOT NULL PRIMARY KEY, value INTEGER NOT NULL);
      INSERT INTO horae_meta (key, value) VALUES ('schema_version', ${SCHEMA_VERSION + 1});
      CREATE TABLE horae_tasks (id TEXT PRIMARY KEY, something_new TEXT);`);
    future.close();
    const before = sha256(dir.file());

    expect(() => new SqliteRepository({ database: dir.file() })).toThrow(SchemaVersionError);

    expect(sha256(dir.file())).toBe(before);
    const db = new Database(dir.file());
    expect(db.pragma('journal_mode', { simple: true })).toBe('delete');
    expect(readSchemaVersion(db)).toBe(SCHEMA_VERSION + 1);
    db.close();
  });

  it('refuses a newer schema in a Database handed in by the caller, and leaves that Database open', () => {
    const db = new Database(':memory:');
    migrate(db, [...MIGRATIONS, { version: SCHEMA_VERSION + 1, description: 'from the future', up: (d) => d.exec('CREATE TABLE later (x)') }]);
    expect(() => new SqliteRepository({ database: db })).toThrow(SchemaVersionError);
    expect(db.open).toBe(true);
    db.close();
  });
});
