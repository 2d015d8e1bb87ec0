/**
 * Loads `mongodb`, the driver the adapter opens its own client with when given a `uri`: a peer dependency (the
 * application usually hands the adapter a `Db` or `MongoClient` of its own), loaded with `requirePeerDependency` so
 * that a missing one is a HoraeError naming the install (see its TSDoc for why it is required, not imported).
 */
import type * as MongoModule from 'mongodb';
import { requirePeerDependency } from '@horae/storage';

/**
 * The driver's `MongoClient` class, loaded when this package is imported.
 *
 * @throws HoraeError with code `MISSING_DEPENDENCY`, at import, when `mongodb` is not installed
 */
export const MongoClient: typeof MongoModule.MongoClient = requirePeerDependency<typeof MongoModule>('mongodb', '@horae/repo-mongo', import.meta.url).MongoClient;

/** An instance of the driver's `MongoClient`. */
export type MongoClient = MongoModule.MongoClient;
