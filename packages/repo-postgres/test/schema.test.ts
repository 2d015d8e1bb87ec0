import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidInputError } from '@horae/core';
import { RepositoryError, SchemaVersionError } from '@horae/storage';
import { MIGRATIONS, PostgresRepository, SCHEMA_VERSION, migrate, type PgPool } from '@horae/repo-postgres';
import { PG_URL, dropSchema, rawClient, testSchema } from './pg-fixture.js';

const opened: PostgresRepository[] = [];
const schemas: string[] = [];

function open(schema: string, extra: Partial<{ poolSize: number }> = {}): PostgresRepository {
  const repo = new PostgresRepository({ connectionString: PG_URL, schema, poolSize: 2, ...extra });
  opened.push(repo);
  return repo;
}

function newSchema(): string {
  const schema = testSchema();
  schemas.push(schema);
  return schema;
}

afterEach(async () => {
  await Promise.allSettled(opened.splice(0).map((repo) => repo.close()));
  for (const schema of schemas.splice(0)) await dropSchema(schema);
});

describe('PostgresRepository schema and migrations', () => {
  it('creates its schema lazily on first use', async () => {
    const schema = newSchema();
    const repo = open(schema);
    const client = await rawClient();
    try {
      const before = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
      expect(before.rowCount).toBe(0);
      expect(await repo.countByState()).toMatchObject({ Initialized: 0 });
      const versions = await client.query(`SELECT version FROM "${schema}".horae_migrations ORDER BY version`);
      expect(versions.rows.map((r: { version: number }) => r.version)).toEqual(Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1));
    } finally {
      await client.end();
    }
  });

  it('several nodes migrating one new schema at once apply each migration once', async () => {
    const schema = newSchema();
    const repos = Array.from({ length: 6 }, () => open(schema));
    await Promise.all(repos.map((repo) => repo.init()));
    const client = await rawClient();
    try {
      const versions = await client.query(`SELECT count(*)::int AS n FROM "${schema}".horae_migrations`);
      expect(versions.rows[0]).toEqual({ n: SCHEMA_VERSION });
    } finally {
      await client.end();
    }
    const { task } = await repos[0]!.insert({ workId: 'w', scheduledAt: new Date() });
    expect((await repos[5]!.getById(task.id)).id).toBe(task.id);
  });

  it('a schema newer than the adapter knows throws SchemaVersionError and changes nothing', async () => {
    const schema = newSchema();
    await open(schema).init();
    const client = await rawClient();
    try {
      await client.query(`INSERT INTO "${schema}".horae_migrations (version, name) VALUES ($1, 'from the future')`, [SCHEMA_VERSION + 1]);
      const repo = open(schema);
      const error = await repo.countByState().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(SchemaVersionError);
      expect(error).toMatchObject({ found: SCHEMA_VERSION + 1, supported: SCHEMA_VERSION });
      const versions = await client.query(`SELECT count(*)::int AS n FROM "${schema}".horae_migrations`);
      expect(versions.rows[0]).toEqual({ n: SCHEMA_VERSION + 1 });
    } finally {
      await client.end();
    }
  });

  it('a schema at version 2 upgrades: existing tasks read as scheduled, with no scheduleName and an empty history', async () => {
    const schema = newSchema();
    const pool = new pg.Pool({ connectionString: PG_URL, max: 2 });
    try {
      expect(await migrate(pool as unknown as PgPool, schema, MIGRATIONS.slice(0, 2))).toBe(0);
      // Rows as version 2 of the adapter wrote them: one waiting, one running (its run started before the upgrade), one done.
      await pool.query(
        `INSERT INTO "${schema}".tasks (id, work_id, param, scheduled_at, state, attempt, max_attempts, lease_owner, lease_until, lease_token, created_at, updated_at)
         VALUES ('waiting', 'w', '{"a":1}', now() - interval '1 minute', 'Initialized', 0, 3, NULL, NULL, NULL, now(), now()),
                ('running', 'w', 'null', now() - interval '1 minute', 'Working', 1, 3, 'node-old', now() + interval '1 hour', 'old-token', now(), now()),
                ('done', 'w', 'null', now() - interval '1 minute', 'Done', 1, 3, NULL, NULL, NULL, now(), now() - interval '1 hour')`,
      );
    } finally {
      await pool.end();
    }

    const repo = open(schema);
    await repo.init();
    const client = await rawClient();
    try {
      const versions = await client.query(`SELECT version FROM "${schema}".horae_migrations ORDER BY version`);
      expect(versions.rows.map((r: { version: number }) => r.version)).toEqual(MIGRATIONS.map((m) => m.version));
    } finally {
      await client.end();
    }
    for (const id of ['waiting', 'running', 'done']) {
      expect(await repo.getById(id), id).toMatchObject({ id, kind: 'scheduled', scheduleName: null });
      expect(await repo.listAttempts(id), id).toEqual([]);
    }
    expect(await repo.getById('waiting')).toMatchObject({ param: { a: 1 }, state: 'Initialized' });

    // The run that was in flight at the upgrade ends normally; it has no record to close.
    expect((await repo.markAsDone('running', 'old-token')).state).toBe('Done');
    expect(await repo.listAttempts('running')).toEqual([]);
    // The waiting task's history starts with its next claim.
    const claimed = await repo.claim('waiting', { owner: 'node-new', leaseMs: 60_000 });
    expect(await repo.listAttempts('waiting')).toMatchObject([{ run: 1, attempt: 1, node: 'node-new', outcome: 'running' }]);
    await repo.markAsDone('waiting', claimed!.lease!.token);
    expect(await repo.listAttempts('waiting')).toMatchObject([{ run: 1, outcome: 'succeeded' }]);
    // New tasks carry their kind; retention still works on the upgraded table.
    const { task } = await repo.insert({ workId: 'w', scheduledAt: new Date(), scheduleName: 'nightly' });
    expect(task).toMatchObject({ kind: 'periodic', scheduleName: 'nightly' });
    expect(await repo.deleteTerminalBefore(new Date(Date.now() + 60_000))).toBe(3);
  });

  it('a schema at version 4 upgrades: uniqueKeys stay enforced, and deleting tasks (any DELETE or TRUNCATE) deletes their history', async () => {
    const schema = newSchema();
    const pool = new pg.Pool({ connectionString: PG_URL, max: 2 });
    try {
      expect(await migrate(pool as unknown as PgPool, schema, MIGRATIONS.slice(0, 4))).toBe(0);
      // Rows as version 4 of the adapter wrote them: a keyed task waiting, a task that ran and ended, its record.
      await pool.query(
        `INSERT INTO "${schema}".tasks (id, work_id, param, scheduled_at, state, unique_key, runs, created_at, updated_at)
         VALUES ('keyed', 'w', 'null', now(), 'Initialized', 'k', 0, now(), now()),
                ('ended', 'w', 'null', now(), 'Done', NULL, 1, now(), now() - interval '1 hour'),
                ('other', 'w', 'null', now(), 'Done', NULL, 1, now(), now())`,
      );
      await pool.query(
        `INSERT INTO "${schema}".task_attempts (task_id, run, attempt, node, started_at, ended_at, outcome)
         VALUES ('ended', 1, 1, 'node-old', now(), now(), 'succeeded'), ('other', 1, 1, 'node-old', now(), now(), 'succeeded')`,
      );
    } finally {
      await pool.end();
    }

    const repo = open(schema);
    await repo.init();
    // Keys are still enforced, and a task is still claimed, on the upgraded tables.
    expect(await repo.insert({ workId: 'w', scheduledAt: new Date(), uniqueKey: 'k' })).toMatchObject({ created: false, task: { id: 'keyed' } });
    const { task } = await repo.insert({ workId: 'w', scheduledAt: new Date(Date.now() - 1_000) });
    expect(await repo.claim(task.id, { owner: 'node-new', leaseMs: 60_000 })).toMatchObject({ state: 'Working' });
    const client = await rawClient();
    try {
      const keys = await client.query(`SELECT count(*)::int AS n FROM pg_constraint WHERE conrelid = '"${schema}".task_attempts'::regclass AND contype = 'f'`);
      expect(keys.rows[0]).toEqual({ n: 0 });
      // Records go with their task: through the adapter, and through a DELETE of anyone's.
      expect(await repo.listAttempts('ended')).toMatchObject([{ outcome: 'succeeded' }]);
      expect(await repo.deleteTerminalBefore(new Date(Date.now() - 60_000))).toBe(1);
      await expect(repo.listAttempts('ended')).rejects.toMatchObject({ code: 'TASK_NOT_FOUND' });
      await client.query(`DELETE FROM "${schema}".tasks WHERE id = 'other'`);
      const left = await client.query(`SELECT task_id FROM "${schema}".task_attempts ORDER BY task_id`);
      expect(left.rows).toEqual([{ task_id: task.id }]);
      await client.query(`TRUNCATE "${schema}".tasks`);
      const none = await client.query(`SELECT count(*)::int AS n FROM "${schema}".task_attempts`);
      expect(none.rows[0]).toEqual({ n: 0 });
    } finally {
      await client.end();
    }
  });

  it('a schema at version 5 upgrades: claims = attempt, no unstarted claims, Working runs started, the aged claim order indexed', async () => {
    const schema = newSchema();
    const pool = new pg.Pool({ connectionString: PG_URL, max: 2 });
    try {
      expect(await migrate(pool as unknown as PgPool, schema, MIGRATIONS.slice(0, 5))).toBe(0);
      // Rows as version 5 of the adapter wrote them: a task retried once and waiting (its run recorded), one running
      // its second run (the record open) under a lease that has expired, one done, one never claimed, one running
      // whose lease is still held.
      await pool.query(
        `INSERT INTO "${schema}".tasks (id, work_id, param, scheduled_at, state, priority, attempt, max_attempts, runs, lease_owner, lease_until, lease_token, created_at, updated_at)
         VALUES ('waiting', 'w', 'null', now() - interval '10 minutes', 'Initialized', 0, 1, 3, 1, NULL, NULL, NULL, now(), now()),
                ('expired', 'w', 'null', now() - interval '1 minute', 'Working', 0, 2, 3, 2, 'node-old', now() - interval '1 second', 'old-token', now(), now()),
                ('done', 'w', 'null', now() - interval '1 minute', 'Done', 0, 1, 3, 1, NULL, NULL, NULL, now(), now()),
                ('fresh', 'w', 'null', now() - interval '1 minute', 'Initialized', 5, 0, 3, 0, NULL, NULL, NULL, now(), now()),
                ('held', 'w', 'null', now() - interval '1 minute', 'Working', 0, 1, 3, 1, 'node-old', now() + interval '1 hour', 'held-token', now(), now())`,
      );
      await pool.query(
        `INSERT INTO "${schema}".task_attempts (task_id, run, attempt, node, started_at, ended_at, outcome)
         VALUES ('waiting', 1, 1, 'node-old', now(), now(), 'retried'), ('expired', 1, 1, 'node-old', now(), now(), 'retried'),
                ('expired', 2, 2, 'node-old', now(), NULL, 'running'), ('done', 1, 1, 'node-old', now(), now(), 'succeeded'),
                ('held', 1, 1, 'node-old', now(), NULL, 'running')`,
      );
    } finally {
      await pool.end();
    }

    const repo = open(schema);
    await repo.init();
    const counters = async (id: string): Promise<unknown> => {
      const task = await repo.getById(id);
      return { attempt: task.attempt, claims: task.claims, unstartedClaims: task.unstartedClaims, started: task.lease?.started ?? null };
    };
    expect(await counters('waiting')).toEqual({ attempt: 1, claims: 1, unstartedClaims: 0, started: null });
    expect(await counters('expired')).toEqual({ attempt: 2, claims: 2, unstartedClaims: 0, started: true });
    expect(await counters('done')).toEqual({ attempt: 1, claims: 1, unstartedClaims: 0, started: null });
    expect(await counters('fresh')).toEqual({ attempt: 0, claims: 0, unstartedClaims: 0, started: null });
    expect(await counters('held')).toEqual({ attempt: 1, claims: 1, unstartedClaims: 0, started: true });

    // A run in flight at the upgrade counts as started: its holder ends it, and an expired one is reclaimed as a run
    // (its attempt spent, its record closed), not as an unstarted claim.
    expect(await repo.markAsDone('held', 'held-token')).toMatchObject({ state: 'Done', claims: 1, attempt: 1 });
    expect(await repo.listAttempts('held')).toMatchObject([{ run: 1, outcome: 'succeeded' }]);
    expect(await repo.reclaimExpired()).toMatchObject([{ id: 'expired', state: 'Initialized', attempt: 2, claims: 2, unstartedClaims: 0, lastError: { code: 'LEASE_EXPIRED' } }]);
    expect((await repo.listAttempts('expired')).map((a) => a.outcome)).toEqual(['retried', 'lease-expired']);

    // The claim order is the aged one, walked on the new index: priority 0 due 10 minutes ago (aged 60 points) before
    // priority 5 due 1 minute ago (aged 11), before priority 0 due just now ('expired', reclaimed due now).
    const client = await rawClient();
    try {
      const indexes = await client.query(`SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND indexname IN ('tasks_aged', 'tasks_claim') ORDER BY indexname`, [schema]);
      expect(indexes.rows.map((r: { indexname: string }) => r.indexname)).toEqual(['tasks_aged', 'tasks_claim']);
    } finally {
      await client.end();
    }
    const order: string[] = [];
    for (let i = 0; i < 3; i++) order.push(...(await repo.claimDue({ owner: 'node-new', leaseMs: 60_000, limit: 1 })).map((task) => task.id));
    expect(order).toEqual(['waiting', 'fresh', 'expired']);
    // Claimed ahead on the upgraded table: claims grows from the copied count, attempt waits for the start.
    const waiting = await repo.getById('waiting');
    expect(waiting).toMatchObject({ attempt: 1, claims: 2, lease: { started: false } });
    expect(await repo.markAsStarted('waiting', waiting.lease!.token)).toMatchObject({ attempt: 2, claims: 2, lease: { started: true } });
    expect((await repo.listAttempts('waiting')).map((a) => [a.run, a.attempt, a.outcome])).toEqual([
      [1, 1, 'retried'],
      [2, 2, 'running'],
    ]);
    // A task inserted after the upgrade starts with no claims.
    expect((await repo.insert({ workId: 'w', scheduledAt: new Date() })).task).toMatchObject({ attempt: 0, claims: 0, unstartedClaims: 0 });
  });

  it('refuses a schema name that is not a plain identifier', () => {
    for (const schema of ['', 'a-b', 'x"; DROP TABLE y; --', 'a'.repeat(50), '1abc']) {
      expect(() => new PostgresRepository({ connectionString: PG_URL, schema }), schema).toThrow(InvalidInputError);
    }
  });
});

