import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidInputError } from '@horae/core';
import { RepositoryError, SchemaVersionError } from '@horae/storage';
import { PostgresRepository, SCHEMA_VERSION, type PgPool } from '@horae/repo-postgres';
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
