/**
 * The database a multi-node or chaos test runs its workers on, with the test's own repository on it (the observer
 * that counts and reads the rows), both undone after the test through {@link cleanups}.
 */
import { PostgresRepository } from '@horae/repo-postgres';
import { SqliteRepository } from '@horae/repo-sqlite';
import { PG_URL, dropSchema, testSchema } from '../../packages/repo-postgres/test/pg-fixture.js';
import { cleanups } from './cleanups.js';
import type { ProofDatabase } from './proof.js';

/** A fresh schema on the shared PostgreSQL, its tables created, and an observer on it; dropped after the test. */
export async function postgresObserver(): Promise<{ observer: PostgresRepository; database: ProofDatabase }> {
  const schema = testSchema();
  const observer = new PostgresRepository({ connectionString: PG_URL, schema, poolSize: 2 });
  cleanups.push(async () => {
    await observer.close();
    await dropSchema(schema);
  });
  // Create the tables once, before the workers open the schema.
  await observer.init();
  return { observer, database: { adapter: 'postgres', pgUrl: PG_URL, schema } };
}

/** An observer on the SQLite file `dbPath` (the workers open it too), closed after the test. */
export function sqliteObserver(dbPath: string): { observer: SqliteRepository; database: ProofDatabase } {
  const observer = new SqliteRepository({ database: dbPath });
  cleanups.push(() => observer.close());
  return { observer, database: { adapter: 'sqlite', dbPath } };
}
