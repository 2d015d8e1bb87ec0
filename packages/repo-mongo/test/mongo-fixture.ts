import { randomUUID } from 'node:crypto';
import { MongoClient } from 'mongodb';
import type { RepositoryFixture } from '@horae/storage/testing';
import { MongoRepository } from '@horae/repo-mongo';

/** The server the conformance suite runs against; unset: the suite is skipped. */
export const MONGODB_URI = process.env.MONGODB_URI;

/** The database of each fixture's repositories, for tests that look at the stored documents. */
export const databaseOf = new WeakMap<object, string>();

/** The title of the skipped block when no server is named. */
export const SKIPPED_TITLE = 'MONGODB_URI is unset: the MongoDB conformance suite is skipped';

/**
 * A fresh database per test on the server of `MONGODB_URI`; peers are separate clients (separate
 * connection pools) on that database; `dispose` closes them all and drops the database.
 */
export async function createMongoFixture(uri: string): Promise<RepositoryFixture> {
  const dbName = `horae_test_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
  const opened: MongoRepository[] = [];
  const open = async (): Promise<MongoRepository> => {
    const repository = new MongoRepository({ uri, dbName });
    opened.push(repository);
    databaseOf.set(repository, dbName);
    await repository.init();
    return repository;
  };
  const repository = await open();
  return {
    repository,
    openPeer: open,
    dispose: async () => {
      await Promise.all(opened.map((r) => r.close()));
      const admin = new MongoClient(uri);
      try {
        await admin.db(dbName).dropDatabase();
      } finally {
        await admin.close();
      }
    },
  };
}
