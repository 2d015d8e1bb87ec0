import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { RepositoryFixture } from '@horae/storage/testing';
import { PostgresRepository, type PostgresRepositoryCommonOptions } from '@horae/repo-postgres';

/** The test server; override with HORAE_PG_URL. */
export const PG_URL = process.env.HORAE_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** A fresh schema name for one test. */
export function testSchema(): string {
  return `horae_test_${randomBytes(6).toString('hex')}`;
}

/** Drops a test schema and everything in it (on the shared server, or the one `url` names). */
export async function dropSchema(schema: string, url: string = PG_URL): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end();
  }
}

/** Opens a plain pg client on the test database (for holding transactions open, reading raw rows). */
export async function rawClient(): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  return client;
}

/** A repository on a fresh schema, peers on the same schema, and a dispose that closes them all and drops it. */
export async function createPgFixture(options: PostgresRepositoryCommonOptions & { poolSize?: number } = {}): Promise<RepositoryFixture & { schema: string }> {
  const schema = testSchema();
  // A generous horizon wait: other test files' short transactions (schema set-up, drops) must not cut a page
  // short on a loaded machine. Tests of the wait itself open their own reader.
  const open = (): PostgresRepository => new PostgresRepository({ connectionString: PG_URL, schema, poolSize: 4, horizonWaitMs: 3_000, ...options });
  const repository = open();
  await repository.init();
  const peers: PostgresRepository[] = [];
  return {
    schema,
    repository,
    openPeer: async () => {
      const peer = open();
      peers.push(peer);
      await peer.init();
      return peer;
    },
    dispose: async () => {
      await Promise.allSettled([repository.close(), ...peers.map((p) => p.close())]);
      await dropSchema(schema);
    },
  };
}