describe('PostgresRepository connections', () => {
  it('an unreachable server gives RepositoryError with the driver error as cause', async () => {
    const repo = new PostgresRepository({ connectionString: 'postgres://postgres@127.0.0.1:1/test', schema: newSchema() });
    opened.push(repo);
    const error = await repo.getById('x').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(RepositoryError);
    expect((error as RepositoryError).code).toBe('REPOSITORY_UNAVAILABLE');
    expect((error as RepositoryError).cause).toBeInstanceOf(Error);
    // The failure is not remembered: a later call tries again (and fails again, here).
    await expect(repo.countByState()).rejects.toBeInstanceOf(RepositoryError);
  });

  it("a caller's pool stays open after close(); the adapter's own pool does not", async () => {
    const schema = newSchema();
    const pool = new pg.Pool({ connectionString: PG_URL, max: 3 });
    try {
      const repo = new PostgresRepository({ pool: pool as unknown as PgPool, schema });
      const { task } = await repo.insert({ workId: 'w', scheduledAt: new Date() });
      const off = await repo.subscribeChanges(() => undefined);
      await off();
      await repo.close();
      const stillOpen = await pool.query(`SELECT count(*)::int AS n FROM "${schema}".tasks WHERE id = $1`, [task.id]);
      expect(stillOpen.rows[0]).toEqual({ n: 1 });
      await expect(repo.getById(task.id)).rejects.toBeInstanceOf(RepositoryError);
    } finally {
      await pool.end();
    }
    const own = open(schema);
    await own.countByState();
    await own.close();
    await expect(own.countByState()).rejects.toBeInstanceOf(RepositoryError);
  });

  it('a connection killed under the pool is reported, and the next call works on a fresh one', async () => {
    const schema = newSchema();
    const repo = open(schema, { poolSize: 1 });
    await repo.insert({ workId: 'w', scheduledAt: new Date() });
    const admin = await rawClient();
    try {
      await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE $1`, [`%"${schema}"%`]);
    } finally {
      await admin.end();
    }
    // The pool may or may not have noticed the dead connection yet; either way no plain Error escapes.
    const first = await repo.countByState().then(
      (counts) => counts,
      (e: unknown) => e,
    );
    if (first instanceof Error) expect(first).toBeInstanceOf(RepositoryError);
    expect((await repo.countByState()).Initialized).toBe(1);
  });
});
