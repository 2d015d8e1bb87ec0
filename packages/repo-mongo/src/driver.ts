/**
 * The slice of the official `mongodb` driver that the adapter uses. The adapter depends on these few
 * members only, so a caller may hand over a `Db` or `MongoClient` of any compatible driver version.
 */
import type { Db, MongoClient } from 'mongodb';

/** What the adapter needs from a database handle: its collections. A driver `Db` fits. */
export type MongoDbLike = Pick<Db, 'collection' | 'databaseName'>;

/** What the adapter needs from a client: a database handle by name. A driver `MongoClient` fits. */
export type MongoClientLike = Pick<MongoClient, 'db'>;
